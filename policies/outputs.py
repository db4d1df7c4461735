"""The gate's machine-readable results: SARIF 2.1.0 for GitHub code scanning and JUnit XML for CI
test reports, both written from the same findings as findings.json.

SARIF lists one rule per check that ran (its help names the controls it evidences) and one result
per failed or exempt check x resource; an exempt one carries an accepted external suppression
whose justification is the exemption's reason, owner and expiry, so code scanning shows it as
dismissed with that text. Passes are not results: code scanning shows alerts, not evidence.

JUnit has one testsuite per stack and one testcase per check x resource: a failure element for an
unexempted failure, skipped for an exempt one (with the reason), nothing for a pass.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from policies.findings import Finding, Findings, Status

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
TOOL_NAME = "phi-policy-gate"
TOOL_INFORMATION = "https://www.checkov.io/"
# GitHub ignores tags past the twentieth; two are ours, the rest control ids.
_MAX_CONTROL_TAGS = 18
# partialFingerprints key: the same check on the same resource is the same alert, whatever line
# it moved to in a new synthesis.
FINGERPRINT_KEY = "checkAndResource/v1"
SCAN_ROOT_BASE = "SCANROOT"
SOURCE_ROOT_BASE = "%SRCROOT%"


def _reported(findings: Findings) -> list[Finding]:
    return [
        f for f in findings.findings if f.status in {Status.FAILED, Status.ERROR, Status.EXEMPT}
    ]


def _rule(
    check_id: str, check_name: str, controls: Sequence[str], titles: Mapping[str, str]
) -> dict[str, Any]:
    evidence = [
        f"{control} ({titles[control]})" if control in titles else control for control in controls
    ]
    if evidence:
        text = f"{check_name}. Evidence for: {'; '.join(evidence)}."
        markdown = (
            f"**{check_name}**\n\nEvidence for these controls of policies/controls.yaml:\n\n"
            + "\n".join(
                f"- `{control}`" + (f" {titles[control]}" if control in titles else "")
                for control in controls
            )
        )
    else:
        text = f"{check_name}. Not mapped to a control of policies/controls.yaml."
        markdown = f"**{check_name}**\n\nNot mapped to a control of policies/controls.yaml."
    markdown += (
        "\n\nFix the construct that builds the resource, or record a justified exemption in "
        "policies/exemptions.yaml (reason, owner, expiry)."
    )
    return {
        "id": check_id,
        "name": check_id,
        "shortDescription": {"text": check_name},
        "fullDescription": {"text": text},
        "help": {"text": text, "markdown": markdown},
        "defaultConfiguration": {"level": "error"},
        "properties": {
            "tags": ["security", "compliance", *controls[:_MAX_CONTROL_TAGS]],
            "controls": list(controls),
        },
    }


def _artifact_location(finding: Finding, scan_root: Path, repo_root: Path) -> dict[str, str]:
    try:
        relative_root = scan_root.resolve().relative_to(repo_root.resolve())
    except ValueError:
        return {"uri": finding.file, "uriBaseId": SCAN_ROOT_BASE}
    return {"uri": (relative_root / finding.file).as_posix(), "uriBaseId": SOURCE_ROOT_BASE}


def _fingerprint(finding: Finding) -> str:
    identity = f"{finding.check_id}|{finding.stack}|{finding.resource}"
    return hashlib.sha256(identity.encode()).hexdigest()


def _result(finding: Finding, rule_index: int, scan_root: Path, repo_root: Path) -> dict[str, Any]:
    where = f"{finding.resource} in stack {finding.stack}"
    if finding.construct_path:
        where += f" (construct {finding.construct_path})"
    controls = ", ".join(finding.controls) or "no catalog control"
    message = f"{finding.check_name}: fails on {where}. Controls: {controls}."
    if finding.detail:
        message += f" {finding.detail}."
    result: dict[str, Any] = {
        "ruleId": finding.check_id,
        "ruleIndex": rule_index,
        "level": "error",
        "kind": "fail",
        "message": {"text": message},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": _artifact_location(finding, scan_root, repo_root),
                    "region": {"startLine": max(finding.line, 1)},
                },
                "logicalLocations": [
                    {
                        "name": finding.resource,
                        "fullyQualifiedName": f"{finding.stack}/{finding.resource}",
                        "kind": "resource",
                    }
                ],
            }
        ],
        "partialFingerprints": {FINGERPRINT_KEY: _fingerprint(finding)},
        "properties": {
            "stack": finding.stack,
            "constructPath": finding.construct_path,
            "controls": list(finding.controls),
        },
    }
    if finding.status is Status.EXEMPT and finding.exemption is not None:
        exemption = finding.exemption
        result["suppressions"] = [
            {
                "kind": "external",
                "status": "accepted",
                "justification": (
                    f"{exemption.reason} (owner {exemption.owner}, expires {exemption.expires}; "
                    "policies/exemptions.yaml)"
                ),
            }
        ]
    return result


def sarif_log(
    findings: Findings,
    *,
    scan_root: Path,
    repo_root: Path,
    control_titles: Mapping[str, str],
    tool_version: str,
) -> dict[str, Any]:
    """A SARIF 2.1.0 log: rules for every check that ran, results for failures and exemptions.
    Paths are relative to the repository root when the scanned directory lies inside it
    (%SRCROOT%, as code scanning expects), otherwise to the scanned directory (SCANROOT)."""
    names: dict[str, tuple[str, tuple[str, ...]]] = {}
    for finding in findings.findings:
        names.setdefault(finding.check_id, (finding.check_name, finding.controls))
    rule_ids = sorted(names)
    index = {rule_id: position for position, rule_id in enumerate(rule_ids)}
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": TOOL_NAME,
                "fullName": "PHI ML Platform policy gate (checkov with policies/exemptions.yaml)",
                "version": tool_version or "unknown",
                "informationUri": TOOL_INFORMATION,
                "rules": [
                    _rule(rule_id, names[rule_id][0], names[rule_id][1], control_titles)
                    for rule_id in rule_ids
                ],
            }
        },
        "results": [
            _result(finding, index[finding.check_id], scan_root, repo_root)
            for finding in _reported(findings)
        ],
        "columnKind": "unicodeCodePoints",
    }
    if any(
        result["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"]
        == SCAN_ROOT_BASE
        for result in run["results"]
    ):
        run["originalUriBaseIds"] = {SCAN_ROOT_BASE: {"uri": scan_root.resolve().as_uri() + "/"}}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def write_sarif(
    path: Path,
    findings: Findings,
    *,
    scan_root: Path,
    repo_root: Path,
    control_titles: Mapping[str, str],
    tool_version: str,
) -> None:
    log = sarif_log(
        findings,
        scan_root=scan_root,
        repo_root=repo_root,
        control_titles=control_titles,
        tool_version=tool_version,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")


def junit_tree(findings: Findings, *, stacks: Sequence[str]) -> ET.ElementTree[ET.Element]:
    """<testsuites> with one <testsuite> per stack (every scanned stack, even one without any
    result) and one <testcase> per check x resource."""
    by_stack: dict[str, list[Finding]] = {stack: [] for stack in stacks}
    for finding in findings.findings:
        by_stack.setdefault(finding.stack, []).append(finding)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    root = ET.Element("testsuites", name=TOOL_NAME)
    for stack in sorted(by_stack):
        cases = sorted(by_stack[stack], key=lambda f: (f.check_id, f.resource))
        counts = {
            "tests": len(cases),
            "failures": sum(f.status is Status.FAILED for f in cases),
            "errors": sum(f.status is Status.ERROR for f in cases),
            "skipped": sum(f.status is Status.EXEMPT for f in cases),
        }
        suite = ET.SubElement(
            root, "testsuite", {"name": stack, **{key: str(value) for key, value in counts.items()}}
        )
        for finding in cases:
            _testcase(suite, finding)
        for key, value in counts.items():
            totals[key] += value
    root.attrib.update({key: str(value) for key, value in totals.items()})
    ET.indent(root)
    return ET.ElementTree(root)


def _testcase(suite: ET.Element, finding: Finding) -> None:
    case = ET.SubElement(
        suite, "testcase", classname=finding.stack, name=f"{finding.check_id} {finding.resource}"
    )
    location = f"{finding.file}:{finding.line}"
    context = (
        f"{finding.check_name}\nresource: {finding.resource}\n"
        f"construct path: {finding.construct_path or '-'}\n"
        f"controls: {', '.join(finding.controls) or '(unmapped)'}\nfile: {location}"
    )
    if finding.detail:
        context += f"\n{finding.detail}"
    if finding.status in {Status.FAILED, Status.ERROR}:
        tag = "failure" if finding.status is Status.FAILED else "error"
        element = ET.SubElement(case, tag, message=finding.check_name, type=finding.check_id)
        element.text = context
    elif finding.status is Status.EXEMPT and finding.exemption is not None:
        exemption = finding.exemption
        ET.SubElement(
            case,
            "skipped",
            message=(
                f"exempt until {exemption.expires} (owner {exemption.owner}): {exemption.reason}"
            ),
        )


def write_junit(path: Path, findings: Findings, *, stacks: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_tree(findings, stacks=stacks).write(path, encoding="utf-8", xml_declaration=True)
