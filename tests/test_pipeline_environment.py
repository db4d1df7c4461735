"""The environment file's training section: the built-in algorithm's hyperparameters are
refused at load time, at their field, when the container would refuse them or the model would
not train what the gate judges. Each bad case is the shipped file with one change; its twin is
the shipped file, which loads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from environments.layer_configs import layer_configs
from environments.loader import EnvironmentFileError
from environments.schema import WorkloadEnvironment
from tests.test_feature_environment import load_changed


def hyperparameters(data: dict[str, Any]) -> dict[str, Any]:
    section = data["ml"]["pipeline"]["hyperparameters"]
    assert isinstance(section, dict)
    return section


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    (
        "no-num-round",
        lambda d: hyperparameters(d).pop("num_round"),
        "ml.pipeline.hyperparameters",
        "num_round: required",
    ),
    (
        "regression",
        lambda d: hyperparameters(d).update(objective="reg:squarederror"),
        "ml.pipeline.hyperparameters",
        "objective: 'reg:squarederror'",
    ),
    (
        "other-metric",
        lambda d: hyperparameters(d).update(eval_metric="accuracy"),
        "ml.pipeline.hyperparameters",
        "differs from the gate metric 'auc'",
    ),
    (
        "eta-out-of-range",
        lambda d: hyperparameters(d).update(eta=2),
        "ml.pipeline.hyperparameters",
        "eta: 2 is outside",
    ),
    (
        "unknown-key",
        lambda d: hyperparameters(d).update(nthread=4),
        "ml.pipeline.hyperparameters",
        "nthread: not a hyperparameter",
    ),
    (
        "boolean-rounds",
        lambda d: hyperparameters(d).update(num_round=True),
        "ml.pipeline.hyperparameters.num_round",
        "must be a number or text, not the boolean true",
    ),
    (
        "gate-metric-not-reported",
        lambda d: d["ml"]["pipeline"].update(metric_name="rmse"),
        "ml.pipeline.metric_name",
        "not one the Evaluate step reports",
    ),
]


@pytest.mark.parametrize(("case", "change", "field", "rule"), CASES, ids=[c[0] for c in CASES])
def test_hyperparameters_the_container_would_refuse_are_refused_at_load(
    tmp_path: Path, case: str, change: Callable[[dict[str, Any]], None], field: str, rule: str
) -> None:
    with pytest.raises(EnvironmentFileError) as raised:
        environment = load_changed(tmp_path, "dev", change)
        assert isinstance(environment, WorkloadEnvironment)
        layer_configs(environment)
    assert raised.value.field.startswith(field), raised.value.field
    assert rule in raised.value.rule, raised.value.rule
    assert raised.value.path.parent.name == "dev"


def test_the_twin_the_shipped_hyperparameters_load(tmp_path: Path) -> None:
    environment = load_changed(tmp_path, "dev", lambda data: None)
    assert isinstance(environment, WorkloadEnvironment)
    assert layer_configs(environment).pipeline.training_hyperparameters["num_round"] == "300"
