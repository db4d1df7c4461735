"""The one record every check produces, static (checkov on the synthesized Terraform) or runtime
(boto3 against a deployed account), so the gate, the evidence report and `make diff` read the
same thing whichever side a result came from.

A findings file is JSON: {"findings_version": 1, "source": "static"|"runtime"|"deployability",
"target": ..., "findings": [Finding, ...], "not_emulated": [...]}; see `write_findings` /
`read_findings`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

FINDINGS_VERSION = 1


class Source(StrEnum):
    STATIC = "static"  # checkov over synthesized Terraform, before deploy
    RUNTIME = "runtime"  # read-only boto3 evidence checks, after deploy
    # make preflight: what real AWS would refuse at apply, judged on the synthesized Terraform
    DEPLOYABILITY = "deployability"


class Status(StrEnum):
    PASSED = "pass"
    FAILED = "fail"
    EXEMPT = "exempt"  # failed, but a current exemption in policies/exemptions.yaml covers it
    NOT_EMULATED = "not emulated"  # planned only: the local emulator cannot create it
    # The check judges what the ML loop leaves behind (a registered version, an approval, a
    # monitoring run) and there is none yet: configured, perhaps, but not shown to work.
    NOT_DEMONSTRATED = "not demonstrated"
    ERROR = "error"  # the check itself could not run (e.g. an API call was refused)


@dataclass(frozen=True)
class Exemption:
    """Why a failed check is accepted, who answers for it, and until when."""

    reason: str
    owner: str
    expires: str  # ISO date


@dataclass(frozen=True)
class Finding:
    check_id: str  # CKV_AWS_19, CKV_PHI_3, RT_PHI_S3_ENCRYPTION ...
    check_name: str
    status: Status
    source: Source
    stack: str  # synthesized stack (static) or account/region (runtime)
    resource: str  # Terraform address `aws_s3_bucket.storage_raw_bucket_1A2B` or an ARN
    construct_path: str = ""  # cdktf construct path, e.g. dev-data/storage/raw/bucket
    controls: tuple[str, ...] = ()  # catalog control ids this check evidences
    detail: str = ""
    file: str = ""  # path of the synthesized file, relative to the scanned directory
    line: int = 0
    exemption: Exemption | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["source"] = self.source.value
        data["controls"] = list(self.controls)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        exemption = data.get("exemption")
        return cls(
            check_id=data["check_id"],
            check_name=data["check_name"],
            status=Status(data["status"]),
            source=Source(data["source"]),
            stack=data["stack"],
            resource=data["resource"],
            construct_path=data.get("construct_path", ""),
            controls=tuple(data.get("controls", ())),
            detail=data.get("detail", ""),
            file=data.get("file", ""),
            line=int(data.get("line", 0)),
            exemption=Exemption(**exemption) if exemption else None,
        )


@dataclass(frozen=True)
class Findings:
    source: Source
    target: str  # what was checked: the synthesized directory, or account/region
    findings: tuple[Finding, ...]
    # Resources planned but never deployed (emulator gaps), each "stack: address (reason)".
    not_emulated: tuple[str, ...] = field(default=())

    def failed(self) -> list[Finding]:
        return [f for f in self.findings if f.status in {Status.FAILED, Status.ERROR}]


def write_findings(path: Path, findings: Findings) -> None:
    document = {
        "findings_version": FINDINGS_VERSION,
        "source": findings.source.value,
        "target": findings.target,
        "findings": [f.to_json() for f in findings.findings],
        "not_emulated": list(findings.not_emulated),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_findings(path: Path) -> Findings:
    document = json.loads(path.read_text(encoding="utf-8"))
    if document.get("findings_version") != FINDINGS_VERSION:
        raise ValueError(f"{path}: findings_version must be {FINDINGS_VERSION}")
    return Findings(
        source=Source(document["source"]),
        target=document["target"],
        findings=tuple(Finding.from_json(item) for item in document["findings"]),
        not_emulated=tuple(document.get("not_emulated", ())),
    )


def by_control(findings: Iterable[Finding]) -> dict[str, list[Finding]]:
    grouped: dict[str, list[Finding]] = {}
    for finding in findings:
        for control in finding.controls:
            grouped.setdefault(control, []).append(finding)
    return grouped


def summarize(findings: Sequence[Finding]) -> dict[str, int]:
    counts = {status.value: 0 for status in Status}
    for finding in findings:
        counts[finding.status.value] += 1
    return counts
