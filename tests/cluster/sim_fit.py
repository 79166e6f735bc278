"""Does a pod fit a node? The default scheduler's filters that matter here, as pure functions.

Covered: resource requests (NodeResourcesFit: containers summed, init containers as a maximum,
a limit standing in for a missing request, one `pods` slot per pod), nodeSelector and required
node affinity (NodeAffinity), taints with effect NoSchedule/NoExecute against tolerations
(TaintToleration) and `spec.unschedulable` (NodeUnschedulable). The reasons and the summary
message use the 1.20 scheduler's wording, e.g. `0/1 nodes are available: 1 Insufficient
nvidia.com/gpu.`
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

Obj = dict[str, Any]
Resources = dict[str, Decimal]
TERMINAL = ("Succeeded", "Failed")


def quantities(values: dict[str, Any] | None) -> Resources:
    return {name: Decimal(parse_quantity(str(v))) for name, v in (values or {}).items()}


def container_requests(container: Obj) -> Resources:
    """Requests, with limits standing in for missing requests (as API defaulting does)."""
    resources = container.get("resources") or {}
    return {**quantities(resources.get("limits")), **quantities(resources.get("requests"))}


def _add(total: Resources, more: Resources) -> Resources:
    out = dict(total)
    for name, value in more.items():
        out[name] = out.get(name, Decimal(0)) + value
    return out


def pod_requests(pod: Obj) -> Resources:
    spec = pod["spec"]
    total: Resources = {}
    for container in spec.get("containers", []):
        total = _add(total, container_requests(container))
    for container in spec.get("initContainers") or []:
        for name, value in container_requests(container).items():
            total[name] = max(total.get(name, Decimal(0)), value)
    total["pods"] = Decimal(1)
    return total


def occupies(pod: Obj) -> bool:
    """Pods count against their node until they end (also while terminating)."""
    return pod.get("status", {}).get("phase") not in TERMINAL


def insufficient(requests: Resources, used: Resources, allocatable: Resources) -> list[str]:
    reasons = []
    for name, value in sorted(requests.items()):
        if value <= 0:
            continue
        if used.get(name, Decimal(0)) + value > allocatable.get(name, Decimal(0)):
            reasons.append("Too many pods" if name == "pods" else f"Insufficient {name}")
    return reasons


def _expression_matches(expr: Obj, values: dict[str, str]) -> bool:
    op, key, wanted = expr["operator"], expr["key"], expr.get("values") or []
    present = key in values
    if op == "In":
        return present and values[key] in wanted
    if op == "NotIn":
        return not present or values[key] not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present:
        try:
            have, limit = int(values[key]), int(wanted[0])
        except (ValueError, IndexError):
            return False
        return have > limit if op == "Gt" else have < limit
    return False


def _term_matches(term: Obj, node: Obj) -> bool:
    labels = node["metadata"].get("labels") or {}
    fields = {"metadata.name": node["metadata"]["name"]}
    exprs = [(e, labels) for e in term.get("matchExpressions") or []]
    exprs += [(e, fields) for e in term.get("matchFields") or []]
    return bool(exprs) and all(_expression_matches(e, values) for e, values in exprs)


def selector_matches(pod: Obj, node: Obj) -> bool:
    labels = node["metadata"].get("labels") or {}
    selector = pod["spec"].get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    affinity = (pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return True
    return any(_term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


def tolerates(toleration: Obj, taint: Obj) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint["effect"]:
        return False
    operator = toleration.get("operator") or "Equal"
    if not toleration.get("key"):
        return operator == "Exists"
    if toleration["key"] != taint["key"]:
        return False
    return operator == "Exists" or (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taint(pod: Obj, node: Obj) -> Obj | None:
    tolerations = pod["spec"].get("tolerations") or []
    for taint in node.get("spec", {}).get("taints") or []:
        if taint["effect"] not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def node_reasons(pod: Obj, requests: Resources, node: Obj, used: Resources) -> list[str]:
    """Why `pod` cannot go to `node` (empty: it fits). The first failing filter decides."""
    if node.get("spec", {}).get("unschedulable"):
        return ["node(s) were unschedulable"]
    allocatable = quantities(node.get("status", {}).get("allocatable"))
    reasons = insufficient(requests, used, allocatable)
    if reasons:
        return reasons
    if not selector_matches(pod, node):
        return ["node(s) didn't match node selector"]
    taint = untolerated_taint(pod, node)
    if taint is not None:
        value = taint.get("value") or ""
        return [f"node(s) had taint {{{taint['key']}: {value}}}, that the pod didn't tolerate"]
    return []


def unschedulable_message(node_count: int, reasons: list[list[str]]) -> str:
    counts = Counter(reason for per_node in reasons for reason in per_node)
    parts = sorted(f"{n} {reason}" for reason, n in counts.items())
    return f"0/{node_count} nodes are available: {', '.join(parts)}."


def load(requests: Resources, used: Resources, allocatable: Resources) -> Decimal:
    """The fullest of cpu, memory and GPUs after placing the pod: lower spreads better."""
    fractions = [
        (used.get(name, Decimal(0)) + requests.get(name, Decimal(0))) / allocatable[name]
        for name in ("cpu", "memory", "nvidia.com/gpu")
        if allocatable.get(name)
    ]
    return max(fractions, default=Decimal(0))
