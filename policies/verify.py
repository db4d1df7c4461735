"""`python -m policies.verify ENV`: the runtime evidence checks against a real AWS account.

Read-only (every call is a Describe/Get/List/Head/Lookup; policies/runtime/guard.py refuses
anything else), with the usual credentials chain: --profile, AWS_PROFILE, the AWS_* variables,
SSO. Prints a table and writes <results>/findings.json (policies.findings format).

Two checks read data as well as configuration, because only the records show it
(policies/runtime/features.py): the feature groups' offline records and the FHIR export's
Consents (s3:GetObject, with kms:Decrypt on the PHI and feature-store keys) and the online
records of opted-out patients (sagemaker:GetRecord). A caller with configuration-only access
(e.g. SecurityAudit) gets an error from them, never a pass; their findings carry counts only.

Exit codes: 0 every check passed; 1 a check failed or could not run (e.g. access denied);
2 the checks could not start: no or expired credentials, credentials of another account than
the environment's, a bad environment file or argument.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import boto3
from botocore.exceptions import ProfileNotFound

from environments.loader import ENVIRONMENTS_DIR, EnvironmentFileError
from policies.catalog import CatalogError
from policies.findings import Finding, Findings, Status, summarize, write_findings
from policies.runtime import RuntimeChecksError, run_runtime_checks

DEFAULT_RESULTS = Path("reports") / "verify"
FINDINGS_FILE = "findings.json"
USAGE_ERROR = 2
CHECKS_FAILED = 1


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m policies.verify",
        description="Run the read-only runtime evidence checks against an environment's AWS "
        "account and write the findings.",
    )
    parser.add_argument("environment", help="environment name (environments/<name>/)")
    parser.add_argument("--profile", help="AWS profile (default: the usual credentials chain)")
    parser.add_argument(
        "--region", help="region to check (default: the environment's; must be allowed)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        help=f"directory for {FINDINGS_FILE} (default: {DEFAULT_RESULTS}/<environment>)",
    )
    parser.add_argument(
        "--environments-dir",
        type=Path,
        default=ENVIRONMENTS_DIR,
        help="folder of environment files (default: environments/)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    arguments = parse_arguments(argv)
    try:
        session = boto3.Session(profile_name=arguments.profile)
        findings = run_runtime_checks(
            arguments.environment,
            session,
            environments_dir=arguments.environments_dir,
            region=arguments.region,
        )
    except ProfileNotFound as problem:
        return _refuse(f"{problem} (see `aws configure list-profiles`)")
    except (RuntimeChecksError, EnvironmentFileError, CatalogError) as problem:
        return _refuse(str(problem))
    results = arguments.results or DEFAULT_RESULTS / arguments.environment
    path = results / FINDINGS_FILE
    write_findings(path, findings)
    print(render_table(findings), file=out)
    print(_summary_line(findings, path), file=out)
    return CHECKS_FAILED if findings.failed() else 0


def _refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return USAGE_ERROR


STATUS_ORDER = {
    Status.FAILED: 0,
    Status.ERROR: 1,
    Status.NOT_EMULATED: 2,
    Status.NOT_DEMONSTRATED: 3,
    Status.EXEMPT: 4,
    Status.PASSED: 5,
}


def render_table(findings: Findings) -> str:
    """One row per finding (problems first): status, controls, check, resource; the detail of
    every finding that did not pass on the line below it."""
    rows = sorted(
        findings.findings,
        key=lambda f: (STATUS_ORDER[f.status], f.check_id, f.resource),
    )
    header = ("STATUS", "CONTROL", "CHECK", "RESOURCE")
    cells = [header, *(_cells(finding) for finding in rows)]
    widths = [max(len(row[column]) for row in cells) for column in range(3)]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join([*(row[c].ljust(widths[c]) for c in range(3)), row[3]]).rstrip())
        finding = rows[index - 1] if index else None
        if finding is not None and finding.status is not Status.PASSED:
            lines.append(f"    {finding.detail}")
    return "\n".join(lines)


def _cells(finding: Finding) -> tuple[str, str, str, str]:
    controls = finding.controls[0] if finding.controls else "-"
    if len(finding.controls) > 1:
        controls += f" +{len(finding.controls) - 1}"
    return (finding.status.value.upper(), controls, finding.check_id, finding.resource)


def _summary_line(findings: Findings, path: Path) -> str:
    counts = summarize(findings.findings)
    shown = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    return f"{findings.target}: {shown or 'no findings'}; findings written to {path}"


if __name__ == "__main__":
    sys.exit(main())
