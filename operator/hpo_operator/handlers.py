"""kopf registrations: each unpacks kwargs and delegates to `reconcile`.

One timer per experiment is the whole control loop: it runs as soon as the experiment is seen
(after a restart too) and then every HPO_RECONCILE_SECONDS; being the only handler, no two
reconciles of one experiment ever run at once (kopf's create/update handlers would race it).
Prometheus metrics are served on HPO_METRICS_PORT (see `metrics`).

KUBECONFIG=... kopf run -m hpo_operator.handlers --standalone [--namespace NS]
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from .k8s.api import Cluster, api_client
from .metrics import Metrics
from .reconcile import reconcile, transitions
from .settings import Settings

GROUP, VERSION, PLURAL = "hpo.dev", "v1alpha1", "hpoexperiments"
SETTINGS = Settings.from_env()
METRICS = Metrics()
_cluster: list[Cluster] = []


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    # Keep kopf's bookkeeping in annotations: the status schema is ours and closed.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    _cluster.append(Cluster(api_client(), on_error=METRICS.api_error))
    if SETTINGS.metrics_port:
        METRICS.serve(SETTINGS.metrics_port, SETTINGS.metrics_address)
        where = f"{SETTINGS.metrics_address}:{SETTINGS.metrics_port}"
        logger.info(f"serving Prometheus metrics at http://{where}/metrics")


@kopf.on.cleanup()
def stop_serving(**_: Any) -> None:
    METRICS.close()


def _reconcile(body: kopf.Body, patch: kopf.Patch) -> None:
    cluster = _cluster[0]
    namespace, name = str(body.metadata.namespace), str(body.metadata.name)
    stored = {**body, "status": cluster.experiment_status(namespace, name)}
    status, sample = reconcile(stored, cluster, SETTINGS, _now())
    patch.status.update(status)
    if body.metadata.get("deletionTimestamp"):
        METRICS.forget(namespace, name)  # a reconcile that overlapped the deletion
    else:
        METRICS.record(sample)
    for kind, reason, message in transitions(stored["status"], status):
        kopf.event(body, type=kind, reason=reason, message=message)


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.reconcile_seconds, id="reconcile")
def on_timer(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    with METRICS.reconcile_duration.time():
        _reconcile(body, patch)


# The timer already makes kopf keep a finalizer on each experiment, so this runs on deletion.
@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def on_delete(body: kopf.Body, **_: Any) -> None:
    METRICS.forget(str(body.metadata.namespace), str(body.metadata.name))
