"""cdktf app: synthesize every environment, or those named, into cdktf.out. Nothing else.

    python3 main.py                 # every environment
    python3 main.py dev prod        # only these (and always the organization's stacks)
    PHI_TARGET=local python3 main.py   # for the moto emulator on loopback
    python3 main.py --check --all-errors   # validate only, every problem of every file

Every environment file is validated before anything is written (and the names the platform
composes from them once synthesized), and the output is built in a temporary directory that
replaces the previous one only when all of that succeeded: a bad input leaves the last good
cdktf.out exactly as it was. `--check` stops there and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from environments.loader import (
    ENVIRONMENT_FILE,
    ENVIRONMENTS_DIR,
    EnvironmentFileError,
    EnvironmentFilesError,
    display_path,
    load_environments,
)
from environments.source import source_revision
from environments.target import Target

DEFAULT_OUTDIR = "cdktf.out"


def _configured_outdir() -> Path:
    # The cdktf CLI tells the app where to write through CDKTF_OUTDIR.
    if os.environ.get("CDKTF_OUTDIR"):
        return Path(os.environ["CDKTF_OUTDIR"])
    config = Path(__file__).with_name("cdktf.json")
    return Path(json.loads(config.read_text()).get("output", DEFAULT_OUTDIR))


def synthesize(
    names: list[str],
    outdir: Path,
    environments_dir: Path = ENVIRONMENTS_DIR,
    *,
    check_only: bool = False,
) -> list[str]:
    """Validate, synthesize into a temporary directory, judge the names it composed, then
    swap it into place (or, with `check_only`, discard it)."""
    target = Target.from_environment()
    source = source_revision(os.environ)
    # Every environment is validated, whichever are synthesized: the organization's stacks
    # depend on all of them (its trail records every environment's data buckets).
    environments = load_environments(None, environments_dir)
    unknown = sorted(set(names) - {e.name for e in environments})
    if unknown:
        known = ", ".join(sorted(e.name for e in environments))
        raise EnvironmentFileError(
            display_path(environments_dir / unknown[0] / ENVIRONMENT_FILE),
            "",
            f"no such environment (known: {known})",
        )
    # Imported only now: `--help` and bad input answer without loading cdktf and the bindings.
    from environments.composition import build_app  # noqa: PLC0415
    from policies.composed_names import composed_name_problems  # noqa: PLC0415

    outdir = outdir.resolve()
    staging = outdir.with_name(f"{outdir.name}.tmp-{os.getpid()}")
    retired = outdir.with_name(f"{outdir.name}.old-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    try:
        app = build_app(
            environments,
            selected=set(names) or None,
            outdir=str(staging),
            target=target,
            source=source,
        )
        app.synth()
        stacks = sorted(p.name for p in (staging / "stacks").iterdir())
        files = {
            e.name: display_path(environments_dir / e.name / ENVIRONMENT_FILE) for e in environments
        }
        refused = composed_name_problems(staging, environments, files)
        if refused:
            raise EnvironmentFilesError(refused)
        if check_only:
            return stacks
        if outdir.exists():
            outdir.rename(retired)
        staging.rename(outdir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
    return stacks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("environments", nargs="*", help="environment names (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="output directory")
    parser.add_argument(
        "--environments-dir",
        type=Path,
        default=Path(os.environ.get("PHI_ENVIRONMENTS_DIR", ENVIRONMENTS_DIR)),
        help="folder of <name>/environment.yaml (default: environments/)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate and judge the composed names, writing nothing",
    )
    parser.add_argument(
        "--all-errors",
        action="store_true",
        help="list every problem of every environment file, one per line (default: the first)",
    )
    args = parser.parse_args(argv)
    names = args.environments or os.environ.get("PHI_ENVIRONMENTS", "").split()
    try:
        stacks = synthesize(
            names,
            args.out or _configured_outdir(),
            args.environments_dir,
            check_only=args.check,
        )
    except EnvironmentFilesError as errors:
        for problem in errors.problems if args.all_errors else (errors,):
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except (EnvironmentFileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    done = "checked" if args.check else "synthesized"
    print(f"{done} {len(stacks)} stacks: {', '.join(stacks)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
