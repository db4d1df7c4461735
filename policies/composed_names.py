"""The names the platform composes from environment fields, judged as AWS will judge them.

A field can be valid alone and still make a name AWS refuses once the platform has composed
it: a bucket prefix plus `-access-logs-eu-west-1`, an environment name inside a role name, a
model name inside an endpoint variable. So the names are judged where they are final, in the
synthesized stacks, by the preflight's names family (botocore's patterns, lengths and enums;
S3's bucket rules), before `main.py` puts the synthesis in place. Each refusal is reported
against the environment file whose stack holds it and the field whose value the name
carries (the longest one it contains: `storage.bucket_prefix` rather than `name`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from environments.errors import EnvironmentFileError
from environments.schema import OrganizationEnvironment, WorkloadEnvironment
from policies.findings import Finding, Status
from policies.preflight import names
from policies.preflight.base import read_stacks

AnyEnvironment = WorkloadEnvironment | OrganizationEnvironment
BOOTSTRAP_STACK = "bootstrap"
# Shorter values are in too many names by chance (a region's "1", a count) to name a field.
MIN_ATTRIBUTED_LENGTH = 3


def _text_fields(data: Any, location: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(data, str):
        yield location, data
    elif isinstance(data, Mapping):
        for key, value in data.items():
            yield from _text_fields(value, f"{location}.{key}" if location else str(key))
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            yield from _text_fields(value, f"{location}[{index}]")


def stack_environment(stack: str, environments: Sequence[AnyEnvironment]) -> AnyEnvironment:
    """The environment a synthesized stack belongs to: `<name>-<part>` (the longest name that
    fits), or the organization's for `bootstrap`."""
    organization = next(e for e in environments if isinstance(e, OrganizationEnvironment))
    if stack == BOOTSTRAP_STACK:
        return organization
    owners = [e for e in environments if stack == e.name or stack.startswith(f"{e.name}-")]
    return max(owners, key=lambda e: len(e.name), default=organization)


def carrying_field(value: str, environment: AnyEnvironment) -> str:
    """The field whose value the composed name carries: the longest one it contains."""
    fields = [
        (location, text)
        for location, text in _text_fields(environment.model_dump(mode="json"))
        if len(text) >= MIN_ATTRIBUTED_LENGTH and text in value
    ]
    return max(fields, key=lambda field: len(field[1]), default=("", ""))[0]


def _rule(finding: Finding, value: str, others: int) -> str:
    problem = finding.detail.split(": ", 1)[-1].split(" [source: ")[0]
    what = (
        finding.check_name.split(" is valid for ")[0].split(" follow")[0].replace("names", "name")
    )
    more = f"; so do {others} other names it composes" if others else ""
    return (
        f"composes {what} {value!r}, which AWS refuses: {problem.removeprefix(f'{value!r} ')}{more}"
    )


def composed_name_problems(
    outdir: Path, environments: Sequence[AnyEnvironment], files: Mapping[str, Path]
) -> list[EnvironmentFileError]:
    """Every name in `outdir`'s synthesized stacks AWS would refuse, as an error on the file
    (`files`: environment name -> its file) and field it came from."""
    # One problem per field and rule: a bucket prefix too long for one bucket name is usually
    # too long for several, and the field is what must change.
    refused: dict[tuple[str, str, str], list[tuple[Finding, str]]] = {}
    for finding in names.check(read_stacks(outdir)):
        if finding.status is not Status.FAILED:
            continue
        value = names.refused_value(finding)
        if value is None:
            continue  # a reference too long to fit: its value is judged where it is made
        environment = stack_environment(finding.stack, environments)
        key = (environment.name, carrying_field(value, environment), finding.check_id)
        values = refused.setdefault(key, [])
        if value not in (seen for _, seen in values):  # one name is often set on several
            values.append((finding, value))
    return [
        EnvironmentFileError(files[name], field, _rule(*found[0], others=len(found) - 1))
        for (name, field, _), found in refused.items()
    ]
