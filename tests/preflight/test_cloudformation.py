"""The cloudformation family: every embedded CloudFormation template of the real synthesized
stacks passes cfn-lint's error rules for its stack's region, and a twin of one stack with one
fault in one template fails PF_CFN_LINT on exactly that resource, naming cfn-lint's rule."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.findings import Status
from policies.preflight import cloudformation
from policies.preflight.base import PreflightSourceError, SynthesizedStacks
from tests.preflight.conftest import failed, first, mutant

HEALTHLAKE_STACK = "dev-fhir"
HEALTHLAKE = "aws_cloudformation_stack"
DATASTORE = "FHIRDatastore"
PACK_STACK = "org-audit"
PACK = "aws_config_conformance_pack"

Template = dict[str, Any]


def test_every_real_template_passes_and_each_is_judged(stacks: SynthesizedStacks) -> None:
    findings = cloudformation.check(stacks)
    assert failed(findings) == []
    judged = {(f.stack, f.resource.split(".")[0]) for f in findings}
    # The HealthLake datastore of every environment, and the organization's conformance pack.
    assert {s for s, t in judged if t == HEALTHLAKE} == {
        "dev-fhir",
        "staging-fhir",
        "prod-fhir",
        "eu-research-fhir",
    }
    assert (PACK_STACK, PACK) in judged
    assert {f.check_id for f in findings} == {rule.id for rule in cloudformation.RULES}
    assert all(f.status is Status.PASSED for f in findings) and len(findings) == 5


def test_templates_are_linted_for_their_stacks_region(stacks: SynthesizedStacks) -> None:
    details = {f.stack: f.detail for f in cloudformation.check(stacks)}
    assert "for us-east-1" in details["dev-fhir"]
    assert "for eu-west-1" in details["eu-research-fhir"]


def datastore_edit(change: Callable[[Template], None]) -> Callable[[dict[str, Any]], None]:
    def edit(configuration: dict[str, Any]) -> None:
        block = first(configuration, HEALTHLAKE)
        template = json.loads(block["template_body"])
        change(template)
        block["template_body"] = json.dumps(template)

    return edit


def properties(template: Template) -> dict[str, Any]:
    properties_: dict[str, Any] = template["Resources"][DATASTORE]["Properties"]
    return properties_


def add_unknown_property(template: Template) -> None:
    properties(template)["DatastoreEncryption"] = "KMS"


def r5(template: Template) -> None:
    properties(template)["DatastoreTypeVersion"] = "R5"


def misspell_type(template: Template) -> None:
    template["Resources"][DATASTORE]["Type"] = "AWS::HealthLake::FHIRDataStore"


def drop_required_property(template: Template) -> None:
    del properties(template)["DatastoreTypeVersion"]


def bad_intrinsic(template: Template) -> None:
    template["Outputs"]["DatastoreArn"]["Value"] = {"Fn::GetAtt": [DATASTORE, "DatastoreUrl"]}


# Mutants of the real datastore template, each with the cfn-lint rule that must refuse it.
MUTANTS = {
    "unknown-property": (add_unknown_property, "E3002"),
    "enum-r5": (r5, "E3030"),
    "unknown-type": (misspell_type, "E3006"),
    "missing-required": (drop_required_property, "E3003"),
    "bad-getatt": (bad_intrinsic, "E6101"),
}


@pytest.mark.parametrize(("change", "cfn_lint_rule"), MUTANTS.values(), ids=MUTANTS.keys())
def test_a_faulty_healthlake_template_fails_on_that_resource(
    synthesized: Path,
    tmp_path: Path,
    change: Callable[[Template], None],
    cfn_lint_rule: str,
) -> None:
    findings = cloudformation.check(
        mutant(synthesized, tmp_path, HEALTHLAKE_STACK, datastore_edit(change))
    )
    (failure,) = failed(findings)
    assert (failure.check_id, failure.stack) == ("PF_CFN_LINT", HEALTHLAKE_STACK)
    assert failure.resource.startswith(f"{HEALTHLAKE}.fhir_datastore-stack")
    assert cfn_lint_rule in failure.detail
    assert "cfn-lint" in failure.detail  # the source is named


def test_a_warning_alone_is_not_a_finding(synthesized: Path, tmp_path: Path) -> None:
    """An unused parameter is cfn-lint's W2001: CloudFormation accepts it."""

    def unused_parameter(template: Template) -> None:
        template["Parameters"] = {"Unused": {"Type": "String", "Default": "x"}}

    stacks = mutant(synthesized, tmp_path, HEALTHLAKE_STACK, datastore_edit(unused_parameter))
    api = cloudformation._cfn_lint_api()
    body = first_block(stacks, HEALTHLAKE_STACK, HEALTHLAKE)["template_body"]
    template = cloudformation.literal_template(json.loads(body))
    matched = api.lint(json.dumps(template), config=api.ManualArgs(regions=["us-east-1"]))
    assert "W2001" in {m.rule.id for m in matched}  # cfn-lint does warn
    assert failed(cloudformation.check(stacks)) == []


def first_block(stacks: SynthesizedStacks, stack: str, resource_type: str) -> dict[str, Any]:
    return next(r.block for r in stacks.resources(resource_type) if r.stack == stack)


def test_a_region_without_healthlake_fails(synthesized: Path, tmp_path: Path) -> None:
    def move_to_spain(configuration: dict[str, Any]) -> None:
        configuration["provider"]["aws"][0]["region"] = "eu-south-2"

    (failure,) = failed(
        cloudformation.check(mutant(synthesized, tmp_path, HEALTHLAKE_STACK, move_to_spain))
    )
    assert failure.stack == HEALTHLAKE_STACK
    assert "E3006" in failure.detail and "eu-south-2" in failure.detail


def test_the_conformance_pack_template_is_linted_as_cloudformation(
    synthesized: Path, tmp_path: Path
) -> None:
    def long_description(configuration: dict[str, Any]) -> None:
        block = first(configuration, PACK)
        template = yaml.safe_load(block["template_body"])
        rule = next(iter(template["Resources"].values()))
        rule["Properties"]["Description"] = "x" * 300  # AWS::Config::ConfigRule allows 256
        block["template_body"] = yaml.safe_dump(template)

    (failure,) = failed(
        cloudformation.check(mutant(synthesized, tmp_path, PACK_STACK, long_description))
    )
    assert failure.resource.startswith(f"{PACK}.") and "E3033" in failure.detail


def test_a_body_that_is_not_a_template_fails(synthesized: Path, tmp_path: Path) -> None:
    def truncate(configuration: dict[str, Any]) -> None:
        block = first(configuration, HEALTHLAKE)
        block["template_body"] = block["template_body"][:40]

    (failure,) = failed(
        cloudformation.check(mutant(synthesized, tmp_path, HEALTHLAKE_STACK, truncate))
    )
    assert failure.stack == HEALTHLAKE_STACK and "E0000" in failure.detail


def test_terraform_references_become_template_parameters() -> None:
    template = {
        "Resources": {
            "R": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "whole": "${aws_kms_key.k.arn}",
                    "embedded": "arn:aws:s3:::${var.bucket}/x",
                    "escaped": "$${AWS::Region}",
                    "mixed": "${var.bucket}-$${AWS::Region}",
                    "sub": {"Fn::Sub": "${aws_kms_key.k.arn}/$${AWS::AccountId}"},
                },
            }
        }
    }
    literal = cloudformation.literal_template(template)
    props = literal["Resources"]["R"]["Properties"]
    assert props["whole"] == {"Ref": "TerraformReference0"}
    assert props["embedded"] == {"Fn::Sub": "arn:aws:s3:::${TerraformReference1}/x"}
    assert props["escaped"] == "${AWS::Region}"  # what Terraform renders
    # Wrapped in Fn::Sub, the literal must stay literal.
    assert props["mixed"] == {"Fn::Sub": "${TerraformReference1}-${!AWS::Region}"}
    assert props["sub"] == {"Fn::Sub": "${TerraformReference0}/${AWS::AccountId}"}
    assert set(literal["Parameters"]) == {"TerraformReference0", "TerraformReference1"}
    assert all(p["Type"] == "String" for p in literal["Parameters"].values())


def test_without_the_parameters_the_real_template_would_fail(stacks: SynthesizedStacks) -> None:
    """The HealthLake key ARN is a cross-stack reference: linted as text it breaks the KMS
    key pattern, so the substitution is what keeps the real template judged fairly."""
    api = cloudformation._cfn_lint_api()
    body = first_block(stacks, HEALTHLAKE_STACK, HEALTHLAKE)["template_body"]
    raw = api.lint(body, config=api.ManualArgs(regions=["us-east-1"]))
    assert any(m.rule.id.startswith("E") for m in raw)
    assert cloudformation.lint_template(api, body, "us-east-1")[0] is None


def test_cfn_lint_missing_is_a_source_error(
    stacks: SynthesizedStacks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cfnlint.api", None)  # the import now raises ImportError
    with pytest.raises(PreflightSourceError, match="cfn-lint cannot be imported"):
        cloudformation.check(stacks)


def test_the_rule_names_cfn_lint_and_its_version() -> None:
    import cfnlint.version  # type: ignore[import-untyped]  # noqa: PLC0415

    assert cloudformation.LINT.source == (
        f"cfn-lint {cfnlint.version.__version__} (its bundled CloudFormation resource schemas)"
    )
