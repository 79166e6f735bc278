"""The HPOExperiment CRD as test data: load it, validate manifests, check it is structural.

`schema_errors` validates a manifest the way the API server would on `kubectl apply`
(structural-schema semantics, strict field validation) with the `jsonschema` package, and
words each error as Kubernetes does, starting with the field path:
`spec.parameters[1].int.min: ...`.

`structural_problems` lists what would make the API server reject the CRD or `kubectl explain`
useless: a node without a type, a field without a description, CEL rules (we support 1.20+),
types or descriptions inside oneOf/anyOf/allOf/not, defaults or enum values that do not fit.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
CRD_PATH = ROOT / "crds" / "hpoexperiment.yaml"

Schema = dict[str, Any]

JUNCTORS = ("allOf", "anyOf", "oneOf")
# Not allowed anywhere in an apiextensions.k8s.io/v1 schema.
FORBIDDEN = ("$ref", "definitions", "id", "patternProperties", "dependencies", "additionalItems")
# Not allowed inside allOf/anyOf/oneOf/not (a value validation may not declare structure).
FORBIDDEN_IN_JUNCTORS = (
    "type",
    "description",
    "default",
    "additionalProperties",
    "nullable",
    "properties",
    "items",
)


def load_crd(path: Path = CRD_PATH) -> dict[str, Any]:
    with path.open() as f:
        crd: dict[str, Any] = yaml.safe_load(f)
    return crd


def served_version(crd: Mapping[str, Any]) -> Mapping[str, Any]:
    """The version that is both served and stored (there is one)."""
    versions: list[Mapping[str, Any]] = crd["spec"]["versions"]
    (version,) = [v for v in versions if v.get("served") and v.get("storage")]
    return version


def openapi_schema(crd: Mapping[str, Any] | None = None) -> Schema:
    version = served_version(crd if crd is not None else load_crd())
    schema: Schema = version["schema"]["openAPIV3Schema"]
    return schema


def node(schema: Schema, dotted: str) -> Schema:
    """The schema of a field given as a dotted path; `[]` steps into array items.

    node(schema, "spec.parameters[].int.step") -> {"type": "integer", ...}
    """
    current = schema
    for part in dotted.split("."):
        name, items, _ = part.partition("[]")
        current = current["properties"][name]
        if items:
            current = current["items"]
    return current


# --- validation ---------------------------------------------------------------------------


def to_jsonschema(schema: Schema) -> Schema:
    """A structural schema -> the JSON Schema (draft 4) that accepts the same documents.

    x-kubernetes-int-or-string: an integer or a string. x-kubernetes-preserve-unknown-fields:
    unknown keys are kept, so allowed. nullable: null is allowed too. Any other object with
    `properties` is closed, as strict field validation (kubectl apply's default) treats it.
    """
    out: Schema = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    out.pop("nullable", None)
    if "properties" in schema:
        out["properties"] = {k: to_jsonschema(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(schema.get("items"), Mapping):
        out["items"] = to_jsonschema(schema["items"])
    for junctor in JUNCTORS:
        if junctor in schema:
            out[junctor] = [to_jsonschema(s) for s in schema[junctor]]
    if "not" in schema:
        out["not"] = to_jsonschema(schema["not"])
    return out


def field_path(parts: Iterable[str | int]) -> str:
    """("spec", "parameters", 1, "int") -> "spec.parameters[1].int"."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(error: jsonschema.ValidationError) -> list[str]:
    """One jsonschema error -> Kubernetes-style `path: message` lines."""
    path = field_path(error.absolute_path)
    kind = error.validator
    if kind == "required":
        present = error.instance if isinstance(error.instance, Mapping) else {}
        missing = [name for name in error.validator_value if name not in present]
        return [f"{_child(path, name)}: Required value" for name in missing]
    if kind == "additionalProperties":
        known = error.schema.get("properties", {})
        unknown = sorted(k for k in error.instance if k not in known)
        return [f'{_child(path, k)}: unknown field "{k}"' for k in unknown]
    where = path or "(root)"
    if kind == "oneOf" and all(set(s) == {"required"} for s in error.validator_value):
        options = ", ".join(s["required"][0] for s in error.validator_value)
        return [f"{where}: Invalid value: must have exactly one of {options}"]
    if kind == "not" and set(error.validator_value) == {"required"}:
        fields = " and ".join(error.validator_value["required"])
        return [f"{where}: Invalid value: must not have both {fields}"]
    if kind == "enum":
        allowed = ", ".join(f'"{v}"' for v in error.validator_value)
        return [f"{where}: Unsupported value: {error.instance!r}: supported values: {allowed}"]
    return [f"{where}: Invalid value: {error.message}"]


def schema_errors(manifest: object, crd: Mapping[str, Any] | None = None) -> list[str]:
    """Every reason the API server would refuse `manifest`, as `field.path: message` lines."""
    crd = crd if crd is not None else load_crd()
    errors: list[str] = []
    if isinstance(manifest, Mapping):
        api_version = f"{crd['spec']['group']}/{served_version(crd)['name']}"
        kind = crd["spec"]["names"]["kind"]
        if manifest.get("apiVersion") != api_version:
            errors.append(f"apiVersion: Invalid value: must be {api_version}")
        if manifest.get("kind") != kind:
            errors.append(f"kind: Invalid value: must be {kind}")
    schema = dict(openapi_schema(crd))
    # metadata is ObjectMeta, implicit in every CRD (a CRD may not declare it); the API server
    # checks it itself, as parse_experiment checks metadata.name.
    schema["properties"] = {**schema["properties"], "metadata": {"type": "object"}}
    validator = jsonschema.Draft4Validator(to_jsonschema(schema))
    ordered = sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.path)))
    for error in ordered:
        errors.extend(line for line in _describe(error) if line not in errors)
    return errors


def apply_defaults(manifest: Any, schema: Schema) -> Any:
    """A copy of `manifest` with the schema's defaults filled in, as the API server does."""
    doc = copy.deepcopy(manifest)
    _default(doc, schema)
    return doc


def _default(value: Any, schema: Schema) -> None:
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _default(value[name], sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _default(item, schema["items"])


# --- structural checks --------------------------------------------------------------------


def structural_problems(schema: Schema) -> list[str]:
    """Why `schema` is not a structural, fully described apiextensions/v1 schema ([] if it is)."""
    problems: list[str] = []
    if schema.get("type") != "object":
        problems.append("(root): type must be object")
    if "additionalProperties" in schema:
        problems.append("(root): additionalProperties is not allowed at the root")
    _check_node(schema, "", problems, is_property=False)
    return problems


def _has_type(schema: Schema) -> bool:
    return bool(
        schema.get("type")
        or schema.get("x-kubernetes-int-or-string")
        or schema.get("x-kubernetes-preserve-unknown-fields")
    )


def _check_node(schema: Schema, path: str, problems: list[str], is_property: bool) -> None:
    where = path or "(root)"
    if not _has_type(schema):
        problems.append(f"{where}: has no type")
    if is_property and not str(schema.get("description", "")).strip():
        problems.append(f"{where}: has no description")
    for key in (*FORBIDDEN, "x-kubernetes-validations"):
        if key in schema:
            problems.append(f"{where}: {key} is not allowed")
    if schema.get("uniqueItems"):
        problems.append(f"{where}: uniqueItems: true is not allowed")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{where}: properties and additionalProperties exclude each other")
    if (
        schema.get("type") == "object"
        and "properties" not in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
        and path != "metadata"
    ):
        problems.append(f"{where}: an object with no properties would be pruned to {{}}")
    if schema.get("type") == "array" and not isinstance(schema.get("items"), Mapping):
        problems.append(f"{where}: an array needs items")
    _check_values(schema, where, problems)
    for junctor in JUNCTORS:
        for i, sub in enumerate(schema.get(junctor, [])):
            _check_junctor(sub, f"{where}.{junctor}[{i}]", problems)
    if "not" in schema:
        _check_junctor(schema["not"], f"{where}.not", problems)
    for name, sub in schema.get("properties", {}).items():
        _check_node(sub, _child(path, name), problems, is_property=True)
    if isinstance(schema.get("items"), Mapping):
        _check_node(schema["items"], f"{path}[]", problems, is_property=False)


def _check_values(schema: Schema, where: str, problems: list[str]) -> None:
    """Defaults and enum values must themselves be valid for the node."""
    validator = jsonschema.Draft4Validator(to_jsonschema(schema))
    if "default" in schema:
        for error in validator.iter_errors(schema["default"]):
            problems.append(f"{where}: default {schema['default']!r} is invalid: {error.message}")
    for value in schema.get("enum", []):
        without_enum = {k: v for k, v in schema.items() if k != "enum"}
        if not jsonschema.Draft4Validator(to_jsonschema(without_enum)).is_valid(value):
            problems.append(f"{where}: enum value {value!r} does not fit the node's type")


def _check_junctor(schema: Schema, where: str, problems: list[str]) -> None:
    for key in schema:
        if key in FORBIDDEN_IN_JUNCTORS or key.startswith("x-kubernetes-"):
            problems.append(f"{where}: {key} is not allowed inside a value validation")
    for junctor in JUNCTORS:
        for i, sub in enumerate(schema.get(junctor, [])):
            _check_junctor(sub, f"{where}.{junctor}[{i}]", problems)
    if "not" in schema:
        _check_junctor(schema["not"], f"{where}.not", problems)
