"""The CRD (crds/hpoexperiment.yaml) against the parser (hpo_operator.core.spec).

The API server validates with the CRD's schema, the operator with the parser; these tests keep
the two in agreement: same field names, same required fields, same enums, minimums and
defaults, and every example and broken manifest judged the same way by both.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from crd_schema import (
    ROOT,
    apply_defaults,
    load_crd,
    node,
    openapi_schema,
    schema_errors,
    served_version,
    structural_problems,
)
from hpo_operator.core import parameters, trial
from hpo_operator.core import spec as specmod
from hpo_operator.core.spec import SpecError, parse_experiment

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
BROKEN = sorted((ROOT / "tests" / "manifests" / "broken").glob("*.yaml"))
EXPECT_RE = re.compile(r"^# expect: (\S+)$")

CRD = load_crd()
SCHEMA = openapi_schema(CRD)

TEMPLATE: dict[str, Any] = {
    "spec": {
        "containers": [
            {"name": "trainer", "image": "registry.example/trainer:0.1", "command": ["train"]}
        ]
    }
}

# Every optional field set (except results.claimName, which excludes results.size).
FULL: dict[str, Any] = {
    "apiVersion": "hpo.dev/v1alpha1",
    "kind": "HPOExperiment",
    "metadata": {"name": "full"},
    "spec": {
        "objective": {
            "metric": "accuracy",
            "direction": "maximize",
            "target": 0.95,
            "aggregate": "last",
            "stepKey": "step",
        },
        "algorithm": {"name": "random", "seed": 3},
        "parameters": [
            {"name": "steps", "int": {"min": 100, "max": 500, "step": 100, "log": False}},
            {"name": "dropout", "float": {"min": 0.0, "max": 0.5, "step": 0.1, "log": False}},
            {"name": "batch_size", "values": [16, 32.5, "64", True]},
            {"name": "optimizer", "categorical": ["sgd", "adam"]},
        ],
        "maxTrials": 10,
        "parallelism": 2,
        "maxFailedTrials": 2,
        "trialResources": {"gpus": 1, "gpuResourceName": "nvidia.com/mig-1g.5gb"},
        "results": {
            "size": "5Gi",
            "storageClassName": "standard",
            "accessModes": ["ReadWriteOnce"],
            "retain": True,
        },
        "queueName": "gpu-queue",
        "trialTemplate": TEMPLATE,
    },
}

MINIMAL: dict[str, Any] = {
    "apiVersion": "hpo.dev/v1alpha1",
    "kind": "HPOExperiment",
    "metadata": {"name": "minimal"},
    "spec": {
        "objective": {"metric": "loss", "direction": "minimize"},
        "parameters": [{"name": "steps", "int": {"min": 1, "max": 9}}],
        "trialResources": {},
        "trialTemplate": TEMPLATE,
    },
}


def _steps(path: str) -> list[str | int]:
    """ "spec.parameters[1].int" -> ["spec", "parameters", 1, "int"]."""
    steps: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        steps.append(int(index) if index else name)
    return steps


def _at(doc: Any, path: str) -> Any:
    for step in _steps(path):
        doc = doc[step]
    return doc


def _set(doc: Any, path: str, value: Any) -> None:
    *parents, last = _steps(path)
    for step in parents:
        doc = doc[step]
    doc[last] = value


def _parser_errors(manifest: Any) -> list[tuple[str, str]]:
    try:
        parse_experiment(manifest)
    except SpecError as e:
        return e.errors
    return []


def _paths(schema_lines: list[str]) -> set[str]:
    return {line.split(": ", 1)[0] for line in schema_lines}


# --- (a) the resource's identity -----------------------------------------------------------


def test_crd_names_and_scope() -> None:
    assert CRD["apiVersion"] == "apiextensions.k8s.io/v1"
    assert CRD["kind"] == "CustomResourceDefinition"
    assert CRD["metadata"]["name"] == "hpoexperiments.hpo.dev"
    spec = CRD["spec"]
    assert spec["group"] == "hpo.dev"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == specmod.KIND
    assert names["plural"] == "hpoexperiments"
    assert names["singular"] == "hpoexperiment"
    assert names["shortNames"] == ["hpox"]
    assert names["categories"] == ["hpo"]
    assert f"{spec['group']}/{served_version(CRD)['name']}" == specmod.API_VERSION


def test_one_version_served_and_stored_with_status_subresource() -> None:
    (version,) = CRD["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = [
        (c["name"], c["type"], c["jsonPath"])
        for c in served_version(CRD)["additionalPrinterColumns"]
    ]
    assert columns == [
        ("Phase", "string", ".status.phase"),
        ("Best", "number", ".status.bestTrial.objective"),
        ("Trials", "string", ".status.progress"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]


@pytest.mark.parametrize(
    "column",
    [
        c
        for c in served_version(CRD)["additionalPrinterColumns"]
        if c["jsonPath"] != ".metadata.creationTimestamp"
    ],
    ids=lambda c: c["name"],
)
def test_printer_columns_point_at_schema_fields_of_their_type(column: dict[str, Any]) -> None:
    field = node(SCHEMA, column["jsonPath"].lstrip("."))
    assert field["type"] == column["type"]


# --- (b) structural and described ----------------------------------------------------------


def test_schema_is_structural_and_every_field_described() -> None:
    assert structural_problems(SCHEMA) == []


def _drop_description(s: dict[str, Any]) -> None:
    del node(s, "spec.parameters[].int.step")["description"]


def _drop_type(s: dict[str, Any]) -> None:
    del node(s, "spec.maxTrials")["type"]


def _add_cel(s: dict[str, Any]) -> None:
    node(s, "spec")["x-kubernetes-validations"] = [{"rule": "self.maxTrials > 0"}]


def _type_in_one_of(s: dict[str, Any]) -> None:
    node(s, "spec.parameters")["items"]["oneOf"][0]["type"] = "object"


def _bad_default(s: dict[str, Any]) -> None:
    node(s, "spec.parallelism")["default"] = 0


def _bad_enum(s: dict[str, Any]) -> None:
    node(s, "spec.objective.direction")["enum"].append(1)


def _closed_object_without_fields(s: dict[str, Any]) -> None:
    del node(s, "status.bestTrial.parameters")["x-kubernetes-preserve-unknown-fields"]


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (_drop_description, "spec.parameters[].int.step: has no description"),
        (_drop_type, "spec.maxTrials: has no type"),
        (_add_cel, "spec: x-kubernetes-validations is not allowed"),
        (_type_in_one_of, "spec.parameters[].oneOf[0]: type is not allowed"),
        (_bad_default, "spec.parallelism: default 0 is invalid"),
        (_bad_enum, "spec.objective.direction: enum value 1"),
        (_closed_object_without_fields, "status.bestTrial.parameters: an object with no prop"),
    ],
)
def test_structural_check_catches(spoil: Any, problem: str) -> None:
    schema = copy.deepcopy(SCHEMA)
    spoil(schema)
    problems = structural_problems(schema)
    assert any(p.startswith(problem) for p in problems), problems


# --- (c) examples are valid for both -------------------------------------------------------


def _experiments(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    return [d for d in docs if d.get("kind") == specmod.KIND]


def test_there_are_examples() -> None:
    assert EXAMPLES, "examples/*.yaml is empty"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid_for_schema_and_parser(path: Path) -> None:
    experiments = _experiments(path)
    assert experiments, f"{path.name} holds no {specmod.KIND}"
    for manifest in experiments:
        assert schema_errors(manifest, CRD) == []
        parsed = parse_experiment(manifest)
        # What the API server stores (with the schema's defaults) runs the same experiment.
        assert parse_experiment(apply_defaults(manifest, SCHEMA)) == parsed


@pytest.mark.parametrize("manifest", [FULL, MINIMAL], ids=["full", "minimal"])
def test_reference_manifests_are_valid_for_schema_and_parser(manifest: dict[str, Any]) -> None:
    assert schema_errors(manifest, CRD) == []
    assert parse_experiment(manifest).name == manifest["metadata"]["name"]


# --- (d) broken manifests are refused by both, at the same field ---------------------------


def _expected_path(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    match = EXPECT_RE.match(first)
    assert match, f"{path.name}: the first line must be '# expect: <field path>'"
    return match.group(1)


def _within(path: str, expected: str) -> bool:
    return path == expected or path.startswith((f"{expected}.", f"{expected}["))


def test_there_are_broken_manifests() -> None:
    assert len(BROKEN) >= 8


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_manifest_fails_schema_and_parser_at_its_field(path: Path) -> None:
    expected = _expected_path(path)
    manifest = yaml.safe_load(path.read_text())

    schema_lines = schema_errors(manifest, CRD)
    assert expected in _paths(schema_lines), schema_lines
    with pytest.raises(SpecError) as caught:
        parse_experiment(manifest)
    assert expected in {p for p, _ in caught.value.errors}, str(caught.value)
    # Each file breaks one thing, so no error points elsewhere.
    assert all(_within(p, expected) for p in _paths(schema_lines)), schema_lines
    assert all(_within(p, expected) for p, _ in caught.value.errors), str(caught.value)


# --- (e) same field names, same required fields --------------------------------------------

# (where in a manifest, the schema node of that object)
OBJECTS = [
    ("spec", "spec"),
    ("spec.objective", "spec.objective"),
    ("spec.algorithm", "spec.algorithm"),
    ("spec.parameters[0]", "spec.parameters[]"),
    ("spec.parameters[0].int", "spec.parameters[].int"),
    ("spec.parameters[1].float", "spec.parameters[].float"),
    ("spec.trialResources", "spec.trialResources"),
    ("spec.results", "spec.results"),
]
PROBE = "notAField"


def _parser_fields(location: str) -> set[str]:
    """The fields the parser accepts at `location`, read from its unknown-field error."""
    manifest = copy.deepcopy(FULL)
    _at(manifest, location)[PROBE] = 1
    messages = [m for p, m in _parser_errors(manifest) if p == f"{location}.{PROBE}"]
    assert len(messages) == 1, messages
    return set(messages[0].split("expected one of: ")[1].split(", "))


@pytest.mark.parametrize(("location", "schema_path"), OBJECTS)
def test_parser_and_schema_accept_the_same_fields(location: str, schema_path: str) -> None:
    fields = set(node(SCHEMA, schema_path)["properties"])
    assert _parser_fields(location) == fields
    manifest = copy.deepcopy(FULL)
    _at(manifest, location)[PROBE] = 1
    assert f'{location}.{PROBE}: unknown field "{PROBE}"' in schema_errors(manifest, CRD)


def test_spec_fields_and_parameter_types_match_the_parser_constants() -> None:
    assert set(node(SCHEMA, "spec")["properties"]) == set(specmod.SPEC_FIELDS)
    item = node(SCHEMA, "spec.parameters[]")
    assert set(item["properties"]) == {"name", *parameters.PARAM_TYPES}
    assert [alt["required"] for alt in item["oneOf"]] == [[t] for t in parameters.PARAM_TYPES]


def test_full_manifest_sets_every_spec_field() -> None:
    """So the field-by-field tests below leave nothing out."""
    for location, schema_path in OBJECTS:
        fields = set(node(SCHEMA, schema_path)["properties"])
        if location == "spec.parameters[0]":
            fields = {"name", "int"}
        if location == "spec.results":
            fields -= {"claimName"}
        assert set(_at(FULL, location)) == fields


REQUIRED_CASES = [
    (location, name)
    for location, schema_path in OBJECTS
    if location != "spec.parameters[0]"
    for name in node(SCHEMA, schema_path)["properties"]
    if name in _at(FULL, location)
]


@pytest.mark.parametrize(("location", "name"), REQUIRED_CASES)
def test_a_field_is_required_by_the_schema_iff_by_the_parser(location: str, name: str) -> None:
    schema_path = dict(OBJECTS)[location]
    required = name in node(SCHEMA, schema_path).get("required", [])
    manifest = copy.deepcopy(FULL)
    del _at(manifest, location)[name]
    field = f"{location}.{name}"
    if required:
        assert f"{field}: Required value" in schema_errors(manifest, CRD)
        assert field in {p for p, _ in _parser_errors(manifest)}
    else:
        assert schema_errors(manifest, CRD) == []
        assert _parser_errors(manifest) == []


def test_parameter_name_is_required_by_both() -> None:
    manifest = copy.deepcopy(FULL)
    del manifest["spec"]["parameters"][2]["name"]
    assert "spec.parameters[2].name: Required value" in schema_errors(manifest, CRD)
    assert "spec.parameters[2].name" in {p for p, _ in _parser_errors(manifest)}


# --- enums, patterns and minimums ----------------------------------------------------------


@pytest.mark.parametrize(
    ("schema_path", "allowed"),
    [
        ("spec.objective.direction", specmod.DIRECTIONS),
        ("spec.objective.aggregate", specmod.AGGREGATES),
        ("spec.algorithm.name", specmod.ALGORITHMS),
        ("status.phase", trial.PHASES),
        ("status.results[].phase", trial.PHASES),
    ],
)
def test_enums_match_the_core(schema_path: str, allowed: tuple[str, ...]) -> None:
    assert tuple(node(SCHEMA, schema_path)["enum"]) == allowed


def test_patterns_and_lengths_match_the_parser() -> None:
    assert node(SCHEMA, "spec.parameters[].name")["pattern"] == parameters.PARAM_NAME_RE.pattern
    categorical = node(SCHEMA, "spec.parameters[].categorical")["items"]
    assert categorical["maxLength"] == parameters.MAX_CHOICE_LENGTH


@pytest.mark.parametrize(
    ("field", "schema_path", "minimum"),
    [
        ("spec.maxTrials", "spec.maxTrials", 1),
        ("spec.parallelism", "spec.parallelism", 1),
        ("spec.maxFailedTrials", "spec.maxFailedTrials", 1),
        ("spec.algorithm.seed", "spec.algorithm.seed", 0),
        ("spec.trialResources.gpus", "spec.trialResources.gpus", 0),
        ("spec.parameters[0].int.step", "spec.parameters[].int.step", 1),
    ],
)
def test_minimums_agree(field: str, schema_path: str, minimum: int) -> None:
    assert node(SCHEMA, schema_path)["minimum"] == minimum
    at_minimum = copy.deepcopy(FULL)
    _set(at_minimum, field, minimum)
    assert schema_errors(at_minimum, CRD) == []
    assert _parser_errors(at_minimum) == []
    below = copy.deepcopy(FULL)
    _set(below, field, minimum - 1)
    assert field in _paths(schema_errors(below, CRD))
    assert field in {p for p, _ in _parser_errors(below)}


# --- (f) same defaults ---------------------------------------------------------------------


def _dataclass_default(cls: type, name: str) -> Any:
    (f,) = [f for f in dataclasses.fields(cls) if f.name == name]
    return f.default


@pytest.mark.parametrize(
    ("schema_path", "default"),
    [
        ("spec.parallelism", specmod.DEFAULT_PARALLELISM),
        ("spec.maxFailedTrials", specmod.DEFAULT_MAX_FAILED_TRIALS),
        ("spec.algorithm.name", specmod.DEFAULT_ALGORITHM),
        ("spec.objective.aggregate", _dataclass_default(specmod.Objective, "aggregate")),
        ("spec.objective.stepKey", specmod.DEFAULT_STEP_KEY),
        ("spec.trialResources.gpus", _dataclass_default(specmod.TrialResources, "gpus")),
        ("spec.trialResources.gpuResourceName", specmod.DEFAULT_GPU_RESOURCE),
        ("spec.parameters[].int.step", _dataclass_default(specmod.IntParam, "step")),
    ],
)
def test_schema_defaults_are_the_parser_defaults(schema_path: str, default: Any) -> None:
    assert node(SCHEMA, schema_path)["default"] == default


@pytest.mark.parametrize("schema_path", ["spec.maxTrials", "spec.algorithm.seed"])
def test_derived_defaults_are_left_to_the_parser(schema_path: str) -> None:
    assert "default" not in node(SCHEMA, schema_path)


def test_api_server_defaulting_changes_nothing_the_parser_sees() -> None:
    defaulted = apply_defaults(MINIMAL, SCHEMA)
    assert defaulted["spec"]["algorithm"] == {"name": specmod.DEFAULT_ALGORITHM}
    assert defaulted["spec"]["parallelism"] == specmod.DEFAULT_PARALLELISM
    assert defaulted["spec"]["trialResources"]["gpuResourceName"] == specmod.DEFAULT_GPU_RESOURCE
    assert schema_errors(defaulted, CRD) == []
    assert parse_experiment(defaulted) == parse_experiment(MINIMAL)
