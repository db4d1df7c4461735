"""KMS: every customer-managed key of the environment enabled, with automatic rotation on."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from policies.runtime.model import (
    CheckContext,
    Missing,
    Outcome,
    RuntimeCheck,
    failed,
    passed,
)


def rotation(home: CheckContext) -> Iterator[Outcome]:
    for context, regional in home.regions():
        yield from _rotation_in(context, regional.key_aliases)


def _rotation_in(context: CheckContext, aliases: tuple[str, ...]) -> Iterator[Outcome]:
    """The keys behind `aliases` in the context's region (aliases are regional)."""
    kms = context.client("kms")

    def evaluate(alias: str) -> Outcome:
        key_arn = context.key_arn(alias)
        if key_arn is None:
            raise Missing(f"no key has the alias {alias}")
        metadata = kms.describe_key(KeyId=key_arn)["KeyMetadata"]
        problems = []
        if metadata.get("KeyManager") != "CUSTOMER":
            problems.append(f"it is managed by {metadata.get('KeyManager')}, not the customer")
        if metadata.get("KeyState") != "Enabled":
            problems.append(f"its state is {metadata.get('KeyState')}")
        status = kms.get_key_rotation_status(KeyId=key_arn)
        if not status.get("KeyRotationEnabled"):
            problems.append("automatic rotation is off")
        if problems:
            return failed(key_arn, f"{alias}: {'; '.join(problems)}")
        period = status.get("RotationPeriodInDays")
        every = f" every {period} days" if period else ""
        return passed(key_arn, f"{alias}: enabled, rotated automatically{every}")

    for alias in aliases:
        yield context.judge(context.arn("kms", alias), partial(evaluate, alias))


CHECKS = (
    RuntimeCheck(
        "RT_PHI_KMS_KEY_ROTATION",
        "KMS customer-managed key enabled with automatic rotation",
        rotation,
    ),
)
