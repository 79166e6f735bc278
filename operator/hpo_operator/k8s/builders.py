"""Manifests for an experiment's children, as plain dicts (no API calls here).

Each trial is a ConfigMap (its `config.json`) and a batch/v1 Job, both named
`<experiment>-t<index>`, labelled with experiment and trial, annotated with the parameter
values, owned by the experiment. In the trial pod an init container writes the single-file
launcher from the operator image into an emptyDir; the trainer container's own command runs
through it, `config.json` comes from the ConfigMap, `RESULT_DIR` is the results volume at
`subPath: <experiment>/<trial>`, and the summary goes to the termination message.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.spec import ExperimentSpec
from ..core.trial import Trial

GROUP = "hpo.dev"
LABEL_EXPERIMENT = f"{GROUP}/experiment"
LABEL_TRIAL = f"{GROUP}/trial"
ANNOTATION_PARAMETERS = f"{GROUP}/parameters"
ANNOTATION_SAMPLER = f"{GROUP}/sampler-attrs"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

LAUNCHER_VOLUME, LAUNCHER_DIR = "hpo-launcher", "/hpo/bin"
LAUNCHER = f"{LAUNCHER_DIR}/launcher.pyz"
CONFIG_VOLUME, CONFIG_DIR = "hpo-config", "/hpo/config"
RESULTS_VOLUME, RESULT_DIR = "hpo-results", "/hpo/results"
TERMINATION_LOG = "/dev/termination-log"
CONFIG_KEY = "config.json"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class JobSettings:
    """What the operator brings to every trial Job (from its HPO_* settings)."""

    operator_image: str
    trainer_python: str = "python3"  # runs the launcher in the trainer image (>= 3.8)
    gpu_resource_name: str | None = None  # overrides spec.trialResources.gpuResourceName


def owner_reference(experiment: Mapping[str, Any]) -> Manifest:
    meta = experiment["metadata"]
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "HPOExperiment",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def trial_labels(spec: ExperimentSpec, trial: Trial) -> dict[str, str]:
    return {LABEL_EXPERIMENT: spec.name, LABEL_TRIAL: str(trial.index)}


def _metadata(spec: ExperimentSpec, trial: Trial, owner: Mapping[str, Any]) -> Manifest:
    return {
        "name": trial.name,
        "labels": trial_labels(spec, trial),
        "annotations": {
            ANNOTATION_PARAMETERS: json.dumps(dict(trial.parameters), sort_keys=True),
            ANNOTATION_SAMPLER: json.dumps(dict(trial.sampler_attrs), sort_keys=True),
        },
        "ownerReferences": [owner_reference(owner)],
    }


def config_map(spec: ExperimentSpec, trial: Trial, owner: Mapping[str, Any]) -> Manifest:
    """The trial's config.json: each hyperparameter with its type kept."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(spec, trial, owner),
        "data": {CONFIG_KEY: json.dumps(dict(trial.parameters), indent=1, sort_keys=True)},
    }


def results_claim_name(spec: ExperimentSpec) -> str:
    return str(spec.results.get("claimName") or f"{spec.name}-results")


def results_claim(spec: ExperimentSpec, owner: Mapping[str, Any]) -> Manifest | None:
    """The experiment's results volume, or None when the spec names an existing claim. Owned
    by the experiment (deleted with it) unless `results.retain` is true."""
    if spec.results.get("claimName"):
        return None
    meta: Manifest = {"name": results_claim_name(spec), "labels": {LABEL_EXPERIMENT: spec.name}}
    if not spec.results.get("retain"):
        meta["ownerReferences"] = [owner_reference(owner)]
    claim: Manifest = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta,
        "spec": {
            "accessModes": list(spec.results.get("accessModes") or ["ReadWriteOnce"]),
            "resources": {"requests": {"storage": str(spec.results.get("size") or "1Gi")}},
        },
    }
    if spec.results.get("storageClassName"):
        claim["spec"]["storageClassName"] = spec.results["storageClassName"]
    return claim


def _launcher_command(spec: ExperimentSpec, container: Mapping[str, Any], python: str) -> list[str]:
    objective = spec.objective
    return [
        python, LAUNCHER,
        "--config", f"{CONFIG_DIR}/{CONFIG_KEY}",
        "--summary", TERMINATION_LOG,
        "--metric", objective.metric,
        "--direction", objective.direction,
        "--aggregate", objective.aggregate,
        "--step-key", objective.step_key,
        "--result-dir", RESULT_DIR,
        "--", *container["command"],
    ]  # fmt: skip


_LOCKED_DOWN = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _trainer(
    spec: ExperimentSpec, trial: Trial, container: Mapping[str, Any], settings: JobSettings
) -> Manifest:
    trainer = copy.deepcopy(dict(container))
    trainer["command"] = _launcher_command(spec, container, settings.trainer_python)
    trainer["terminationMessagePath"] = TERMINATION_LOG
    trainer["terminationMessagePolicy"] = "FallbackToLogsOnError"
    env = [e for e in trainer.get("env", []) if e.get("name") not in ("RESULT_DIR", "HPO_CONFIG")]
    trainer["env"] = [*env, {"name": "HPO_TRIAL", "value": trial.name}]
    trainer["volumeMounts"] = [
        *trainer.get("volumeMounts", []),
        {"name": LAUNCHER_VOLUME, "mountPath": LAUNCHER_DIR, "readOnly": True},
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": RESULTS_VOLUME, "mountPath": RESULT_DIR, "subPath": f"{spec.name}/{trial.name}"},
    ]
    trainer["securityContext"] = {**trainer.get("securityContext", {}), **_LOCKED_DOWN}
    gpus = spec.trial_resources.gpus
    if gpus:
        resource = settings.gpu_resource_name or spec.trial_resources.gpu_resource_name
        resources = trainer.setdefault("resources", {})
        resources["limits"] = {**resources.get("limits", {}), resource: str(gpus)}
    return trainer


def _launcher_installer(settings: JobSettings) -> Manifest:
    return {
        "name": "hpo-launcher",
        "image": settings.operator_image,
        "command": ["python", "-m", "hpo_operator.launcher", "--write-single-file", LAUNCHER],
        "volumeMounts": [{"name": LAUNCHER_VOLUME, "mountPath": LAUNCHER_DIR}],
        "securityContext": dict(_LOCKED_DOWN),
    }


def trial_job(
    spec: ExperimentSpec,
    trial: Trial,
    owner: Mapping[str, Any],
    settings: JobSettings,
) -> Manifest:
    """The trial's Job: the user's pod template with the launcher wired in and locked down;
    suspended in the Kueue queue when the spec names one."""
    template = copy.deepcopy(dict(spec.trial_template))
    pod = template.setdefault("spec", {})
    containers = pod["containers"]
    containers[0] = _trainer(spec, trial, containers[0], settings)
    pod["initContainers"] = [_launcher_installer(settings), *pod.get("initContainers", [])]
    pod["volumes"] = [
        *pod.get("volumes", []),
        {"name": LAUNCHER_VOLUME, "emptyDir": {}},
        {"name": CONFIG_VOLUME, "configMap": {"name": trial.name}},
        {
            "name": RESULTS_VOLUME,
            "persistentVolumeClaim": {"claimName": results_claim_name(spec)},
        },
    ]
    pod["restartPolicy"] = "Never"  # a retry is a new trial, chosen by the search
    pod["automountServiceAccountToken"] = False
    pod["securityContext"] = {
        **pod.get("securityContext", {}),
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**meta.get("labels", {}), **trial_labels(spec, trial)}
    job_meta = _metadata(spec, trial, owner)
    job: Manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job_meta,
        "spec": {"backoffLimit": 0, "template": template},
    }
    if spec.queue_name:
        job_meta["labels"][KUEUE_QUEUE_LABEL] = spec.queue_name
        job["spec"]["suspend"] = True  # Kueue admits it by unsuspending
    return job
