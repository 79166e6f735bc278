"""The image folder: classes, files, and a stable, content-based split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

EXTENSIONS = (".jpg", ".jpeg", ".png")
TRAINING, VALIDATION, TESTING = "training", "validation", "testing"


class DataError(ValueError):
    """The image folder cannot be used; the message says why."""


@dataclass(frozen=True)
class Image:
    path: Path
    label: int
    sha256: str  # of the file's bytes: the cache key and the split's hash
    split: str


@dataclass(frozen=True)
class Dataset:
    labels: tuple[str, ...]
    images: tuple[Image, ...]

    def of(self, split: str) -> list[Image]:
        return [i for i in self.images if i.split == split]


def split_of(sha256: str, validation_percentage: int, testing_percentage: int) -> str:
    """Where an image goes, decided by its content alone: the same image always lands in the
    same split, however the folder grows or is renamed (like the original's file-name hash)."""
    bucket = int(sha256[:8], 16) % 10_000 / 100.0
    if bucket < validation_percentage:
        return VALIDATION
    if bucket < validation_percentage + testing_percentage:
        return TESTING
    return TRAINING


def load_dataset(image_dir: str, validation_percentage: int, testing_percentage: int) -> Dataset:
    root = Path(image_dir)
    if not root.is_dir():
        raise DataError(f"--image_dir {image_dir}: no such folder")
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    images: list[Image] = []
    labels: list[str] = []
    for folder in classes:
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in EXTENSIONS)
        if not files:
            continue  # an empty class folder is skipped, as the original did
        label = len(labels)
        labels.append(folder.name)
        for f in files:
            sha = hashlib.sha256(f.read_bytes()).hexdigest()
            images.append(
                Image(f, label, sha, split_of(sha, validation_percentage, testing_percentage))
            )
    if len(labels) < 2:
        found = ", ".join(labels) or "none"
        raise DataError(
            f"--image_dir {image_dir}: needs at least 2 sub-folders with {'/'.join(EXTENSIONS)} "
            f"images (one per class); found classes: {found}"
        )
    dataset = Dataset(tuple(labels), tuple(images))
    for split in (TRAINING, VALIDATION):
        if not dataset.of(split):
            raise DataError(
                f"--image_dir {image_dir}: no {split} images; add images or change the percentages"
            )
    return dataset
