"""The evidence report shows the feature-record checks under the controls they evidence (EHDS-68,
EHDS-71, GDPR-25), from the same runtime findings as every other runtime check: what a pass
showed, in counts, and an account where the flow never ran as a failure, never a pass."""

from __future__ import annotations

import pytest

from policies.catalog import load_catalog
from policies.findings import Findings
from policies.report import Evidence, build_evidence, render_html, render_markdown
from policies.runtime import CHECKS
from tests import test_runtime_features
from tests.test_report import MOMENT, badge_of, control_article, rows_mentioning
from tests.test_runtime_features import BASIS, OPT_OUT, OPTED_OUT, PATIENTS, Account

CATALOG = load_catalog()
# dev's feature groups in moto, as the checks' own tests build them.
account = test_runtime_features.account
NAMES = {check.id: check.name for check in CHECKS}


def report_of(findings: Findings) -> Evidence:
    return build_evidence(
        CATALOG,
        static=None,
        runtime=findings,
        runtime_check_names=NAMES,
        generated_at=MOMENT,
        environments={"US": ("dev", "prod", "staging"), "EU": ("eu-research",)},
    )


def test_the_catalog_maps_the_checks_to_opt_out_permit_and_design() -> None:
    assert CATALOG.control("EHDS-71").runtime_evidence.runtime_checks == (OPT_OUT,)
    assert CATALOG.control("EHDS-68").runtime_evidence.runtime_checks == (BASIS,)
    assert {BASIS, OPT_OUT} <= set(CATALOG.control("GDPR-25").runtime_evidence.runtime_checks)
    for control_id in ("EHDS-68", "EHDS-71"):
        control = CATALOG.control(control_id)
        assert control.citation == f"Regulation (EU) 2025/327, Article {control_id[5:]}"
        assert control.runtime_evidence.manual  # what no check can show: the permit, the process


def test_a_correct_flow_shows_what_each_check_showed_under_its_controls(account: Account) -> None:
    evidence = report_of(account.flowed().check())
    html, markdown = render_html(evidence), render_markdown(evidence)
    permit = control_article(html, "EHDS-68")
    assert badge_of(permit) == "pass"
    (row,) = [r for r in rows_mentioning(permit, BASIS) if "feature-group/encounters" in r.text()]
    assert "all 3 records in 1 objects" in row.text()
    assert "'hipaa-de-identified:synthetic-population'" in row.text()
    # The patient-keyed group's online store is not emulated in-process: the control says so
    # rather than pass, and the finding's detail says why.
    opt_out = control_article(html, "EHDS-71")
    assert badge_of(opt_out) == "not emulated"
    assert "does not implement GetRecord" in opt_out.text()
    assert "3 Consent resources (3 active); 1 patients opted out" in opt_out.text()
    design = control_article(html, "GDPR-25")
    assert OPT_OUT in design.text() and BASIS in design.text()
    assert "1 patients opted out" in markdown and "all 3 records in 1 objects" in markdown
    # Counts only: no patient identifier reaches either report.
    for identifier in (OPTED_OUT, *PATIENTS):
        assert identifier not in html and identifier not in markdown


def test_an_account_where_the_flow_never_ran_fails_the_controls(account: Account) -> None:
    evidence = report_of(account.check())
    html = render_html(evidence)
    for control_id, check_id in (("EHDS-68", BASIS), ("EHDS-71", OPT_OUT)):
        article = control_article(html, control_id)
        assert badge_of(article) == "fail"
        failures = [r.text() for r in rows_mentioning(article, check_id) if "fail" in r.text()]
        assert failures
        assert any("the FHIR -> features flow has not run in this account" in f for f in failures)
    assert evidence.runtime_verdict.value == "fail"
    failing = {group.check_id for group in evidence.failure_groups}
    assert {BASIS, OPT_OUT} <= failing
    markdown = render_markdown(evidence)
    assert "flow has not run in this account" in markdown


@pytest.mark.parametrize("control_id", ["EHDS-68", "EHDS-71"])
def test_without_runtime_findings_the_controls_say_not_run(control_id: str) -> None:
    evidence = build_evidence(
        CATALOG, static=None, runtime=None, runtime_check_names=NAMES, generated_at=MOMENT
    )
    control = next(c for c in evidence.controls if c.id == control_id)
    assert control.runtime_result.value == "not run"
    assert badge_of(control_article(render_html(evidence), control_id)) != "pass"
