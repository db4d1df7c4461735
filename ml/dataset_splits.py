"""Read one split of a dataset the preprocess step wrote, checked against its manifest: exactly
the bytes the manifest digests (sha256), label-first CSV without a header, the label 0 or 1,
one column per manifest feature, an empty field for a missing value and nothing else for it
("nan" or "inf" spelled out would parse and poison every sum), the manifest's row and positive
counts. Every step after preprocess (evaluate, baseline) reads its split through here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
from numpy.typing import NDArray

from ml.dataset_manifest import DatasetManifest, ManifestError, read_manifest
from ml.sagemaker_paths import DATASET_MANIFEST, SPLIT_FILES


class SplitError(ValueError):
    """The split cannot be used; the message names the file (and line and field)."""


@dataclass(frozen=True)
class SplitData:
    manifest: DatasetManifest
    path: Path
    labels: NDArray[np.int64]
    features: NDArray[np.float64]  # rows x manifest features, NaN where missing


def parse_csv(path: Path, data: bytes, columns: int) -> NDArray[np.float64]:
    """CSV bytes as rows x columns, NaN where a field is empty; any other non-number (or a
    non-finite one) is refused by line and field."""
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as problem:
        raise SplitError(f"{path}: not UTF-8 text ({problem})") from None
    if not lines:
        raise SplitError(f"{path}: has no rows")
    fields = []
    for number, line in enumerate(lines, start=1):
        row = line.split(",")
        if len(row) != columns:
            raise SplitError(f"{path}: line {number} has {len(row)} fields, expected {columns}")
        fields.append(row)
    text = np.char.strip(np.array(fields, dtype=np.str_))
    empty = text == ""

    def refuse(row: int, column: int) -> NoReturn:
        raise SplitError(
            f"{path}: line {row + 1}, field {column + 1}: '{text[row, column]}' is not a "
            "finite number (a missing value is an empty field)"
        )

    try:
        values = np.where(empty, "nan", text).astype(np.float64)
    except ValueError:
        # numpy does not say where: find the first field that does not parse.
        for row, column in np.argwhere(~empty):
            try:
                float(text[row, column])
            except ValueError:
                refuse(int(row), int(column))
        raise SplitError(f"{path}: a field is not a number") from None
    bad = np.argwhere(~empty & ~np.isfinite(values))
    if bad.size:
        refuse(int(bad[0][0]), int(bad[0][1]))
    return values


def read_split(dataset: Path, name: str) -> SplitData:
    """The named split (train, validation, test) of the dataset folder."""
    manifest_path = dataset / DATASET_MANIFEST
    try:
        manifest = read_manifest(manifest_path)
    except ManifestError as problem:
        raise SplitError(str(problem)) from None
    split = manifest.splits.get(name)
    if split is None:
        raise SplitError(f"{manifest_path}: has no '{name}' split")
    if split.file != SPLIT_FILES[name]:
        raise SplitError(
            f"{manifest_path}: the {name} split is '{split.file}', not '{SPLIT_FILES[name]}'"
        )
    path = dataset / split.file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SplitError(f"{path}: no such file (the preprocess step writes it)") from None
    except OSError as problem:
        raise SplitError(f"{path}: cannot be read ({problem.strerror})") from None
    # Digest the bytes that are parsed: the step uses exactly what the manifest names.
    digest = hashlib.sha256(data).hexdigest()
    if digest != split.sha256:
        raise SplitError(
            f"{path}: sha256 {digest} is not the manifest's {split.sha256} "
            "(the data changed since preprocess)"
        )
    # The label and one column per manifest feature.
    table = parse_csv(path, data, 1 + len(manifest.features))
    labels = table[:, 0]
    wrong = np.flatnonzero(~np.isin(labels, (0.0, 1.0)))
    if wrong.size:
        raise SplitError(f"{path}: line {wrong[0] + 1}: the label is not 0 or 1")
    positives = int(labels.sum())
    if (len(labels), positives) != (split.rows, split.positives):
        raise SplitError(
            f"{path}: {len(labels)} rows and {positives} positives, the manifest says "
            f"{split.rows} and {split.positives}"
        )
    return SplitData(
        manifest=manifest,
        path=path,
        labels=labels.astype(np.int64),
        # Column 0 is the label: never a feature, never a payload column.
        features=np.ascontiguousarray(table[:, 1:]),
    )
