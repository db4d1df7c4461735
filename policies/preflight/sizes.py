"""Policy sizes and per-target policy counts against the quotas AWS documents, each rule citing
its service's quota page: what AWS refuses at apply with a LimitExceeded or MalformedPolicy error.

How a document is measured follows what each service counts:
- IAM (role inline policies in aggregate, managed policies, trust policies) counts characters
  other than white space ("IAM doesn't count white space"; GetAccountSummary states the quotas
  "in non-whitespace characters").
- Organizations counts the document as sent, white space included (only the console strips it),
  and its page has given the SCP quota both as 5,120 characters and as 5,120 bytes: UTF-8
  bytes are measured, which is at least the character count, so either reading holds.
- KMS, S3, SNS and SQS give byte quotas: UTF-8 bytes as sent.

A Terraform reference inside a document (`${aws_sns_topic.x.arn}`) is not yet its value: each
counts as REFERENCE_LENGTH characters. The platform's references are ARNs of its own resources
(bucket ARNs up to 76 characters, KMS key ARNs 75, rule, topic and queue ARNs with the
platform's short names under 100), so 100 is the worst case they reach; a reference to a longer
value would be under-counted. A document that is wholly a reference is measured where it is
defined.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from policies.checks._documents import as_list
from policies.findings import Finding
from policies.preflight.base import (
    TOKEN,
    Resource,
    Rule,
    Stack,
    SynthesizedStacks,
    literal,
    verdict,
)
from policies.preflight.iam import (
    IAM_LANGUAGE_ORGANIZATIONS_TYPES,
    SERVICE_CONTROL_POLICY,
    organizations_policy_type,
)

REFERENCE_LENGTH: Final = 100
# The quotas, as each service's page gives them.
SCP_LIMIT: Final = 5_120  # bytes (see the module docstring)
ROLE_INLINE_LIMIT: Final = 10_240  # non-whitespace characters, all inline policies of a role
MANAGED_POLICY_LIMIT: Final = 6_144  # non-whitespace characters
TRUST_POLICY_LIMIT: Final = 2_048  # non-whitespace characters; the default, adjustable
KEY_POLICY_LIMIT: Final = 32_768  # bytes (32 KB)
BUCKET_POLICY_LIMIT: Final = 20_480  # bytes (20 KB)
TOPIC_POLICY_LIMIT: Final = 30_720  # bytes (30 KB)
QUEUE_POLICY_LIMIT: Final = 8_192  # bytes
MAX_SCPS_PER_TARGET: Final = 5
MAX_MANAGED_POLICIES_PER_ROLE: Final = 10  # the default, adjustable
IAM_QUOTAS: Final = "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html"
ORGANIZATIONS_QUOTAS: Final = (
    "https://docs.aws.amazon.com/organizations/latest/userguide/orgs_reference_limits.html"
)

SCP_SIZE: Final = Rule(
    "PF_SIZE_SCP",
    "sizes",
    f"Every SCP and RCP is at most {SCP_LIMIT:,} bytes as sent",
    f"AWS Organizations quotas, maximum size of a policy document ({ORGANIZATIONS_QUOTAS})",
)
ROLE_INLINE_SIZE: Final = Rule(
    "PF_SIZE_ROLE_INLINE_POLICIES",
    "sizes",
    f"Every role's inline policies total at most {ROLE_INLINE_LIMIT:,} non-whitespace characters",
    f"IAM and AWS STS quotas, role policy size (aggregate of inline policies) ({IAM_QUOTAS})",
)
MANAGED_POLICY_SIZE: Final = Rule(
    "PF_SIZE_MANAGED_POLICY",
    "sizes",
    f"Every managed policy is at most {MANAGED_POLICY_LIMIT:,} non-whitespace characters",
    f"IAM and AWS STS quotas, managed policy size ({IAM_QUOTAS})",
)
TRUST_POLICY_SIZE: Final = Rule(
    "PF_SIZE_TRUST_POLICY",
    "sizes",
    f"Every role trust policy is at most {TRUST_POLICY_LIMIT:,} non-whitespace characters",
    f"IAM and AWS STS quotas, role trust policy length ({IAM_QUOTAS})",
)
KEY_POLICY_SIZE: Final = Rule(
    "PF_SIZE_KEY_POLICY",
    "sizes",
    f"Every KMS key policy is at most {KEY_POLICY_LIMIT:,} bytes",
    "AWS KMS resource quotas, key policy document size "
    "(https://docs.aws.amazon.com/kms/latest/developerguide/resource-limits.html)",
)
BUCKET_POLICY_SIZE: Final = Rule(
    "PF_SIZE_BUCKET_POLICY",
    "sizes",
    f"Every S3 bucket policy is at most {BUCKET_POLICY_LIMIT:,} bytes",
    "Amazon S3 user guide, bucket policies: limited to 20 KB "
    "(https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-policies.html)",
)
TOPIC_POLICY_SIZE: Final = Rule(
    "PF_SIZE_TOPIC_POLICY",
    "sizes",
    f"Every SNS topic policy is at most {TOPIC_POLICY_LIMIT:,} bytes",
    "Amazon SNS API permissions reference, policy quotas: 30 KB "
    "(https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-language-api-permissions-reference.html)",
)
QUEUE_POLICY_SIZE: Final = Rule(
    "PF_SIZE_QUEUE_POLICY",
    "sizes",
    f"Every SQS queue policy is at most {QUEUE_POLICY_LIMIT:,} bytes",
    "Amazon SQS policy quotas: 8,192 bytes "
    "(https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-policies.html)",
)
SCPS_PER_TARGET: Final = Rule(
    "PF_SIZE_SCPS_PER_TARGET",
    "sizes",
    f"No root, OU or account carries more than {MAX_SCPS_PER_TARGET} SCPs (AWS's included)",
    f"AWS Organizations quotas, maximum SCPs attached to a root, OU or account: 5 "
    f"({ORGANIZATIONS_QUOTAS}); AWS Control Tower: a limit of five SCPs per OU applies to OUs "
    "in a landing zone, its preventive controls are SCPs "
    "(https://docs.aws.amazon.com/controltower/latest/userguide/limits.html, "
    "https://docs.aws.amazon.com/controltower/latest/userguide/control-limitations.html)",
)
MANAGED_POLICIES_PER_ROLE: Final = Rule(
    "PF_SIZE_MANAGED_POLICIES_PER_ROLE",
    "sizes",
    f"No role has more than {MAX_MANAGED_POLICIES_PER_ROLE} managed policies attached",
    f"IAM and AWS STS quotas, managed policies attached to an IAM role ({IAM_QUOTAS})",
)

# Organizations attaches AWS's FullAWSAccess SCP to every root, OU and account when SCPs are
# enabled; it takes a slot unless detached, which no declared resource here does.
FULL_AWS_ACCESS: Final = "p-FullAWSAccess"
# Control Tower's preventive controls (its mandatory ones included) are SCPs it attaches to each
# OU it governs. AWS does not document how many; one is counted per governed OU. Users of some
# landing zone versions report two aws-guardrails-* SCPs per OU (awslabs/landing-zone-accelerator-
# on-aws issues 186 and 705): with two, an OU at 5 here would be refused a control.
CONTROL_TOWER_SCPS_PER_OU: Final = 1
# `${aws_organizations_organizational_unit.x.id}` or `.arn`; the root is
# `${aws_organizations_organization.y.roots[0].id}`.
_ORGANIZATIONS_REFERENCE: Final = re.compile(
    r"^\$\{((aws_organizations_[a-z_]+)\.[^.}\[]+(?:\.roots\[\d+\])?)\.(?:id|arn)\}$"
)
_ROLE_REFERENCE: Final = re.compile(r"^\$\{(aws_iam_role\.[^.}]+)\.(?:id|name)\}$")
_WHITESPACE: Final = re.compile(r"\s")


def _references(text: str) -> int:
    return len(TOKEN.findall(text))


def non_whitespace_characters(text: str) -> int:
    return len(_WHITESPACE.sub("", TOKEN.sub("", text))) + REFERENCE_LENGTH * _references(text)


def utf8_bytes(text: str) -> int:
    return len(TOKEN.sub("", text).encode("utf-8")) + REFERENCE_LENGTH * _references(text)


Measure = Callable[[str], int]


@dataclass(frozen=True)
class DocumentLimit:
    rule: Rule
    attributes: tuple[tuple[str, str], ...]  # (resource type, attribute holding the document)
    limit: int
    measure: Measure
    unit: str


DOCUMENT_LIMITS: Final = (
    DocumentLimit(
        SCP_SIZE, (("aws_organizations_policy", "content"),), SCP_LIMIT, utf8_bytes, "bytes"
    ),
    DocumentLimit(
        MANAGED_POLICY_SIZE,
        (("aws_iam_policy", "policy"),),
        MANAGED_POLICY_LIMIT,
        non_whitespace_characters,
        "non-whitespace characters",
    ),
    DocumentLimit(
        TRUST_POLICY_SIZE,
        (("aws_iam_role", "assume_role_policy"),),
        TRUST_POLICY_LIMIT,
        non_whitespace_characters,
        "non-whitespace characters",
    ),
    DocumentLimit(
        KEY_POLICY_SIZE, (("aws_kms_key", "policy"),), KEY_POLICY_LIMIT, utf8_bytes, "bytes"
    ),
    DocumentLimit(
        BUCKET_POLICY_SIZE,
        (("aws_s3_bucket_policy", "policy"), ("aws_s3_bucket", "policy")),
        BUCKET_POLICY_LIMIT,
        utf8_bytes,
        "bytes",
    ),
    DocumentLimit(
        TOPIC_POLICY_SIZE,
        (("aws_sns_topic_policy", "policy"), ("aws_sns_topic", "policy")),
        TOPIC_POLICY_LIMIT,
        utf8_bytes,
        "bytes",
    ),
    DocumentLimit(
        QUEUE_POLICY_SIZE,
        (("aws_sqs_queue_policy", "policy"), ("aws_sqs_queue", "policy")),
        QUEUE_POLICY_LIMIT,
        utf8_bytes,
        "bytes",
    ),
)
RULES: Final = (
    *(limit.rule for limit in DOCUMENT_LIMITS),
    ROLE_INLINE_SIZE,
    SCPS_PER_TARGET,
    MANAGED_POLICIES_PER_ROLE,
)


def _measurable(value: Any) -> str | None:
    """The document text, unless it is missing or wholly a reference (measured where defined)."""
    if not isinstance(value, str) or TOKEN.fullmatch(value.strip()):
        return None
    return value


def _document_findings(stacks: SynthesizedStacks) -> Iterator[Finding]:
    for limit in DOCUMENT_LIMITS:
        for resource_type, attribute in limit.attributes:
            for resource in stacks.resources(resource_type):
                if (
                    resource_type == "aws_organizations_policy"
                    and organizations_policy_type(resource) not in IAM_LANGUAGE_ORGANIZATIONS_TYPES
                ):
                    continue  # tag, backup and AI opt-out policies have their own quotas
                text = _measurable(resource.block.get(attribute))
                if text is None:
                    continue
                size = limit.measure(text)
                problem = (
                    f"{attribute} is {size:,} {limit.unit}; {limit.rule.id} allows {limit.limit:,}"
                    if size > limit.limit
                    else None
                )
                yield verdict(
                    limit.rule, resource, problem, judged=f"{attribute}: {size:,} {limit.unit}"
                )


def _addresses(stack: Stack) -> dict[str, Resource]:
    return {r.address: r for r in stack.resources()}


def _role_key(value: Any, names: dict[str, str]) -> str:
    """The role an attachment or inline policy names: the declared role's address when it is a
    reference to one or its literal name, else the value itself (a role declared elsewhere)."""
    text = str(value)
    match = _ROLE_REFERENCE.match(text)
    if match:
        return match.group(1)
    return names.get(text, text)


def _role_names(stack: Stack) -> dict[str, str]:
    return {
        name: r.address
        for r in stack.resources("aws_iam_role")
        if (name := literal(r.block.get("name"))) is not None
    }


def _role_findings(stack: Stack) -> Iterator[Finding]:
    addresses = _addresses(stack)
    names = _role_names(stack)
    inline: dict[str, list[tuple[str, int, Resource]]] = defaultdict(list)
    managed: dict[str, list[tuple[str, Resource]]] = defaultdict(list)
    for declared in stack.resources("aws_iam_role"):
        for index, block in enumerate(as_list(declared.block.get("inline_policy"))):
            text = _measurable(block.get("policy") if isinstance(block, dict) else None)
            if text is not None:
                size = non_whitespace_characters(text)
                inline[declared.address].append((f"inline_policy[{index}]", size, declared))
        for arn in as_list(declared.block.get("managed_policy_arns")):
            managed[declared.address].append((str(arn), declared))
    for policy in stack.resources("aws_iam_role_policy"):
        text = _measurable(policy.block.get("policy"))
        if text is not None:
            key = _role_key(policy.block.get("role"), names)
            inline[key].append((policy.address, non_whitespace_characters(text), policy))
    for attachment in stack.resources("aws_iam_role_policy_attachment"):
        key = _role_key(attachment.block.get("role"), names)
        managed[key].append((str(attachment.block.get("policy_arn")), attachment))
    for exclusive in stack.resources("aws_iam_role_policy_attachments_exclusive"):
        key = _role_key(exclusive.block.get("role_name"), names)
        managed[key] += [
            (str(arn), exclusive) for arn in as_list(exclusive.block.get("policy_arns"))
        ]
    for role, policies in sorted(inline.items()):
        total = sum(size for _, size, _ in policies)
        parts = ", ".join(f"{where} {size:,}" for where, size, _ in policies)
        problem = (
            f"inline policies total {total:,} non-whitespace characters ({parts}); "
            f"{ROLE_INLINE_SIZE.id} allows {ROLE_INLINE_LIMIT:,}"
            if total > ROLE_INLINE_LIMIT
            else None
        )
        target = addresses.get(role, policies[0][2])
        yield verdict(ROLE_INLINE_SIZE, target, problem, judged=f"{role}: {total:,} characters")
    for role, attached in sorted(managed.items()):
        arns = sorted({arn for arn, _ in attached})
        problem = (
            f"{len(arns)} managed policies attached ({', '.join(arns)}); "
            f"{MANAGED_POLICIES_PER_ROLE.id} allows {MAX_MANAGED_POLICIES_PER_ROLE}"
            if len(arns) > MAX_MANAGED_POLICIES_PER_ROLE
            else None
        )
        target = addresses.get(role, attached[0][1])
        judged = f"{role}: {len(arns)} managed policies"
        yield verdict(MANAGED_POLICIES_PER_ROLE, target, problem, judged=judged)


def _organizations_target(value: Any) -> str:
    """A root, OU or account as one key whether referenced by id or ARN, or given literally."""
    match = _ORGANIZATIONS_REFERENCE.match(str(value))
    return match.group(1) if match else str(value)


def _governed_ous(stack: Stack) -> set[str]:
    """The OUs Control Tower governs: those a control is enabled on and those its landing zone
    manifest names (the Security OU, a sandbox OU), matched to declared OUs by name."""
    governed = {
        _organizations_target(control.block.get("target_identifier"))
        for control in stack.resources("aws_controltower_control")
    }
    ou_names = {
        name: ou.address
        for ou in stack.resources("aws_organizations_organizational_unit")
        if (name := literal(ou.block.get("name"))) is not None
    }
    for zone in stack.resources("aws_controltower_landing_zone"):
        try:
            manifest = json.loads(str(zone.block.get("manifest_json", "{}")))
        except json.JSONDecodeError:
            continue  # a manifest Terraform computes: its OUs are not known here
        structure = manifest.get("organizationStructure", {}) if isinstance(manifest, dict) else {}
        for entry in structure.values() if isinstance(structure, dict) else []:
            name = entry.get("name") if isinstance(entry, dict) else None
            if name in ou_names:
                governed.add(ou_names[name])
    return governed


def _policy_label(value: Any, addresses: dict[str, Resource]) -> tuple[str, bool]:
    """(label, is an SCP) of an attachment's policy_id; a literal id of unknown type is counted
    as an SCP, since counting one too many only errs towards a failure that names it."""
    match = _ORGANIZATIONS_REFERENCE.match(str(value))
    policy = addresses.get(match.group(1)) if match else None
    if policy is None:
        return str(value), True
    name = literal(policy.block.get("name")) or policy.address
    return name, organizations_policy_type(policy) == SERVICE_CONTROL_POLICY


def _scp_target_findings(stack: Stack) -> Iterator[Finding]:
    addresses = _addresses(stack)
    attached: dict[str, list[str]] = defaultdict(list)
    # What a finding names when the target itself is not declared in this stack.
    anchors: dict[str, Resource] = {}
    for attachment in stack.resources("aws_organizations_policy_attachment"):
        label, is_scp = _policy_label(attachment.block.get("policy_id"), addresses)
        if not is_scp:
            continue
        target = _organizations_target(attachment.block.get("target_id"))
        attached[target].append(label)
        anchors.setdefault(target, attachment)
    for control in stack.resources("aws_controltower_control"):
        anchors.setdefault(_organizations_target(control.block.get("target_identifier")), control)
    governed = _governed_ous(stack)
    for target in sorted(set(attached) | governed):
        scps = list(attached.get(target, []))
        if FULL_AWS_ACCESS not in scps:
            scps.append(f"{FULL_AWS_ACCESS} (AWS, attached by default)")
        if target in governed:
            scps += ["Control Tower's guard-rail SCP"] * CONTROL_TOWER_SCPS_PER_OU
        problem = (
            f"{target} carries {len(scps)} SCPs ({', '.join(scps)}); "
            f"{SCPS_PER_TARGET.id} allows {MAX_SCPS_PER_TARGET}"
            if len(scps) > MAX_SCPS_PER_TARGET
            else None
        )
        organization_root = target.split(".roots[")[0]
        resource = addresses.get(organization_root) or anchors[target]
        yield verdict(SCPS_PER_TARGET, resource, problem, judged=f"{target}: {len(scps)} SCPs")


def check(stacks: SynthesizedStacks) -> list[Finding]:
    findings = list(_document_findings(stacks))
    for stack in stacks.stacks:
        findings += _role_findings(stack)
        findings += _scp_target_findings(stack)
    return findings
