"""moto 5.2.5's SageMaker, completed for the runtime functions' tests (in-process `mock_aws`).

moto lacks UpdateEndpoint (the emulator's, counted here), Model Monitor schedules, a model's
EnableNetworkIsolation and Graviton endpoint instance types (all three mended by the emulator
server, tools/emulator.py, whose functions are reused rather than copied). Those functions
set class attributes for good, and each call wraps what the previous one left; here they are
applied for one test only, so every test starts from moto as shipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from moto import mock_aws
from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpointConfig, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

from tools.emulator import (
    _emulate_monitoring_schedules,
    _keep_model_network_isolation,
    _validate_endpoint_instance_types_as_aws_does,
    update_endpoint_as_sagemaker_does,
)

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class UpdateEndpointEmulation:
    """moto 5.2.5 does not implement UpdateEndpoint. This adds it to moto's SageMaker API, as
    the service behaves for our purpose: the configuration must exist, the endpoint then serves
    it. Every call is recorded, so tests can count them; `fail_next` makes one call fail like a
    throttled request."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_next = False

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        emulation = self

        def update_endpoint(response: SageMakerResponse) -> ActionResult:
            if emulation.fail_next:
                emulation.fail_next = False
                raise ValidationError(message="Rate exceeded (emulated)")
            switched = update_endpoint_as_sagemaker_does(response)
            emulation.calls.append(
                (response._get_param("EndpointName"), response._get_param("EndpointConfigName"))
            )
            return switched

        monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)


MISSING = object()
# What the serving path needs beyond UpdateEndpoint: the emulator's mends (tools/emulator.py).
SERVING_APIS = (
    _emulate_monitoring_schedules,
    _keep_model_network_isolation,
    _validate_endpoint_instance_types_as_aws_does,
)


def for_one_test(monkeypatch: pytest.MonkeyPatch, *emulations: Callable[[], None]) -> None:
    """Run emulator functions that patch moto's SageMaker classes, then hand every attribute
    they changed to `monkeypatch`, which restores it when the test ends."""
    classes = (SageMakerResponse, SageMakerModelBackend, FakeEndpointConfig)
    before = {cls: dict(vars(cls)) for cls in classes}
    for emulate in emulations:
        emulate()
    for cls in classes:
        for name, value in dict(vars(cls)).items():
            original = before[cls].get(name, MISSING)
            if original is value:
                continue
            if original is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, original)
            monkeypatch.setattr(cls, name, value, raising=False)


def emulated_sagemaker(
    monkeypatch: pytest.MonkeyPatch, *, region: str, environment: dict[str, str]
) -> Iterator[UpdateEndpointEmulation]:
    """For a fixture (`yield from`): fake credentials, the region and the function's settings
    in the environment, moto's SageMaker with UpdateEndpoint, monitoring schedules and network
    isolation, all inside `mock_aws`."""
    for variable, value in {
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        **environment,
    }.items():
        monkeypatch.setenv(variable, value)
    emulation = UpdateEndpointEmulation()
    emulation.install(monkeypatch)
    for_one_test(monkeypatch, *SERVING_APIS)
    with mock_aws():
        yield emulation
