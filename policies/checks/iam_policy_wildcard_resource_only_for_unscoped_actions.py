"""CKV_PHI_41 "Ensure IAM policies allow every resource (*) only to actions that have no
resource-level permissions, or under a condition naming the resources".

Least privilege: every role of the platform reaches only its own buckets, prefixes, keys,
endpoints and schedules (HIPAA 45 CFR 164.308(a)(4) information access management and
164.312(a)(1) access control, minimum necessary 164.502(b); GDPR Art. 25 and 32; EU AI Act
Art. 15). An Allow on `"*"` for an action IAM can scope to a resource (s3:GetObject, kms:Decrypt,
sagemaker:UpdateEndpoint) grants it on every such resource of the account. checkov's
CKV_AWS_355 says the same but reads no policy held as a JSON string, which is how cdktf
synthesizes every policy; this check reads them.

Judged: the `policy` of every `aws_iam_role_policy`, `aws_iam_policy`, `aws_iam_user_policy`
and `aws_iam_group_policy`. A policy that is not JSON fails. Each Allow statement fails when it
uses `NotAction` or `NotResource` (everything but the listed), or when its `Resource` includes
`"*"` and one of its actions is not among the actions that have no resource-level permissions
(below, from the IAM Service Authorization Reference: Describe/List/Get calls that name no
resource, X-Ray telemetry, ECR login, metric publishing), unless the statement's Condition
confines it with a resource-naming key (`ec2:Vpc`, `ec2:Subnet`, `cloudwatch:namespace`,
`aws:ResourceTag/...`) under StringEquals, StringLike, ArnEquals or ArnLike. Resource patterns
other than `"*"` (an ARN with a wildcard part) are not judged here.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import json_document
from policies.checks._documents import actions, as_list, conditions, statements
from policies.checks._stack import Stack, StackCheck, Verdict, address, register

JUDGED_TYPES = (
    "aws_iam_role_policy",
    "aws_iam_policy",
    "aws_iam_user_policy",
    "aws_iam_group_policy",
)

# Actions with no resource types in the IAM Service Authorization Reference (patterns, lower
# case): "*" is the only resource they can be allowed on.
WITHOUT_RESOURCE_LEVEL_PERMISSIONS = (
    "cloudwatch:putmetricdata",
    "ec2:describe*",
    "ecr:getauthorizationtoken",
    "sagemaker:list*",
    "sts:getcalleridentity",
    "xray:getsamplingrules",
    "xray:getsamplingtargets",
    "xray:puttelemetryrecords",
    "xray:puttracesegments",
)
# Condition keys naming the resources acted on (lower case; "/" ends a prefix).
CONFINING_KEYS = ("ec2:vpc", "ec2:subnet", "cloudwatch:namespace", "aws:resourcetag/")
CONFINING_OPERATORS = frozenset({"stringequals", "stringlike", "arnequals", "arnlike"})


def unscoped(action: str) -> bool:
    return any(fnmatch.fnmatchcase(action, p) for p in WITHOUT_RESOURCE_LEVEL_PERMISSIONS)


def confining_key(key: str) -> bool:
    return any(key == k or (k.endswith("/") and key.startswith(k)) for k in CONFINING_KEYS)


def confined(statement: dict[str, Any]) -> bool:
    return any(
        operator in CONFINING_OPERATORS
        and confining_key(key)
        and values
        and "*" not in [str(v) for v in values]
        for operator, key, values in conditions(statement)
    )


def policy_problems(value: Any) -> list[str]:
    policy = json_document(value)
    if policy is None:
        return ["policy is not a JSON policy document"]
    return [
        f"statement {statement.get('Sid', index)} {problem}"
        for index, statement in enumerate(statements(policy))
        if (problem := statement_problem(statement)) is not None
    ]


def statement_problem(statement: dict[str, Any]) -> str | None:
    if statement.get("Effect") != "Allow":
        return None
    if "NotAction" in statement or "NotResource" in statement:
        return "allows everything but what it lists (NotAction/NotResource)"
    if "*" not in [str(r) for r in as_list(statement.get("Resource"))]:
        return None
    scoped = sorted(a for a in actions(statement) if not unscoped(a))
    if scoped and not confined(statement):
        return f"allows {', '.join(scoped)} on every resource (*)"
    return None


class IamPolicyWildcardResourceOnlyForUnscopedActions(StackCheck):
    """A stack check only so that checkov names the judged policy by its full address (a Python
    resource check's `resource.<name>` loses the type); each policy is judged on its own."""

    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure IAM policies allow every resource (*) only to actions that have no "
                "resource-level permissions, or under a condition naming the resources"
            ),
            id="CKV_PHI_41",
            category=CheckCategories.IAM,
            judged_types=JUDGED_TYPES,
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        for resource_type in JUDGED_TYPES:
            for name, conf in stack.resources(resource_type).items():
                problems = policy_problems(conf.get("policy"))
                yield Verdict(address(resource_type, name), not problems, "; ".join(problems))


check = register(IamPolicyWildcardResourceOnlyForUnscopedActions())
