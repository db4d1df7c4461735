"""`make diff FROM TO` (tools/diff.py): what promoting one environment to the next changes.

Two synthesized outputs, each made once for the module: staging + prod (the real promotion),
and a temporary environments folder holding staging, an identical copy of it and a twin that
differs in one value (the copy and twin are staging with its name, account and bucket prefix
changed: exactly the values every environment must hold for itself).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from environments.composition import build_app
from environments.loader import (
    ENVIRONMENTS_DIR,
    available_environments,
    load_environment,
    load_environments,
)
from environments.schema import WorkloadEnvironment
from environments.source import source_revision
from environments.target import Target
from policies.findings import Finding, Findings, Source, Status, write_findings
from tools import diff as promotion
from tools.diff import (
    ABSENT,
    NOT_EVALUATED,
    Normalizer,
    PromotionDiff,
    SynthesizedStack,
    changes,
    compare_controls,
    copy_stacks,
    environment_stacks,
    promotion_diff,
    render_markdown,
    render_text,
    scan_controls,
    show_pair,
)

STAGING_ACCOUNT = "222222222222"
COPY_ACCOUNT = "222222222299"
TWIN_ACCOUNT = "222222222298"


def workload(name: str, root: Path = ENVIRONMENTS_DIR) -> WorkloadEnvironment:
    environment = load_environment(root / name / "environment.yaml")
    assert isinstance(environment, WorkloadEnvironment)
    return environment


def synthesize(names: list[str], outdir: Path, environments_dir: Path) -> Path:
    """`names`' stacks for AWS. The copies below make an estate no organization would have
    (two environments with one VPC range, accounts outside its governance), which main.py's
    cross-environment rules refuse: each file is validated alone and composed directly."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        environments = load_environments(available_environments(environments_dir), environments_dir)
        build_app(
            environments,
            selected=set(names),
            outdir=str(outdir),
            target=Target.from_environment(),
            source=source_revision({}),
        ).synth()
    return outdir


def copy_of_staging(
    root: Path, name: str, account: str, *, replace: tuple[str, str] = ("", "")
) -> None:
    """staging under another name and account: every value derived from the name (bucket
    prefix, pipeline and datastore names) follows it, everything else stays."""
    text = (ENVIRONMENTS_DIR / "staging" / "environment.yaml").read_text()
    text = re.sub(r"\bstaging\b", name, text).replace(STAGING_ACCOUNT, account)
    if replace[0]:
        assert replace[0] in text, f"{replace[0]!r} is not in environments/staging"
        text = text.replace(*replace)
    (root / name).mkdir()
    (root / name / "environment.yaml").write_text(text)


@pytest.fixture(scope="module")
def staging_prod(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(
        ["staging", "prod"], tmp_path_factory.mktemp("diff") / "out", ENVIRONMENTS_DIR
    )


@pytest.fixture(scope="module")
def promotion_to_prod(staging_prod: Path) -> PromotionDiff:
    return promotion_diff(workload("staging"), workload("prod"), staging_prod)


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(environments folder, synthesized output) with staging, staging-copy and staging-twin."""
    root = tmp_path_factory.mktemp("environments")
    for name in ("org", "staging"):
        shutil.copytree(ENVIRONMENTS_DIR / name, root / name)
    copy_of_staging(root, "staging-copy", COPY_ACCOUNT)
    copy_of_staging(
        root,
        "staging-twin",
        TWIN_ACCOUNT,
        replace=("endpoint_instance_count: 1", "endpoint_instance_count: 2"),
    )
    names = ["staging", "staging-copy", "staging-twin"]
    return root, synthesize(names, tmp_path_factory.mktemp("copies") / "out", root)


def compared(copies: tuple[Path, Path], other: str) -> PromotionDiff:
    root, outdir = copies
    return promotion_diff(workload("staging", root), workload(other, root), outdir)


def field(diff: PromotionDiff, path: str) -> promotion.FieldDifference:
    (found,) = [f for f in diff.fields if f.field == path]
    return found


def stack(diff: PromotionDiff, layer: str) -> promotion.StackDifference:
    (found,) = [s for s in diff.stacks if s.layer == layer]
    return found


PRODUCTION_TAG = {"default_tags[0].tags.production": ("false", "true")}


def changed(diff: PromotionDiff, layer: str) -> dict[str, dict[str, tuple[Any, Any]]]:
    """address -> attribute path -> (old, new) for one layer's resources; its provider's change
    (every prod stack's provider tags it production) is asserted apart, by provider_change."""
    return {
        resource.address: {c.path: (c.old, c.new) for c in resource.changes}
        for resource in stack(diff, layer).changed
        if resource.address != "provider.aws"
    }


def provider_change(diff: PromotionDiff, layer: str) -> dict[str, tuple[Any, Any]]:
    (provider,) = [r for r in stack(diff, layer).changed if r.address == "provider.aws"]
    return {c.path: (c.old, c.new) for c in provider.changes}


# --- staging -> prod: the real promotion ------------------------------------------------------


def test_staging_to_prod_lists_the_real_configuration_differences(
    promotion_to_prod: PromotionDiff,
) -> None:
    configuration = {f.field: (f.old, f.new) for f in promotion_to_prod.configuration_differences}
    assert configuration["production"] == (False, True)
    assert configuration["ml.inference.endpoint_instance_count"] == (1, 2)
    assert configuration["ml.inference.enclave.max_size"] == (2, 6)
    assert configuration["storage.noncurrent_version_days"] == (90, 2192)
    assert configuration["ingest.direct_connect"] == (None, {"amazon_side_asn": 64600})
    # Promotion moves the evaluated image by digest: the same digest in both accounts.
    image = field(promotion_to_prod, "ml.pipeline.inference_image")
    assert image.expected and image.why == "differs only in {account}"
    assert image.old.split("@")[1] == image.new.split("@")[1]


def test_staging_to_prod_sets_per_environment_values_apart(
    promotion_to_prod: PromotionDiff,
) -> None:
    expected = {f.field for f in promotion_to_prod.expected_differences}
    configuration = {f.field for f in promotion_to_prod.configuration_differences}
    per_environment = {
        "name", "account_id", "deployment_role_arn", "storage.bucket_prefix",
        "network.vpc_cidr", "ingest.vpn.peer_ip", "ingest.vpn.bgp_asn",
        # Values that differ only in the account or the name.
        "keys.administrators", "keys.users", "ml.pipeline.name", "ml.fhir.datastore_name",
    }  # fmt: skip
    assert per_environment <= expected
    assert not per_environment & configuration
    assert field(promotion_to_prod, "keys.users").why == "differs only in {account}"


def test_a_second_site_range_is_a_real_difference_though_site_ranges_are_per_environment(
    promotion_to_prod: PromotionDiff,
) -> None:
    onprem = field(promotion_to_prod, "ingest.vpn.onprem_cidrs")
    assert onprem.old == ["192.168.16.0/20"]
    assert onprem.new == ["192.168.32.0/20", "172.16.0.0/16"]
    assert not onprem.expected


def test_staging_to_prod_protects_every_bucket_and_keeps_old_versions_six_years(
    promotion_to_prod: PromotionDiff,
) -> None:
    data = changed(promotion_to_prod, "data")
    buckets = {address for address in data if address.startswith("aws_s3_bucket.")}
    assert len(buckets) == 5
    for address in buckets:
        assert data[address] == {"lifecycle": (ABSENT, {"prevent_destroy": True})}
    guarded = sorted(
        address.split(".")[0]
        for address, attributes in data.items()
        if attributes.get("lifecycle") == (ABSENT, {"prevent_destroy": True})
    )
    assert (
        guarded == ["aws_kms_key"] * 5 + ["aws_s3_bucket"] * 5 + ["aws_sagemaker_feature_group"] * 2
    )
    retention = [
        attributes["rule[0].noncurrent_version_expiration[0].noncurrent_days"]
        for address, attributes in data.items()
        if address.startswith("aws_s3_bucket_lifecycle_configuration.")
    ]
    assert retention == [(90, 2192)] * 4
    fhir = changed(promotion_to_prod, "fhir")
    (datastore,) = fhir.values()
    assert datastore["lifecycle"] == (ABSENT, {"prevent_destroy": True})
    assert datastore["template_body<json>.Resources.FHIRDatastore.DeletionPolicy"] == (
        ABSENT,
        "Retain",
    )


def test_staging_to_prod_resources_added_and_removed(promotion_to_prod: PromotionDiff) -> None:
    network = stack(promotion_to_prod, "network")
    assert {address.split(".")[0] for address in network.added} == {
        "aws_dx_gateway",
        "aws_dx_gateway_association",
        "aws_vpc_security_group_ingress_rule",  # HTTPS from the second site range
    }
    assert not network.removed and not changed(promotion_to_prod, "network")
    ml = stack(promotion_to_prod, "ml")
    # prod is the production account itself: no cross-account read of its model packages.
    assert [address.split(".")[0] for address in ml.removed] == [
        "aws_sagemaker_model_package_group_policy"
    ]
    deployer = changed(promotion_to_prod, "ml")[
        next(a for a in changed(promotion_to_prod, "ml") if "deployer_function" in a)
    ]
    assert deployer["environment.variables.INSTANCE_COUNT"] == ("1", "2")
    assert deployer["environment.variables.CAPTURE_SAMPLING_PERCENT"] == ("25", "10")
    assert not changed(promotion_to_prod, "security")


@pytest.mark.parametrize("layer", ["data", "fhir", "network", "ml", "security"])
def test_staging_to_prod_tags_every_stack_production(
    promotion_to_prod: PromotionDiff, layer: str
) -> None:
    """The provider's default tags say production (CKV_PHI_13 reads them): the only provider
    difference between the two environments once names are normalized."""
    assert provider_change(promotion_to_prod, layer) == PRODUCTION_TAG


def test_construct_paths_give_the_same_logical_ids_in_every_environment(
    staging_prod: Path,
) -> None:
    """The premise of keying resources by address: a resource's logical id is its construct
    path under the stack, whichever environment the stack belongs to."""
    for layer in ("data", "fhir", "network", "ml", "security"):
        ids = {}
        for environment in ("staging", "prod"):
            configuration = json.loads(
                (staging_prod / "stacks" / f"{environment}-{layer}" / "cdk.tf.json").read_text()
            )
            ids[environment] = {
                body["//"]["metadata"]["path"].removeprefix(f"{environment}-{layer}/"): name
                for resources in configuration["resource"].values()
                for name, body in resources.items()
            }
        shared = ids["staging"].keys() & ids["prod"].keys()
        assert shared, layer
        assert {p: ids["staging"][p] for p in shared} == {p: ids["prod"][p] for p in shared}


def test_names_are_normalized_so_bucket_names_are_no_difference(staging_prod: Path) -> None:
    staging, prod = workload("staging"), workload("prod")

    def raw_bucket(environment: str) -> dict[str, Any]:
        stacks = environment_stacks(staging_prod, environment)
        buckets = stacks["data"].configuration["resource"]["aws_s3_bucket"]
        return dict(next(body for name, body in buckets.items() if "raw" in name))

    old, new = raw_bucket("staging"), raw_bucket("prod")
    normalized = changes(
        old, new, normalize_old=Normalizer(staging).value, normalize_new=Normalizer(prod).value
    )
    assert [c.path for c in normalized] == ["lifecycle"]
    # Failing twin: the same comparison without normalization reports the names and tags.
    unnormalized = {c.path for c in changes(old, new)}
    assert {"bucket", "lifecycle"} <= unnormalized


# --- an identical copy, and a twin differing in one value --------------------------------------


def test_an_identical_copy_shows_no_configuration_and_no_resource_difference(
    copies: tuple[Path, Path],
) -> None:
    diff = compared(copies, "staging-copy")
    assert diff.configuration_differences == []
    assert {s.layer for s in diff.stacks} == {"data", "fhir", "network", "ml", "security"}
    assert all(s.is_unchanged for s in diff.stacks), render_text(diff)
    # The values that had to change for the copy to be valid are the per-environment ones.
    assert {"name", "account_id", "storage.bucket_prefix"} <= {
        f.field for f in diff.expected_differences
    }


def test_a_twin_differing_in_one_value_shows_exactly_that_difference(
    copies: tuple[Path, Path],
) -> None:
    diff = compared(copies, "staging-twin")
    assert [(f.field, f.old, f.new) for f in diff.configuration_differences] == [
        ("ml.inference.endpoint_instance_count", 1, 2)
    ]
    (changed_stack,) = diff.changed_stacks
    assert changed_stack.layer == "ml" and not changed_stack.added and not changed_stack.removed
    (resource,) = changed_stack.changed
    assert resource.address.startswith("aws_lambda_function.deployment_deployer")
    assert [(c.path, c.old, c.new) for c in resource.changes] == [
        ("environment.variables.INSTANCE_COUNT", "1", "2")
    ]


def test_stacks_belong_to_the_environment_their_tags_name_not_to_a_name_prefix(
    copies: tuple[Path, Path],
) -> None:
    _, outdir = copies
    stacks = environment_stacks(outdir, "staging")
    assert sorted(s.name for s in stacks.values()) == [
        "staging-data", "staging-fhir", "staging-ml", "staging-network", "staging-security",
    ]  # fmt: skip


# --- normalization and comparison, unit by unit ----------------------------------------------


def test_normalizer_replaces_whole_names_and_relative_addresses() -> None:
    prod = Normalizer(workload("prod"))
    assert prod.text("phi-ml-prod-readmission") == "phi-ml-{env}-readmission"
    assert prod.text("production") == "production"
    assert prod.text("phi_ml_prod_feature_store") == "phi_ml_{env}_feature_store"
    assert prod.text("arn:aws:s3:::acme-phi-prod-raw/*") == "arn:aws:s3:::{bucket_prefix}-raw/*"
    assert prod.text("arn:aws:iam::333333333333:role/x") == "arn:aws:iam::{account}:role/x"
    assert prod.text("10.30.32.0/19") == "{vpc_cidr}.subnet(3,1)"
    assert prod.text("10.30.0.2") == "{vpc_cidr}.host(2)"
    assert prod.text("172.16.0.0/16") == "{onprem_cidr_1}"
    assert prod.text("10.31.0.0/16") == "10.31.0.0/16"  # outside every per-environment range
    assert prod.value("65030") == "{vpn_bgp_asn}"
    assert prod.value("650301") == "650301"
    # Names that allow no hyphen (Glue databases) carry a hyphenated name with underscores.
    eu_research = Normalizer(workload("eu-research"))
    assert eu_research.text("phi_ml_eu_research_feature_store") == "phi_ml_{env}_feature_store"


def test_equal_values_never_differ_even_where_normalization_would_part_them() -> None:
    """AWS's own ECR layer bucket is `prod-<region>-...` in every environment."""
    staging, prod = Normalizer(workload("staging")), Normalizer(workload("prod"))
    aws_bucket = "arn:aws:s3:::prod-us-east-1-starport-layer-bucket/*"
    assert prod.value(aws_bucket) != staging.value(aws_bucket)
    assert (
        changes(aws_bucket, aws_bucket, normalize_old=staging.value, normalize_new=prod.value) == []
    )
    # Its failing twin: a value that really differs is still reported.
    other = "arn:aws:s3:::prod-us-west-2-starport-layer-bucket/*"
    assert changes(aws_bucket, other, normalize_old=staging.value, normalize_new=prod.value)


def test_policy_statements_are_compared_as_json_and_matched_by_sid() -> None:
    def policy(*statements: dict[str, Any]) -> str:
        return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})

    deny = {"Sid": "DenyPlainHttp", "Effect": "Deny"}
    allow = {"Sid": "AllowRead", "Effect": "Allow", "Action": "s3:GetObject"}
    wider = {**allow, "Action": "s3:*"}
    found = changes({"policy": policy(deny, allow)}, {"policy": policy(allow, deny)})
    assert found == []  # order of statements matched by Sid is no difference
    found = changes({"policy": policy(deny, allow)}, {"policy": policy(deny, wider)})
    assert [(c.path, c.old, c.new) for c in found] == [
        ("policy<json>.Statement[AllowRead].Action", "s3:GetObject", "s3:*")
    ]


def test_show_pair_keeps_the_differing_part_of_long_values_visible() -> None:
    prefix = "123456789012.dkr.ecr.us-east-1.amazonaws.com/phi-ml/readmission-inference"
    old, new = show_pair(f"{prefix}:1.4.2", f"{prefix}@sha256:{'a' * 64}")
    assert old.endswith(":1.4.2") and "@sha256:" in new
    assert len(new) <= promotion.VALUE_WIDTH


# --- controls ---------------------------------------------------------------------------------


def synthesized(environment: str, layer: str) -> SynthesizedStack:
    return SynthesizedStack(f"{environment}-{layer}", layer, {})


def finding(stack: str, check: str, status: Status, resource: str, *controls: str) -> Finding:
    return Finding(
        check_id=check,
        check_name=check,
        status=status,
        source=Source.STATIC,
        stack=stack,
        resource=resource,
        controls=controls,
    )


BUCKET = "aws_s3_bucket.storage_raw_bucket_0EBA1063"
HIPAA_RETENTION = "HIPAA-164.316-b-2"
PROTECTION = "HIPAA-164.310-d-2-iv"


def control_findings(prod_protection: Status) -> Findings:
    return Findings(
        Source.STATIC,
        "test",
        (
            finding("staging-data", "CKV_PHI_13", Status.FAILED, BUCKET, PROTECTION),
            finding("prod-data", "CKV_PHI_13", prod_protection, BUCKET, PROTECTION),
            finding("staging-data", "CKV_PHI_12", Status.PASSED, BUCKET, HIPAA_RETENTION),
            finding("prod-data", "CKV_PHI_12", Status.PASSED, BUCKET, HIPAA_RETENTION),
            # Another environment's stack, whose name starts like staging's: not compared.
            finding("staging-copy-data", "CKV_PHI_12", Status.FAILED, BUCKET, HIPAA_RETENTION),
            # A check that runs on one side only.
            finding("prod-network", "CKV_PHI_16", Status.PASSED, "aws_vpn_connection.v", "NET-1"),
        ),
    )


def test_controls_whose_status_differs_name_the_checks_and_resources_responsible() -> None:
    source = {"data": synthesized("staging", "data")}
    target = {"data": synthesized("prod", "data"), "network": synthesized("prod", "network")}
    staging, prod = Normalizer(workload("staging")), Normalizer(workload("prod"))
    found = compare_controls(control_findings(Status.PASSED), source, target, staging, prod)
    by_control = {c.control: c for c in found}
    assert set(by_control) == {PROTECTION, "NET-1"}
    protection = by_control[PROTECTION]
    assert (protection.from_status, protection.to_status) == ("fail", "pass")
    assert [(c.check_id, c.layer, c.resource) for c in protection.checks] == [
        ("CKV_PHI_13", "data", BUCKET)
    ]
    assert (by_control["NET-1"].from_status, by_control["NET-1"].to_status) == (
        NOT_EVALUATED,
        "pass",
    )
    # Failing twin: the same status on both sides is no difference.
    same = compare_controls(control_findings(Status.FAILED), source, target, staging, prod)
    assert PROTECTION not in {c.control for c in same}


def test_the_gate_finds_no_control_difference_between_identical_environments(
    copies: tuple[Path, Path],
) -> None:
    root, outdir = copies
    names = [f"{environment}-{layer}" for environment in ("staging", "staging-copy")
             for layer in ("data", "fhir", "network", "ml", "security")]  # fmt: skip
    findings = scan_controls(outdir, names)
    scanned = {finding.stack for finding in findings.findings if finding.controls}
    assert scanned == set(names)  # both sides were scanned and mapped to controls
    diff = promotion_diff(
        workload("staging", root), workload("staging-copy", root), outdir, findings=findings
    )
    assert diff.controls == ()


def test_the_scan_covers_only_the_compared_stacks(staging_prod: Path, tmp_path: Path) -> None:
    subset = copy_stacks(staging_prod, ["prod-data", "staging-data"], tmp_path / "out")
    assert sorted(p.name for p in (subset / "stacks").iterdir()) == ["prod-data", "staging-data"]
    manifest = json.loads((subset / "manifest.json").read_text())
    assert sorted(manifest["stacks"]) == ["prod-data", "staging-data"]


# --- rendering --------------------------------------------------------------------------------


def test_markdown_has_headings_tables_and_details(promotion_to_prod: PromotionDiff) -> None:
    markdown = render_markdown(promotion_to_prod)
    assert markdown.startswith("## Promotion `staging` → `prod`\n")
    for heading in ("### Environment file", "### Resources", "### Controls whose status differs"):
        assert f"\n{heading}\n" in markdown
    assert "| `production` | `false` | `true` |  |" in markdown
    assert "<summary>Expected per-environment values (" in markdown
    network = stack(promotion_to_prod, "network")
    assert f"| network | 3 | 1 | 0 | {network.unchanged} |" in markdown  # 1: provider tags
    data_changed = len(stack(promotion_to_prod, "data").changed)
    summary = f"<summary><code>data</code>: 0 added, {data_changed} changed, 0 removed</summary>"
    assert summary in markdown
    assert "Not compared (`--no-controls`)." in markdown
    assert markdown.count("<details>") == markdown.count("</details>")


def test_markdown_cells_escape_pipes(promotion_to_prod: PromotionDiff) -> None:
    field = promotion.FieldDifference("x", "a|b", "c", False, "")
    with_pipe = PromotionDiff("a", "b", (field,), (), None, ())
    assert "| `x` | `a\\|b` | `c` |" in render_markdown(with_pipe)


def test_text_groups_and_counts(promotion_to_prod: PromotionDiff) -> None:
    text = render_text(promotion_to_prod)
    first = text.splitlines()[0]
    configuration = len(promotion_to_prod.configuration_differences)
    changed_resources = sum(len(s.changed) for s in promotion_to_prod.stacks)
    assert first == (
        f"promotion staging -> prod: {configuration} configuration differences; "
        f"resources: 3 added, {changed_resources} changed, 1 removed"
    )
    assert "\n  unchanged: security\n" not in text  # its provider now tags it production
    assert re.search(r"^  configuration:\n(    .*\n)*    production +false -> true$", text, re.M)


# --- command line -----------------------------------------------------------------------------


def test_cli_prints_markdown_and_exits_0(
    staging_prod: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["staging", "prod", "--out", str(staging_prod), "--no-controls", "--format", "markdown"]
    assert promotion.main(argv) == 0
    assert capsys.readouterr().out.startswith("## Promotion `staging` → `prod`")


def test_cli_reads_findings_of_a_gate_run(
    staging_prod: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    findings_file = tmp_path / "findings.json"
    write_findings(findings_file, control_findings(Status.PASSED))
    argv = ["staging", "prod", "--out", str(staging_prod), "--findings", str(findings_file)]
    assert promotion.main(argv) == 0
    out = capsys.readouterr().out
    assert f"  {PROTECTION}: fail -> pass\n" in out
    assert f"      CKV_PHI_13 data {BUCKET}: fail -> pass\n" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["staging", "nope"], "environments/nope/environment.yaml: no such environment"),
        (["org", "prod"], "'org' is the organization environment"),
        (["staging", "org"], "'org' is the organization environment"),
    ],
)
def test_bad_environments_give_one_error_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert promotion.main([*argv, "--no-controls"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("error: ") and message in line


def test_a_synthesized_dir_without_the_environment_exits_2(
    staging_prod: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert promotion.main(["staging", "dev", "--out", str(staging_prod), "--no-controls"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "no stacks of environment 'dev'" in line
    assert promotion.main(["staging", "prod", "--out", str(tmp_path), "--no-controls"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "no synthesized stacks" in line


def test_an_unreadable_findings_file_exits_2(
    staging_prod: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "findings.json"
    broken.write_text('{"findings_version": 99}')
    argv = ["staging", "prod", "--out", str(staging_prod), "--findings", str(broken)]
    assert promotion.main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "not a readable findings file" in line
