"""Hyperparameters as the built-in XGBoost container validates them, plus the platform's rules
(binary:logistic, eval_metric = the gate metric)."""

from __future__ import annotations

from typing import Any

import pytest

from ml.hyperparameters import HyperparameterError, as_strings, parse, validate

GOOD: dict[str, Any] = {
    "num_round": 200,
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "max_depth": 3,
    "eta": 0.1,
    "subsample": 0.8,
    "min_child_weight": 5,
    "early_stopping_rounds": 20,
    "seed": 7,
}


def test_good_hyperparameters_are_typed() -> None:
    typed = validate(GOOD, gate_metric="auc")
    assert typed["num_round"] == 200 and isinstance(typed["num_round"], int)
    assert typed["eta"] == 0.1


def test_strings_round_trip_as_sagemaker_passes_them() -> None:
    strings = as_strings(validate(GOOD, gate_metric="auc"))
    assert all(isinstance(v, str) for v in strings.values())
    assert parse(strings) == validate(GOOD, gate_metric="auc")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_round": None}, "num_round: required"),
        (
            {"objective": "reg:squarederror"},
            "objective: 'reg:squarederror' is not one of binary:logistic",
        ),
        ({"eval_metric": "logloss"}, "eval_metric: 'logloss' is not one of"),
        ({"eval_metric": "accuracy"}, "differs from the gate metric 'auc'"),
        ({"num_round": 0}, "num_round: 0 is outside int in [1, inf)"),
        ({"num_round": 2.5}, "num_round: 2.5 is not a whole number"),
        ({"num_round": True}, "num_round: True is a boolean"),
        ({"eta": 1.5}, "eta: 1.5 is outside float in [0, 1]"),
        ({"subsample": 0}, "subsample: 0 is outside float in (0, 1]"),
        ({"max_depth": "deep"}, "max_depth: 'deep' is not a number"),
        ({"eta": float("nan")}, "eta: nan is not a finite number"),
        ({"nthread": 4}, "nthread: not a hyperparameter the built-in XGBoost algorithm accepts"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_each_rule_names_the_hyperparameter(change: dict[str, Any], message: str) -> None:
    hyperparameters = {**GOOD, **change}
    hyperparameters = {k: v for k, v in hyperparameters.items() if v is not None}
    with pytest.raises(HyperparameterError) as raised:
        validate(hyperparameters, gate_metric="auc")
    assert message in str(raised.value)


def test_a_gate_metric_the_evaluation_does_not_compute_is_refused() -> None:
    with pytest.raises(HyperparameterError, match="gate metric 'rmse' is not one"):
        validate({**GOOD, "eval_metric": "rmse"}, gate_metric="rmse")
