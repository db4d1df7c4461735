"""The Baseline step: Model Monitor's data-quality baseline from the training features.

    python -m ml.monitor_baseline [--dataset DIR] [--output DIR] [--drift-threshold T]

Reads the dataset step's manifest.json and train.csv (label first, no header, an empty field is
a missing value), checks train.csv against the sha256 the manifest records, drops the label and
writes the two files a DefaultModelMonitor schedule takes as its baseline:

- statistics.json: per feature, counts, mean, sum, std_dev, min, max and a KLL sketch with its
  10 buckets, in the format the prebuilt container (Deequ) writes;
- constraints.json: per feature, the observed completeness and `is_non_negative`, and the
  monitoring_config (drift compared with the "Robust" method at --drift-threshold).

The features are named _c0, _c1, ... in the manifest's order, which is the inference payload's
column order: Model Monitor names the columns of a headerless CSV capture that way, so these
names are what a monitoring run matches. The label is not a feature: the payload has no label.

`detect_violations` is the other half, for the offline demo: what a monitoring run reports for
a batch of captured rows against this baseline (constraint_violations.json entries).

How this follows Model Monitor (whose analyzer is Deequ, awslabs/deequ):
- std_dev is the population standard deviation, sqrt(m2 / n): Deequ's StandardDeviation
  (analyzers/StandardDeviation.scala), and the SDK's sample statistics.json (std_dev
  0.8330066026148891 for 24 ones, 21 twos and 55 threes) is the population value.
- The sketch is Deequ's KLL (QuantileNonSample, NonSampleCompactor): level h holds up to
  2 * (ceil(k * c**h / 2) + 1) items (the widest level is the bottom one, 2050 for k = 2048), a
  level is compacted only when the whole sketch is over its total capacity, and a compaction
  sorts the level's even prefix and promotes every other item, its odd last item staying. The
  offset (which half is promoted) is Deequ's deterministic schedule, 0, 1, 1, 0, 0, 1, ... per
  level (Deequ has the random choice commented out): no seed, the same data gives the same
  sketch. So the sketch holds every value, in input order, while n <= 2050, and is approximate
  beyond; each compaction at level h moves any rank by at most 2**h.
- The buckets are Deequ's: 10 equal-width buckets from min to max, counted from the sketch
  (exact while the sketch is), [lower, upper) except the last, which includes max. The last
  upper bound is max itself, so the counts always sum to num_present.
- Drift is Deequ's numericalDistance: the L-infinity distance between the two sketches' CDFs
  (the largest |F_baseline(x) - F_batch(x)| over every item of either sketch), which is the
  "Simple" method; "Robust" subtracts the two-sample Kolmogorov-Smirnov allowance
  1.8 * sqrt((n + m) / (n * m)) (c(alpha) = 1.8, alpha ~ 0.003) and floors at 0, so sampling
  noise between a small batch and the baseline does not read as drift.
- A feature with no present value keeps the manifest's type (the payload contract, where
  Deequ would infer "Unknown") and numerical_statistics holds only `common`: Deequ fails the
  mean, sum, std_dev, min, max and KLL metrics of an empty column, and JSON has no NaN. Its
  constraint has completeness 0.0 and no num_constraints (nothing to suggest), and it is
  never compared for drift.

Bad input (the manifest, train.csv or its digest, the output folder) is one line,
`monitor_baseline: error: <what>`, on stderr and exit status 2, and nothing is written: both
files are written to temporary files first and moved into place together.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

import numpy as np
import numpy.typing as npt

from ml.dataset_manifest import DatasetManifest
from ml.dataset_splits import SplitError, read_split
from ml.sagemaker_paths import (
    BASELINE_CONSTRAINTS,
    BASELINE_STATISTICS,
    DATASET_MANIFEST,
    PROCESSING_INPUT,
    PROCESSING_OUTPUT,
    SPLIT_FILES,
)

DEFAULT_DATASET: Final = PROCESSING_INPUT / "dataset"
DEFAULT_OUTPUT: Final = PROCESSING_OUTPUT / "baseline"
EXIT_BAD_INPUT: Final = 2
EXIT_INTERNAL: Final = 1

# Model Monitor's (Deequ's KLLSketch) defaults; the container writes them into every sketch.
KLL_K: Final = 2048
KLL_C: Final = 0.64
BUCKETS: Final = 10  # Model Monitor always materializes 10 buckets.
# Deequ's default c(alpha) for the "Robust" distance (Distance.scala, alpha ~ 0.003).
ROBUST_C_ALPHA: Final = 1.8
DEFAULT_DRIFT_THRESHOLD: Final = 0.1
ENABLED: Final = "Enabled"

Floats = npt.NDArray[np.float64]


class BaselineError(ValueError):
    """The dataset or the output folder does not allow a baseline; the message names the file."""


# --- the KLL sketch --------------------------------------------------------------------------


class KLLSketch:
    """Deequ's KLL quantile sketch (QuantileNonSample), so that a sketch this program writes is
    the sketch the Model Monitor container would have written for the same values in the same
    order, and reads back the same way (level i's items weigh 2**i)."""

    def __init__(self, k: int = KLL_K, c: float = KLL_C) -> None:
        if k < 2 or not 0.0 < c <= 1.0:
            raise ValueError(f"KLL parameters k={k}, c={c}: need k >= 2 and 0 < c <= 1")
        self.k = k
        self.c = c
        self._levels: list[list[float]] = []
        self._compactions: list[int] = []
        self._offsets: list[int] = []
        self._items = 0
        self._capacity = 0
        # The worst-case rank error so far: a compaction at level h moves a rank by <= 2**h.
        self._error = 0
        self._expand()

    @classmethod
    def from_levels(cls, levels: Sequence[Sequence[float]], k: int, c: float) -> KLLSketch:
        """The sketch a statistics.json `sketch.data` describes (Deequ's reconstruct)."""
        sketch = cls(k, c)
        sketch._levels = [[float(v) for v in level] for level in levels] or [[]]
        sketch._compactions = [0] * len(sketch._levels)
        sketch._offsets = [0] * len(sketch._levels)
        sketch._items = sum(len(level) for level in sketch._levels)
        sketch._capacity = sum(sketch.level_capacity(h) for h in range(len(sketch._levels)))
        return sketch

    def level_capacity(self, height: int) -> int:
        # Deequ's capacity(height): the bottom level is the widest, unlike the KLL paper's.
        return 2 * (math.ceil(self.k * self.c**height / 2) + 1)

    @property
    def levels(self) -> list[list[float]]:
        return [list(level) for level in self._levels]

    @property
    def count(self) -> int:
        """The number of values the sketch stands for (its total weight)."""
        return sum(len(level) << h for h, level in enumerate(self._levels))

    @property
    def rank_error_bound(self) -> int:
        """No rank this sketch reports is further than this from the true rank (for a sketch
        built by update(); one read back with from_levels does not know its history: 0)."""
        return self._error

    def update(self, values: Iterable[float]) -> None:
        """Add values in order; the same as Deequ's update() once per value."""
        pending = [float(v) for v in values]
        start = 0
        while start < len(pending):
            # Deequ condenses when an update takes the sketch over its total capacity, so the
            # values up to and including the first one that does can be appended at once.
            take = min(max(self._capacity - self._items + 1, 1), len(pending) - start)
            self._levels[0].extend(pending[start : start + take])
            self._items += take
            start += take
            if self._items > self._capacity:
                self._condense()

    def _expand(self) -> None:
        self._levels.append([])
        self._compactions.append(0)
        self._offsets.append(0)
        self._capacity += self.level_capacity(len(self._levels) - 1)

    def _condense(self) -> None:
        # One compaction, of the lowest level at or over its own capacity (Deequ's condense).
        for height, level in enumerate(self._levels):
            if len(level) >= self.level_capacity(height):
                if height + 1 >= len(self._levels):
                    self._expand()
                self._levels[height + 1].extend(self._compact(height))
                self._items = sum(len(lv) for lv in self._levels)
                return

    def _compact(self, height: int) -> list[float]:
        buffer = self._levels[height]
        even = len(buffer) - len(buffer) % 2
        # NonSampleCompactor.compact: a level's 2nd, 4th, ... compaction flips its offset, so
        # offsets run 0, 1, 1, 0, 0, 1, ...; no coin, so the same rows give the same sketch.
        if self._compactions[height] % 2 == 1:
            self._offsets[height] = 1 - self._offsets[height]
        promoted = sorted(buffer[:even])[self._offsets[height] : even : 2]
        self._levels[height] = buffer[even:]  # the odd last item, if any, stays
        self._compactions[height] += 1
        if even:
            self._error += 1 << height
        return promoted

    def weighted(self) -> tuple[Floats, npt.NDArray[np.int64]]:
        """The items sorted, and the inclusive cumulative weight at each."""
        values = np.array([v for level in self._levels for v in level], dtype=np.float64)
        weights = np.array(
            [1 << h for h, level in enumerate(self._levels) for _ in level], dtype=np.int64
        )
        order = np.argsort(values, kind="stable")
        return values[order], np.cumsum(weights[order])

    def rank(self, x: float, *, inclusive: bool = True) -> int:
        """The estimated number of values <= x (inclusive) or < x."""
        values, cumulative = self.weighted()
        index = int(np.searchsorted(values, x, side="right" if inclusive else "left"))
        return int(cumulative[index - 1]) if index else 0

    def quantile(self, q: float) -> float:
        """The smallest item whose inclusive rank reaches q * count (Deequ's quantiles)."""
        values, cumulative = self.weighted()
        if not values.size:
            raise ValueError("the sketch is empty")
        index = int(np.searchsorted(cumulative, q * cumulative[-1], side="left"))
        return float(values[min(index, values.size - 1)])


def linf_distance(first: KLLSketch, second: KLLSketch) -> float:
    """The largest gap between the two sketches' CDFs (Deequ's linfSimple): the CDFs are step
    functions, so the largest gap is at an item of one of them."""
    values1, cumulative1 = first.weighted()
    values2, cumulative2 = second.weighted()
    if not values1.size or not values2.size:
        raise ValueError("an empty sketch has no distribution to compare")
    keys = np.union1d(values1, values2)

    def cdf(values: Floats, cumulative: npt.NDArray[np.int64]) -> Floats:
        index = np.searchsorted(values, keys, side="right")
        ranks = np.where(index > 0, cumulative[np.maximum(index - 1, 0)], 0)
        return ranks.astype(np.float64) / float(cumulative[-1])

    return float(np.max(np.abs(cdf(values1, cumulative1) - cdf(values2, cumulative2))))


def drift_distance(baseline: KLLSketch, batch: KLLSketch, method: str) -> float:
    """The distance compared with comparison_threshold, per comparison_method."""
    simple = linf_distance(baseline, batch)
    if method == "Simple":
        return simple
    if method == "Robust":
        n, m = float(baseline.count), float(batch.count)
        return max(0.0, simple - ROBUST_C_ALPHA * math.sqrt((n + m) / (n * m)))
    raise ValueError(f"comparison_method '{method}' is neither 'Simple' nor 'Robust'")


# --- statistics and constraints --------------------------------------------------------------


def feature_name(index: int) -> str:
    return f"_c{index}"


def _buckets(sketch: KLLSketch, low: float, high: float) -> list[dict[str, float]]:
    bounds = [low + (high - low) * i / BUCKETS for i in range(BUCKETS)] + [high]
    values, cumulative = sketch.weighted()

    def below(x: float, *, inclusive: bool) -> int:
        index = int(np.searchsorted(values, x, side="right" if inclusive else "left"))
        return int(cumulative[index - 1]) if index else 0

    # Deequ: rankExclusive(upper) - rankExclusive(lower); the last bucket's upper is inclusive.
    return [
        {
            "lower_bound": bounds[i],
            "upper_bound": bounds[i + 1],
            "count": float(
                below(bounds[i + 1], inclusive=i == BUCKETS - 1) - below(bounds[i], inclusive=False)
            ),
        }
        for i in range(BUCKETS)
    ]


def _numerical_statistics(column: Floats) -> dict[str, Any]:
    present = column[~np.isnan(column)]
    common = {"num_present": int(present.size), "num_missing": int(column.size - present.size)}
    if not present.size:
        return {"common": common}
    sketch = KLLSketch()
    sketch.update(present.tolist())  # in row order, as the container feeds its sketch
    low, high = float(np.min(present)), float(np.max(present))
    return {
        "common": common,
        "mean": float(np.mean(present)),
        "sum": float(np.sum(present)),
        "std_dev": float(np.std(present)),  # ddof=0: the population standard deviation
        "min": low,
        "max": high,
        "distribution": {
            "kll": {
                "buckets": _buckets(sketch, low, high),
                "sketch": {
                    "parameters": {"c": sketch.c, "k": float(sketch.k)},
                    "data": sketch.levels,
                },
            }
        },
    }


def compute_statistics(features: Floats, types: Sequence[str]) -> dict[str, Any]:
    """statistics.json for rows x features (NaN = missing), the features typed in order."""
    if features.ndim != 2 or features.shape[1] != len(types):
        raise ValueError(f"{features.shape} values for {len(types)} feature types")
    return {
        "version": 0.0,
        "dataset": {"item_count": int(features.shape[0])},
        "features": [
            {
                "name": feature_name(i),
                "inferred_type": kind,
                "numerical_statistics": _numerical_statistics(features[:, i]),
            }
            for i, kind in enumerate(types)
        ],
    }


def _check_threshold(drift_threshold: float) -> float:
    if not 0.0 < drift_threshold <= 1.0:  # also refuses NaN
        raise BaselineError(f"drift threshold {drift_threshold} is not in (0, 1]")
    return float(drift_threshold)


def compute_constraints(
    statistics: dict[str, Any], *, drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
) -> dict[str, Any]:
    """constraints.json as Model Monitor suggests it from statistics.json."""
    item_count = statistics["dataset"]["item_count"]
    features = []
    for entry in statistics["features"]:
        numbers = entry["numerical_statistics"]
        constraint: dict[str, Any] = {
            "name": entry["name"],
            "inferred_type": entry["inferred_type"],
            # The observed share, unrounded: a monitoring run fails a batch below it.
            "completeness": numbers["common"]["num_present"] / item_count,
        }
        if "min" in numbers:
            constraint["num_constraints"] = {"is_non_negative": numbers["min"] >= 0}
        features.append(constraint)
    return {
        "version": 0.0,
        "features": features,
        "monitoring_config": {
            "evaluate_constraints": ENABLED,
            "emit_metrics": ENABLED,
            "datatype_check_threshold": 1.0,
            "domain_content_threshold": 1.0,
            "distribution_constraints": {
                "perform_comparison": ENABLED,
                "comparison_threshold": _check_threshold(drift_threshold),
                "comparison_method": "Robust",
            },
        },
    }


# --- a monitoring run, offline ---------------------------------------------------------------


def _violation(name: str, check: str, description: str) -> dict[str, str]:
    return {"feature_name": name, "constraint_check_type": check, "description": description}


def _percent(share: float) -> str:
    return f"{share * 100}%"


def _baseline_sketch(entry: dict[str, Any] | None) -> KLLSketch | None:
    if entry is None:
        return None
    kll = entry.get("numerical_statistics", {}).get("distribution", {}).get("kll")
    if not kll:
        return None
    sketch = kll["sketch"]
    levels = sketch["data"]
    if not isinstance(levels, list) or not all(isinstance(level, list) for level in levels):
        raise ValueError(f"statistics: {entry.get('name')}: sketch.data is not a list of lists")
    parameters = sketch["parameters"]
    result = KLLSketch.from_levels(levels, int(parameters["k"]), float(parameters["c"]))
    return result if result.count else None


def detect_violations(
    statistics: dict[str, Any], constraints: dict[str, Any], capture_rows: npt.ArrayLike
) -> list[dict[str, str]]:
    """The constraint_violations.json entries a data-quality monitoring run would report for
    captured inference rows (rows x features, the baseline's columns, NaN = missing).

    When the column count differs only missing_column_check / extra_column_check is reported:
    a headerless capture's columns are known by position alone, so once one is missing or extra
    no column can be matched to its baseline.
    """
    rows = np.asarray(capture_rows, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"capture rows must be rows x columns, not shape {rows.shape}")
    config = constraints.get("monitoring_config", {})
    if config.get("evaluate_constraints", ENABLED) != ENABLED:
        return []
    features = constraints["features"]
    expected, observed = len(features), rows.shape[1]
    counts = (
        f"Number of columns in current dataset: {observed}, "
        f"Number of columns in baseline constraints: {expected}"
    )
    if observed < expected:
        return [
            _violation(
                f["name"],
                "missing_column_check",
                f"There are missing columns in current dataset. {counts}",
            )
            for f in features[observed:]
        ]
    if observed > expected:
        return [
            _violation(
                feature_name(i),
                "extra_column_check",
                f"There are extra columns in current dataset. {counts}",
            )
            for i in range(expected, observed)
        ]
    if not rows.shape[0]:
        return []
    type_threshold = float(config.get("datatype_check_threshold", 1.0))
    distribution = config.get("distribution_constraints", {})
    compare = distribution.get("perform_comparison", ENABLED) == ENABLED
    drift_threshold = float(distribution.get("comparison_threshold", DEFAULT_DRIFT_THRESHOLD))
    method = str(distribution.get("comparison_method", "Robust"))
    baseline_stats = {entry["name"]: entry for entry in statistics["features"]}

    violations = []
    for index, feature in enumerate(features):
        name = feature["name"]
        overrides = feature.get("monitoring_config_overrides", {})
        if overrides.get("evaluate_constraints", ENABLED) != ENABLED:
            continue
        column = rows[:, index]
        present = column[~np.isnan(column)]
        if feature["inferred_type"] == "Integral" and present.size:
            integral = np.isfinite(present) & (present == np.round(present))
            share = float(np.count_nonzero(integral)) / present.size
            if share < type_threshold:
                violations.append(
                    _violation(
                        name,
                        "data_type_check",
                        "Data type match requirement is not met. Expected data type: Integral, "
                        f"Expected match: {_percent(type_threshold)}. "
                        f"Observed: Only {_percent(share)} of data is Integral.",
                    )
                )
        completeness = present.size / rows.shape[0]
        if completeness < float(feature.get("completeness", 0.0)):
            violations.append(
                _violation(
                    name,
                    "completeness_check",
                    "Data completeness requirement is not met. Expected completeness: "
                    f"{_percent(float(feature['completeness']))}. "
                    f"Observed: {_percent(completeness)}.",
                )
            )
        reference = _baseline_sketch(baseline_stats.get(name))
        finite = present[np.isfinite(present)]
        if compare and reference is not None and finite.size:
            batch = KLLSketch(reference.k, reference.c)
            batch.update(finite.tolist())
            distance = drift_distance(reference, batch, method)
            if distance > drift_threshold:
                violations.append(
                    _violation(
                        name,
                        "baseline_drift_check",
                        f"Numerical distance: {distance} exceeds numerical threshold: "
                        f"{drift_threshold}",
                    )
                )
    return violations


# --- the step --------------------------------------------------------------------------------


def _check_integral(path: Path, manifest: DatasetManifest, features: Floats) -> None:
    # An Integral feature holding fractions would make every monitoring run fail its
    # data_type_check: the manifest and the data disagree, so no baseline is better.
    for index, feature in enumerate(manifest.features):
        if feature.type != "Integral":
            continue
        column = features[:, index]
        wrong = ~np.isnan(column) & (column != np.round(column))
        if wrong.any():
            row = int(np.argmax(wrong))
            raise BaselineError(
                f"{path}: line {row + 1}: feature '{feature.name}' ({feature_name(index)}) is "
                f"Integral in the manifest but holds {column[row]}"
            )


def read_training_features(dataset: Path) -> tuple[DatasetManifest, Floats]:
    """The manifest and the training features (label dropped), checked against each other."""
    try:
        split = read_split(dataset, "train")
    except SplitError as problem:
        raise BaselineError(str(problem)) from None
    _check_integral(split.path, split.manifest, split.features)
    return split.manifest, split.features


def _write_together(output: Path, documents: dict[str, dict[str, Any]]) -> None:
    """Write every document or none: each to a temporary file beside it, then moved in."""
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise BaselineError(f"{output}: cannot create the output folder ({problem})") from None
    staged: list[tuple[Path, Path]] = []
    try:
        for name, document in documents.items():
            # allow_nan=False: a NaN would make a file Model Monitor cannot parse; fail instead.
            text = json.dumps(document, indent=2, allow_nan=False) + "\n"
            handle, temporary_name = tempfile.mkstemp(dir=output, prefix=f".{name}.", suffix=".tmp")
            staged.append((Path(temporary_name), output / name))
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                # mkstemp makes the file private; the baseline is an ordinary readable artifact.
                os.fchmod(stream.fileno(), 0o644)
                stream.write(text)
        moved: list[Path] = []
        try:
            for temporary, final in staged:
                os.replace(temporary, final)
                moved.append(final)
        except OSError:
            for final in moved:  # the files belong together: take back any already moved
                final.unlink(missing_ok=True)
            raise
    except OSError as problem:
        raise BaselineError(f"{output}: cannot write the baseline ({problem})") from None
    finally:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)


def baseline(
    dataset: Path, output: Path, *, drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compute and write statistics.json and constraints.json; return them."""
    _check_threshold(drift_threshold)
    manifest, features = read_training_features(dataset)
    statistics = compute_statistics(features, [f.type for f in manifest.features])
    constraints = compute_constraints(statistics, drift_threshold=drift_threshold)
    _write_together(output, {BASELINE_STATISTICS: statistics, BASELINE_CONSTRAINTS: constraints})
    return statistics, constraints


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other bad input (argparse would add the usage).
        print(f"monitor_baseline: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _threshold_argument(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _Parser(
        prog="python -m ml.monitor_baseline",
        description="Model Monitor data-quality baseline (statistics.json, constraints.json) "
        "from the training split's features.",
    )
    parser.add_argument(
        "--dataset",
        type=Path,
        default=DEFAULT_DATASET,
        help=f"folder with {DATASET_MANIFEST} and {SPLIT_FILES['train']} (default %(default)s)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"folder for {BASELINE_STATISTICS} and {BASELINE_CONSTRAINTS} (default %(default)s)",
    )
    parser.add_argument(
        "--drift-threshold",
        type=_threshold_argument,
        default=DEFAULT_DRIFT_THRESHOLD,
        help="comparison_threshold of the Robust drift distance, in (0, 1] (default %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        statistics, _ = baseline(
            arguments.dataset, arguments.output, drift_threshold=arguments.drift_threshold
        )
    except BaselineError as problem:
        print(f"monitor_baseline: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as problem:  # a bug still ends as one line in the job's log, not a traceback
        print(
            f"monitor_baseline: error: internal error: {type(problem).__name__}: {problem}",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    print(
        f"monitor_baseline: baseline of {statistics['dataset']['item_count']} rows x "
        f"{len(statistics['features'])} features written to {arguments.output} "
        f"({BASELINE_STATISTICS}, {BASELINE_CONSTRAINTS}; drift threshold "
        f"{arguments.drift_threshold})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
