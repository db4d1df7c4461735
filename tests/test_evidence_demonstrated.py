"""Evidence must not overclaim: a control whose claim is "the ML loop does X" passes only on
evidence that the loop did X (its catalog `demonstrated_by` checks passed); configuration alone
makes it "configured, not demonstrated"."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.catalog import Catalog, CatalogError, Framework, load_catalog
from policies.findings import Finding, Findings, Source, Status
from policies.report import Result, build_evidence, render_html, render_markdown
from policies.runtime.runner import CHECKS

APPROVAL = "FDA-PCCP-human-approval"
ENCRYPTION = "HIPAA-164.312(a)(2)(iv)"
DEMONSTRATING = "RT_PHI_MODEL_APPROVAL_RECORDED"
CATALOG_YAML = f"""
catalog_version: 1
controls:
  - id: "{APPROVAL}"
    framework: FDA-PCCP
    title: Update procedures - human approval before release
    citation: "FDA PCCP guidance (Dec 2024), update procedures"
    responsibility: customer
    static_checks: [CKV_PHI_4]
    runtime_evidence:
      runtime_checks: [{DEMONSTRATING}]
      demonstrated_by: [{DEMONSTRATING}]
  - id: "{ENCRYPTION}"
    framework: HIPAA
    title: Encryption and decryption
    citation: "45 CFR 164.312(a)(2)(iv)"
    responsibility: customer
    static_checks: [CKV_AWS_19]
    runtime_evidence: {{}}
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    path = tmp_path_factory.mktemp("catalog") / "controls.yaml"
    path.write_text(CATALOG_YAML)
    return load_catalog(path)


def finding(check_id: str, status: Status, source: Source = Source.STATIC) -> Finding:
    return Finding(
        check_id=check_id,
        check_name=check_id,
        status=status,
        source=source,
        stack="dev-ml" if source is Source.STATIC else "111111111111/us-east-1",
        resource="aws_sagemaker_model_package_group.registry_group",
    )


def static_pass() -> Findings:
    findings = (finding("CKV_PHI_4", Status.PASSED), finding("CKV_AWS_19", Status.PASSED))
    return Findings(source=Source.STATIC, target="cdktf.out", findings=findings)


def runtime_with(status: Status | None) -> Findings:
    found = () if status is None else (finding(DEMONSTRATING, status, Source.RUNTIME),)
    return Findings(source=Source.RUNTIME, target="111111111111/us-east-1", findings=found)


def result_of(catalog: Catalog, control_id: str, runtime: Findings | None) -> Result:
    evidence = build_evidence(catalog, static=static_pass(), runtime=runtime)
    return next(c for c in evidence.controls if c.id == control_id).result


@pytest.mark.parametrize(
    "runtime",
    [None, runtime_with(None), runtime_with(Status.NOT_DEMONSTRATED)],
    ids=["runtime-not-run", "no-finding", "not-demonstrated"],
)
def test_configuration_alone_is_configured_not_demonstrated(
    catalog: Catalog, runtime: Findings | None
) -> None:
    assert result_of(catalog, APPROVAL, runtime) is Result.NOT_DEMONSTRATED


def test_the_twin_a_passing_demonstration_is_a_pass(catalog: Catalog) -> None:
    assert result_of(catalog, APPROVAL, runtime_with(Status.PASSED)) is Result.PASSED


def test_a_failure_stays_a_failure(catalog: Catalog) -> None:
    assert result_of(catalog, APPROVAL, runtime_with(Status.FAILED)) is Result.FAILED


def test_a_control_that_claims_no_loop_passes_on_its_checks(catalog: Catalog) -> None:
    assert result_of(catalog, ENCRYPTION, None) is Result.PASSED


def test_the_reports_show_it_and_never_as_pass(catalog: Catalog) -> None:
    evidence = build_evidence(catalog, static=static_pass(), runtime=None)
    control = next(c for c in evidence.controls if c.id == APPROVAL)
    assert control.headline == "configured, not demonstrated"
    html = render_html(evidence)
    assert 'class="badge configured-not-demonstrated"' in html
    markdown = render_markdown(evidence)
    assert "**CONFIGURED, NOT DEMONSTRATED**" in markdown


def test_the_catalog_refuses_a_demonstration_that_is_not_a_runtime_check(tmp_path: Path) -> None:
    path = tmp_path / "controls.yaml"
    path.write_text(
        CATALOG_YAML.replace(f"runtime_checks: [{DEMONSTRATING}]", "runtime_checks: []")
    )
    with pytest.raises(CatalogError, match="demonstrated_by names checks"):
        load_catalog(path)


# --- the platform's own catalog ------------------------------------------------------------


MODEL_FRAMEWORKS = (Framework("FDA-PCCP"), Framework("EU-AI-Act"))


def test_every_automated_model_obligation_needs_the_loop_to_pass() -> None:
    """The FDA PCCP and EU AI Act controls are about what the model loop does; none may pass
    on configuration alone, and each demonstrating check exists."""
    catalog = load_catalog()
    known = {check.id for check in CHECKS}
    automated = [
        c
        for framework in MODEL_FRAMEWORKS
        for c in catalog.controls_of(framework)
        if c.static_checks or c.runtime_evidence.runtime_checks
    ]
    assert len(automated) == 8
    for control in automated:
        assert control.runtime_evidence.demonstrated_by, control.id
        assert set(control.runtime_evidence.demonstrated_by) <= known, control.id


def test_with_every_static_check_passing_no_model_control_is_a_pass() -> None:
    catalog = load_catalog()
    static_ids = {check for c in catalog.controls for check in c.static_checks}
    everything_passes = Findings(
        source=Source.STATIC,
        target="cdktf.out",
        findings=tuple(finding(check, Status.PASSED) for check in sorted(static_ids)),
    )
    evidence = build_evidence(catalog, static=everything_passes, runtime=None)
    by_framework = {c.framework: [] for c in evidence.controls}  # type: dict[str, list[Result]]
    for control in evidence.controls:
        by_framework[control.framework].append(control.result)
    for framework in ("FDA-PCCP", "EU-AI-Act"):
        assert Result.PASSED not in by_framework[framework], framework
        assert Result.NOT_DEMONSTRATED in by_framework[framework]
    # The twin: controls whose claims are configuration do pass on it.
    assert Result.PASSED in by_framework["HIPAA"]
