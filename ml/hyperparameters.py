"""Hyperparameters of SageMaker's built-in XGBoost algorithm (image 3.0-5, xgboost 3.0.5),
validated as that container validates them, plus the platform's own rules for a readmission
classifier gated on one metric.

The container (sagemaker-xgboost-container, algorithm_mode/hyperparameter_validation.py)
requires `num_round`, refuses a key it does not know ("Extraneous hyperparameter found") and
checks each value's range; the ranges below are copied from it for the keys the platform lets
an environment file set. The platform adds: `objective` must be `binary:logistic` (the
evaluation scores probabilities), and `eval_metric` must be the metric the pipeline gates on,
so early stopping optimises what the gate judges.

SageMaker passes every value as a string (CreateTrainingJob.HyperParameters); `as_strings`
renders them so, and `parse` reads them back, in the container and in-process alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ml.model_quality import GATE_METRICS, REQUIRED_OBJECTIVE

# SageMaker limits: at most 100 hyperparameters, each value at most 2500 characters.
MAX_VALUE_LENGTH: Final = 2500


class HyperparameterError(ValueError):
    """One hyperparameter breaks a rule; the message names it."""


@dataclass(frozen=True)
class Rule:
    kind: type  # int or float
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        left = "(" if self.low_open else "["
        right = ")" if self.high_open or math.isinf(self.high) else "]"
        high = "inf" if math.isinf(self.high) else f"{self.high:g}"
        return f"{self.kind.__name__} in {left}{self.low:g}, {high}{right}"


INF: Final = math.inf
NUMERIC_RULES: Final[Mapping[str, Rule]] = {
    "num_round": Rule(int, 1, INF),
    "eta": Rule(float, 0, 1),
    "gamma": Rule(float, 0, INF),
    "max_depth": Rule(int, 0, INF),
    "min_child_weight": Rule(float, 0, INF),
    "max_delta_step": Rule(float, 0, INF),
    "subsample": Rule(float, 0, 1, low_open=True),
    "colsample_bytree": Rule(float, 0, 1, low_open=True),
    "colsample_bylevel": Rule(float, 0, 1, low_open=True),
    "colsample_bynode": Rule(float, 0, 1, low_open=True),
    "lambda": Rule(float, 0, INF),
    "alpha": Rule(float, 0, INF),
    "scale_pos_weight": Rule(float, 0, INF, low_open=True),
    "early_stopping_rounds": Rule(int, 1, INF),
    "max_bin": Rule(int, 0, INF),
    "seed": Rule(int, -(2**31), 2**31 - 1, low_open=True),
    "verbosity": Rule(int, 0, 3),
}
CHOICE_RULES: Final[Mapping[str, tuple[str, ...]]] = {
    "objective": (REQUIRED_OBJECTIVE,),
    "eval_metric": GATE_METRICS,
    "booster": ("gbtree", "dart"),
    "tree_method": ("auto", "exact", "approx", "hist"),
    "grow_policy": ("depthwise", "lossguide"),
}
REQUIRED: Final = ("num_round", "objective", "eval_metric")
Value = int | float | str


def _number(name: str, raw: Value, rule: Rule) -> int | float:
    # A YAML `true` is not 1: booleans are refused rather than coerced.
    if isinstance(raw, bool):
        raise HyperparameterError(f"{name}: {raw!r} is a boolean; it must be {rule.describe()}")
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise HyperparameterError(f"{name}: {raw!r} is not a number ({rule.describe()})") from None
    if not math.isfinite(number):
        raise HyperparameterError(f"{name}: {raw!r} is not a finite number")
    if rule.kind is int and not number.is_integer():
        raise HyperparameterError(f"{name}: {raw!r} is not a whole number")
    value: int | float = int(number) if rule.kind is int else number
    if not rule.admits(value):
        raise HyperparameterError(f"{name}: {raw!r} is outside {rule.describe()}")
    return value


def validate(
    hyperparameters: Mapping[str, Value], *, gate_metric: str
) -> dict[str, int | float | str]:
    """The hyperparameters, typed, or HyperparameterError naming the first one at fault."""
    if gate_metric not in GATE_METRICS:
        raise HyperparameterError(
            f"the gate metric '{gate_metric}' is not one the evaluation computes "
            f"({', '.join(GATE_METRICS)})"
        )
    missing = [name for name in REQUIRED if name not in hyperparameters]
    if missing:
        raise HyperparameterError(f"{missing[0]}: required by the training step")
    typed: dict[str, int | float | str] = {}
    for name, raw in hyperparameters.items():
        if name in NUMERIC_RULES:
            typed[name] = _number(name, raw, NUMERIC_RULES[name])
        elif name in CHOICE_RULES:
            if not isinstance(raw, str) or raw not in CHOICE_RULES[name]:
                raise HyperparameterError(
                    f"{name}: {raw!r} is not one of {', '.join(CHOICE_RULES[name])}"
                )
            typed[name] = raw
        else:
            known = sorted({*NUMERIC_RULES, *CHOICE_RULES})
            raise HyperparameterError(
                f"{name}: not a hyperparameter the built-in XGBoost algorithm accepts here "
                f"(one of {', '.join(known)})"
            )
    if typed["eval_metric"] != gate_metric:
        raise HyperparameterError(
            f"eval_metric: '{typed['eval_metric']}' differs from the gate metric "
            f"'{gate_metric}': early stopping must optimise what the gate judges"
        )
    return typed


def as_strings(hyperparameters: Mapping[str, int | float | str]) -> dict[str, str]:
    """As CreateTrainingJob wants them: every value a string."""
    rendered = {name: str(value) for name, value in sorted(hyperparameters.items())}
    for name, value in rendered.items():
        if len(value) > MAX_VALUE_LENGTH:
            raise HyperparameterError(f"{name}: longer than {MAX_VALUE_LENGTH} characters")
    return rendered


def parse(
    strings: Mapping[str, str], *, gate_metric: str | None = None
) -> dict[str, int | float | str]:
    """hyperparameters.json (all strings) back to typed values, validated again."""
    if gate_metric is None:
        metric = strings.get("eval_metric", "")
        if metric not in GATE_METRICS:
            raise HyperparameterError(
                f"eval_metric: {metric!r} is not one of {', '.join(GATE_METRICS)}"
            )
        gate_metric = metric
    return validate(dict(strings), gate_metric=gate_metric)
