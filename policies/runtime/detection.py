"""Detection: GuardDuty enabled with the platform's protection plans, Security Hub enabled and
subscribed to the platform's standards (modules/detection.py), in the environment's region."""

from __future__ import annotations

from collections.abc import Iterator

from botocore.exceptions import ClientError

from policies.runtime.clients import error_code, pages
from policies.runtime.model import (
    CheckContext,
    Missing,
    Outcome,
    RuntimeCheck,
    failed,
    passed,
)

# Security Hub answers this when the account has not enabled it.
NOT_SUBSCRIBED = "InvalidAccessException"
READY = "READY"


def guardduty(context: CheckContext) -> Iterator[Outcome]:
    placeholder = context.arn("guardduty", "detector/*")
    guard = context.client("guardduty")
    detector_ids = context.discover(
        placeholder, lambda: list(pages(guard, "list_detectors", "DetectorIds"))
    )
    if isinstance(detector_ids, Outcome):
        yield detector_ids
        return
    if not detector_ids:
        yield failed(placeholder, f"GuardDuty has no detector in {context.region}")
        return
    for detector_id in detector_ids:
        arn = context.arn("guardduty", f"detector/{detector_id}")

        def evaluate(detector_id: str = detector_id, arn: str = arn) -> Outcome:
            detector = guard.get_detector(DetectorId=detector_id)
            if detector.get("Status") != "ENABLED":
                return failed(arn, f"the detector is {detector.get('Status')}")
            features = {f.get("Name"): f.get("Status") for f in detector.get("Features", [])}
            off = [
                name
                for name in context.expected.guardduty_features
                if features.get(name) != "ENABLED"
            ]
            if off:
                return failed(arn, f"enabled, but protection plans not enabled: {', '.join(off)}")
            plans = ", ".join(context.expected.guardduty_features) or "none required"
            return passed(arn, f"enabled; protection plans on: {plans}")

        yield context.judge(arn, evaluate)


def security_hub(context: CheckContext) -> Iterator[Outcome]:
    hub_arn = context.arn("securityhub", "hub/default")
    hub = context.client("securityhub")

    def evaluate() -> Outcome:
        try:
            hub_arn_found = str(hub.describe_hub().get("HubArn", hub_arn))
        except ClientError as problem:
            if error_code(problem) == NOT_SUBSCRIBED:
                raise Missing(f"Security Hub is not enabled in {context.region}") from problem
            raise
        subscriptions = {
            str(s["StandardsArn"]): s
            for s in pages(hub, "get_enabled_standards", "StandardsSubscriptions")
        }
        problems = []
        for standard in context.expected.security_hub_standards:
            subscription = subscriptions.get(standard)
            if subscription is None:
                problems.append(f"{standard} not enabled")
            elif subscription.get("StandardsStatus") != READY:
                reason = subscription.get("StandardsStatusReason", {}).get("StatusReasonCode", "")
                state = f"{subscription.get('StandardsStatus')} {reason}".strip()
                problems.append(f"{standard} is {state}")
        if problems:
            return failed(hub_arn_found, "; ".join(problems))
        count = len(context.expected.security_hub_standards)
        return passed(hub_arn_found, f"enabled; all {count} standards READY")

    yield context.judge(hub_arn, evaluate)


CHECKS = (
    RuntimeCheck(
        "RT_PHI_GUARDDUTY_ENABLED",
        "GuardDuty detector enabled with S3 and malware protection",
        guardduty,
        workload_only=True,
    ),
    RuntimeCheck(
        "RT_PHI_SECURITY_HUB_STANDARDS",
        "Security Hub enabled with the FSBP, CIS and NIST 800-53 standards ready",
        security_hub,
        workload_only=True,
    ),
)
