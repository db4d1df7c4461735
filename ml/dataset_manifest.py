"""The dataset manifest: what a training dataset is made of, so that a model version can be traced
to the exact records it learned from (FDA PCCP data management, EU AI Act Article 10).

The preprocess step writes it beside the splits; training, evaluation and the baseline read it;
the register step records its location and sha256 in the model version. It holds no patient
identifier, only counts and digests:

    {"manifest_version": 1,
     "as_of": "2026-06-30T00:00:00Z",            # the point-in-time cut-off of the join
     "label": "readmitted_30d",
     "features": [{"name": "length_of_stay_days", "type": "Integral"}, ...],   # CSV order
     "split_seed": 7, "split_shares": {"validation": 0.15, "test": 0.15},
     "splits": {"train": {"file": "train.csv", "sha256": "...", "rows": 812, "positives": 97,
                          "patients": 590}, "validation": {...}, "test": {...}},
     "inputs": [{"path": "encounters/.../x.parquet", "sha256": "...", "bytes": 2048}, ...],
     "records": {"encounters": {"read": 1204, "latest": 1100, "deleted": 4}, ...},
     "excluded": {"censored": 57, "not_yet_written": 0}}

The CSV of each split has the label first, then the features in `features` order, no header
(the built-in XGBoost algorithm's CSV contract); a missing value is an empty field. The inference
payload is the same columns without the label, so the monitoring baseline names them _c0, _c1,
... in this order, as Model Monitor names the columns of a headerless CSV capture.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

MANIFEST_VERSION: Final = 1
# The split seed when none is given (the pipeline passes it explicitly).
DEFAULT_SPLIT_SEED: Final = 7
FEATURE_TYPES: Final = ("Integral", "Fractional")
_CHUNK: Final = 1 << 20


class ManifestError(ValueError):
    """The manifest cannot be read or does not say what a step needs."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ManifestFeature:
    name: str
    type: str  # Integral | Fractional


@dataclass(frozen=True)
class Split:
    file: str
    sha256: str
    rows: int
    positives: int
    patients: int


@dataclass(frozen=True)
class InputFile:
    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class DatasetManifest:
    as_of: str
    label: str
    features: tuple[ManifestFeature, ...]
    split_seed: int
    split_shares: dict[str, float]
    splits: dict[str, Split]
    inputs: tuple[InputFile, ...]
    records: dict[str, dict[str, int]] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    manifest_version: int = MANIFEST_VERSION

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def write(self, path: Path) -> str:
        """Write the manifest; its sha256 (what the model version records)."""
        path.write_text(self.to_json(), encoding="utf-8")
        return sha256_of(path)


def _need(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ManifestError(
            f"{where}: '{key}' is missing or not a {getattr(kind, '__name__', kind)}"
        )
    return value


def manifest_from_dict(data: Any, where: str = "manifest") -> DatasetManifest:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: not a JSON object")
    if data.get("manifest_version") != MANIFEST_VERSION:
        raise ManifestError(f"{where}: manifest_version must be {MANIFEST_VERSION}")
    features = []
    for index, entry in enumerate(_need(data, "features", list, where)):
        spot = f"{where}: features[{index}]"
        if not isinstance(entry, dict):
            raise ManifestError(f"{spot}: not an object")
        kind = _need(entry, "type", str, spot)
        if kind not in FEATURE_TYPES:
            raise ManifestError(f"{spot}: type '{kind}' is not one of {', '.join(FEATURE_TYPES)}")
        features.append(ManifestFeature(_need(entry, "name", str, spot), kind))
    if not features:
        raise ManifestError(f"{where}: no features")
    splits = {}
    for name, entry in _need(data, "splits", dict, where).items():
        spot = f"{where}: splits.{name}"
        if not isinstance(entry, dict):
            raise ManifestError(f"{spot}: not an object")
        splits[name] = Split(
            file=_need(entry, "file", str, spot),
            sha256=_need(entry, "sha256", str, spot),
            rows=_need(entry, "rows", int, spot),
            positives=_need(entry, "positives", int, spot),
            patients=_need(entry, "patients", int, spot),
        )
    inputs = tuple(
        InputFile(
            _need(e, "path", str, f"{where}: inputs[{i}]"),
            _need(e, "sha256", str, f"{where}: inputs[{i}]"),
            _need(e, "bytes", int, f"{where}: inputs[{i}]"),
        )
        for i, e in enumerate(_need(data, "inputs", list, where))
    )
    return DatasetManifest(
        as_of=_need(data, "as_of", str, where),
        label=_need(data, "label", str, where),
        features=tuple(features),
        split_seed=_need(data, "split_seed", int, where),
        split_shares={
            str(k): float(v) for k, v in _need(data, "split_shares", dict, where).items()
        },
        splits=splits,
        inputs=inputs,
        records={str(k): dict(v) for k, v in dict(data.get("records") or {}).items()},
        excluded={str(k): int(v) for k, v in dict(data.get("excluded") or {}).items()},
    )


def read_manifest(path: Path) -> DatasetManifest:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(
            f"{path}: no dataset manifest (the preprocess step writes it)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as problem:
        raise ManifestError(f"{path}: cannot be read as JSON ({problem})") from None
    return manifest_from_dict(data, str(path))
