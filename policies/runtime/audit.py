"""Audit: the organization trail logging with log file validation, and AWS Config recording.

The trail lives in the management account (org-audit stack); a member account sees it as a
shadow trail. The management account's recorder is the platform's own; a workload account's is
Control Tower's (org-governance), so any recorder of that account counts there.

On the local emulator two of these cannot be seen, and say so instead of passing: moto does not
show an organization trail to member accounts, and Control Tower (which creates the workload
accounts' recorders) is not emulated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from policies.findings import Status
from policies.runtime.model import (
    CheckContext,
    Outcome,
    RuntimeCheck,
    failed,
    not_emulated,
    passed,
)


def trail(context: CheckContext) -> Iterator[Outcome]:
    expected = context.expected.trail
    member = expected.account_id != context.account

    def evaluate() -> Outcome:
        cloudtrail = context.client("cloudtrail")
        trails = cloudtrail.describe_trails(includeShadowTrails=True).get("trailList", [])
        found = next((t for t in trails if t.get("TrailARN") == expected.arn), None)
        if found is None:
            if member and context.emulated:
                return not_emulated(
                    expected.arn,
                    "moto does not show an organization trail to member accounts; the trail "
                    "itself is checked in the organization environment",
                )
            return failed(
                expected.arn, f"the organization trail is not visible in {context.account}"
            )
        return _judge_trail(cloudtrail, found)

    yield context.judge(expected.arn, evaluate)


def _judge_trail(cloudtrail: Any, found: dict[str, Any]) -> Outcome:
    arn = str(found["TrailARN"])
    status = cloudtrail.get_trail_status(Name=arn)
    problems = []
    if not status.get("IsLogging"):
        problems.append("it is not logging")
    if not found.get("LogFileValidationEnabled"):
        problems.append("log file validation is off")
    if not found.get("IsMultiRegionTrail"):
        problems.append("it is not multi-region")
    if not found.get("IsOrganizationTrail"):
        problems.append("it is not an organization trail")
    if problems:
        return failed(arn, "; ".join(problems))
    return passed(arn, "logging, multi-region, organization-wide, log file validation on")


def recorder(context: CheckContext) -> Iterator[Outcome]:
    wanted = context.expected.config_recorder
    placeholder = context.arn("config", f"configuration-recorder/{wanted or '*'}")

    def evaluate() -> Outcome:
        config = context.client("config")
        statuses = config.describe_configuration_recorder_status().get(
            "ConfigurationRecordersStatus", []
        )
        recorders = config.describe_configuration_recorders().get("ConfigurationRecorders", [])
        if wanted is not None:
            statuses = [s for s in statuses if s.get("name") == wanted]
        if not statuses:
            if wanted is None and context.emulated:
                return not_emulated(
                    placeholder,
                    "a workload account's recorder is Control Tower's, which the emulator lacks",
                )
            name = f"recorder {wanted}" if wanted else "AWS Config recorder"
            return failed(placeholder, f"no {name} in {context.account}/{context.region}")
        verdicts = [
            _judge_recorder(
                context.arn("config", f"configuration-recorder/{status.get('name')}"),
                status,
                recorders,
            )
            for status in statuses
        ]
        good = [v for v in verdicts if v.status is Status.PASSED]
        return good[0] if good else verdicts[0]

    yield context.judge(placeholder, evaluate)


def _judge_recorder(
    resource: str, status: dict[str, Any], recorders: list[dict[str, Any]]
) -> Outcome:
    name = status.get("name")
    settings = next((r for r in recorders if r.get("name") == name), {})
    group = settings.get("recordingGroup", {})
    problems = []
    if not status.get("recording"):
        problems.append("it is not recording")
    if status.get("lastStatus") == "Failure":
        problems.append(f"its last delivery failed ({status.get('lastErrorMessage', '')})")
    if group and not group.get("allSupported"):
        problems.append("it does not record all supported resource types")
    if problems:
        return failed(resource, "; ".join(problems))
    return passed(resource, "recording all supported resource types")


CHECKS = (
    RuntimeCheck(
        "RT_PHI_CLOUDTRAIL_LOG_VALIDATION",
        "Organization CloudTrail logging, multi-region, with log file validation",
        trail,
    ),
    RuntimeCheck("RT_PHI_CONFIG_RECORDING", "AWS Config recorder recording", recorder),
)
