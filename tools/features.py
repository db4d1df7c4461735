"""`make features ENV=dev`: a synthetic FHIR export through the feature builder into the
environment's feature groups, on the local AWS emulator (no AWS account).

    python -m tools.features dev [--patients 200] [--seed 7] [--reports reports/features]

Starts moto on loopback, applies `bootstrap` and `<env>-data` exactly as `make e2e` does (KMS
keys, the hardened buckets, the feature groups as the stack declares them), then runs the data
flow of `tools.feature_flow` and leaves `<reports>/<env>/export/` (the NDJSON input),
`<reports>/<env>/offline/` (the Parquet written, mirrored locally) and
`<reports>/<env>/summary.json`. The emulator stops at the end; nothing outlives the run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from environments.loader import (
    EnvironmentFileError,
    load_environment,
)
from environments.schema import WorkloadEnvironment
from tools.cli import UsageError, add_jobs_option, positive_int, run_command
from tools.e2e import (
    deploy_stacks,
    emulator_session,
    has_environment,
    provider_identities,
    synthesize_local,
)
from tools.feature_flow import (
    DEFAULT_PATIENTS,
    DEFAULT_SEED,
    Population,
    environment_path,
    flow_features,
    leaked_identifiers,
    summary_lines,
    write_summary,
)
from tools.terraform import (
    Outcome,
    Progress,
    Terraform,
    emulator_workspace,
    load_stacks,
    require_local_target,
    with_dependencies,
)

DEFAULT_OUTDIR: Final = Path("cdktf.out.local")
DEFAULT_REPORTS: Final = Path("reports/features")


def workload(name: str) -> WorkloadEnvironment:
    try:
        environment = load_environment(environment_path(name))
    except EnvironmentFileError as error:
        raise UsageError(str(error)) from None
    if not isinstance(environment, WorkloadEnvironment):
        raise UsageError(f"{name} is the organization: it has no feature groups")
    return environment


def run_features(
    environment_name: str,
    *,
    outdir: Path,
    reports: Path,
    population: Population,
    jobs: int,
    base_environment: Mapping[str, str],
) -> dict[str, Any]:
    started = time.monotonic()
    environment = workload(environment_name)
    folder = reports / environment_name
    if not has_environment(outdir, environment_name):
        synthesize_local(outdir, environment_name)
    stacks = load_stacks(outdir)
    data_stack = stacks.get(f"{environment_name}-data")
    if data_stack is None:
        raise UsageError(f"{outdir} holds no {environment_name}-data stack")
    wanted = with_dependencies(stacks, [data_stack])
    require_local_target(outdir, wanted)
    terraform = Terraform.from_environment(base_environment)
    progress = Progress(wanted)
    folder.mkdir(parents=True, exist_ok=True)
    with emulator_workspace(
        outdir,
        wanted,
        terraform,
        log=folder / "emulator.log",
        progress=progress,
        prefix="phi-ml-features-",
    ) as workspace:
        deployed = deploy_stacks(
            workspace.terraform,
            workspace.stacks,
            workspace.emulator,
            jobs=jobs,
            progress=progress,
            pending={},
        )
        failed = [r for r in deployed.values() if r.outcome is not Outcome.APPLIED]
        if failed:
            raise UsageError(
                f"{failed[0].stack} did not apply on the emulator: {failed[0].problem or '?'}"
            )
        progress.note("features: export -> raw bucket -> feature builder -> feature groups")
        identity = next(
            i for i in provider_identities([data_stack]) if i.account == environment.account_id
        )
        endpoint_url = workspace.emulator.endpoint_url
        summary = flow_features(
            environment,
            emulator_session(endpoint_url, identity, "phi-ml-features"),
            endpoint_url=endpoint_url,
            folder=folder,
            population=population,
        )
    summary["seconds_total"] = round(time.monotonic() - started, 1)
    write_summary(folder, summary)
    return summary


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.features", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("environment", metavar="ENV", help="a workload environment (dev, ...)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTDIR, help="local synthesis")
    parser.add_argument("--reports", type=Path, default=DEFAULT_REPORTS)
    parser.add_argument("--patients", type=positive_int, default=DEFAULT_PATIENTS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    add_jobs_option(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)

    def generate_build_write() -> int:
        summary = run_features(
            arguments.environment,
            outdir=arguments.out,
            reports=arguments.reports,
            population=Population(arguments.patients, arguments.seed),
            jobs=arguments.jobs,
            base_environment=os.environ,
        )
        print("\n".join(summary_lines(summary)))
        folder = arguments.reports / arguments.environment
        print(f"  {summary['seconds_total']} s in all; outputs in {folder}")
        # An opted-out patient's identifier in the stores is a consent breach, not a detail.
        return 1 if leaked_identifiers(summary) else 0

    return run_command(generate_build_write)


if __name__ == "__main__":
    sys.exit(main())
