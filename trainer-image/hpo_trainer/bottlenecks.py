"""The feature ("bottleneck") cache, shared by every trial of an experiment.

A frozen module's output for an image depends only on the module, the input size and the
image's bytes, so it is computed once and kept as one .npy file per image under

    <bottleneck_dir>/<module key>-<image size>/<sha256[:2]>/<sha256>.npy

Each entry is written to a temporary file in the same folder and renamed into place, so
trials that share the folder (a volume in a cluster) never see a partial entry; two trials
computing the same entry at once both write identical bytes and the last rename wins. An
entry that cannot be read is recomputed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .data import Image

BATCH = 64


def module_key(tfhub_module: str) -> str:
    """A module URL is its own identity; a local module is identified by its files' bytes."""
    digest = hashlib.sha256()
    root = Path(tfhub_module)
    if root.is_dir():
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    else:
        digest.update(tfhub_module.encode())
    return digest.hexdigest()[:16]


def cache_dir(bottleneck_dir: str, tfhub_module: str, image_size: int) -> Path:
    return Path(bottleneck_dir) / f"{module_key(tfhub_module)}-{image_size}"


def entry(folder: Path, image: Image) -> Path:
    return folder / image.sha256[:2] / f"{image.sha256}.npy"


def _load(path: Path) -> np.ndarray | None:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def _store(path: Path, vector: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, vector, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def bottlenecks(
    images: Sequence[Image],
    folder: Path,
    compute: Callable[[Sequence[Image]], np.ndarray],
) -> tuple[np.ndarray, int]:
    """The feature vector of every image (cached or computed by `compute` in batches), and how
    many were computed now."""
    vectors: list[np.ndarray | None] = [_load(entry(folder, i)) for i in images]
    missing = [n for n, v in enumerate(vectors) if v is None]
    for start in range(0, len(missing), BATCH):
        batch = missing[start : start + BATCH]
        computed = compute([images[n] for n in batch])
        for n, vector in zip(batch, computed, strict=True):
            _store(entry(folder, images[n]), vector)
            vectors[n] = vector
    return np.stack([v for v in vectors if v is not None]), len(missing)
