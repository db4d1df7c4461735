"""Rules no single environment file can be judged by: one pass over all of them.

Each file may be valid alone and the estate still break isolation or residency: two VPCs that
overlap (no peering, Transit Gateway or VPN route can tell them apart), one account claimed
twice, a workload in the management account (SCPs never apply there), a model of an EU
environment readable from a US account. Each rule is data (`RULES`): an id, the sentence the
environment reference prints, and the function that finds its violations, reported against
the file and the field that would have to change (the later environment, in name order, when
two disagree).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from environments.errors import EnvironmentFileError
from environments.schema import (
    Jurisdiction,
    KeyAccess,
    OrganizationEnvironment,
    WorkloadEnvironment,
    role_account,
)
from modules.governance import ORGANIZATIONAL_UNITS
from modules.regions import EU_RESIDENCY_REGIONS

AnyEnvironment = WorkloadEnvironment | OrganizationEnvironment


@dataclass(frozen=True)
class Placed:
    """A validated environment and the file it was read from (as shown in errors)."""

    path: Path
    environment: AnyEnvironment


Finder = Callable[[Sequence[Placed], Path], Iterator[EnvironmentFileError]]


@dataclass(frozen=True)
class CrossRule:
    id: str
    text: str  # what is refused, as the environment reference states it
    find: Finder


def _workloads(placed: Sequence[Placed]) -> list[tuple[Placed, WorkloadEnvironment]]:
    return [(p, p.environment) for p in placed if isinstance(p.environment, WorkloadEnvironment)]


def _organizations(placed: Sequence[Placed]) -> list[tuple[Placed, OrganizationEnvironment]]:
    return [
        (p, p.environment) for p in placed if isinstance(p.environment, OrganizationEnvironment)
    ]


def _one_organization(placed: Sequence[Placed], root: Path) -> Iterator[EnvironmentFileError]:
    organizations = _organizations(placed)
    if not organizations:
        yield EnvironmentFileError(
            root,
            "",
            "no environment has kind: organization: the state bucket, the organization trail "
            "and the SCPs every workload relies on need exactly one",
        )
    first = organizations[0][1].name if organizations else ""
    for extra, _ in organizations[1:]:
        yield EnvironmentFileError(
            extra.path,
            "kind",
            f"a second organization environment ('{first}' is the first): an estate has one "
            "management account",
        )


def _distinct_accounts(placed: Sequence[Placed], root: Path) -> Iterator[EnvironmentFileError]:
    claimed: dict[str, AnyEnvironment] = {}
    for where in placed:
        environment = where.environment
        owner = claimed.setdefault(environment.account_id, environment)
        if owner is environment:
            continue
        management = next(
            (e for e in (owner, environment) if isinstance(e, OrganizationEnvironment)), None
        )
        if management is not None:
            rule = (
                f"'{environment.account_id}' is the organization's management account "
                f"('{management.name}'): SCPs never apply to it, so no workload may run there"
            )
        else:
            rule = (
                f"'{environment.account_id}' is already environment '{owner.name}''s account: one "
                "account per environment keeps their data, keys and blast radius apart"
            )
        yield EnvironmentFileError(where.path, "account_id", rule)


def _network(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr)


def _disjoint_vpcs(placed: Sequence[Placed], root: Path) -> Iterator[EnvironmentFileError]:
    seen: list[WorkloadEnvironment] = []
    for where, workload in _workloads(placed):
        vpc = _network(workload.network.vpc_cidr)
        for other in seen:
            if vpc.overlaps(_network(other.network.vpc_cidr)):
                yield EnvironmentFileError(
                    where.path,
                    "network.vpc_cidr",
                    f"{vpc} overlaps environment '{other.name}''s VPC "
                    f"{other.network.vpc_cidr}: routes between them (and to the clinical "
                    "sites both reach) could not tell them apart",
                )
                break
        seen.append(workload)


def _onprem_ranges(workload: WorkloadEnvironment) -> tuple[str, ...]:
    return workload.ingest.vpn.onprem_cidrs if workload.ingest.vpn else ()


def _vpcs_clear_of_sites(placed: Sequence[Placed], root: Path) -> Iterator[EnvironmentFileError]:
    workloads = _workloads(placed)
    for where, workload in workloads:
        vpc = _network(workload.network.vpc_cidr)
        for _, other in workloads:
            if other is workload:
                continue  # its own sites: the schema's rule, reported at the site's range
            clash = next((c for c in _onprem_ranges(other) if vpc.overlaps(_network(c))), None)
            if clash:
                yield EnvironmentFileError(
                    where.path,
                    "network.vpc_cidr",
                    f"{vpc} overlaps {clash}, an on-premises range of a clinical site of "
                    f"environment '{other.name}': traffic to that site would be routed into "
                    "the VPC",
                )
                break


def _distinct_bucket_prefixes(
    placed: Sequence[Placed], root: Path
) -> Iterator[EnvironmentFileError]:
    owners: dict[str, str] = {}
    for where, workload in _workloads(placed):
        prefix = workload.storage.bucket_prefix
        owner = owners.setdefault(prefix, workload.name)
        if owner != workload.name:
            yield EnvironmentFileError(
                where.path,
                "storage.bucket_prefix",
                f"'{prefix}' is already environment '{owner}''s bucket prefix: S3 bucket names "
                "are global, so the second environment's buckets could never be created",
            )


def _accounts_in_organization(
    placed: Sequence[Placed], root: Path
) -> Iterator[EnvironmentFileError]:
    members = {p.environment.account_id: p.environment.name for p in placed}
    known = ", ".join(f"{name} {account}" for account, name in sorted(members.items()))
    for where, workload in _workloads(placed):
        ml = workload.ml
        references = [
            ("ml.registry.production_account_id", ml.registry.production_account_id),
            *(
                (f"ml.images.replicate_to[{index}].account_id", destination.account_id)
                for index, destination in enumerate(ml.images.replicate_to)
            ),
        ]
        if ml.images.replicated_from is not None:
            references.append(("ml.images.replicated_from", ml.images.replicated_from))
        for field, account in references:
            if account not in members:
                yield EnvironmentFileError(
                    where.path,
                    field,
                    f"'{account}' is no environment's account in this organization ({known}): "
                    "its SCPs, trail and guardrails would not cover what it reads",
                )


def _key_principals_in_own_account(
    placed: Sequence[Placed], root: Path
) -> Iterator[EnvironmentFileError]:
    for where in placed:
        environment = where.environment
        access: list[tuple[str, KeyAccess]] = [("keys", environment.keys)]
        if isinstance(environment, OrganizationEnvironment):
            access.append(("state_backend.keys", environment.state_backend.keys))
        for section, keys in access:
            for role_list in ("administrators", "users"):
                for index, role in enumerate(getattr(keys, role_list)):
                    account = role_account(role)
                    if account != environment.account_id:
                        yield EnvironmentFileError(
                            where.path,
                            f"{section}.{role_list}[{index}]",
                            f"{role} is in account {account}, not the environment's "
                            f"{environment.account_id}: a key policy naming another account's "
                            "role hands that account the key (grant access through its own "
                            "roles instead)",
                        )


def _effective_regions(ou: str, allowed: Mapping[Any, tuple[str, ...]]) -> set[str] | None:
    """The regions an account in `ou` may use: every allow-list from its OU up to the root
    applies (SCPs intersect); None when no level has one."""
    parents = {unit.name: unit.parent for unit in ORGANIZATIONAL_UNITS}
    regions: set[str] | None = None
    level: str | None = ou
    while level is not None:
        if level in allowed:
            regions = set(allowed[level]) if regions is None else regions & set(allowed[level])
        level = parents.get(level)
    return regions


def _workloads_governed(placed: Sequence[Placed], root: Path) -> Iterator[EnvironmentFileError]:
    organizations = _organizations(placed)
    if len(organizations) != 1:
        return  # the one-organization rule's finding
    org_place, organization = organizations[0]
    accounts = {account.name: account for account in organization.governance.accounts}
    for where, workload in _workloads(placed):
        account = accounts.get(workload.name)
        if account is None or account.role != "workload":
            yield EnvironmentFileError(
                org_place.path,
                "governance.accounts",
                f"has no workload account named '{workload.name}' for environment "
                f"'{workload.name}': its account would sit outside every OU's SCPs",
            )
            continue
        regions = _effective_regions(account.ou, organization.governance.ou_allowed_regions)
        if workload.jurisdiction is Jurisdiction.EU:
            outside = sorted(regions - EU_RESIDENCY_REGIONS) if regions is not None else None
            if outside is None or outside:
                index = organization.governance.accounts.index(account)
                yield EnvironmentFileError(
                    org_place.path,
                    f"governance.accounts[{index}].ou",
                    f"'{account.ou}' holds EU environment '{workload.name}' but its SCPs allow "
                    f"{', '.join(outside) if outside else 'every region'}: an EU environment's "
                    "account belongs in an OU whose regions are all EU (GDPR Chapter V)",
                )
                continue  # its regions are then wrong for the same reason: one finding
        denied = sorted(set(workload.allowed_regions) - regions) if regions is not None else []
        if denied:
            yield EnvironmentFileError(
                where.path,
                "allowed_regions",
                f"{', '.join(denied)} not allowed by the SCPs of OU '{account.ou}' that holds "
                f"its account ({', '.join(sorted(regions or ()))}): every deployment there "
                "would be denied",
            )


def _eu_models_stay_in_eu(placed: Sequence[Placed], root: Path) -> Iterator[EnvironmentFileError]:
    jurisdiction = {
        workload.account_id: workload.jurisdiction for _, workload in _workloads(placed)
    }
    for where, workload in _workloads(placed):
        if workload.jurisdiction is not Jurisdiction.EU:
            continue
        documented = {transfer.account_id for transfer in workload.data_transfers}
        reader = workload.ml.registry.production_account_id
        if jurisdiction.get(reader, Jurisdiction.EU) is not Jurisdiction.EU and (
            reader not in documented
        ):
            yield EnvironmentFileError(
                where.path,
                "ml.registry.production_account_id",
                f"'{reader}' is a non-EU environment's account: models trained on EU patients' "
                "data would be read from outside the EU (GDPR Chapter V); name the transfer "
                "mechanism in data_transfers, or promote within the EU",
            )
        for index, transfer in enumerate(workload.data_transfers):
            if jurisdiction.get(transfer.account_id) is not Jurisdiction.US:
                yield EnvironmentFileError(
                    where.path,
                    f"data_transfers[{index}].account_id",
                    f"'{transfer.account_id}' is not a non-EU environment's account of this "
                    "organization: a transfer names the account the data goes to",
                )


RULES: Final[tuple[CrossRule, ...]] = (
    CrossRule(
        "one-organization",
        "exactly one environment has `kind: organization` (none, or a second one, is refused)",
        _one_organization,
    ),
    CrossRule(
        "distinct-accounts",
        "no two environments share an `account_id`, and no workload uses the organization's "
        "management account (SCPs never apply to it)",
        _distinct_accounts,
    ),
    CrossRule(
        "disjoint-vpcs",
        "no two environments' `network.vpc_cidr` overlap",
        _disjoint_vpcs,
    ),
    CrossRule(
        "vpcs-clear-of-sites",
        "no `network.vpc_cidr` overlaps any environment's clinical-site ranges "
        "(`ingest.vpn.onprem_cidrs`)",
        _vpcs_clear_of_sites,
    ),
    CrossRule(
        "distinct-bucket-prefixes",
        "no two environments share a `storage.bucket_prefix` (S3 bucket names are global)",
        _distinct_bucket_prefixes,
    ),
    CrossRule(
        "accounts-in-organization",
        "`ml.registry.production_account_id`, `ml.images.replicate_to[].account_id` and "
        "`ml.images.replicated_from` are accounts of this organization's environments",
        _accounts_in_organization,
    ),
    CrossRule(
        "key-principals-in-own-account",
        "every key administrator and user (`keys.*`, `state_backend.keys.*`) is a role in the "
        "environment's own account",
        _key_principals_in_own_account,
    ),
    CrossRule(
        "workloads-governed",
        "every workload environment has its account in `governance.accounts` (role `workload`), "
        "in an OU whose SCPs allow each of its `allowed_regions`; an EU environment's account is "
        "in an OU whose allowed regions are all EU",
        _workloads_governed,
    ),
    CrossRule(
        "eu-models-stay-in-eu",
        "an EU environment's `ml.registry.production_account_id` is an EU environment's account "
        "unless `data_transfers` names that account with its GDPR Chapter V mechanism; every "
        "`data_transfers[].account_id` is a non-EU environment's account",
        _eu_models_stay_in_eu,
    ),
)


def cross_environment_problems(placed: Sequence[Placed], root: Path) -> list[EnvironmentFileError]:
    """Every violation of every rule, environments in name order, rules in `RULES` order."""
    ordered = sorted(placed, key=lambda p: p.environment.name)
    return [problem for rule in RULES for problem in rule.find(ordered, root)]
