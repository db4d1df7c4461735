"""Digests of the synthesized Terraform: which stacks a change touches, and proof that what is
promoted to an environment is exactly what passed in the environment below it.

    python -m tools.synth_digest record [--out cdktf.out] [--output FILE]
    python -m tools.synth_digest verify [--out cdktf.out] --expected DIGEST
    python -m tools.synth_digest changed --base DIR --head DIR [--output FILE]
                                         [--github-output FILE]

A stack's digest is the SHA-256 of every file main.py wrote for it (cdk.tf.json and its assets,
such as Lambda bundles), by relative path; terraform's own working files (.terraform/, locks,
state, saved plans) are not part of it. The output's digest covers every stack's digest and
the dependencies between stacks. Synthesis is deterministic, so the same commit always gives
the same digest, and any change to a stack's configuration changes that stack's digest.

`record` prints the digest and writes the per-stack record as JSON. `verify` exits 1 when the
output's digest differs from the expected one. `changed` compares two synthesized directories
(a pull request's base and head) and lists the stacks added, changed and removed; a base that
is missing or empty (its synthesis failed) makes every head stack "added". With
--github-output it also writes `matrix` (one entry per environment: its stacks, region and
the suffix of its role variables) and `any` (true when a stack is added or changed) for a
GitHub Actions job matrix.

Exit status: 0 ok, 1 digest mismatch, 2 usage error (message on stderr).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_OUTDIR = Path("cdktf.out")
MANIFEST = "manifest.json"
STACK_FILE = "cdk.tf.json"
# Terraform writes these into a stack's directory when it runs there; they are not output.
TERRAFORM_WORKING_FILES = (".terraform", ".terraform.lock.hcl")
TERRAFORM_WORKING_SUFFIXES = (".tfstate", ".tfstate.backup", ".tfplan")
# The organization's stacks carry no environment tag of a workload; they belong to "org".
UNTAGGED_ENVIRONMENT = "org"


class DigestError(Exception):
    """The synthesized output cannot be read as asked; the message names the file and why."""


@dataclass(frozen=True)
class StackRecord:
    name: str
    digest: str
    environment: str
    account_id: str
    region: str
    dependencies: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "environment": self.environment,
            "account_id": self.account_id,
            "region": self.region,
            "dependencies": list(self.dependencies),
        }


@dataclass(frozen=True)
class SynthRecord:
    digest: str
    stacks: Mapping[str, StackRecord]

    def as_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "stacks": {name: stack.as_json() for name, stack in sorted(self.stacks.items())},
        }


@dataclass(frozen=True)
class Changes:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def to_plan(self) -> tuple[str, ...]:
        return tuple(sorted((*self.added, *self.changed)))

    def as_json(self) -> dict[str, list[str]]:
        return {
            "added": list(self.added),
            "changed": list(self.changed),
            "removed": list(self.removed),
        }


def _is_working_file(relative: Path) -> bool:
    return relative.parts[0] in TERRAFORM_WORKING_FILES or relative.name.endswith(
        TERRAFORM_WORKING_SUFFIXES
    )


def stack_digest(directory: Path) -> str:
    """SHA-256 over every synthesized file of one stack, each named by its relative path."""
    if not (directory / STACK_FILE).is_file():
        raise DigestError(f"{directory / STACK_FILE}: missing (is this a synthesized stack?)")
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory)
        if _is_working_file(relative):
            continue
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
    return digest.hexdigest()


def _provider(configuration: Mapping[str, Any]) -> Mapping[str, Any]:
    providers = configuration.get("provider", {}).get("aws", [])
    return providers[0] if providers else {}


def _configuration(directory: Path) -> Mapping[str, Any]:
    path = directory / STACK_FILE
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise DigestError(f"{path}: missing (is this a synthesized stack?)") from None
    except json.JSONDecodeError as error:
        raise DigestError(f"{path}: not JSON ({error})") from None


def _manifest(outdir: Path) -> Mapping[str, Any]:
    path = outdir / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DigestError(f"{path}: missing (run `make synth` first)") from None
    except json.JSONDecodeError as error:
        raise DigestError(f"{path}: not JSON ({error})") from None
    stacks = manifest.get("stacks")
    if not isinstance(stacks, dict) or not stacks:
        raise DigestError(f"{path}: stacks: no synthesized stacks listed")
    return stacks


def record(outdir: Path) -> SynthRecord:
    """The digest of a synthesized directory and of each of its stacks."""
    stacks: dict[str, StackRecord] = {}
    for name, entry in sorted(_manifest(outdir).items()):
        directory = outdir / entry.get("workingDirectory", f"stacks/{name}")
        configuration = (
            json.loads((directory / STACK_FILE).read_text()) if directory.is_dir() else {}
        )
        provider = _provider(configuration)
        tags = (provider.get("default_tags") or [{}])[0].get("tags", {})
        accounts = provider.get("allowed_account_ids") or [""]
        stacks[name] = StackRecord(
            name=name,
            digest=stack_digest(directory),
            environment=str(tags.get("environment", UNTAGGED_ENVIRONMENT)),
            account_id=str(accounts[0]),
            region=str(provider.get("region", "")),
            dependencies=tuple(sorted(entry.get("dependencies", ()))),
        )
    overall = hashlib.sha256()
    for name, stack in stacks.items():
        overall.update(f"{name}\t{stack.digest}\t{','.join(stack.dependencies)}\n".encode())
    return SynthRecord(digest=overall.hexdigest(), stacks=stacks)


def compare(base: Mapping[str, StackRecord], head: Mapping[str, StackRecord]) -> Changes:
    return Changes(
        added=tuple(sorted(head.keys() - base.keys())),
        changed=tuple(
            sorted(n for n in head.keys() & base.keys() if head[n].digest != base[n].digest)
        ),
        removed=tuple(sorted(base.keys() - head.keys())),
    )


def variable_suffix(environment: str) -> str:
    """The suffix of an environment's GitHub variables (names allow only A-Z, 0-9 and _)."""
    return "".join(c if c.isalnum() else "_" for c in environment.upper())


def plan_matrix(head: Mapping[str, StackRecord], stacks: Sequence[str]) -> dict[str, Any]:
    """One matrix entry per environment: an OIDC role per environment, one job each."""
    by_environment: dict[str, list[StackRecord]] = {}
    for name in stacks:
        by_environment.setdefault(head[name].environment, []).append(head[name])
    return {
        "include": [
            {
                "environment": environment,
                "variable_suffix": variable_suffix(environment),
                "region": members[0].region,
                "stacks": " ".join(sorted(member.name for member in members)),
            }
            for environment, members in sorted(by_environment.items())
        ]
    }


def _head_or_empty(directory: Path) -> dict[str, StackRecord]:
    # A base whose synthesis failed (or that predates this project) has nothing to compare.
    if not (directory / MANIFEST).is_file():
        return {}
    return dict(record(directory).stacks)


def _write_github_output(path: Path, values: Mapping[str, str]) -> None:
    with path.open("a") as output:
        for key, value in values.items():
            if "\n" in value:
                raise DigestError(f"{path}: {key}: a GitHub output value must be one line")
            output.write(f"{key}={value}\n")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.synth_digest", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    recording = commands.add_parser("record", help="print the digest, write the record as JSON")
    recording.add_argument("--out", type=Path, default=DEFAULT_OUTDIR)
    recording.add_argument("--output", type=Path, help="write the per-stack record here")
    recording.add_argument("--github-output", type=Path, help="append digest=... here")
    verifying = commands.add_parser("verify", help="exit 1 unless the digest is the expected one")
    verifying.add_argument("--out", type=Path, default=DEFAULT_OUTDIR)
    verifying.add_argument("--expected", required=True, help="the digest recorded upstream")
    changing = commands.add_parser("changed", help="stacks added, changed, removed")
    changing.add_argument("--base", type=Path, required=True, help="the base's synthesized dir")
    changing.add_argument("--head", type=Path, required=True, help="the head's synthesized dir")
    changing.add_argument("--output", type=Path, help="write the changes as JSON here")
    changing.add_argument("--github-output", type=Path, help="append matrix=... and any=...")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        if arguments.command == "record":
            result = record(arguments.out)
            if arguments.output:
                arguments.output.parent.mkdir(parents=True, exist_ok=True)
                arguments.output.write_text(json.dumps(result.as_json(), indent=2) + "\n")
            if arguments.github_output:
                _write_github_output(arguments.github_output, {"digest": result.digest})
            print(result.digest)
            return 0
        if arguments.command == "verify":
            actual = record(arguments.out).digest
            if actual != arguments.expected.strip():
                print(
                    f"error: {arguments.out}: synthesized output digest {actual} is not "
                    f"{arguments.expected.strip()}, the one that passed the environment below: "
                    "this is not the output that was verified there",
                    file=sys.stderr,
                )
                return 1
            print(f"{arguments.out}: digest {actual} matches")
            return 0
        head = dict(record(arguments.head).stacks)
        changes = compare(_head_or_empty(arguments.base), head)
        if arguments.output:
            arguments.output.parent.mkdir(parents=True, exist_ok=True)
            arguments.output.write_text(json.dumps(changes.as_json(), indent=2) + "\n")
        if arguments.github_output:
            _write_github_output(
                arguments.github_output,
                {
                    "matrix": json.dumps(plan_matrix(head, changes.to_plan), sort_keys=True),
                    "any": "true" if changes.to_plan else "false",
                },
            )
        for label, names in changes.as_json().items():
            print(f"{label}: {' '.join(names) or '-'}")
        return 0
    except DigestError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
