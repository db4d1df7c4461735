"""The sizes family (policies/preflight/sizes.py): the platform's policies are within every
size quota and per-target count AWS documents, and each rule judged something; one document
padded just over its quota (or one attachment too many) fails exactly its rule on exactly its
resource, while its twin at the quota passes; white space counts where the service counts it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from policies.findings import Finding, Status
from policies.preflight import sizes
from policies.preflight.base import Rule, SynthesizedStacks
from tests.preflight.conftest import block_name, mutate_block

Block = dict[str, Any]
Configuration = dict[str, Any]
Change = Callable[[Block, Configuration], None]
# Rules for what the platform's stacks do not declare (their mutants below hold them).
JUDGE_NOTHING_ON_THE_PLATFORM = {sizes.MANAGED_POLICY_SIZE.id: "every policy is inline"}


@pytest.fixture(scope="module")
def findings(stacks: SynthesizedStacks) -> list[Finding]:
    return sizes.check(stacks)


def failures(found: list[Finding]) -> list[tuple[str, str]]:
    return [(f.check_id, f.resource) for f in found if f.status is Status.FAILED]


def test_the_platforms_policies_are_within_every_quota(findings: list[Finding]) -> None:
    failed = [f for f in findings if f.status is Status.FAILED]
    assert [f"{f.check_id} {f.stack} {f.resource}: {f.detail}" for f in failed] == []


def test_every_sizes_rule_judged_the_platforms_stacks(findings: list[Finding]) -> None:
    passed = Counter(f.check_id for f in findings if f.status is Status.PASSED)
    unjudged = [rule.id for rule in sizes.RULES if passed[rule.id] == 0]
    assert unjudged == sorted(JUDGE_NOTHING_ON_THE_PLATFORM)


def test_rules_are_declared_once_and_cite_the_quota_pages() -> None:
    ids = [rule.id for rule in sizes.RULES]
    assert len(ids) == len(set(ids))
    assert all(r.family == "sizes" and r.id.startswith("PF_SIZE_") for r in sizes.RULES)
    assert all("https://docs.aws.amazon.com/" in rule.source for rule in sizes.RULES)


def test_an_ou_counts_full_aws_access_and_control_towers_scp(findings: list[Finding]) -> None:
    workloads = next(
        f
        for f in findings
        if f.check_id == sizes.SCPS_PER_TARGET.id and "ou-workloads" in f.resource
    )
    # three platform SCPs, AWS's FullAWSAccess and Control Tower's guard-rail SCP
    assert workloads.detail.endswith(": 5 SCPs: ok")


@pytest.mark.parametrize(
    ("measure", "text", "size"),
    [
        (sizes.non_whitespace_characters, '{"A": ["b", "c"]}\n', len('{"A":["b","c"]}')),
        (sizes.non_whitespace_characters, '{"A": "${x.y.arn}/*"}', len('{"A":"/*"}') + 100),
        (sizes.utf8_bytes, '{"A": "é"}', len('{"A": ""}') + 2),
        (
            sizes.utf8_bytes,
            '{"A": "${x.y.arn}", "B": "${z.w.id}"}',
            len('{"A": "", "B": ""}') + 200,
        ),
    ],
)
def test_documents_are_measured_as_their_service_counts_with_references_at_100(
    measure: Callable[[str], int], text: str, size: int
) -> None:
    assert sizes.REFERENCE_LENGTH == 100
    assert measure(text) == size


# --- mutants: one document padded to its quota, or one attachment more ----------------------


def padded(
    text: str, measure: Callable[[str], int], limit: int, *, over: bool, indent: int | None = None
) -> str:
    """The document with copies of its first statement appended: the fewest that measure over
    `limit` (over) or the most that stay within it. Written as cdktf writes it (SCPs minified,
    the rest as json.dumps does), or indented."""
    document = json.loads(text)
    compact = ": " not in text
    separators = (",", ":") if compact and indent is None else None

    def render(copies: int) -> str:
        extra = [{**document["Statement"][0], "Sid": f"Padding{i}"} for i in range(copies)]
        padded_document = {**document, "Statement": [*document["Statement"], *extra]}
        return str(json.dumps(padded_document, indent=indent, separators=separators))

    copies = 0
    while measure(render(copies + 1)) <= limit:
        copies += 1
    return render(copies + 1 if over else copies)


@dataclass(frozen=True)
class Edit:
    stack: str
    resource_type: str
    prefix: str  # the logical name's start: which block of the type is edited
    change: Change

    def apply(self, out: Path, scratch: Path) -> tuple[SynthesizedStacks, str]:
        return mutate_block(
            out,
            scratch,
            stack=self.stack,
            resource_type=self.resource_type,
            prefix=self.prefix,
            change=self.change,
        )


def pad(attribute: str, limit: int, measure: Callable[[str], int], *, over: bool) -> Change:
    def change(block: Block, _: Configuration) -> None:
        block[attribute] = padded(block[attribute], measure, limit, over=over)

    return change


READ_ONE_OBJECT = {
    "Sid": "ReadOneObject",
    "Effect": "Allow",
    "Action": "s3:GetObject",
    "Resource": "arn:aws:s3:::acme-phi-eu-research-raw/exports/one.ndjson",
}


def add_role_policy(*, over: bool, indent: int | None = None) -> Change:
    """A new inline policy for the role, padded so the role's total just crosses the quota."""

    def change(role: Block, configuration: Configuration) -> None:
        name = block_name(configuration, "aws_iam_role", "feature-build_execution-role")
        reference = f"${{aws_iam_role.{name}.id}}"
        policies = configuration["resource"]["aws_iam_role_policy"]
        mine = [b for b in policies.values() if b["role"] == reference]
        others = sum(sizes.non_whitespace_characters(b["policy"]) for b in mine)

        def total(text: str) -> int:
            return others + sizes.non_whitespace_characters(text)

        small = {"Version": "2012-10-17", "Statement": [READ_ONE_OBJECT]}
        text = padded(json.dumps(small), total, sizes.ROLE_INLINE_LIMIT, over=over, indent=indent)
        # the indented twin would be over the quota if IAM counted its white space
        assert indent is None or others + len(text) > sizes.ROLE_INLINE_LIMIT
        policies["padding"] = {"name": "padding", "role": reference, "policy": text}

    return change


def attach_scps(ou_prefix: str, count: int, *, landing_zone_names_it: bool = True) -> Change:
    """`count` more SCP attachments on the OU (copies of attachments the stack has)."""

    def change(ou: Block, configuration: Configuration) -> None:
        ou_name = block_name(configuration, "aws_organizations_organizational_unit", ou_prefix)
        attachments = configuration["resource"]["aws_organizations_policy_attachment"]
        policies = sorted(configuration["resource"]["aws_organizations_policy"])
        for index, policy in enumerate(policies[:count]):
            attachments[f"extra-{index}"] = {
                "policy_id": f"${{aws_organizations_policy.{policy}.id}}",
                "target_id": f"${{aws_organizations_organizational_unit.{ou_name}.id}}",
            }
        if not landing_zone_names_it:
            for zone in configuration["resource"]["aws_controltower_landing_zone"].values():
                manifest = json.loads(zone["manifest_json"])
                manifest.pop("organizationStructure")
                zone["manifest_json"] = json.dumps(manifest)

    return change


def attach_managed_policies(count: int) -> Change:
    def change(role: Block, configuration: Configuration) -> None:
        name = block_name(configuration, "aws_iam_role", "inference_enclave-host-role")
        attachments = configuration["resource"]["aws_iam_role_policy_attachment"]
        for index in range(count):
            attachments[f"extra-{index}"] = {
                "role": f"${{aws_iam_role.{name}.name}}",
                "policy_arn": f"arn:aws:iam::111111111111:policy/extra-{index}",
            }

    return change


def add_managed_policy(*, over: bool) -> Change:
    def change(role: Block, configuration: Configuration) -> None:
        policy = next(iter(configuration["resource"]["aws_iam_role_policy"].values()))["policy"]
        text = padded(policy, sizes.non_whitespace_characters, 6_144, over=over)
        configuration["resource"]["aws_iam_policy"] = {"padded": {"policy": text}}

    return change


GOVERNANCE = "org-governance"


def ou_with_more_scps(prefix: str, count: int, *, landing_zone_names_it: bool = True) -> Edit:
    change = attach_scps(prefix, count, landing_zone_names_it=landing_zone_names_it)
    return Edit(GOVERNANCE, "aws_organizations_organizational_unit", prefix, change)


NWC, BYTES = sizes.non_whitespace_characters, sizes.utf8_bytes
PROTECT = "governance_scp-protect-security-services"


def document_case(case: str, rule: Rule, edit: Callable[[bool], Edit]) -> list[Any]:
    return [
        pytest.param(edit(True), rule.id, id=case),
        pytest.param(edit(False), None, id=f"{case}: twin"),
    ]


CASES = [
    *document_case(
        "SCP over 5,120 bytes",
        sizes.SCP_SIZE,
        lambda over: Edit(
            GOVERNANCE, "aws_organizations_policy", PROTECT, pad("content", 5_120, BYTES, over=over)
        ),
    ),
    *document_case(
        "a role's inline policies over 10,240 in total",
        sizes.ROLE_INLINE_SIZE,
        lambda over: Edit(
            "eu-research-ml",
            "aws_iam_role",
            "feature-build_execution-role",
            add_role_policy(over=over),
        ),
    ),
    *document_case(
        "trust policy over 2,048",
        sizes.TRUST_POLICY_SIZE,
        lambda over: Edit(
            "dev-data",
            "aws_iam_role",
            "features_role",
            pad("assume_role_policy", 2_048, NWC, over=over),
        ),
    ),
    *document_case(
        "key policy over 32 KB",
        sizes.KEY_POLICY_SIZE,
        lambda over: Edit(
            "dev-data", "aws_kms_key", "keys_logs", pad("policy", 32_768, BYTES, over=over)
        ),
    ),
    *document_case(
        "bucket policy over 20 KB",
        sizes.BUCKET_POLICY_SIZE,
        lambda over: Edit(
            "org-audit",
            "aws_s3_bucket_policy",
            "audit_archive",
            pad("policy", 20_480, BYTES, over=over),
        ),
    ),
    *document_case(
        "topic policy over 30 KB",
        sizes.TOPIC_POLICY_SIZE,
        lambda over: Edit(
            "dev-security",
            "aws_sns_topic_policy",
            "detection",
            pad("policy", 30_720, BYTES, over=over),
        ),
    ),
    *document_case(
        "queue policy over 8,192 bytes",
        sizes.QUEUE_POLICY_SIZE,
        lambda over: Edit(
            "dev-security",
            "aws_sqs_queue_policy",
            "detection",
            pad("policy", 8_192, BYTES, over=over),
        ),
    ),
    pytest.param(
        ou_with_more_scps("governance_ou-workloads", 1),
        sizes.SCPS_PER_TARGET.id,
        id="a sixth SCP on an OU",
    ),
    pytest.param(
        ou_with_more_scps("governance_ou-infrastructure", 1),
        None,
        id="a sixth SCP on an OU: twin, a fourth",
    ),
    pytest.param(
        ou_with_more_scps("governance_ou-security", 3),
        sizes.SCPS_PER_TARGET.id,
        id="the landing zone's Security OU counts Control Tower's SCP",
    ),
    pytest.param(
        ou_with_more_scps("governance_ou-security", 3, landing_zone_names_it=False),
        None,
        id="the landing zone's Security OU counts Control Tower's SCP: twin, not governed",
    ),
    pytest.param(
        Edit("dev-ml", "aws_iam_role", "inference_enclave-host-role", attach_managed_policies(10)),
        sizes.MANAGED_POLICIES_PER_ROLE.id,
        id="an eleventh managed policy on a role",
    ),
    pytest.param(
        Edit("dev-ml", "aws_iam_role", "inference_enclave-host-role", attach_managed_policies(9)),
        None,
        id="an eleventh managed policy on a role: twin, a tenth",
    ),
]


@pytest.mark.parametrize(("edit", "rule"), CASES)
def test_one_edit_over_a_quota_fails_exactly_its_rule_on_its_resource(
    synthesized: Path, tmp_path: Path, edit: Edit, rule: str | None
) -> None:
    edited, address = edit.apply(synthesized, tmp_path)
    found = sizes.check(edited)
    assert failures(found) == ([(rule, address)] if rule else [])
    if rule:
        failed = next(f for f in found if f.status is Status.FAILED)
        assert "allows" in failed.detail and "[source: " in failed.detail
        if rule == sizes.SCPS_PER_TARGET.id:
            assert "6 SCPs" in failed.detail
            assert "p-FullAWSAccess (AWS, attached by default)" in failed.detail
            assert "Control Tower's guard-rail SCP" in failed.detail


@pytest.mark.parametrize(("over", "fails"), [(True, True), (False, False)])
def test_a_managed_policy_over_6144_fails(
    synthesized: Path, tmp_path: Path, over: bool, fails: bool
) -> None:
    edit = Edit("dev-data", "aws_iam_role", "features_role", add_managed_policy(over=over))
    edited, _ = edit.apply(synthesized, tmp_path)
    expected = [(sizes.MANAGED_POLICY_SIZE.id, "aws_iam_policy.padded")] if fails else []
    assert failures(sizes.check(edited)) == expected


def test_organizations_counts_white_space_and_iam_does_not(
    synthesized: Path, tmp_path: Path
) -> None:
    def indented_scp(block: Block, _: Configuration) -> None:
        at_quota = padded(block["content"], BYTES, 5_120, over=False)
        block["content"] = json.dumps(json.loads(at_quota), indent=2)

    scp = Edit(GOVERNANCE, "aws_organizations_policy", PROTECT, indented_scp)
    edited, address = scp.apply(synthesized, tmp_path / "scp")
    assert failures(sizes.check(edited)) == [(sizes.SCP_SIZE.id, address)]

    role = Edit(
        "eu-research-ml",
        "aws_iam_role",
        "feature-build_execution-role",
        add_role_policy(over=False, indent=8),
    )
    edited, _ = role.apply(synthesized, tmp_path / "role")
    assert failures(sizes.check(edited)) == []
