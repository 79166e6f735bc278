"""The calls that apply manifests: the only module that talks to the API server.

Idempotent by construction: create-if-absent (409 is success), reads by label, and every
object named deterministically, so a restarted operator simply carries on. Every call that fails
otherwise is told to `on_error(verb, code)` (code 0: no HTTP answer) before it propagates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from kubernetes.config import load_incluster_config, new_client_from_config
from urllib3.exceptions import HTTPError

from .builders import LABEL_EXPERIMENT
from .observe import ANNOTATION_OUTCOME

Obj = dict[str, Any]
T = TypeVar("T")
ErrorSink = Callable[[str, int], None]


def _ignore(verb: str, code: int) -> None:
    pass


class Refused(Exception):
    """The API server answered a create with a client error (4xx other than 409): a quota, an
    admission webhook or policy, a missing permission. Retrying unchanged will not help until
    someone changes the cluster, so it is reported rather than retried blindly."""

    def __init__(self, kind: str, name: str, code: int, message: str) -> None:
        self.kind, self.name, self.code, self.message = kind, name, code, message
        super().__init__(f"creating {kind} {name} was refused ({code}): {message}")


def _server_message(exc: ApiException) -> str:
    """The Status message the API server gave, else the HTTP reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    found = body.get("message") if isinstance(body, dict) else None
    return str(found or exc.reason or "no message")


def api_client() -> ApiClient:
    """$KUBECONFIG when set (local runs, tests), else the pod's service account."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        client: ApiClient = new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return client
    load_incluster_config()  # type: ignore[no-untyped-call]
    return ApiClient()


class Cluster:
    def __init__(self, client: ApiClient, on_error: ErrorSink = _ignore) -> None:
        self.client = client
        self.core = CoreV1Api(client)
        self.batch = BatchV1Api(client)
        self.objects = CustomObjectsApi(client)
        self.on_error = on_error

    def _call(self, verb: str, call: Callable[..., T], *args: Any, ok: int = 0, **kw: Any) -> T:
        """`call(*args, **kw)`, telling `on_error` of a failure other than the `ok` status."""
        try:
            return call(*args, **kw)
        except ApiException as exc:
            if exc.status != ok:
                self.on_error(verb, int(exc.status or 0))
            raise
        except HTTPError:
            self.on_error(verb, 0)
            raise

    def _plain(self, obj: Any) -> Obj:
        return dict(self.client.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]

    def experiment_status(self, namespace: str, name: str) -> Obj:
        """The experiment's status as stored now (a watch event may lag behind our own write)."""
        found: Any = self._call(
            "get",
            self.objects.get_namespaced_custom_object,
            *("hpo.dev", "v1alpha1", namespace, "hpoexperiments", name),
        )
        return dict(found.get("status") or {})

    def trial_jobs(self, namespace: str, experiment: str) -> list[Obj]:
        found = self._call(
            "list", self.batch.list_namespaced_job, namespace, label_selector=_of(experiment)
        )
        return [self._plain(j) for j in found.items]

    def trial_pods(self, namespace: str, experiment: str) -> list[Obj]:
        found = self._call(
            "list", self.core.list_namespaced_pod, namespace, label_selector=_of(experiment)
        )
        return [self._plain(p) for p in found.items]

    def create(self, namespace: str, manifest: Mapping[str, Any], *, replace: bool = False) -> bool:
        """Create unless it exists, or with `replace` overwrite what exists (ConfigMaps only: a
        Job's template cannot change); True when this call created it. `Refused` when the API
        server refuses with a 4xx."""
        creators: dict[str, Callable[..., Any]] = {
            "ConfigMap": self.core.create_namespaced_config_map,
            "PersistentVolumeClaim": self.core.create_namespaced_persistent_volume_claim,
            "Job": self.batch.create_namespaced_job,
        }
        replacers: dict[str, Callable[..., Any]] = {
            "ConfigMap": self.core.replace_namespaced_config_map,
        }
        kind, name = str(manifest["kind"]), str(manifest["metadata"]["name"])
        try:
            try:
                self._call("create", creators[kind], namespace, dict(manifest), ok=409)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                if replace:
                    self._call("replace", replacers[kind], name, namespace, dict(manifest))
                return False
        except ApiException as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                raise Refused(kind, name, exc.status, _server_message(exc)) from exc
            raise
        return True

    def end_job(self, namespace: str, name: str, outcome: str) -> None:
        """Record the operator's verdict (`observe.outcome`) on the Job and make the Job
        controller stop its pod (a one-second deadline), keeping the Job as the trial's record."""
        patch = {
            "metadata": {"annotations": {ANNOTATION_OUTCOME: outcome}},
            "spec": {"activeDeadlineSeconds": 1},
        }
        try:
            self._call("patch", self.batch.patch_namespaced_job, name, namespace, patch, ok=404)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _of(experiment: str) -> str:
    return f"{LABEL_EXPERIMENT}={experiment}"
