"""CKV_PHI_55 "Ensure a VPC endpoint's policy admits only the account's principals, or
anonymous reads of named AWS-owned buckets".

The VPC endpoints are the PHI VPC's only way to AWS APIs (CKV_PHI_9 forbids an internet path),
so their policies are its data perimeter: with the account's own principals pinned, stolen
credentials of another account cannot be used from inside the VPC to move PHI to that
account's buckets, tables or keys. HIPAA 45 CFR 164.312(e)(1) transmission security and
164.312(a)(1) access control, GDPR Art. 25/32, EHDS secure processing environment. CKV_PHI_8
only rejects AWS's full-access default; this check rejects any Allow that a principal of
another account can use.

Judged: every `aws_vpc_endpoint`, with the stack in view. Its `policy` must be a JSON policy
document (a missing policy is AWS's full-access default) and each Allow statement must either

- pin the principal to the accounts of the provider the endpoint uses (its `provider` alias,
  else the unaliased `provider "aws"`), as listed in that provider's `allowed_account_ids`:
  a `Principal` naming only those accounts (`123456789012`, `arn:aws:iam::<account>:...`),
  or a `StringEquals` condition on `aws:PrincipalAccount` whose values are all such accounts,
  or an `ArnEquals`/`ArnLike`/`StringEquals`/`StringLike` condition on `aws:PrincipalArn` whose
  values all carry such an account; `...IfExists`, `ForAnyValue:`/`ForAllValues:` variants and
  negations do not pin (they pass when the key is absent or for other values), and neither
  does `aws:PrincipalOrgID` (it admits every account of the organization, e.g. staging's
  principals into production's endpoints), nor `aws:ResourceAccount` alone (it confines the
  resources, not who uses them); or
- on an S3 endpoint (gateway or interface), allow only `s3:GetObject` (no `NotAction`, no
  `NotResource`, no `NotPrincipal`) on the objects (`arn:aws:s3:::<bucket>/*`) of AWS-owned
  buckets of the endpoint's own region whose names follow AWS_OWNED_BUCKETS. Reads of those
  buckets come signed by AWS (ECR's pre-signed layer URLs) or anonymous (`dnf`), not from the
  account's principals, so no principal condition can admit them; AWS documents each bucket
  for exactly this case:
  - `prod-<region>-starport-layer-bucket`: ECR's image layers, which image pulls read; Amazon
    ECR User Guide, "Amazon ECR interface VPC endpoints (AWS PrivateLink)", section "Minimum
    Amazon S3 bucket permissions for Amazon ECR"
    (https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html);
  - `al2023-repos-<region>-de612dc2`: the regional Amazon Linux 2023 package repositories
    `dnf` reads; Amazon Linux 2023 User Guide, on reaching the repositories from a VPC without
    internet access through an S3 gateway endpoint.
  A new entry needs such an AWS page saying the bucket is AWS's and what reads it.

A provider without literal `allowed_account_ids` fails every endpoint it serves (the accounts
cannot be verified). Deny statements only narrow and are not judged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import json_document
from policies.checks._documents import actions, as_list, conditions, principals, statements
from policies.checks._stack import Stack, StackCheck, Verdict, address, register
from policies.checks._tags import is_aliased

# Bucket-name patterns of AWS-owned buckets an S3 endpoint may open to anonymous reads
# (see the module docstring for the AWS documentation of each); `{region}` is the endpoint's.
AWS_OWNED_BUCKETS = (
    "prod-{region}-starport-layer-bucket",
    "al2023-repos-{region}-de612dc2",
)
AWS_OWNED_BUCKET_ACTIONS = frozenset({"s3:getobject"})

_ACCOUNT_ID = re.compile(r"^\d{12}$")
_ARN_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:[^:]*:[^:]*:(?P<account>\d{12}):")
# com.amazonaws.<region>.<service>, the region literal (an interpolated one cannot be compared).
_SERVICE_NAME = re.compile(r"^com\.amazonaws\.(?P<region>[a-z0-9-]+)\.(?P<service>.+)$")
_ACCOUNT_OPERATORS = frozenset({"stringequals"})
_ARN_OPERATORS = frozenset({"arnequals", "arnlike", "stringequals", "stringlike"})


def allowed_accounts(stack: Stack, conf: dict[str, Any]) -> set[str]:
    """The literal `allowed_account_ids` of the provider configuration `conf` uses."""
    provider = str(conf.get("provider") or "")
    alias = provider.split(".", 1)[1] if provider.startswith("aws.") else None
    for candidate in stack.providers:
        if (candidate.get("alias") == alias) if alias else not is_aliased(candidate):
            return {
                str(a)
                for a in as_list(candidate.get("allowed_account_ids"))
                if _ACCOUNT_ID.match(str(a))
            }
    return set()


def _principal_account(principal: str) -> str | None:
    if _ACCOUNT_ID.match(principal):
        return principal
    match = _ARN_ACCOUNT.match(principal)
    return match.group("account") if match else None


def _condition_pins(operator: str, key: str, values: list[Any], accounts: set[str]) -> bool:
    if not values:
        return False
    if key == "aws:principalaccount" and operator in _ACCOUNT_OPERATORS:
        return all(str(v) in accounts for v in values)
    if key == "aws:principalarn" and operator in _ARN_OPERATORS:
        return all(_principal_account(str(v)) in accounts for v in values)
    return False


def pins_principal(statement: dict[str, Any], accounts: set[str]) -> bool:
    """The statement admits only principals of `accounts`."""
    if not accounts or "NotPrincipal" in statement:
        return False
    named = principals(statement)
    if named and all(_principal_account(p) in accounts for p in named):
        return True
    return any(_condition_pins(*found, accounts) for found in conditions(statement))


def endpoint_region_and_service(conf: dict[str, Any]) -> tuple[str, str] | None:
    match = _SERVICE_NAME.match(str(conf.get("service_name", "")))
    return (match.group("region"), match.group("service")) if match else None


def aws_owned_object_arns(region: str) -> list[str]:
    return [f"arn:aws:s3:::{bucket.format(region=region)}/*" for bucket in AWS_OWNED_BUCKETS]


def reads_aws_owned_buckets_only(statement: dict[str, Any], conf: dict[str, Any]) -> bool:
    """Only `s3:GetObject` of the named AWS-owned buckets, through an S3 endpoint."""
    found = endpoint_region_and_service(conf)
    if found is None or found[1] != "s3":
        return False
    if any(k in statement for k in ("NotAction", "NotResource", "NotPrincipal")):
        return False
    granted = actions(statement)
    resources = [str(r) for r in as_list(statement.get("Resource"))]
    owned = aws_owned_object_arns(found[0])
    return (
        bool(granted)
        and all(a in AWS_OWNED_BUCKET_ACTIONS for a in granted)
        and bool(resources)
        and all(r in owned for r in resources)
    )


def problems(conf: dict[str, Any], accounts: set[str]) -> list[str]:
    policy = json_document(conf.get("policy"))
    if policy is None:
        return ["no JSON endpoint policy (AWS's full-access default applies)"]
    if not accounts:
        return ["its provider lists no literal allowed_account_ids to pin principals to"]
    found = []
    for index, statement in enumerate(statements(policy)):
        if statement.get("Effect") != "Allow":
            continue
        if pins_principal(statement, accounts) or reads_aws_owned_buckets_only(statement, conf):
            continue
        found.append(
            f"statement {statement.get('Sid', index)} admits principals outside "
            f"{', '.join(sorted(accounts))}"
        )
    return found


class VpcEndpointPolicyAdmitsOnlyTheAccount(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure a VPC endpoint's policy admits only the account's principals, or "
                "anonymous reads of named AWS-owned buckets"
            ),
            id="CKV_PHI_55",
            category=CheckCategories.NETWORKING,
            judged_types=["aws_vpc_endpoint"],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        for name, conf in stack.resources("aws_vpc_endpoint").items():
            found = problems(conf, allowed_accounts(stack, conf))
            yield Verdict(address("aws_vpc_endpoint", name), not found, "; ".join(found))


check = register(VpcEndpointPolicyAdmitsOnlyTheAccount())
