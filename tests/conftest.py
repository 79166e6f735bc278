"""Shared fixtures: manifests as dicts, built the way users write them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

BASE: dict[str, Any] = {
    "apiVersion": "hpo.dev/v1alpha1",
    "kind": "HPOExperiment",
    "metadata": {"name": "exp"},
    "spec": {
        "objective": {"metric": "accuracy", "direction": "maximize"},
        "algorithm": {"name": "random", "seed": 7},
        "parameters": [
            {"name": "learning_rate", "float": {"min": 1e-4, "max": 1e-1, "log": True}},
            {"name": "steps", "int": {"min": 100, "max": 2000, "step": 100}},
            {"name": "optimizer", "categorical": ["sgd", "adam", "rmsprop"]},
        ],
        "maxTrials": 20,
        "trialTemplate": {
            "spec": {
                "containers": [
                    {"name": "trainer", "image": "python:3.11", "command": ["python3", "t.py"]}
                ]
            }
        },
    },
}


def manifest(**spec: Any) -> dict[str, Any]:
    """A valid manifest with some spec fields replaced (None deletes a field)."""
    doc = copy.deepcopy(BASE)
    for key, value in spec.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    return doc


@pytest.fixture
def root() -> Path:
    return ROOT
