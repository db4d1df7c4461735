"""The conformance family: the organization's real conformance pack fits PutConformancePack's
TemplateBody limit (botocore) and names only AWS-managed rules that exist, with parameters they
declare, offered in its region (moto's managed-rule list); a twin with one fault fails exactly
one rule on the pack, naming what is wrong."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml

from policies.preflight import conformance
from policies.preflight.base import PreflightSourceError, SynthesizedStacks
from tests.preflight.conftest import failed, first, mutant

STACK = "org-audit"
PACK = "aws_config_conformance_pack"
Template = dict[str, Any]


def test_the_real_pack_passes_every_rule(stacks: SynthesizedStacks) -> None:
    findings = conformance.check(stacks)
    assert failed(findings) == []
    assert sorted(f.check_id for f in findings) == sorted(r.id for r in conformance.RULES)
    assert {(f.stack, f.resource.split(".")[0]) for f in findings} == {(STACK, PACK)}
    size = next(f for f in findings if f.check_id == "PF_CONFIG_TEMPLATE_SIZE")
    assert size.detail.endswith("bytes of 51200: ok")


def test_the_size_limit_is_botocores() -> None:
    model = botocore.session.get_session().get_service_model("config")
    shape = model.operation_model("PutConformancePack").input_shape.members["TemplateBody"]
    assert conformance.template_body_limits()[PACK] == (1, shape.metadata["max"]) == (1, 51_200)


def template_edit(change: Callable[[Template], None]) -> Callable[[dict[str, Any]], None]:
    def edit(configuration: dict[str, Any]) -> None:
        block = first(configuration, PACK)
        template = yaml.safe_load(block["template_body"])
        change(template)
        block["template_body"] = yaml.safe_dump(template, sort_keys=False, width=1000)

    return edit


def rule(template: Template, logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return properties


def add_rule(
    identifier: str, parameters: dict[str, str] | None = None
) -> Callable[[Template], None]:
    def change(template: Template) -> None:
        properties: dict[str, Any] = {
            "ConfigRuleName": identifier.lower().replace("_", "-"),
            "Source": {"Owner": "AWS", "SourceIdentifier": identifier},
        }
        if parameters is not None:
            properties["InputParameters"] = parameters
        template["Resources"]["Added"] = {
            "Type": "AWS::Config::ConfigRule",
            "Properties": properties,
        }

    return change


def misspell_identifier(template: Template) -> None:
    rule(template, "AccessKeysRotated")["Source"]["SourceIdentifier"] = "ACCESS_KEY_ROTATED"


def drop_identifier(template: Template) -> None:
    del rule(template, "AccessKeysRotated")["Source"]["SourceIdentifier"]


def unknown_parameter(template: Template) -> None:
    rule(template, "CloudwatchAlarmActionCheck")["InputParameters"]["alarmActionsRequired"] = "true"


def days_as_words(template: Template) -> None:
    rule(template, "AccessKeysRotated")["InputParameters"] = {"maxAccessKeyAge": "ninety"}


MUTANTS = {
    # name: (change, the one rule that fails, what the detail names)
    "unknown-identifier": (
        misspell_identifier,
        "PF_CONFIG_MANAGED_RULE",
        "'ACCESS_KEY_ROTATED' is not an AWS managed rule identifier",
    ),
    "no-source-identifier": (
        drop_identifier,
        "PF_CONFIG_MANAGED_RULE",
        "AccessKeysRotated: Source has no SourceIdentifier",
    ),
    "unknown-parameter": (
        unknown_parameter,
        "PF_CONFIG_RULE_PARAMETERS",
        "has no parameter 'alarmActionsRequired'",
    ),
    "required-parameter-missing": (
        add_rule("ALB_DESYNC_MODE_CHECK"),
        "PF_CONFIG_RULE_PARAMETERS",
        "ALB_DESYNC_MODE_CHECK requires parameter 'desyncMode'",
    ),
    "boolean-parameter": (
        add_rule("COGNITO_USER_POOL_PASSWORD_POLICY_CHECK", {"requireSymbols": "yes"}),
        "PF_CONFIG_RULE_PARAMETERS",
        "'yes' is not boolean",
    ),
    "int-parameter": (days_as_words, "PF_CONFIG_RULE_PARAMETERS", "'ninety' is not int"),
    "rule-not-in-region": (
        add_rule("DEVICEFARM_PROJECT_TAGGED"),
        "PF_CONFIG_RULE_REGION",
        "DEVICEFARM_PROJECT_TAGGED (Only available in US West (Oregon) Region)",
    ),
    "over-the-size-limit": (
        lambda template: template.update(Description="x" * 40_000),
        "PF_CONFIG_TEMPLATE_SIZE",
        "too large (1 to 51200)",
    ),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_a_pack_fault_fails_one_rule_on_the_pack(
    synthesized: Path, tmp_path: Path, name: str
) -> None:
    change, rule_id, named = MUTANTS[name]
    findings = conformance.check(mutant(synthesized, tmp_path, STACK, template_edit(change)))
    (failure,) = failed(findings)
    assert (failure.check_id, failure.stack) == (rule_id, STACK)
    assert failure.resource.startswith(f"{PACK}.audit_conformance-pack")
    assert named in failure.detail
    assert "[source: " in failure.detail


def test_a_required_parameter_with_a_default_may_be_left_out(stacks: SynthesizedStacks) -> None:
    """The real pack's AccessKeysRotated gives no maxAccessKeyAge: required, but AWS documents
    its default (90), so AWS Config applies it. The failing twin is required-parameter-missing
    (ALB_DESYNC_MODE_CHECK's desyncMode has no default)."""
    parameter = conformance.managed_rules()["ACCESS_KEYS_ROTATED"].parameters["maxAccessKeyAge"]
    assert parameter["Optional"] is False and parameter["Default"] == "90"
    body = next(stacks.resources(PACK)).block["template_body"]
    assert (
        "InputParameters"
        not in yaml.safe_load(body)["Resources"]["AccessKeysRotated"]["Properties"]
    )
    assert failed(conformance.check(stacks)) == []


@pytest.mark.parametrize("value", ["true", "True", "FALSE"])
def test_booleans_are_read_as_aws_writes_them(
    synthesized: Path, tmp_path: Path, value: str
) -> None:
    """The failing twin is boolean-parameter ("yes")."""
    change = add_rule("COGNITO_USER_POOL_PASSWORD_POLICY_CHECK", {"requireSymbols": value})
    assert (
        failed(conformance.check(mutant(synthesized, tmp_path, STACK, template_edit(change)))) == []
    )


def test_a_pack_in_another_region_is_judged_there(synthesized: Path, tmp_path: Path) -> None:
    def to_oregon(configuration: dict[str, Any]) -> None:
        configuration["provider"]["aws"][0]["region"] = "us-west-2"
        template_edit(add_rule("DEVICEFARM_PROJECT_TAGGED"))(configuration)

    assert failed(conformance.check(mutant(synthesized, tmp_path, STACK, to_oregon))) == []


def write_rules(path: Path, document: Any) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        json.dump(document, stream)
    return path


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (None, "No such file"),
        ({"Rules": {}}, "KeyError"),
        ({"ManagedRules": {"X": {"Parameters": []}}}, "AWS Region"),
        ({"ManagedRules": {}}, "lists no managed rules"),
    ],
    ids=["absent", "renamed-top-level", "entry-changed", "empty"],
)
def test_an_unreadable_managed_rule_list_is_a_source_error(
    stacks: SynthesizedStacks,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    document: Any,
    message: str,
) -> None:
    path = tmp_path / "aws_managed_rules.json.gz"
    if document is not None:
        write_rules(path, document)
    monkeypatch.setattr(conformance, "managed_rules_path", lambda: path)
    with pytest.raises(PreflightSourceError, match=message):
        conformance.check(stacks)


def test_region_text_of_a_new_shape_is_a_source_error(
    stacks: SynthesizedStacks, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rules = {"ManagedRules": {"ACCESS_KEYS_ROTATED": {"Parameters": [], "AWS Region": "Global"}}}
    path = write_rules(tmp_path / "aws_managed_rules.json.gz", rules)
    monkeypatch.setattr(conformance, "managed_rules_path", lambda: path)
    with pytest.raises(PreflightSourceError, match="region text changed shape"):
        conformance.check(stacks)


def test_a_botocore_model_without_the_limit_is_a_source_error(
    stacks: SynthesizedStacks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(conformance.PACK_OPERATIONS, PACK, "PutConformancePackage")
    with pytest.raises(PreflightSourceError, match="TemplateBody length limits"):
        conformance.check(stacks)


def test_the_rules_cite_moto_and_botocore_versions() -> None:
    import importlib.metadata  # noqa: PLC0415

    moto = importlib.metadata.version("moto")
    assert f"moto {moto} config/resources/aws_managed_rules.json.gz" in (
        conformance.MANAGED_RULE.source
    )
    assert conformance.SIZE.source.startswith(f"botocore {botocore.__version__} config model")
