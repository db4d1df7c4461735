"""The evidence report: from hand-made findings and a tiny catalog, each control shows the result
its findings prove (with the resource, the construct path, exemption reasons, both sides joined),
controls without checks say how they are evidenced, the coverage counts are right, the HTML is
well-formed and escapes what it shows, the Markdown tables keep their columns, and the page
renders in a headless browser."""

from __future__ import annotations

import json
import re
import shutil
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from policies.catalog import Catalog, load_catalog
from policies.findings import (
    Exemption,
    Finding,
    Findings,
    Source,
    Status,
    write_findings,
)
from policies.report import (
    Coverage,
    Evidence,
    ExemptionRecord,
    ReportInputError,
    Result,
    build_evidence,
    inline_svg,
    main,
    markdown_code,
    markdown_escape,
    mermaid_bundle,
    read_inventory,
    render_html,
    render_markdown,
    render_mermaid,
)
from tools.screenshot import (
    MINIMUM_COLOURS,
    ScreenshotError,
    chromium_path,
    distinct_colours,
    png_header,
    png_rows,
    screenshot,
)

ENCRYPTION = "HIPAA-164.312(a)(2)(iv)"
AUDIT = "HIPAA-164.312(b)"
RISK_ANALYSIS = "HIPAA-164.308(a)(1)(ii)(A)"
FACILITY = "HIPAA-164.310(a)(1)"
GDPR_SECURITY = "GDPR-32"

CATALOG_YAML = """\
catalog_version: 1
controls:
  - id: "HIPAA-164.312(a)(2)(iv)"
    framework: HIPAA
    title: Encryption and decryption
    citation: "45 CFR 164.312(a)(2)(iv)"
    responsibility: customer
    static_checks: [CKV_AWS_19, CKV_AWS_145]
    runtime_evidence:
      config_rules: [S3_DEFAULT_ENCRYPTION_KMS]
      runtime_checks: [RT_PHI_S3_CMK_ENCRYPTION]
      manual: [The key management procedure]
  - id: "HIPAA-164.312(b)"
    framework: HIPAA
    title: Audit controls
    citation: "45 CFR 164.312(b)"
    responsibility: customer
    static_checks: [CKV_AWS_67]
    runtime_evidence: {}
  - id: "HIPAA-164.308(a)(1)(ii)(A)"
    framework: HIPAA
    title: Risk analysis
    citation: "45 CFR 164.308(a)(1)(ii)(A)"
    responsibility: customer
    static_checks: []
    runtime_evidence:
      manual: [The written risk analysis and its yearly review]
  - id: "HIPAA-164.310(a)(1)"
    framework: HIPAA
    title: Facility access controls
    citation: "45 CFR 164.310(a)(1)"
    responsibility: aws
    inherited_from_aws: AWS limits physical access to its data centres; SOC 2 Type II attests it.
    static_checks: []
    runtime_evidence: {}
  - id: "GDPR-32"
    framework: GDPR
    title: Security of processing
    citation: "Regulation (EU) 2016/679, Article 32"
    responsibility: customer
    static_checks: [CKV_AWS_19]
    runtime_evidence: {}
"""

RAW = ("aws_s3_bucket.storage_raw_bucket_0EBA1063", "dev-data/storage/raw/bucket")
CURATED = ("aws_s3_bucket.storage_curated_bucket_1CA15081", "dev-data/storage/curated/bucket")
TRAIL = ("aws_cloudtrail.audit_trail_91FB908D", "org-audit/audit/trail")
MOMENT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CHECKOV_NAMES = {
    "CKV_AWS_19": "Ensure all data stored in the S3 bucket is securely encrypted at rest",
    "CKV_AWS_145": "Ensure that S3 buckets are encrypted with KMS by default",
    "CKV_AWS_67": "Ensure CloudTrail is enabled in all Regions",
}
RUNTIME_NAMES = {"RT_PHI_S3_CMK_ENCRYPTION": "S3 bucket encrypted with the expected CMK"}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    path = tmp_path_factory.mktemp("catalog") / "controls.yaml"
    path.write_text(CATALOG_YAML)
    return load_catalog(path)


def finding(
    check_id: str,
    status: Status,
    resource: tuple[str, str] = RAW,
    *,
    source: Source = Source.STATIC,
    stack: str = "dev-data",
    controls: tuple[str, ...] = (),
    exemption: Exemption | None = None,
    detail: str = "",
) -> Finding:
    address, construct_path = resource
    return Finding(
        check_id=check_id,
        check_name=CHECKOV_NAMES.get(check_id, RUNTIME_NAMES.get(check_id, "")),
        status=status,
        source=source,
        stack=stack,
        resource=address,
        construct_path=construct_path,
        controls=controls,
        detail=detail,
        exemption=exemption,
    )


def static(*findings: Finding) -> Findings:
    return Findings(source=Source.STATIC, target="cdktf.out", findings=findings)


def runtime(*findings: Finding, not_emulated: tuple[str, ...] = ()) -> Findings:
    return Findings(
        source=Source.RUNTIME,
        target="111111111111/us-east-1",
        findings=findings,
        not_emulated=not_emulated,
    )


def evidence(
    catalog: Catalog,
    static_findings: Findings | None,
    runtime_findings: Findings | None = None,
    **options: object,
) -> Evidence:
    arguments: dict[str, object] = {
        "static": static_findings,
        "runtime": runtime_findings,
        "static_check_names": CHECKOV_NAMES,
        "runtime_check_names": RUNTIME_NAMES,
        "generated_at": MOMENT,
        "environments": {"US": ("dev", "prod", "staging"), "EU": ("eu-research",)},
    }
    arguments.update(options)
    return build_evidence(catalog, **arguments)  # type: ignore[arg-type]


# --- a small DOM from html.parser, strict about nesting -------------------------------------

VOID_ELEMENTS = {"meta", "br", "hr", "img", "link", "input", "col", "wbr", "source", "area"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element | str] = field(default_factory=list)

    def text(self) -> str:
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join(" ".join(parts).split())

    def iter(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_id(self, element_id: str) -> Element:
        for element in self.iter():
            if element.attrs.get("id") == element_id:
                return element
        raise AssertionError(f"no element with id {element_id!r}")

    def inside(self, tag: str) -> bool:
        node = self.parent
        while node is not None:
            if node.tag == tag:
                return True
            node = node.parent
        return False

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class StrictTreeBuilder(HTMLParser):
    """Builds the tree; every end tag must close the innermost open element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.current = self.root
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, parent=self.current)
        self.current.children.append(element)
        if tag not in VOID_ELEMENTS:
            self.current = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Element(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_ELEMENTS:
            return
        if self.current.tag != tag:
            line, column = self.getpos()
            self.problems.append(f"line {line}:{column}: </{tag}> closes <{self.current.tag}>")
            return
        assert self.current.parent is not None
        self.current = self.current.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse_html(html: str) -> tuple[Element, list[str]]:
    builder = StrictTreeBuilder()
    builder.feed(html)
    builder.close()
    problems = list(builder.problems)
    if builder.current is not builder.root:
        problems.append(f"<{builder.current.tag}> never closed")
    return builder.root, problems


def control_article(html: str, control_id: str) -> Element:
    root, problems = parse_html(html)
    assert problems == []
    anchor = "control-" + re.sub(r"[^a-z0-9]+", "-", control_id.lower()).strip("-")
    article = root.find_id(anchor)
    assert article.tag == "article"
    return article


def badge_of(article: Element) -> str:
    head = next(e for e in article.iter() if "sides" in e.classes())
    badge = next(e for e in head.iter() if "badge" in e.classes())
    return badge.text()


def rows_mentioning(element: Element, text: str) -> list[Element]:
    return [row for row in element.iter() if row.tag == "tr" and text in row.text()]


# --- a failed finding: FAIL, with the resource and its construct path --------------------------


@pytest.mark.parametrize(
    ("status", "expected_badge", "in_failures_table"),
    [(Status.FAILED, "fail", True), (Status.PASSED, "pass", False)],
)
def test_a_failed_finding_shows_its_control_failing_with_resource_and_construct_path(
    catalog: Catalog, status: Status, expected_badge: str, in_failures_table: bool
) -> None:
    html = render_html(
        evidence(
            catalog,
            static(
                finding("CKV_AWS_19", Status.PASSED, RAW),
                finding("CKV_AWS_19", status, CURATED, detail="no default encryption"),
                finding("CKV_AWS_145", Status.PASSED, RAW),
            ),
        )
    )
    article = control_article(html, ENCRYPTION)
    assert badge_of(article) == expected_badge
    assert expected_badge in article.classes()  # the coloured edge of the control
    rows = rows_mentioning(article, CURATED[0])
    assert rows, "the curated bucket is listed under the control"
    row = rows[0]
    assert CURATED[1] in row.text()
    # Failures are expanded; passing results are collapsed in <details>.
    assert row.inside("details") is not in_failures_table
    assert ("FAIL" in row.text().upper()) is in_failures_table
    root, _ = parse_html(html)
    failures = root.find_id("failures")
    assert bool(rows_mentioning(failures, CURATED[0])) is in_failures_table


# --- an exempt finding: reason, owner and expiry ---------------------------------------------

REASON = "Server access logs hold no PHI; the organization trail keeps the audit evidence"


@pytest.mark.parametrize("exempt", [True, False])
def test_an_exempt_finding_shows_reason_owner_and_expiry(catalog: Catalog, exempt: bool) -> None:
    exemption = Exemption(reason=REASON, owner="@acme-health/data-platform", expires="2026-06-30")
    status = Status.EXEMPT if exempt else Status.FAILED
    html = render_html(
        evidence(
            catalog,
            static(
                finding("CKV_AWS_19", Status.PASSED, RAW),
                finding("CKV_AWS_145", status, CURATED, exemption=exemption if exempt else None),
            ),
        )
    )
    article = control_article(html, ENCRYPTION)
    row = rows_mentioning(article, CURATED[0])[0]
    if exempt:
        assert badge_of(article) == "exempt"
        assert REASON in row.text()
        assert "@acme-health/data-platform" in row.text()
        assert "2026-06-30" in row.text()
    else:
        assert badge_of(article) == "fail"
        assert REASON not in html
    exemptions = parse_html(html)[0].find_id("exemptions")
    assert bool(rows_mentioning(exemptions, REASON)) is exempt


# --- static and runtime results of one control, side by side ---------------------------------


@pytest.mark.parametrize(
    ("runtime_status", "sides", "badge"),
    [
        (Status.PASSED, "static: pass, runtime: pass", "pass"),
        (Status.FAILED, "static: pass, runtime: fail", "fail"),
    ],
)
def test_static_and_runtime_results_join_per_control(
    catalog: Catalog, runtime_status: Status, sides: str, badge: str
) -> None:
    result = evidence(
        catalog,
        static(
            finding("CKV_AWS_19", Status.PASSED, RAW),
            finding("CKV_AWS_145", Status.PASSED, RAW),
        ),
        runtime(
            finding(
                "RT_PHI_S3_CMK_ENCRYPTION",
                runtime_status,
                ("arn:aws:s3:::acme-dev-raw", ""),
                source=Source.RUNTIME,
                stack="111111111111/us-east-1",
                controls=(ENCRYPTION,),
            )
        ),
    )
    control = next(c for c in result.controls if c.id == ENCRYPTION)
    assert control.sides == sides
    # The runtime check evidences only the control it names (and the catalog lists).
    audit = next(c for c in result.controls if c.id == AUDIT)
    assert audit.runtime_checks == ()
    article = control_article(render_html(result), ENCRYPTION)
    assert sides in article.text()
    assert badge_of(article) == badge
    assert sides in render_markdown(result)


def test_runtime_checks_say_not_run_without_runtime_findings(catalog: Catalog) -> None:
    result = evidence(catalog, static(finding("CKV_AWS_19", Status.PASSED, RAW)))
    control = next(c for c in result.controls if c.id == ENCRYPTION)
    assert control.runtime_result is Result.NOT_RUN
    assert control.sides == "static: pass, runtime: not run"
    assert result.runtime_verdict is Result.NOT_RUN


# --- controls without automated checks say so ------------------------------------------------


@pytest.mark.parametrize(
    ("control_id", "statement"),
    [
        (RISK_ANALYSIS, "No automated check: manual evidence only."),
        (FACILITY, "No automated check: inherited from AWS."),
    ],
)
def test_a_control_without_checks_says_how_it_is_evidenced(
    catalog: Catalog, control_id: str, statement: str
) -> None:
    html = render_html(evidence(catalog, static(finding("CKV_AWS_19", Status.PASSED, RAW))))
    assert statement in control_article(html, control_id).text()
    # The twin: an automated control makes no such statement.
    assert "No automated check" not in control_article(html, ENCRYPTION).text()


def test_coverage_counts_per_framework(catalog: Catalog) -> None:
    result = evidence(catalog, static(finding("CKV_AWS_19", Status.FAILED, CURATED)))
    hipaa, gdpr = (framework.coverage for framework in result.frameworks)
    assert (hipaa.controls, hipaa.automated, hipaa.manual, hipaa.inherited) == (4, 2, 1, 1)
    assert (hipaa.static, hipaa.runtime, hipaa.config) == (2, 1, 1)
    assert hipaa.failing == 1  # the encryption control; CKV_AWS_19 fails
    assert (gdpr.controls, gdpr.automated, gdpr.failing) == (1, 1, 1)
    total = result.coverage_total
    assert (total.controls, total.automated, total.manual, total.inherited) == (5, 3, 1, 1)
    root, _ = parse_html(render_html(result))
    coverage_rows = [r for r in root.find_id("coverage").iter() if r.tag == "tr"]
    hipaa_cells = next(r.text() for r in coverage_rows if r.text().startswith("HIPAA"))
    assert hipaa_cells.split() == ["HIPAA", "4", "2", "2", "1", "1", "1", "1", "0", "1"]


def test_coverage_counts_follow_the_catalog(catalog: Catalog, tmp_path: Path) -> None:
    # The failing twin: give the risk analysis a check and it leaves the manual-only count.
    path = tmp_path / "controls.yaml"
    path.write_text(
        CATALOG_YAML.replace(
            'citation: "45 CFR 164.308(a)(1)(ii)(A)"\n    responsibility: customer\n'
            "    static_checks: []",
            'citation: "45 CFR 164.308(a)(1)(ii)(A)"\n    responsibility: customer\n'
            "    static_checks: [CKV_AWS_67]",
        )
    )
    hipaa = evidence(load_catalog(path), None).frameworks[0].coverage
    assert (hipaa.automated, hipaa.manual) == (3, 0)
    risk = next(c for c in evidence(load_catalog(path), None).controls if c.id == RISK_ANALYSIS)
    assert risk.coverage is Coverage.AUTOMATED


def test_a_catalog_check_without_results_is_told_apart_from_an_unknown_one(
    catalog: Catalog,
) -> None:
    result = evidence(
        catalog,
        static(finding("CKV_AWS_19", Status.PASSED, RAW)),
        static_check_names={"CKV_AWS_19": "x", "CKV_AWS_67": "y"},  # checkov lacks CKV_AWS_145
    )
    encryption = next(c for c in result.controls if c.id == ENCRYPTION)
    by_id = {check.check_id: check.result for check in encryption.static_checks}
    assert by_id == {"CKV_AWS_19": Result.PASSED, "CKV_AWS_145": Result.UNKNOWN_CHECK}
    audit = next(c for c in result.controls if c.id == AUDIT)
    assert audit.static_result is Result.NO_RESOURCES  # known to checkov, judged nothing


# --- exemptions: expired and unused are flagged ----------------------------------------------


def test_expired_and_unused_exemptions_are_flagged(catalog: Catalog) -> None:
    current = ExemptionRecord(
        check_id="CKV_AWS_145",
        stack="dev-*",
        resource="aws_s3_bucket.storage_curated_*",
        reason=REASON,
        owner="@acme-health/data-platform",
        expires="2026-06-30",
        why_several="Every curated bucket is built by one construct",
    )
    expired = ExemptionRecord(
        check_id="CKV_AWS_67",
        stack="org-audit",
        resource=TRAIL[0],
        reason="Single-region trail accepted while the organization trail was migrated",
        owner="security@example.org",
        expires="2026-02-01",
    )
    unused = ExemptionRecord(
        check_id="CKV_AWS_19",
        stack="prod-data",
        resource="aws_s3_bucket.storage_gone_bucket_00000000",
        reason="Bucket removed in the last release; entry kept by mistake",
        owner="security@example.org",
        expires="2026-12-31",
    )
    exemption = Exemption(reason=REASON, owner=current.owner, expires=current.expires)
    result = evidence(
        catalog,
        static(
            finding("CKV_AWS_145", Status.EXEMPT, CURATED, exemption=exemption),
            finding("CKV_AWS_67", Status.FAILED, TRAIL, stack="org-audit"),
        ),
        exemptions=(current, expired, unused),
    )
    flags = {record.check_id: record.flags(result.today) for record in result.exemptions}
    assert flags == {"CKV_AWS_145": (), "CKV_AWS_67": ("expired",), "CKV_AWS_19": ("unused",)}
    assert [r.check_id for r in result.expired_exemptions] == ["CKV_AWS_67"]
    assert [r.check_id for r in result.unused_exemptions] == ["CKV_AWS_19"]
    section = parse_html(render_html(result))[0].find_id("exemptions")
    row = rows_mentioning(section, "CKV_AWS_67")[0]
    assert "expired" in row.text() and "security@example.org" in row.text()
    assert "current" in rows_mentioning(section, "CKV_AWS_145")[0].text()


# --- escaping: HTML and Markdown -------------------------------------------------------------

MALICIOUS = (
    'aws_s3_bucket.x"><script>alert(1)</script>| `*pwn*` [link](https://evil.example)',
    "dev-data/<img src=x onerror=alert(1)>/bucket",
)


def elements_named(html: str, tag: str) -> list[Element]:
    root, _ = parse_html(html)
    return [element for element in root.iter() if element.tag == tag]


def test_the_html_escapes_a_malicious_resource_name(catalog: Catalog) -> None:
    html = render_html(evidence(catalog, static(finding("CKV_AWS_19", Status.FAILED, MALICIOUS))))
    assert elements_named(html, "script") == []
    assert elements_named(html, "img") == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    article = control_article(html, ENCRYPTION)
    assert MALICIOUS[0] in article.text()  # shown, as text
    # The twin: the same name pasted unescaped would have made a script element.
    assert len(elements_named(f"<p>{MALICIOUS[0]}</p>", "script")) == 1


def test_the_html_is_well_formed_and_self_contained(catalog: Catalog) -> None:
    result = evidence(
        catalog,
        static(
            finding("CKV_AWS_19", Status.FAILED, CURATED),
            finding("CKV_AWS_19", Status.PASSED, RAW),
        ),
        runtime(not_emulated=("dev-fhir: aws_cloudformation_stack.fhir (HealthLake)",)),
        diagram="flowchart LR\n  A[raw] --> B[curated]\n",
    )
    html = render_html(result)
    _, problems = parse_html(html)
    assert problems == []
    ids = [e.attrs["id"] for e in parse_html(html)[0].iter() if "id" in e.attrs]
    assert len(ids) == len(set(ids)), "anchors are unique"
    links = [e.attrs["href"] for e in elements_named(html, "a") if "href" in e.attrs]
    assert links and all(link.startswith("#") and link[1:] in ids for link in links)
    assert not re.search(r"https?://", html), "no external reference of any kind"
    assert elements_named(html, "script") == [] and elements_named(html, "link") == []
    # The twins: the checks catch a broken page and a dangling link.
    assert parse_html("<div><p>text</div></p>")[1] != []
    assert "#nowhere"[1:] not in ids


def markdown_table_rows(markdown: str) -> list[list[str]]:
    """Each table (a run of lines starting with '|') as its rows' cell counts, splitting on
    pipes that are not escaped."""
    tables: list[list[str]] = []
    current: list[str] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def cell_count(row: str) -> int:
    return len(re.split(r"(?<!\\)\|", row.strip())) - 2


def outside_code_spans(markdown: str) -> str:
    return re.sub(r"(`+)(?:.+?)\1", "", markdown)


def test_markdown_tables_keep_their_columns_and_escape_text(catalog: Catalog) -> None:
    markdown = render_markdown(
        evidence(
            catalog,
            static(
                finding("CKV_AWS_19", Status.FAILED, MALICIOUS, detail=MALICIOUS[0]),
                finding("CKV_AWS_19", Status.PASSED, RAW),
            ),
        )
    )
    tables = markdown_table_rows(markdown)
    assert len(tables) > 5
    for table in tables:
        header = cell_count(table[0])
        assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", table[1]), table[1]
        assert all(cell_count(row) == header for row in table), table
    assert any("❌ **FAIL**" in row and "`CKV_AWS_19`" in row for t in tables for row in t)
    # Markup in the text is escaped; inside code spans it is shown literally anyway.
    text = outside_code_spans(markdown)
    assert "<script>" not in text and "<img" not in text
    assert not re.search(r"(?<!\\)\]\(https://evil", text)
    assert "\\<script\\>" in text
    # The twins: an unescaped pipe in a cell adds a column, and raw markup is noticed.
    assert cell_count("| a | b|c |") != cell_count("| a | b\\|c |")
    assert "<script>" in outside_code_spans("x <script> `<img>`")


def test_markdown_escaping_helpers() -> None:
    assert markdown_escape("a|b *c* <d> [e](f)") == "a\\|b \\*c\\* \\<d\\> \\[e\\](f)"
    assert markdown_code("x`y|z") == "``x`y\\|z``"
    assert markdown_code("plain") == "`plain`"


def test_markdown_shows_the_failed_resource_under_its_control(catalog: Catalog) -> None:
    markdown = render_markdown(
        evidence(catalog, static(finding("CKV_AWS_19", Status.FAILED, CURATED)))
    )
    section = markdown.split("### HIPAA-164.312(a)(2)(iv)")[1].split("\n### ")[0]
    row = next(line for line in section.splitlines() if CURATED[0] in line)
    assert row.startswith("| ❌ **FAIL** | `CKV_AWS_19` | dev-data |")
    assert f"`{CURATED[1]}`" in row


# --- inventory, the command line and bad input -----------------------------------------------


def write_stack(outdir: Path, name: str, resources: dict[str, list[str]]) -> None:
    stack = outdir / "stacks" / name
    stack.mkdir(parents=True)
    document: dict[str, object] = {
        "resource": {kind: {n: {} for n in names} for kind, names in resources.items()},
        "data": {"aws_caller_identity": {"current": {}}},
    }
    (stack / "cdk.tf.json").write_text(json.dumps(document))


def test_inventory_counts_resources_by_type(tmp_path: Path) -> None:
    write_stack(tmp_path, "dev-data", {"aws_s3_bucket": ["a", "b", "c"], "aws_kms_key": ["k"]})
    write_stack(tmp_path, "dev-ml", {"aws_lambda_function": ["f"]})
    stacks = {stack.name: stack for stack in read_inventory(tmp_path)}
    assert stacks["dev-data"].resource_types == (("aws_s3_bucket", 3), ("aws_kms_key", 1))
    assert stacks["dev-data"].resources == 4 and stacks["dev-data"].data_sources == 1
    assert stacks["dev-ml"].resources == 1
    assert stacks["dev-data"].resources != stacks["dev-ml"].resources


def test_the_command_writes_both_reports(tmp_path: Path, catalog: Catalog) -> None:
    write_stack(tmp_path / "out", "dev-data", {"aws_s3_bucket": ["raw"]})
    (tmp_path / "out" / "diagram.mmd").write_text("flowchart LR\n  A --> B\n")
    catalog_path = tmp_path / "controls.yaml"
    catalog_path.write_text(CATALOG_YAML)
    static_path = tmp_path / "scan" / "findings.json"
    write_findings(static_path, static(finding("CKV_AWS_19", Status.FAILED, CURATED)))
    code = main(
        [
            "--out",
            str(tmp_path / "out"),
            "--static",
            str(static_path),
            "--runtime",
            str(static_path.with_name("absent.json")),
            "--report-dir",
            str(tmp_path / "reports"),
            "--catalog",
            str(catalog_path),
            "--exemptions",
            str(tmp_path / "no-exemptions.yaml"),
        ]
    )
    assert code == 2, "a runtime findings file named on the command line must exist"
    code = main(
        [
            "--out",
            str(tmp_path / "out"),
            "--static",
            str(static_path),
            "--report-dir",
            str(tmp_path / "reports"),
            "--catalog",
            str(catalog_path),
            "--exemptions",
            str(tmp_path / "no-exemptions.yaml"),
            "--text-diagram",
        ]
    )
    assert code == 0
    html = (tmp_path / "reports" / "evidence.html").read_text()
    markdown = (tmp_path / "reports" / "evidence.md").read_text()
    assert CURATED[1] in html and CURATED[1] in markdown
    assert "```mermaid\nflowchart LR\n  A --> B\n```" in markdown
    assert "flowchart LR" in parse_html(html)[0].find_id("inventory").text()


def test_a_malformed_findings_file_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "findings.json"
    broken.write_text(json.dumps({"findings_version": 1, "source": "static", "findings": []}))
    code = main(["--static", str(broken), "--report-dir", str(tmp_path / "reports")])
    assert code == 2
    error = capsys.readouterr().err
    assert str(broken) in error and "target" in error
    assert not (tmp_path / "reports").exists()


def test_a_runtime_file_given_as_static_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "findings.json"
    write_findings(path, runtime())
    assert main(["--static", str(path), "--report-dir", str(tmp_path / "reports")]) == 2
    assert "expected 'static'" in capsys.readouterr().err


# --- the screenshot tool: a PNG decoder, and the page in a real browser ----------------------


def encode_png(rows: list[bytes], width: int, filter_type: int) -> bytes:
    """RGB PNG whose every row uses `filter_type`, to exercise each of the decoder's filters."""

    def paeth(a: int, b: int, c: int) -> int:
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        return a if pa <= pb and pa <= pc else (b if pb <= pc else c)

    encoded = bytearray()
    previous = bytes(width * 3)
    for row in rows:
        out = bytearray()
        for i, value in enumerate(row):
            left = row[i - 3] if i >= 3 else 0
            up = previous[i]
            upper_left = previous[i - 3] if i >= 3 else 0
            predictor = [0, left, up, (left + up) // 2, paeth(left, up, upper_left)][filter_type]
            out.append((value - predictor) & 0xFF)
        encoded += bytes([filter_type]) + out
        previous = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, len(rows), 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(encoded)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("filter_type", [0, 1, 2, 3, 4])
def test_the_png_decoder_undoes_every_filter(filter_type: int) -> None:
    rows = [
        bytes((x * 7 + y * 13 + c * 50) % 256 for x in range(5) for c in range(3)) for y in range(4)
    ]
    data = encode_png(rows, 5, filter_type)
    assert list(png_rows(data)) == rows
    assert png_header(data).width == 5
    assert distinct_colours(data) == len({row[i : i + 3] for row in rows for i in range(0, 15, 3)})
    blank = encode_png([bytes(15)] * 4, 5, filter_type)
    assert distinct_colours(blank) == 1


BROWSER = chromium_path()


@pytest.mark.skipif(
    BROWSER is None or not BROWSER.exists(),
    reason="Chromium is not installed (Debian: apt-get install chromium)",
)
def test_the_report_renders_in_a_headless_browser(catalog: Catalog, tmp_path: Path) -> None:
    html_path = tmp_path / "evidence.html"
    html = render_html(
        evidence(
            catalog,
            static(
                finding("CKV_AWS_19", Status.FAILED, CURATED),
                finding("CKV_AWS_19", Status.PASSED, RAW),
                finding("CKV_AWS_145", Status.PASSED, RAW),
            ),
        )
    )
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:|url\(\s*["']?https?:|@import""", html)
    html_path.write_text(html)
    png = screenshot(html_path, tmp_path / "evidence.png", width=1400, height=2000)
    data = png.read_bytes()
    header = png_header(data)
    assert (header.width, header.height) == (1400, 2000)
    assert len(data) > 50_000  # text, tables and badges; a blank page compresses to ~10 KB
    assert distinct_colours(data, limit=MINIMUM_COLOURS) == MINIMUM_COLOURS
    # The twin: a page with nothing on it is refused as blank.
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body></body></html>")
    with pytest.raises(ScreenshotError, match="blank"):
        screenshot(empty, tmp_path / "empty.png", width=400, height=300)


def test_the_screenshot_tool_names_a_missing_browser(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<p>x</p>")
    with pytest.raises(FileNotFoundError, match="apt-get install chromium"):
        screenshot(page, tmp_path / "x.png", chromium=tmp_path / "no-chromium")
    assert shutil.which(str(tmp_path / "no-chromium")) is None


# --- the architecture diagram, drawn offline -------------------------------------------------

SAFE_SVG = (
    '<svg id="architecture-diagram" width="100%" xmlns="http://www.w3.org/2000/svg" '
    'style="max-width: 640.5px;" viewBox="0 0 640 480"><style>#a{fill:#333}</style>'
    '<defs><marker id="arrow"/></defs><path marker-end="url(#arrow)"/>'
    "<text>raw bucket</text></svg>"
)


@pytest.mark.parametrize(
    "injected",
    [
        "<script>alert(1)</script>",
        '<g onload="alert(1)"/>',
        '<a href="https://evil.example/x"><text>x</text></a>',
        '<image xlink:href="http://evil.example/x.png"/>',
        '<path style="fill: url(https://evil.example/p)"/>',
        "<foreignObject><div>html</div></foreignObject>",
    ],
)
def test_a_drawn_diagram_is_inlined_only_without_scripts_or_outside_links(injected: str) -> None:
    inlined = inline_svg(SAFE_SVG)
    assert "--natural-width: 640.5px" in inlined  # what the CSS-only "full size" switch needs
    with pytest.raises(ReportInputError, match="not inlined"):
        inline_svg(SAFE_SVG.replace("<text>raw bucket</text>", injected))


BUNDLE = mermaid_bundle()


@pytest.mark.skipif(
    BROWSER is None or not BROWSER.exists() or BUNDLE is None,
    reason="needs Chromium and Mermaid's browser bundle (npm package mermaid, or PHI_MERMAID_JS)",
)
def test_the_diagram_is_drawn_offline_as_svg(catalog: Catalog) -> None:
    assert BUNDLE is not None
    svg = render_mermaid(
        'flowchart LR\n  raw[("raw bucket")] -->|events| pipeline["pipeline"]\n', BUNDLE
    )
    labels = re.sub(r"<[^>]+>", "", svg)  # the drawing's text (one tspan per word)
    assert svg.startswith("<svg") and all(w in labels for w in ("raw bucket", "events", "pipeline"))
    html = render_html(
        evidence(catalog, None, diagram="flowchart LR\n  a --> b\n", diagram_svg=svg)
    )
    assert len(elements_named(html, "svg")) == 1
    assert elements_named(html, "script") == []
    # The twin: a diagram Mermaid cannot parse is reported, not drawn.
    with pytest.raises(ReportInputError, match="could not draw"):
        render_mermaid("flowchart LR\n  a -->\n  ((( \n", BUNDLE)
