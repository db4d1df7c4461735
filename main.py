"""cdktf app: synthesize every environment, or those named, into cdktf.out. Nothing else.

    python3 main.py                 # every environment
    python3 main.py dev prod        # only these (and always the organization's stacks)
    PHI_TARGET=local python3 main.py   # for the moto emulator on loopback

Every environment file is validated before anything is written, and the output is built in a
temporary directory that replaces the previous one only when synthesis succeeded: a bad input
leaves the last good cdktf.out exactly as it was.
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
    names: list[str], outdir: Path, environments_dir: Path = ENVIRONMENTS_DIR
) -> list[str]:
    """Validate, synthesize into a temporary directory, then swap it into place."""
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
    args = parser.parse_args(argv)
    names = args.environments or os.environ.get("PHI_ENVIRONMENTS", "").split()
    try:
        stacks = synthesize(names, args.out or _configured_outdir(), args.environments_dir)
    except (EnvironmentFileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"synthesized {len(stacks)} stacks: {', '.join(stacks)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
