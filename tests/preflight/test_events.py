"""The events family: every real EventBridge pattern targets a source and detail-type AWS
documents a sample event for, matches on fields that event has, with values those fields can
take; a twin of one stack with one pattern fault fails exactly one rule on exactly that rule
resource. Plus the matcher's operators, pass and fail, and the sample files as a source."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from policies.preflight import events
from policies.preflight.base import PreflightSourceError, SynthesizedStacks
from tests.preflight.conftest import failed, first, mutant

RULE = "aws_cloudwatch_event_rule"
Pattern = dict[str, Any]


def test_every_real_pattern_passes_all_three_rules(stacks: SynthesizedStacks) -> None:
    findings = events.check(stacks)
    assert failed(findings) == []
    rules_with_patterns = {
        (r.stack, r.address) for r in stacks.resources(RULE) if "event_pattern" in r.block
    }
    assert len(rules_with_patterns) == 24
    for rule in events.RULES:
        judged = {(f.stack, f.resource) for f in findings if f.check_id == rule.id}
        assert judged == rules_with_patterns, rule.id


def test_each_real_pattern_is_judged_by_the_event_it_targets(stacks: SynthesizedStacks) -> None:
    targets = {
        f.resource.split(".")[1].rsplit("_", 1)[0]: f.detail.removesuffix(": ok")
        for f in events.check(stacks)
        if f.check_id == "PF_EVENTS_SAMPLE"
    }
    assert targets == {
        "detection_guardduty-findings": "aws.guardduty/GuardDuty Finding",
        "detection_security-hub-findings": "aws.securityhub/Security Hub Findings - Imported",
        "monitoring_failed-runs": "aws.sagemaker/SageMaker Processing Job State Change",
        "monitoring_violations": "aws.sagemaker/SageMaker Processing Job State Change",
        "pipelines_trigger-rule": (
            "aws.sagemaker/SageMaker Model Building Pipeline Execution Status Change"
        ),
        "registry_approval-rule": "aws.sagemaker/SageMaker Model Package State Change",
    }


def pattern_edit(
    prefix: str, change: Callable[[Pattern], None]
) -> Callable[[dict[str, Any]], None]:
    def edit(configuration: dict[str, Any]) -> None:
        block = first(configuration, RULE, prefix)
        pattern = json.loads(block["event_pattern"])
        change(pattern)
        block["event_pattern"] = json.dumps(pattern)

    return edit


def setter(*path: str, value: Any) -> Callable[[Pattern], None]:
    def change(pattern: Pattern) -> None:
        node = pattern
        for name in path[:-1]:
            node = node[name]
        node[path[-1]] = value

    return change


def rename(*path: str, to: str) -> Callable[[Pattern], None]:
    def change(pattern: Pattern) -> None:
        node = pattern
        for name in path[:-1]:
            node = node[name]
        node[to] = node.pop(path[-1])

    return change


def other_source(pattern: Pattern) -> None:
    pattern.clear()
    pattern.update(
        {
            "source": ["aws.ec2"],
            "detail-type": ["EC2 Instance State-change Notification"],
            "detail": {"state": ["stopped"]},
        }
    )


MUTANTS = {
    # name: (stack, rule prefix, change, the one rule that fails, what the detail names)
    "detail-type-typo": (
        "dev-ml",
        "registry_approval-rule",
        setter("detail-type", value=["SageMaker Model Package Status Change"]),
        "PF_EVENTS_SAMPLE",
        "aws.sagemaker/SageMaker Model Package Status Change",
    ),
    "source-typo": (
        "dev-security",
        "detection_guardduty",
        setter("source", value=["aws.guarduty"]),
        "PF_EVENTS_SAMPLE",
        "no documented sample event for aws.guarduty/GuardDuty Finding",
    ),
    "undocumented-source": (
        "prod-security",
        "detection_security-hub",
        other_source,
        "PF_EVENTS_SAMPLE",
        "aws.ec2/EC2 Instance State-change Notification",
    ),
    "approval-status-approve": (
        "dev-ml",
        "registry_approval-rule",
        setter("detail", "ModelApprovalStatus", value=["Approve", "Rejected"]),
        "PF_EVENTS_VALUES",
        '"Approve" is none of its values',
    ),
    "field-not-in-event": (
        "staging-ml",
        "monitoring_violations",
        rename("detail", "MonitoringScheduleArn", to="MonitoringScheduleName"),
        "PF_EVENTS_FIELDS",
        "detail.MonitoringScheduleName is not a field",
    ),
    "severity-as-text": (
        "dev-security",
        "detection_guardduty",
        setter("detail", "severity", value=["7"]),
        "PF_EVENTS_FIELDS",
        "detail.severity is number",
    ),
    "processing-status-typo": (
        "dev-ml",
        "monitoring_failed-runs",
        setter("detail", "ProcessingJobStatus", value=["Failed", "Stoped"]),
        "PF_EVENTS_VALUES",
        '"Stoped" is none of its values',
    ),
    "pipeline-status-upper-case": (
        "eu-research-ml",
        "pipelines_trigger-rule",
        setter("detail", "currentPipelineExecutionStatus", value=["SUCCEEDED"]),
        "PF_EVENTS_VALUES",
        '"SUCCEEDED" is none of its values',
    ),
    "security-hub-label": (
        "dev-security",
        "detection_security-hub",
        setter("detail", "findings", "Severity", "Label", value=["CRITICAL", "SEVERE"]),
        "PF_EVENTS_VALUES",
        '"SEVERE" is none of its values',
    ),
    "empty-numeric-range": (
        "dev-security",
        "detection_guardduty",
        setter("detail", "severity", value=[{"numeric": [">=", 7, "<", 4]}]),
        "PF_EVENTS_VALUES",
        "matches no value",
    ),
    "unknown-operator": (
        "dev-ml",
        "monitoring_violations",
        setter("detail", "ExitMessage", value=[{"regex": "^CompletedWithViolations"}]),
        "PF_EVENTS_FIELDS",
        "not an operator the preflight knows",
    ),
    "leaf-not-an-array": (
        "dev-ml",
        "registry_approval-rule",
        setter("detail", "ModelPackageGroupName", value="readmission-risk"),
        "PF_EVENTS_FIELDS",
        "must be an object or a non-empty array",
    ),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_a_pattern_fault_fails_one_rule_on_that_resource(
    synthesized: Path, tmp_path: Path, name: str
) -> None:
    stack, prefix, change, rule_id, named = MUTANTS[name]
    findings = events.check(mutant(synthesized, tmp_path, stack, pattern_edit(prefix, change)))
    (failure,) = failed(findings)
    assert (failure.check_id, failure.stack) == (rule_id, stack)
    assert failure.resource.startswith(f"{RULE}.{prefix}")
    assert named in failure.detail
    assert "sample_events" in failure.detail  # the source is named


def test_a_pattern_that_cannot_be_parsed_fails(synthesized: Path, tmp_path: Path) -> None:
    def truncate(configuration: dict[str, Any]) -> None:
        block = first(configuration, RULE, "registry_approval-rule")
        block["event_pattern"] = block["event_pattern"][:-1]

    (failure,) = failed(events.check(mutant(synthesized, tmp_path, "dev-ml", truncate)))
    assert failure.check_id == "PF_EVENTS_SAMPLE" and "not JSON" in failure.detail


# --- the matcher ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "matching", "not_matching"),
    [
        ("Approved", "Approved", "Rejected"),
        (7, 7.0, "7"),
        (True, True, 1),
        ({"prefix": "Completed"}, "CompletedWithViolations", "Failed"),
        ({"suffix": ".parquet"}, "a/b.parquet", "a/b.csv"),
        ({"equals-ignore-case": "high"}, "HIGH", "LOW"),
        ({"wildcard": "raw/*/x.json"}, "raw/2024/x.json", "curated/2024/x.json"),
        ({"anything-but": "GuardDuty"}, "Inspector", "GuardDuty"),
        ({"anything-but": {"prefix": "Guard"}}, "Inspector", "GuardDuty"),
        ({"numeric": [">=", 7, "<", 9]}, 8.5, 9),
        ({"exists": True}, "anything", None),
        ({"cidr": "10.0.0.0/16"}, "10.0.3.4", "10.1.0.1"),
    ],
)
def test_option_matches_as_eventbridge_does(option: Any, matching: Any, not_matching: Any) -> None:
    assert events.option_matches(option, matching)
    if option == {"exists": True}:
        assert not events.option_matches({"exists": False}, matching)
    else:
        assert not events.option_matches(option, not_matching)


def test_fields_are_found_through_arrays_and_api_shapes() -> None:
    samples = events.load_samples()
    hub = samples[("aws.securityhub", "Security Hub Findings - Imported")]
    label = hub.domain(("detail", "findings", "Severity", "Label"))
    assert label is not None and label.values is not None and "CRITICAL" in label.values
    assert hub.domain(("detail", "findings", "Severity", "Colour")) is None
    processing = samples[("aws.sagemaker", "SageMaker Processing Job State Change")]
    # In the example (open, an array crossed) and only in the API shape (beyond the example).
    subnets = processing.domain(("detail", "NetworkConfig", "VpcConfig", "Subnets"))
    assert subnets == events.Domain(frozenset({"string"}), None)
    schedule = processing.domain(("detail", "MonitoringScheduleArn"))
    assert schedule == events.Domain(frozenset({"string"}), None)
    s3 = samples[("aws.s3", "Object Created")]
    reason = s3.domain(("detail", "reason"))
    assert reason is not None and reason.values == (
        "PutObject",
        "POST Object",
        "CopyObject",
        "CompleteMultipartUpload",
    )


# --- the sample events as a source ----------------------------------------------------------


def test_every_sample_event_cites_aws_documentation() -> None:
    files = sorted(events.SAMPLE_EVENTS.glob("*.json"))
    samples = events.load_samples()
    assert len(samples) == len(files) >= 6
    for sample in samples.values():
        assert sample.url.startswith("https://docs.aws.amazon.com/"), sample.file
        assert set(sample.event) >= {"version", "id", "source", "detail-type", "detail"}


def copy_samples(tmp_path: Path) -> Path:
    folder = tmp_path / "sample_events"
    shutil.copytree(events.SAMPLE_EVENTS, folder)
    return folder


def rewrite(file: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads(file.read_text(encoding="utf-8"))
    change(document)
    file.write_text(json.dumps(document), encoding="utf-8")


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("empty-folder", "no sample events"),
        ("not-json", "not a sample event"),
        ("no-source-url", "_source"),
        ("unknown-shape", "botocore has no shape"),
        ("no-detail", "object detail"),
        ("duplicate", "already in"),
    ],
)
def test_unreadable_sample_events_are_a_source_error(
    stacks: SynthesizedStacks,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    breakage: str,
    message: str,
) -> None:
    folder = copy_samples(tmp_path)
    model_package = folder / "sagemaker-model-package-state-change.json"
    if breakage == "empty-folder":
        for file in folder.glob("*.json"):
            file.unlink()
    elif breakage == "not-json":
        model_package.write_text("{", encoding="utf-8")
    elif breakage == "no-source-url":
        rewrite(model_package, lambda d: d.pop("_source"))
    elif breakage == "unknown-shape":
        rewrite(model_package, lambda d: d.update(_shapes={"detail": "sagemaker.NoSuchShape"}))
    elif breakage == "no-detail":
        rewrite(model_package, lambda d: d.pop("detail"))
    else:
        shutil.copy(model_package, folder / "copy-of-model-package.json")
    monkeypatch.setattr(events, "SAMPLE_EVENTS", folder)
    with pytest.raises(PreflightSourceError, match=message):
        events.check(stacks)


def test_a_deleted_sample_fails_the_patterns_that_need_it(
    stacks: SynthesizedStacks, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = copy_samples(tmp_path)
    (folder / "guardduty-finding.json").unlink()
    monkeypatch.setattr(events, "SAMPLE_EVENTS", folder)
    failures = failed(events.check(stacks))
    assert {(f.check_id, f.resource.split(".")[1].rsplit("_", 1)[0]) for f in failures} == {
        ("PF_EVENTS_SAMPLE", "detection_guardduty-findings")
    }
    assert len(failures) == 4  # one per security stack: never a silent pass


def test_exists_is_judged_by_the_field_not_its_values() -> None:
    samples = events.load_samples()
    processing = samples[("aws.sagemaker", "SageMaker Processing Job State Change")]
    absent = {"detail": {"ProcessingJobStatus": [{"exists": False}]}}
    assert list(events.value_problems(absent, processing)) == []
    assert list(events.field_problems(absent, processing)) == []
    # The failing twin: a field the event has not.
    nowhere = {"detail": {"ProcessingJobState": [{"exists": True}]}}
    assert list(events.field_problems(nowhere, processing)) != []


def test_a_malformed_numeric_operand_matches_nothing() -> None:
    guardduty = events.load_samples()[("aws.guardduty", "GuardDuty Finding")]
    malformed = {"detail": {"severity": [{"numeric": ["=>", 7]}]}}
    (problem,) = events.value_problems(malformed, guardduty)
    assert "matches no value" in problem
    assert (
        list(events.value_problems({"detail": {"severity": [{"numeric": [">=", 7]}]}}, guardduty))
        == []
    )
