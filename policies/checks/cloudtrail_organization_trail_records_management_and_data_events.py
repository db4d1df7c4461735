"""CKV_PHI_48 "Ensure every CloudTrail trail is an organization trail recording management
events with global service events, S3 object reads and writes, and Lambda invocations".

Audit controls: HIPAA 45 CFR 164.312(b) (record and examine activity in systems holding ePHI)
and 164.308(a)(1)(ii)(D) (information system activity review), GDPR Art. 5(2) and 32
(accountability, ability to show who processed personal data), EHDS Art. 73(1)(e) (logging of
access in the secure processing environment), EU AI Act Art. 12 (record-keeping). The trail is
the one record of who read or wrote PHI objects and who invoked the functions that act on it, in
every account of the organization. The platform makes one trail, the organization's; every
`aws_cloudtrail` is judged on its own configuration:
- `is_organization_trail` true (every member account, present and future, is recorded);
- `include_global_service_events` not false (IAM, STS and Organizations calls are recorded);
- management events: no selectors at all, or an `advanced_event_selector` selecting
  `eventCategory` Management with no other field, or an `event_selector` with
  `include_management_events` not false and `read_write_type` All (unset counts as All);
- S3 object data events, reads and writes: an advanced selector with `eventCategory` Data and
  `resources.type` AWS::S3::Object whose only other field is `resources.ARN` `starts_with`
  whole buckets (`arn:<partition>:s3:::<bucket>/`; no `resources.ARN` field means every bucket),
  so no `readOnly`, `eventName` or narrower ARN field limits it; or an `event_selector` with
  `read_write_type` All and a `data_resource` of type AWS::S3::Object;
- Lambda invocations: an advanced selector with `eventCategory` Data and `resources.type`
  AWS::Lambda::Function whose only other field is an `eventName` `equals` naming Invoke (every
  function: no ARN field); or an `event_selector` with `read_write_type` All and a
  `data_resource` of type AWS::Lambda::Function valued `arn:<partition>:lambda`.
Which buckets must be covered (every environment's data buckets) is a fact of the other stacks;
this check sees one stack, so it asks for whole buckets, reads and writes, not for their list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import blocks, is_true, scalar, scalars
from policies.checks._stack import Stack, StackCheck, Verdict, address, register

TRAIL = "aws_cloudtrail"
S3_OBJECT = "AWS::S3::Object"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
INVOKE = "Invoke"
# A prefix naming one whole bucket's objects, nothing narrower: arn:aws:s3:::<bucket>/
WHOLE_BUCKET = re.compile(r"^arn:[a-z-]+:s3:::[^/]+/$")
ALL_LAMBDA_FUNCTIONS = re.compile(r"^arn:[a-z-]+:lambda$")
ALL_S3_OBJECTS = re.compile(r"^arn:[a-z-]+:s3(:::)?$")
# The operators a field selector may use (AWS provider 5.x `field_selector`).
OPERATORS = ("equals", "not_equals", "starts_with", "not_starts_with", "ends_with", "not_ends_with")


def _fields(selector: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """field -> {operator: values} of one advanced event selector."""
    fields: dict[str, dict[str, list[Any]]] = {}
    for field_selector in blocks(selector, "field_selector"):
        name = str(scalar(field_selector, "field"))
        operators = fields.setdefault(name, {})
        for operator in OPERATORS:
            if values := scalars(field_selector, operator):
                operators.setdefault(operator, []).extend(values)
    return fields


def _only_equals(operators: dict[str, list[Any]], value: str) -> bool:
    return list(operators) == ["equals"] and operators["equals"] == [value]


def _category(fields: dict[str, dict[str, list[Any]]], category: str) -> bool:
    return _only_equals(fields.get("eventCategory", {}), category)


def _resource_type(fields: dict[str, dict[str, list[Any]]], resource_type: str) -> bool:
    return _only_equals(fields.get("resources.type", {}), resource_type)


def _advanced_management(fields: dict[str, dict[str, list[Any]]]) -> bool:
    return _category(fields, "Management") and set(fields) == {"eventCategory"}


def _advanced_s3(fields: dict[str, dict[str, list[Any]]]) -> bool:
    if not (_category(fields, "Data") and _resource_type(fields, S3_OBJECT)):
        return False
    if not set(fields) <= {"eventCategory", "resources.type", "resources.ARN"}:
        return False
    arns = fields.get("resources.ARN")
    if arns is None:
        return True
    prefixes = arns.get("starts_with", [])
    return (
        list(arns) == ["starts_with"]
        and bool(prefixes)
        and all(isinstance(p, str) and WHOLE_BUCKET.match(p) for p in prefixes)
    )


def _advanced_lambda(fields: dict[str, dict[str, list[Any]]]) -> bool:
    if not (_category(fields, "Data") and _resource_type(fields, LAMBDA_FUNCTION)):
        return False
    if not set(fields) <= {"eventCategory", "resources.type", "eventName"}:
        return False
    names = fields.get("eventName")
    return names is None or (list(names) == ["equals"] and INVOKE in names["equals"])


def _is_false(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


def _reads_and_writes(selector: dict[str, Any]) -> bool:
    return str(scalar(selector, "read_write_type") or "All") == "All"


def _basic_data(selector: dict[str, Any], resource_type: str) -> bool:
    if not _reads_and_writes(selector):
        return False
    for resource in blocks(selector, "data_resource"):
        if scalar(resource, "type") != resource_type:
            continue
        values = [str(v) for v in scalars(resource, "values")]
        if resource_type == S3_OBJECT and values:
            return all(WHOLE_BUCKET.match(v) or ALL_S3_OBJECTS.match(v) for v in values)
        if resource_type == LAMBDA_FUNCTION:
            return any(ALL_LAMBDA_FUNCTIONS.match(v) for v in values)
    return False


def problems(trail: dict[str, Any]) -> list[str]:
    """What the trail does not record, empty when it records all of it."""
    found = []
    if not is_true(scalar(trail, "is_organization_trail")):
        found.append("not an organization trail")
    if _is_false(scalar(trail, "include_global_service_events")):
        found.append("global service events excluded")
    advanced = [_fields(s) for s in blocks(trail, "advanced_event_selector")]
    basic = blocks(trail, "event_selector")
    if advanced:
        management = any(_advanced_management(f) for f in advanced)
        s3 = any(_advanced_s3(f) for f in advanced)
        invocations = any(_advanced_lambda(f) for f in advanced)
    else:
        management = not basic or any(
            not _is_false(scalar(s, "include_management_events")) and _reads_and_writes(s)
            for s in basic
        )
        s3 = any(_basic_data(s, S3_OBJECT) for s in basic)
        invocations = any(_basic_data(s, LAMBDA_FUNCTION) for s in basic)
    if not management:
        found.append("management events (reads and writes) not selected")
    if not s3:
        found.append("no selector records S3 object reads and writes in whole buckets")
    if not invocations:
        found.append("no selector records every Lambda function's invocations")
    return found


class CloudtrailOrganizationTrailRecordsManagementAndDataEvents(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure every CloudTrail trail is an organization trail recording management "
                "events with global service events, S3 object reads and writes, and Lambda "
                "invocations"
            ),
            id="CKV_PHI_48",
            category=CheckCategories.LOGGING,
            judged_types=[TRAIL],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        for name, trail in sorted(stack.resources(TRAIL).items()):
            found = problems(trail)
            yield Verdict(address(TRAIL, name), not found, "; ".join(found))


check = register(CloudtrailOrganizationTrailRecordsManagementAndDataEvents())
