"""How an image "runs" on the simulated node: a glob on the image name picks a local Python.

The node simulator has no container runtime. A container's `command` + `args` run as a local
process, with a per-container bin folder first on PATH in which `python` and `python3` start
the interpreter that the first matching rule names. The defaults:

- `python:*` (also `docker.io/library/python:*`): the host's `python3`;
- `*hpo-operator*` and `*hpo-trainer*`: the simulator's own interpreter (`sys.executable`, the
  checkout's virtualenv, where the project is installed), so the project's images run the
  project's code from the checkout.

A YAML file adds rules in front of the defaults (first match wins)::

    - image: "registry.example/my-trainer:*"
      python: /opt/venvs/trainer/bin/python   # a path, or a name looked up on PATH

An image that no rule matches cannot "be pulled": its container never starts (see
`sim_kubelet`).
"""

from __future__ import annotations

import fnmatch
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

DOCKER_HUB_PREFIXES = ("docker.io/library/", "index.docker.io/library/", "docker.io/")


class ImageMapError(ValueError):
    """An image-map file that cannot be used; the message names the rule and the field."""


@dataclass(frozen=True)
class ImageRule:
    image: str
    """A shell-style glob over the image reference (`fnmatch`, case-sensitive)."""
    python: str
    """The interpreter that `python`/`python3` start in containers of matching images."""

    def matches(self, image: str) -> bool:
        return any(fnmatch.fnmatchcase(name, self.image) for name in _names(image))


def _names(image: str) -> list[str]:
    """The reference as written, and without a Docker Hub prefix."""
    names = [image]
    for prefix in DOCKER_HUB_PREFIXES:
        if image.startswith(prefix):
            names.append(image[len(prefix) :])
    return names


def _interpreter(value: str, where: str) -> str:
    found = value if Path(value).is_absolute() else shutil.which(value)
    if not found or not Path(found).exists():
        raise ImageMapError(f"{where}.python: {value!r} is neither an existing path nor on PATH")
    return str(found)


def default_rules() -> tuple[ImageRule, ...]:
    host = shutil.which("python3") or sys.executable
    return (
        ImageRule("python:*", host),
        ImageRule("*hpo-operator*", sys.executable),
        ImageRule("*hpo-trainer*", sys.executable),
    )


@dataclass(frozen=True)
class ImageMap:
    rules: tuple[ImageRule, ...]

    @classmethod
    def default(cls) -> ImageMap:
        return cls(default_rules())

    @classmethod
    def from_rules(cls, rules: list[dict[str, str]], where: str = "image map") -> ImageMap:
        """User rules first, then the defaults."""
        if not isinstance(rules, list):
            raise ImageMapError(f"{where}: expected a list of {{image, python}} rules")
        parsed = []
        for i, rule in enumerate(rules):
            at = f"{where}[{i}]"
            if not isinstance(rule, dict) or set(rule) != {"image", "python"}:
                raise ImageMapError(f"{at}: expected exactly the keys image and python")
            parsed.append(ImageRule(str(rule["image"]), _interpreter(str(rule["python"]), at)))
        return cls((*parsed, *default_rules()))

    @classmethod
    def from_yaml(cls, path: Path) -> ImageMap:
        return cls.from_rules(yaml.safe_load(Path(path).read_text()) or [], str(path))

    def resolve(self, image: str) -> ImageRule | None:
        return next((rule for rule in self.rules if rule.matches(image)), None)


def pull_error(image: str) -> str:
    """The waiting message of a container whose image no rule matches (reason ErrImagePull)."""
    return (
        f'rpc error: code = NotFound desc = failed to pull image "{image}": image {image} is '
        "not in the simulator's image map (see tests/cluster/sim_images.py)"
    )
