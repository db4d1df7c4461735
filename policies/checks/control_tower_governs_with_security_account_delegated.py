"""CKV_PHI_47 "Ensure Control Tower governs the organization and the security tooling account
administers GuardDuty, Security Hub and Config".

Control Tower's landing zone centralizes CloudTrail and Config logs in the log archive account
and gives the audit (security tooling) account cross-account access; its controls on the OUs
holding PHI keep volumes encrypted and root access keys away. GuardDuty, Security Hub and
Config administered from that same account let the security team, not the workload teams, see
and act on every account's findings. HIPAA 45 CFR 164.308(a)(1)(ii)(D) (information system
activity review), 164.308(a)(6) (security incident procedures), 164.312(b) (audit controls),
164.312(a)(2)(iv) (encryption); GDPR Art. 32(1)(d) and 33; EHDS Art. 73.

Judged, with the stack in view, where the security tooling account is the
`aws_organizations_account` tagged `account-role` = `security-tooling` and the log archive the
one tagged `log-archive`:
- every `aws_organizations_organization` fails unless its stack declares an
  `aws_controltower_landing_zone`, an `aws_guardduty_organization_admin_account`, an
  `aws_securityhub_organization_admin_account` and an `aws_organizations_delegated_administrator`
  for `config.amazonaws.com`;
- every `aws_controltower_landing_zone` fails unless its `manifest_json` has
  `securityRoles.accountId` referring to the security tooling account and `centralizedLogging`
  `enabled` true with `accountId` referring to the log archive account, and an
  `aws_controltower_control` enables each of BASELINE_CONTROLS on every OU holding PHI (an OU
  directly under the root named Workloads or Research-EU, or whose subtree holds an account
  tagged `workload`), its `target_identifier` referring to that OU;
- every `aws_guardduty_organization_admin_account` and `aws_securityhub_organization_admin_account`
  (`admin_account_id`) and every `aws_organizations_delegated_administrator` (`account_id`)
  fails unless it refers to the security tooling account.
A literal account id fails: which account it is cannot be verified from the stack.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories

from policies.checks._conf import json_document
from policies.checks._documents import get_path
from policies.checks._organizations import ACCOUNT, ORGANIZATION, UNIT, Organization
from policies.checks._stack import (
    Stack,
    StackCheck,
    Verdict,
    address,
    referenced_names,
    register,
)

LANDING_ZONE = "aws_controltower_landing_zone"
CONTROL = "aws_controltower_control"
GUARDDUTY_ADMIN = "aws_guardduty_organization_admin_account"
SECURITY_HUB_ADMIN = "aws_securityhub_organization_admin_account"
DELEGATED_ADMIN = "aws_organizations_delegated_administrator"
CONFIG_PRINCIPAL = "config.amazonaws.com"
SECURITY_TOOLING_ROLE = "security-tooling"
LOG_ARCHIVE_ROLE = "log-archive"
# Control Tower's legacy identifiers: EBS volumes encrypted (HIPAA 164.312(a)(2)(iv)); no access
# keys for the root user (164.312(a)(1), (d)).
BASELINE_CONTROLS = ("AWS-GR_ENCRYPTED_VOLUMES", "AWS-GR_RESTRICT_ROOT_USER_ACCESS_KEYS")


def _refers(value: Any, accounts: set[str]) -> bool:
    return bool(referenced_names(value, ACCOUNT) & accounts)


def _control_name(conf: dict[str, Any]) -> str:
    return str(conf.get("control_identifier", "")).rsplit("/", 1)[-1]


class ControlTowerGovernsWithSecurityAccountDelegated(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure Control Tower governs the organization and the security tooling account "
                "administers GuardDuty, Security Hub and Config"
            ),
            id="CKV_PHI_47",
            category=CheckCategories.LOGGING,
            judged_types=[
                ORGANIZATION,
                LANDING_ZONE,
                GUARDDUTY_ADMIN,
                SECURITY_HUB_ADMIN,
                DELEGATED_ADMIN,
            ],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        organization = Organization.of(stack)
        security = organization.accounts_with_role(SECURITY_TOOLING_ROLE)
        log_archive = organization.accounts_with_role(LOG_ARCHIVE_ROLE)

        missing = [
            f"no {resource_type}"
            for resource_type in (LANDING_ZONE, GUARDDUTY_ADMIN, SECURITY_HUB_ADMIN)
            if not stack.resources(resource_type)
        ]
        if not any(
            c.get("service_principal") == CONFIG_PRINCIPAL
            for c in stack.resources(DELEGATED_ADMIN).values()
        ):
            missing.append(f"no {DELEGATED_ADMIN} for {CONFIG_PRINCIPAL}")
        for name in sorted(organization.organizations):
            yield Verdict(address(ORGANIZATION, name), not missing, "; ".join(missing))

        controls = stack.resources(CONTROL).values()
        for name, conf in sorted(stack.resources(LANDING_ZONE).items()):
            manifest = json_document(conf.get("manifest_json")) or {}
            problems = []
            if not _refers(get_path(manifest, "securityRoles", "accountId"), security):
                problems.append("securityRoles.accountId is not the security tooling account")
            logging = get_path(manifest, "centralizedLogging") or {}
            if logging.get("enabled") is not True or not _refers(
                logging.get("accountId"), log_archive
            ):
                problems.append("centralized logging is not on, to the log archive account")
            for unit in organization.phi_units():
                enabled = {
                    _control_name(c)
                    for c in controls
                    if unit in referenced_names(c.get("target_identifier"), UNIT)
                }
                problems += [
                    f"{control} not enabled on {organization.unit_name(unit)}"
                    for control in BASELINE_CONTROLS
                    if control not in enabled
                ]
            yield Verdict(address(LANDING_ZONE, name), not problems, "; ".join(problems))

        for resource_type, key in (
            (GUARDDUTY_ADMIN, "admin_account_id"),
            (SECURITY_HUB_ADMIN, "admin_account_id"),
            (DELEGATED_ADMIN, "account_id"),
        ):
            for name, conf in sorted(stack.resources(resource_type).items()):
                delegated = _refers(conf.get(key), security)
                reason = "" if delegated else f"{key} is not the security tooling account"
                yield Verdict(address(resource_type, name), delegated, reason)


check = register(ControlTowerGovernsWithSecurityAccountDelegated())
