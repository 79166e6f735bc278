"""The calls that apply manifests: the only module that talks to the API server.

Idempotent by construction: create-if-absent (409 is success), reads by label, and every
object named deterministically, so a restarted operator simply carries on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from kubernetes.config import load_incluster_config, new_client_from_config

from .builders import LABEL_EXPERIMENT
from .observe import ANNOTATION_OUTCOME

Obj = dict[str, Any]


def api_client() -> ApiClient:
    """$KUBECONFIG when set (local runs, tests), else the pod's service account."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        client: ApiClient = new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return client
    load_incluster_config()  # type: ignore[no-untyped-call]
    return ApiClient()


class Cluster:
    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.core = CoreV1Api(client)
        self.batch = BatchV1Api(client)
        self.objects = CustomObjectsApi(client)

    def _plain(self, obj: Any) -> Obj:
        return dict(self.client.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]

    def experiment_status(self, namespace: str, name: str) -> Obj:
        """The experiment's status as stored now (a watch event may lag behind our own write)."""
        found: Any = self.objects.get_namespaced_custom_object(
            "hpo.dev", "v1alpha1", namespace, "hpoexperiments", name
        )
        return dict(found.get("status") or {})

    def trial_jobs(self, namespace: str, experiment: str) -> list[Obj]:
        found = self.batch.list_namespaced_job(
            namespace, label_selector=f"{LABEL_EXPERIMENT}={experiment}"
        )
        return [self._plain(j) for j in found.items]

    def trial_pods(self, namespace: str, experiment: str) -> list[Obj]:
        found = self.core.list_namespaced_pod(
            namespace, label_selector=f"{LABEL_EXPERIMENT}={experiment}"
        )
        return [self._plain(p) for p in found.items]

    def create(self, namespace: str, manifest: Mapping[str, Any]) -> bool:
        """Create unless it exists; True when this call created it."""
        creators: dict[str, Callable[..., Any]] = {
            "ConfigMap": self.core.create_namespaced_config_map,
            "PersistentVolumeClaim": self.core.create_namespaced_persistent_volume_claim,
            "Job": self.batch.create_namespaced_job,
        }
        try:
            creators[str(manifest["kind"])](namespace, dict(manifest))
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def end_job(self, namespace: str, name: str, phase: str, reason: str) -> None:
        """Record the operator's verdict on the Job and make the Job controller stop its pod
        (a one-second deadline), keeping the Job as the trial's record."""
        outcome = json.dumps({"phase": phase, "reason": reason})
        patch = {
            "metadata": {"annotations": {ANNOTATION_OUTCOME: outcome}},
            "spec": {"activeDeadlineSeconds": 1},
        }
        try:
            self.batch.patch_namespaced_job(name, namespace, patch)
        except ApiException as exc:
            if exc.status != 404:
                raise
