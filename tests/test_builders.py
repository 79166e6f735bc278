"""Trial manifests as data, then one trial run for real: the ConfigMap, the results claim and
the Job go to the real API server, the real Job controller runs the Job on the simulated node,
the launcher (written by the init container from the operator image) runs the trainer, and the
summary comes back as the pod's termination message."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi

from conftest import ROOT, manifest, wait_for
from hpo_operator.core.results import parse_summary
from hpo_operator.core.spec import parse_experiment
from hpo_operator.core.trial import Trial
from hpo_operator.k8s import builders as b

OWNER = {"metadata": {"name": "exp", "uid": "0b9e6f2c-1111-4222-8333-444455556666"}}
SETTINGS = b.JobSettings(operator_image="registry.example/hpo-operator:0.1")
TRIAL = Trial(3, "exp-t3", {"learning_rate": 0.01, "steps": 700, "optimizer": "adam"},
              sampler_attrs={"cma:generation": 1})  # fmt: skip
TOY = ROOT / "tests" / "trainers" / "toy_trainer.py"


def spec_with(**fields: Any):  # type: ignore[no-untyped-def]
    return parse_experiment(manifest(**fields))


def trainer_of(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_children_are_named_labelled_annotated_and_owned() -> None:
    spec = spec_with()
    cm = b.config_map(spec, TRIAL, OWNER)
    job = b.trial_job(spec, TRIAL, OWNER, SETTINGS)
    for obj in (cm, job):
        meta = obj["metadata"]
        assert meta["name"] == "exp-t3"
        assert meta["labels"] == {b.LABEL_EXPERIMENT: "exp", b.LABEL_TRIAL: "3"}
        assert json.loads(meta["annotations"][b.ANNOTATION_PARAMETERS]) == TRIAL.parameters
        assert json.loads(meta["annotations"][b.ANNOTATION_SAMPLER]) == {"cma:generation": 1}
        assert meta["ownerReferences"] == [
            {"apiVersion": "hpo.dev/v1alpha1", "kind": "HPOExperiment", "name": "exp",
             "uid": OWNER["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        ]  # fmt: skip
    assert job["spec"]["template"]["metadata"]["labels"][b.LABEL_TRIAL] == "3"
    config = json.loads(cm["data"]["config.json"])
    assert config == TRIAL.parameters and type(config["steps"]) is int


def test_the_trainer_runs_through_the_launcher_with_values_only_in_config_json() -> None:
    spec = spec_with()
    job = b.trial_job(spec, TRIAL, OWNER, SETTINGS)
    trainer = trainer_of(job)
    original = spec.container
    assert trainer["command"][:2] == ["python3", b.LAUNCHER]
    separator = trainer["command"].index("--")
    assert trainer["command"][separator + 1 :] == original["command"]
    assert trainer.get("args") == original.get("args")
    launcher_flags = trainer["command"][2:separator]
    assert launcher_flags[launcher_flags.index("--summary") + 1] == "/dev/termination-log"
    assert launcher_flags[launcher_flags.index("--metric") + 1] == "accuracy"
    words = " ".join(trainer["command"] + trainer.get("args", []))
    for value in TRIAL.parameters.values():
        assert str(value) not in words  # hyperparameters travel only in config.json
    init = job["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"] == SETTINGS.operator_image
    assert init["command"][-2:] == ["--write-single-file", b.LAUNCHER]
    mounts = {m["mountPath"]: m for m in trainer["volumeMounts"]}
    assert mounts[b.RESULT_DIR]["subPath"] == "exp/exp-t3"
    assert mounts[b.CONFIG_DIR]["readOnly"] is True
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes[b.CONFIG_VOLUME]["configMap"]["name"] == "exp-t3"
    assert volumes[b.RESULTS_VOLUME]["persistentVolumeClaim"]["claimName"] == "exp-results"


def test_trial_pods_are_locked_down() -> None:
    job = b.trial_job(spec_with(), TRIAL, OWNER, SETTINGS)
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in (pod["containers"][0], pod["initContainers"][0]):
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize(
    ("resources", "override", "expected"),
    [
        ({"gpus": 2}, None, {"nvidia.com/gpu": "2"}),
        ({"gpus": 1, "gpuResourceName": "nvidia.com/mig-1g.10gb"}, None,
         {"nvidia.com/mig-1g.10gb": "1"}),
        ({"gpus": 1}, "amd.com/gpu", {"amd.com/gpu": "1"}),
        ({"gpus": 0}, None, None),
    ],
)  # fmt: skip
def test_gpus_become_limits(resources: dict[str, Any], override: str | None, expected: Any) -> None:
    settings = b.JobSettings(SETTINGS.operator_image, gpu_resource_name=override)
    trainer = trainer_of(b.trial_job(spec_with(trialResources=resources), TRIAL, OWNER, settings))
    assert trainer.get("resources", {}).get("limits") == expected


def test_the_pod_template_passes_through() -> None:
    template = {
        "metadata": {"labels": {"team": "vision"}},
        "spec": {
            "nodeSelector": {"gpu": "a100"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {}},
            "priorityClassName": "hpo-low",
            "imagePullSecrets": [{"name": "registry"}],
            "containers": [{"name": "t", "image": "x", "command": ["run"], "args": ["--a=1"],
                            "resources": {"limits": {"memory": "2Gi"}}}],
        },
    }  # fmt: skip
    spec = spec_with(trialTemplate=template, trialResources={"gpus": 1})
    job = b.trial_job(spec, TRIAL, OWNER, SETTINGS)
    pod = job["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
        assert pod[key] == template["spec"][key]
    assert job["spec"]["template"]["metadata"]["labels"]["team"] == "vision"
    assert trainer_of(job)["resources"]["limits"] == {"memory": "2Gi", "nvidia.com/gpu": "1"}
    assert template["spec"]["containers"][0]["command"] == ["run"]  # the spec is not modified


def test_a_queue_name_makes_a_suspended_kueue_job() -> None:
    job = b.trial_job(spec_with(queueName="gpu-queue"), TRIAL, OWNER, SETTINGS)
    assert job["metadata"]["labels"][b.KUEUE_QUEUE_LABEL] == "gpu-queue"
    assert job["spec"]["suspend"] is True
    assert "suspend" not in b.trial_job(spec_with(), TRIAL, OWNER, SETTINGS)["spec"]


def test_results_claim_is_owned_unless_retained_and_absent_for_an_existing_claim() -> None:
    claim = b.results_claim(spec_with(results={"size": "5Gi", "storageClassName": "fast"}), OWNER)
    assert claim is not None
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "fast",
    }
    assert claim["metadata"]["ownerReferences"][0]["uid"] == OWNER["metadata"]["uid"]
    kept = b.results_claim(spec_with(results={"size": "1Gi", "retain": True}), OWNER)
    assert kept is not None and "ownerReferences" not in kept["metadata"]
    existing = spec_with(results={"claimName": "shared"})
    assert b.results_claim(existing, OWNER) is None
    job = b.trial_job(existing, TRIAL, OWNER, SETTINGS)
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes[b.RESULTS_VOLUME]["persistentVolumeClaim"]["claimName"] == "shared"


def test_one_trial_job_runs_end_to_end(kube: ApiClient, namespace: str, sim: Any) -> None:
    doc = manifest(
        parameters=[{"name": "x", "float": {"min": 0.0, "max": 1.0}}],
        trialTemplate={"spec": {"containers": [
            {"name": "trainer", "image": "python:3.11", "command": ["python3", str(TOY)]}
        ]}},
    )  # fmt: skip
    objects = CustomObjectsApi(kube)
    owner = objects.create_namespaced_custom_object(
        "hpo.dev", "v1alpha1", namespace, "hpoexperiments", doc
    )
    spec = parse_experiment(doc)
    trial = Trial(0, "exp-t0", {"x": 0.5})
    core, batch = CoreV1Api(kube), BatchV1Api(kube)
    claim = b.results_claim(spec, owner)
    assert claim is not None
    core.create_namespaced_persistent_volume_claim(namespace, claim)
    core.create_namespaced_config_map(namespace, b.config_map(spec, trial, owner))
    batch.create_namespaced_job(namespace, b.trial_job(spec, trial, owner, SETTINGS))

    def finished() -> Any:
        job = batch.read_namespaced_job(trial.name, namespace)
        return job if job.status.succeeded or job.status.failed else None

    job = wait_for("the trial Job to finish", finished, timeout=90)
    pods = core.list_namespaced_pod(namespace, label_selector=f"{b.LABEL_TRIAL}=0").items
    assert job.status.succeeded == 1, [p.status for p in pods]
    (pod,) = pods
    terminated = pod.status.container_statuses[0].state.terminated
    summary = parse_summary(terminated.message)
    assert summary.ok and summary.exit_code == 0
    assert summary.objective == pytest.approx(1 - (0.5 - 0.3) ** 2)
    assert summary.step == 30 and len(summary.curve) == 3
    # The init container wrote the single-file launcher into the pod's emptyDir ...
    pod_dir = sim.work_dir / "pods" / f"{namespace}_{pod.metadata.name}"
    assert (pod_dir / "volumes" / b.LAUNCHER_VOLUME / "launcher.pyz").is_file()
    # ... and the trainer's RESULT_DIR was the claim's volume at subPath <experiment>/<trial>.
    (written,) = (sim.work_dir / "volumes").glob("*/exp/exp-t0/val_dict_list.json")
    assert len(json.loads(written.read_text())) == 3


def test_spec_queue_name_reaches_the_job() -> None:
    spec = spec_with(queueName="team-a")
    assert spec.queue_name == "team-a" and spec_with().queue_name is None
    job = b.trial_job(spec, TRIAL, OWNER, SETTINGS)
    assert job["metadata"]["labels"][b.KUEUE_QUEUE_LABEL] == "team-a"
