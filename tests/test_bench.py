"""`make bench` (tools/bench.py): the environment copier, the statistics, the rendering, the
command line and the measuring harness. No timing is asserted here: speed is what the benchmark
measures, not what a test may depend on. One synth of two generated environments is made once
for the module.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import main
from environments.loader import EnvironmentFileError, load_environment, load_environments
from environments.schema import OrganizationEnvironment, WorkloadEnvironment
from policies import gate
from tools import bench
from tools.bench import (
    BARE_CHECKOV,
    GATE,
    NAIVE,
    PREFLIGHT,
    SCAN,
    SYNTH,
    VALIDATE,
    VALIDATE_SINGLE_SUM,
    BenchError,
    BenchReport,
    GrowthPoint,
    Measurement,
    Sample,
    Summary,
    combined,
    environment_copy,
    fit_line,
    generate_environments,
    growth_fits,
    growth_sentence,
    parse_arguments,
    ratios,
    render_markdown,
    render_text,
    report_json,
    run_measured,
    tree_rss_bytes,
    wait_for_quiet_machine,
)

MB = 2**20


# --- generated environments -------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("environments")
    generate_environments(3, root)
    return root


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("two-environments")
    generate_environments(2, root)
    outdir = tmp_path_factory.mktemp("synth") / "cdktf.out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PHI_TARGET", "aws")
        main.synthesize([], outdir, root)
    return outdir


def workloads(root: Path) -> list[WorkloadEnvironment]:
    return [e for e in load_environments(None, root) if isinstance(e, WorkloadEnvironment)]


def per_environment_values(environment: WorkloadEnvironment) -> dict[str, object]:
    """The values no two environments may share: an account, S3's global names, the IP plan
    and the names of the account's HealthLake datastore and pipeline."""
    vpn = environment.ingest.vpn
    assert vpn is not None and environment.ml.fhir is not None
    return {
        "name": environment.name,
        "account_id": environment.account_id,
        "deployment_role_arn": environment.deployment_role_arn,
        "bucket_prefix": environment.storage.bucket_prefix,
        "vpc_cidr": environment.network.vpc_cidr,
        "onprem_cidrs": vpn.onprem_cidrs,
        "peer_ip": vpn.peer_ip,
        "datastore_name": environment.ml.fhir.datastore_name,
        "pipeline_name": environment.ml.pipeline.name,
    }


def shared_values(environments: list[WorkloadEnvironment]) -> list[str]:
    """Per-environment fields holding the same value in two of `environments`."""
    shared = []
    for field in per_environment_values(environments[0]):
        values = [str(per_environment_values(e)[field]) for e in environments]
        if len(set(values)) != len(values):
            shared.append(field)
    return shared


def overlapping_networks(environments: list[WorkloadEnvironment]) -> list[tuple[str, str]]:
    networks = []
    for environment in environments:
        assert environment.ingest.vpn is not None
        networks += [environment.network.vpc_cidr, *environment.ingest.vpn.onprem_cidrs]
    parsed = [ipaddress.IPv4Network(n) for n in networks]
    return [
        (str(a), str(b)) for i, a in enumerate(parsed) for b in parsed[i + 1 :] if a.overlaps(b)
    ]


def test_copies_load_as_valid_environments_with_the_organization(generated: Path) -> None:
    environments = load_environments(None, generated)
    names = sorted(e.name for e in environments)
    assert names == ["bench-01", "bench-02", "bench-03", "org"]
    organization = next(e for e in environments if isinstance(e, OrganizationEnvironment))
    shipped = load_environment(bench.ENVIRONMENTS_DIR / "org" / "environment.yaml")
    assert isinstance(shipped, OrganizationEnvironment)
    # The shipped organization, now governing the copies too (the cross-environment rules
    # refuse a workload whose account no OU holds).
    added = organization.governance.accounts[len(shipped.governance.accounts) :]
    assert organization.governance.accounts[: len(shipped.governance.accounts)] == (
        shipped.governance.accounts
    )
    assert [(a.name, a.role) for a in added] == [(n, "workload") for n in names[:-1]]
    assert organization.model_copy(update={"governance": shipped.governance}) == shipped


def test_every_per_environment_value_is_unique(generated: Path) -> None:
    copies = workloads(generated)
    template = load_environment(bench.ENVIRONMENTS_DIR / "dev" / "environment.yaml")
    assert isinstance(template, WorkloadEnvironment)
    assert shared_values([*copies, template]) == []
    assert overlapping_networks(copies) == []
    # Roles and the environment's own images moved to the copy's account with it.
    for copy in copies:
        text = (generated / copy.name / "environment.yaml").read_text()
        assert template.account_id not in text


def test_two_copies_of_one_index_share_everything_and_are_caught(generated: Path) -> None:
    template = yaml.safe_load((bench.ENVIRONMENTS_DIR / "dev" / "environment.yaml").read_text())
    twin_root = generated.parent / "twins"
    for folder in ("a", "b"):
        copy = environment_copy(yaml.safe_load(yaml.safe_dump(template)), 1)
        copy["name"] = f"twin-{folder}"
        (twin_root / copy["name"]).mkdir(parents=True, exist_ok=True)
        (twin_root / copy["name"] / "environment.yaml").write_text(yaml.safe_dump(copy))
    twins = [
        e
        for e in (
            load_environment(twin_root / f"twin-{n}" / "environment.yaml") for n in ("a", "b")
        )
        if isinstance(e, WorkloadEnvironment)
    ]
    assert "account_id" in shared_values(twins)
    assert "bucket_prefix" in shared_values(twins)
    assert overlapping_networks(twins) != []


def test_a_copy_that_breaks_a_schema_rule_is_refused_by_the_loader(tmp_path: Path) -> None:
    # The loader is what makes "valid" mean something: a copy whose site range overlaps its
    # own VPC must not load.
    template = yaml.safe_load((bench.ENVIRONMENTS_DIR / "dev" / "environment.yaml").read_text())
    copy = environment_copy(template, 5)
    copy["ingest"]["vpn"]["onprem_cidrs"] = [copy["network"]["vpc_cidr"]]
    (tmp_path / copy["name"]).mkdir()
    (tmp_path / copy["name"] / "environment.yaml").write_text(yaml.safe_dump(copy))
    with pytest.raises(EnvironmentFileError, match=r"overlaps network\.vpc_cidr"):
        load_environment(tmp_path / copy["name"] / "environment.yaml")


def test_account_ids_stay_quoted_twelve_digit_strings(generated: Path) -> None:
    text = (generated / "bench-02" / "environment.yaml").read_text()
    assert "account_id: '700000000002'" in text


@pytest.mark.parametrize("count", [0, bench.MAX_GENERATED_ENVIRONMENTS + 1])
def test_generating_outside_the_supported_range_is_refused(tmp_path: Path, count: int) -> None:
    with pytest.raises(BenchError, match="cannot generate"):
        generate_environments(count, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_organization_environment_is_no_template(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="not a workload environment"):
        generate_environments(1, tmp_path, template="org")


def bucket_names(outdir: Path, stack: str) -> set[str]:
    configuration = json.loads((outdir / "stacks" / stack / "cdk.tf.json").read_text())
    return {b["bucket"] for b in configuration["resource"]["aws_s3_bucket"].values()}


def test_synth_of_the_copies_gives_each_its_own_stacks(synthesized: Path) -> None:
    stacks = bench.stack_names(synthesized)
    layers = ("data", "fhir", "ml", "network", "security")
    for name in ("bench-01", "bench-02"):
        assert {f"{name}-{layer}" for layer in layers} <= set(stacks)
    assert not any(s.startswith("dev-") for s in stacks)
    assert len(stacks) == 3 + 2 * len(layers)
    first, second = (
        bucket_names(synthesized, "bench-01-data"),
        bucket_names(synthesized, "bench-02-data"),
    )
    assert first and second
    assert first.isdisjoint(second)
    # The disjointness check can fail: a stack shares every bucket name with itself.
    assert not first.isdisjoint(bucket_names(synthesized, "bench-01-data"))


def test_bare_checkov_is_the_gates_own_command_over_the_gates_stacks(
    synthesized: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def record(command: list[str], **options: Any) -> Sample:
        calls.append({"command": command, **options})
        return Sample(1.0, 0, 0.0, None, None)

    monkeypatch.setattr(bench, "run_measured", record)
    bench.run_bare_checkov(synthesized, {"PATH": "/usr/bin", "BC_API_KEY": "secret"})
    (call,) = calls
    scanned = [Path(p) for p in call["command"][call["command"].index("--file") + 1 :]]
    assert scanned == sorted(s.file for s in gate.find_stacks(synthesized).values())
    report_dir = Path(call["command"][call["command"].index("--output-file-path") + 1])
    assert call["command"] == gate.checkov_command(
        scanned, report_dir, gate.custom_checks_dir(gate.CHECKS_DIR)
    )
    environment = call["environment"]
    assert environment == gate.checkov_environment(
        {"PATH": "/usr/bin", "BC_API_KEY": "secret"}, Path(environment["HOME"])
    )
    assert "BC_API_KEY" not in environment
    assert call["cwd"] == report_dir.parent  # the scratch directory, as the gate runs it


# --- statistics -------------------------------------------------------------------------------


def test_summary_is_median_min_max() -> None:
    assert Summary.of([3.0, 1.0, 10.0, 2.0, 4.0]) == Summary(3.0, 1.0, 10.0, 5)
    assert Summary.of([1.0, 2.0, 3.0, 10.0]).median == 2.5
    with pytest.raises(ValueError, match="no samples"):
        Summary.of([])


def test_least_squares_fit_of_known_points() -> None:
    exact = fit_line([1, 4, 16], [5, 14, 50])  # 2 + 3 N
    assert exact.fixed == pytest.approx(2.0)
    assert exact.per_unit == pytest.approx(3.0)
    assert exact.r_squared == pytest.approx(1.0)
    noisy = fit_line([1, 2, 3, 4], [2, 4, 5, 8])  # by hand: 0 + 1.9 x, R^2 = 1 - 0.7/18.75
    assert noisy.fixed == pytest.approx(0.0, abs=1e-9)
    assert noisy.per_unit == pytest.approx(1.9)
    assert noisy.r_squared == pytest.approx(1 - 0.7 / 18.75)
    assert noisy.max_relative_residual == pytest.approx(0.7 / 5)  # 5 fitted as 5.7
    assert exact.linear
    assert not noisy.linear  # 14 % off at x = 3
    assert fit_line([1, 2], [7, 7]).r_squared == 1.0


def test_a_curve_is_not_called_linear_though_its_r_squared_is_high() -> None:
    quadratic = fit_line([1, 4, 16], [1, 16, 256])
    assert quadratic.r_squared > 0.95
    assert not quadratic.linear
    assert quadratic.max_relative_residual > 1


@pytest.mark.parametrize(
    ("xs", "ys", "message"),
    [([4, 4], [1, 2], "two distinct"), ([1, 2, 3], [1, 2], "3 x values but 2")],
)
def test_a_fit_without_enough_points_is_refused(
    xs: list[float], ys: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fit_line(xs, ys)


def test_commands_run_in_sequence_combine_as_sum_of_time_and_highest_memory() -> None:
    whole = combined(
        [Sample(1.0, 0, 0.5, 100, 150), Sample(2.5, 1, 0.7, 300, None), Sample(0.5, 0, 1, None, 90)]
    )
    assert whole == Sample(4.0, 1, 0.5, 300, 150)


# --- ratios and rendering ---------------------------------------------------------------------


def samples(*seconds: float, rss: int | None = None) -> list[Sample]:
    return [Sample(s, 0, 0.3, rss, rss) for s in seconds]


def report_with(
    *,
    synth: float = 4.0,
    preflight: float = 4.0,
    growth: dict[int, tuple[float, float]] | None = None,
) -> BenchReport:
    measured = {
        NAIVE: (samples(10.0, 12.0, 11.0, rss=1600 * MB), "naive import"),
        SYNTH: (samples(synth, synth + 1, synth - 1, rss=600 * MB), "synth, all environments"),
        VALIDATE: (samples(50.0), "validate, all stacks (parallel)"),
        VALIDATE_SINGLE_SUM: (samples(100.0), "validate, sum of single stacks"),
        SCAN: (samples(9.0), "scan (policy gate)"),
        PREFLIGHT: (samples(preflight), "preflight (deployability)"),
        BARE_CHECKOV: (samples(8.0), "bare checkov, same checks"),
        GATE: (samples(80.0), "pull-request gate"),
    }
    points = [
        GrowthPoint(
            n, 3 + 5 * n, samples(synth_s), samples(scan_s), samples(20.0 * n) if n <= 4 else []
        )
        for n, (synth_s, scan_s) in (
            growth or {1: (3.0, 4.0), 4: (4.5, 7.0), 16: (10.5, 19.0)}
        ).items()
    ]
    return BenchReport(
        started="2026-01-02T03:04:05+00:00",
        machine={
            "cpu_model": "Test CPU 9000",
            "usable_cpus": 2,
            "memory_bytes": 24 * 2**30,
            "python": "3.11.2",
            "terraform": "1.11.4",
            "checkov": "3.3.30",
            "node": "20.1.0",
        },
        settings={"runs": 3},
        load_start=(0.4, 0.5, 0.6),
        waited_seconds=0.0,
        measurements={key: Measurement(title, "cmd", s) for key, (s, title) in measured.items()},
        growth=points,
        finished="2026-01-02T03:24:05+00:00",
        load_end=(0.9, 0.8, 0.7),
    )


def by_key(report: BenchReport) -> dict[str, bench.Ratio]:
    return {r.key: r for r in ratios(report)}


def test_ratios_from_medians_and_their_verdicts() -> None:
    found = by_key(report_with(synth=4.0))
    assert found["synth_vs_naive_import"].value == pytest.approx(4.0 / 11.0)
    assert found["synth_vs_naive_import"].met is True
    assert found["scan_vs_bare_checkov"].value == pytest.approx(9.0 / 8.0)
    assert found["validate_parallel_vs_single_sum"].value == pytest.approx(0.5)
    assert found["preflight_vs_scan"].value == pytest.approx(4.0 / 9.0)
    assert found["growth_16_vs_1"].value == pytest.approx((10.5 + 19.0) / 7.0)
    assert all(r.met for r in found.values())


def test_a_slow_synth_misses_its_target() -> None:
    found = by_key(report_with(synth=6.0))
    assert found["synth_vs_naive_import"].met is False
    assert found["synth_vs_naive_import"].verdict() == "NOT MET"


def test_a_slow_preflight_misses_its_target() -> None:
    found = by_key(report_with(preflight=5.0))
    assert found["preflight_vs_scan"].met is False


def test_growth_target_without_sixteen_environments_is_not_measured() -> None:
    report = report_with(growth={1: (3.0, 4.0), 4: (4.5, 7.0)})
    found = by_key(report)
    assert found["growth_16_vs_1"].met is None
    assert found["growth_16_vs_1"].verdict() == "not measured"
    assert found["growth_largest_vs_smallest"].value == pytest.approx(11.5 / 7.0)


def test_growth_fits_and_sentence() -> None:
    report = report_with()
    fits = growth_fits(report.growth)
    assert fits is not None
    assert fits.synth_and_scan.per_unit == pytest.approx(1.5)  # 7, 11.5, 29.5: 5.5 + 1.5 N
    assert fits.synth_and_scan.fixed == pytest.approx(5.5)
    assert fits.linear
    assert fits.validate is not None and fits.validate.per_unit == pytest.approx(20.0)
    sentence = growth_sentence(report)
    assert "7.0 s for 1, 11.5 s for 4, 29.5 s for 16 environments; linear (the line is" in sentence
    assert "R² 1.000): 1.5 s per environment on top of a fixed 5.5 s" in sentence
    assert "(synth 2.5 s, scan 3.0 s)" in sentence
    assert "16 environments cost 4.2 x one (target <= 6: met)" in sentence


def test_a_curved_growth_is_reported_as_not_linear() -> None:
    report = report_with(growth={1: (1.0, 1.0), 2: (3.0, 3.0), 4: (10.0, 10.0), 16: (150.0, 150.0)})
    assert "; not linear (the line misses a point by" in growth_sentence(report)
    assert "(target <= 6: NOT MET)" in growth_sentence(report)
    assert growth_fits([GrowthPoint(1, 8, samples(1.0), samples(1.0))]) is None


def test_text_table_shows_every_measurement_ratio_and_growth_row() -> None:
    text = render_text(report_with())
    lines = text.splitlines()
    naive = next(line for line in lines if line.startswith("naive import"))
    assert naive.split()[2:7] == ["11.0", "10.0", "12.0", "3", "1.56"]
    assert any(
        line.startswith("synth (all environments) / naive import") and line.endswith("met")
        for line in lines
    )
    growth_rows = [line.split() for line in lines if line[:2].strip().isdigit()]
    assert [row[:2] for row in growth_rows] == [["1", "8"], ["4", "23"], ["16", "83"]]
    assert growth_rows[2][5] == "-"  # no validate at 16
    assert "fit synth+scan: 5.5 s fixed + 1.50 s x N (R² 1.000, worst point off by 0.0%)" in text
    assert "load 0.40 at start, 0.90 at end" in text


def test_markdown_tables_are_well_formed_and_carry_the_verdicts() -> None:
    markdown = render_markdown(report_with(synth=6.0))
    tables = [line for line in markdown.splitlines() if line.startswith("|")]
    for line in tables:
        assert line.endswith("|")
    header_widths = {line.count("|") for line in tables if set(line) <= set("|-")}
    assert header_widths == {5, 6, 7}  # three tables of 4, 5 and 6 columns
    assert "| synth (all environments) / naive import | 0.55 | <= 0.4 | NOT MET |" in markdown
    assert "Test CPU 9000, 2 CPUs, 24.00 GB RAM" in markdown
    assert "load average 0.40 before measuring, 0.90 at the end" in markdown
    assert "| naive import | 11.0 | 10.0-12.0 | 3 | 1.56 GB / 1.56 GB |" in markdown
    assert "16 environments cost 4.2 x one (target <= 6: met)." in markdown


def test_json_holds_raw_samples_machine_and_verdicts() -> None:
    document = json.loads(json.dumps(report_json(report_with())))
    assert document["machine"]["cpu_model"] == "Test CPU 9000"
    assert [s["seconds"] for s in document["measurements"][NAIVE]["samples"]] == [10.0, 12.0, 11.0]
    assert document["measurements"][NAIVE]["summary"]["median"] == 11.0
    assert document["load_average"] == {
        "start": [0.4, 0.5, 0.6],
        "end": [0.9, 0.8, 0.7],
        "waited_seconds": 0.0,
    }
    assert {r["key"]: r["met"] for r in document["ratios"]}["growth_16_vs_1"] is True
    assert document["growth"]["fits"]["synth_and_scan"]["per_unit"] == pytest.approx(1.5)


# --- command line -----------------------------------------------------------------------------


def test_defaults_and_quick() -> None:
    settings = parse_arguments([])
    assert (settings.runs, settings.heavy_runs, settings.scales) == (5, 3, (1, 4, 16))
    quick = parse_arguments(["--quick"])
    assert (quick.runs, quick.heavy_runs, quick.scales) == (1, 1, (1, 4))
    given = parse_arguments(["--quick", "--runs", "2", "--scale", "8,2"])
    assert (given.runs, given.heavy_runs, given.scales) == (2, 1, (2, 8))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--runs", "0"], "--runs: 0: at least 1"),
        (["--heavy-runs", "two"], "'two' is not a whole number"),
        (["--scale", "1"], "at least two counts"),
        (["--scale", "1,1"], "repeated"),
        (["--scale", "0,4"], "every environment count must be 1-99"),
        (["--scale", "1,x"], "not a comma-separated list"),
        (["--max-load", "-1"], "must not be negative"),
        (["--output", "r/x", "--markdown", "r/x"], "name the same file"),
        (["--unknown"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_exit_2_with_one_message(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_arguments(arguments)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_an_output_that_is_a_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_arguments(["--output", str(tmp_path)])
    assert "is a directory" in capsys.readouterr().err


# --- waiting for a quiet machine --------------------------------------------------------------


def test_waits_in_steps_until_the_load_drops() -> None:
    loads = iter([2.5, 1.8, 1.2, 1.2])
    slept: list[float] = []
    waited = wait_for_quiet_machine(
        1.5, 600, load=lambda: next(loads), sleep=slept.append, log=lambda _: None
    )
    assert slept == [60, 60]
    assert waited == 120


def test_gives_up_waiting_after_the_limit_and_says_so() -> None:
    slept: list[float] = []
    logged: list[str] = []
    waited = wait_for_quiet_machine(
        1.5, 150, load=lambda: 3.0, sleep=slept.append, log=logged.append
    )
    assert slept == [60, 60, 30]
    assert waited == 150
    assert "measuring anyway" in logged[-1]


# --- the harness ------------------------------------------------------------------------------


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# Touches every page, so that the memory is resident, and keeps it long enough to be sampled.
HOLD = (
    "import time; block = bytearray({size}); "
    "block[::4096] = b'x' * len(block[::4096]); time.sleep(0.8)"
)


def test_a_failing_command_raises_with_its_exit_code_and_output() -> None:
    with pytest.raises(BenchError, match=r"exited 3 after .*\n  boom"):
        run_measured(python("import sys; print('boom'); sys.exit(3)"), environment={})
    accepted = run_measured(python("import sys; sys.exit(1)"), environment={}, accepted=(0, 1))
    assert accepted.exit_code == 1


def measured_from_a_small_parent(code: str) -> tuple[int, int]:
    """(largest process, tree) peaks of `python -c code`, measured by run_measured from a
    fresh interpreter as `make bench` does: a child's peak includes what it shared with its
    parent before exec, and pytest's own process is large."""
    measure = (
        "from tools.bench import run_measured; import sys; "
        f"s = run_measured([sys.executable, '-c', {code!r}], environment={{}}); "
        "print(s.peak_rss_bytes, s.tree_peak_rss_bytes)"
    )
    output = subprocess.run(python(measure), capture_output=True, text=True, check=True).stdout
    largest, tree = output.split()
    return int(largest), int(tree)


def test_memory_of_the_largest_process_and_of_the_tree() -> None:
    assert measured_from_a_small_parent("pass")[0] < 100 * MB
    assert measured_from_a_small_parent(HOLD.format(size=200 * MB))[0] >= 200 * MB
    # A parent holding 150 MB starts a child holding 150 MB: the largest process is ~150 MB,
    # the tree ~300 MB while both are alive.
    parent = (
        "import subprocess, sys, time; block = bytearray(150 * 2**20); "
        "block[::4096] = b'x' * len(block[::4096]); "
        f"subprocess.run([sys.executable, '-c', {HOLD.format(size=150 * MB)!r}], check=True)"
    )
    largest, tree = measured_from_a_small_parent(parent)
    assert largest < 250 * MB
    assert tree >= 300 * MB


def test_tree_rss_sums_the_descendants_only() -> None:
    table = {1: (0, 10), 2: (1, 5), 3: (2, 1), 4: (0, 100), 5: (4, 7)}
    page = os.sysconf("SC_PAGE_SIZE")
    assert tree_rss_bytes(1, table) == 16 * page
    assert tree_rss_bytes(4, table) == 107 * page
    assert tree_rss_bytes(99, table) == 0
