"""Mutants of the governance layer (modules/governance.py, modules/scp.py): the organization's
OUs and accounts, its SCPs and where they are attached, Control Tower and the delegated
administrators, all in the org-governance stack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tools.mutants.edits import (
    address,
    delete_resource,
    edit_json,
    named,
    set_attribute,
    statements_without,
)
from tools.mutants.model import Apply, Document, Mutant

STACK = "org-governance"
ORGANIZATION = "aws_organizations_organization"
UNIT = "aws_organizations_organizational_unit"
ACCOUNT = "aws_organizations_account"
POLICY = "aws_organizations_policy"
ATTACHMENT = "aws_organizations_policy_attachment"


def organization_of(document: Document) -> str:
    name, _ = named(document, ORGANIZATION, "governance/organization")
    return address(ORGANIZATION, name)


def unit_of(document: Document, ou: str) -> str:
    name, _ = named(document, UNIT, f"governance/ou-{ou}")
    return address(UNIT, name)


def reference(resource_address: str, attribute: str = "id") -> str:
    return f"${{{resource_address}.{attribute}}}"


def detached(attachment: str, judged: Callable[[Document], str]) -> Apply:
    """The attachment `scp-<attachment>` removed (the policy stays, attached nowhere)."""

    def apply(document: Document) -> str:
        delete_resource(document, ATTACHMENT, f"governance/scp-{attachment}")
        return judged(document)

    return apply


def on_unit(ou: str) -> Callable[[Document], str]:
    return lambda document: unit_of(document, ou)


def scp_changed(
    policy: str, change: Callable[[Any], None], judged: Callable[[Document], str]
) -> Apply:
    def apply(document: Document) -> str:
        _, conf = named(document, POLICY, f"governance/scp-{policy}")
        edit_json(conf, "content", change)
        return judged(document)

    return apply


def unprotected(sid: str) -> Apply:
    return scp_changed("protect-security-services", statements_without(sid), organization_of)


def break_glass_widened(policy: Any) -> None:
    """Every platform role exempt, not just the break-glass one (`phi-ml-*`)."""
    widened = 0
    for statement in policy["Statement"]:
        exempt = statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
        for index, arn in enumerate(exempt):
            if arn.endswith(":role/phi-ml-break-glass"):
                exempt[index] = "arn:aws:iam::*:role/phi-ml-*"
                widened += 1
    if not widened:
        raise ValueError("no break-glass exemption to widen")


def admits_mturk(policy: Any) -> None:
    """Mechanical Turk (Ground Truth's public workforce) added to the HIPAA allow-list."""
    (statement,) = policy["Statement"]
    statement["NotAction"] = sorted([*statement["NotAction"], "mturk:*"])


def research_eu_allows_us_east_1(policy: Any) -> None:
    (statement,) = policy["Statement"]
    regions = statement["Condition"]["StringNotEquals"]["aws:RequestedRegion"]
    statement["Condition"]["StringNotEquals"]["aws:RequestedRegion"] = [*regions, "us-east-1"]


def prod_ou_under_root(document: Document) -> str:
    _, conf = named(document, UNIT, "governance/ou-prod")
    conf["parent_id"] = reference(organization_of(document), "roots[0].id")
    return organization_of(document)


def without_root_user_denial(document: Document) -> str:
    delete_resource(document, ATTACHMENT, "governance/scp-deny-root-user-on-root")
    delete_resource(document, POLICY, "governance/scp-deny-root-user")
    return organization_of(document)


def prod_account_in_infrastructure(document: Document) -> str:
    _, conf = named(document, ACCOUNT, "governance/account-prod")
    conf["parent_id"] = reference(unit_of(document, "infrastructure"))
    return unit_of(document, "infrastructure")


def without_landing_zone(document: Document) -> str:
    # Every control depends on the landing zone: removing Control Tower removes them too.
    del document["resource"]["aws_controltower_control"]
    delete_resource(document, "aws_controltower_landing_zone", "governance/landing-zone")
    return organization_of(document)


def without_encrypted_volumes_on_workloads(document: Document) -> str:
    delete_resource(
        document,
        "aws_controltower_control",
        "governance/control-aws-gr-encrypted-volumes-workloads",
    )
    name, _ = named(document, "aws_controltower_landing_zone", "governance/landing-zone")
    return address("aws_controltower_landing_zone", name)


def guardduty_admin_is_log_archive(document: Document) -> str:
    log_archive, _ = named(document, ACCOUNT, "governance/account-log-archive")
    name, conf = named(document, "aws_guardduty_organization_admin_account", "guardduty-admin")
    conf["admin_account_id"] = reference(address(ACCOUNT, log_archive))
    return address("aws_guardduty_organization_admin_account", name)


def without_security_hub_admin(document: Document) -> str:
    delete_resource(document, "aws_securityhub_organization_admin_account", "securityhub-admin")
    return organization_of(document)


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="governance-prod-ou-outside-workloads",
        layer="governance",
        guarantee="Organizations OUs (Security, Infrastructure, Workloads/NonProd, "
        "Workloads/Prod, Research-EU)",
        check_id="CKV_PHI_42",
        stack=STACK,
        change="the Prod OU moved directly under the root, out of Workloads",
        apply=prod_ou_under_root,
    ),
    Mutant(
        name="governance-account-closed-on-deletion",
        layer="governance",
        guarantee="member accounts (never closed on deletion)",
        check_id="CKV_PHI_43",
        stack=STACK,
        change="the prod account's close_on_deletion set to true",
        apply=set_attribute(ACCOUNT, "governance/account-prod", "close_on_deletion", True),
    ),
    Mutant(
        name="governance-leaving-allowed",
        layer="governance",
        guarantee="SCPs: deny leaving",
        check_id="CKV_PHI_44",
        stack=STACK,
        change="the deny-leaving-organization SCP detached from the root",
        apply=detached("deny-leaving-organization-on-root", organization_of),
    ),
    Mutant(
        name="governance-root-user-allowed",
        layer="governance",
        guarantee="SCPs: deny root",
        check_id="CKV_PHI_44",
        stack=STACK,
        change="the deny-root-user SCP and its root attachment removed",
        apply=without_root_user_denial,
    ),
    Mutant(
        name="governance-cloudtrail-unprotected",
        layer="governance",
        guarantee="SCPs: protect CloudTrail",
        check_id="CKV_PHI_44",
        stack=STACK,
        change="the statement denying StopLogging/DeleteTrail/UpdateTrail dropped",
        apply=unprotected("DenyStoppingOrChangingCloudTrail"),
    ),
    Mutant(
        name="governance-config-unprotected",
        layer="governance",
        guarantee="SCPs: protect Config",
        check_id="CKV_PHI_44",
        stack=STACK,
        change="the statement denying stopping or deleting the Config recorder dropped",
        apply=unprotected("DenyStoppingOrDeletingConfig"),
    ),
    Mutant(
        name="governance-guardduty-unprotected",
        layer="governance",
        guarantee="SCPs: protect GuardDuty",
        check_id="CKV_PHI_44",
        stack=STACK,
        change="the statement denying DeleteDetector and disassociation dropped",
        apply=unprotected("DenyDisablingGuardDuty"),
    ),
    Mutant(
        name="governance-security-hub-unprotected",
        layer="governance",
        guarantee="SCPs: protect Security Hub",
        check_id="CKV_PHI_44",
        stack=STACK,
        change="the statement denying DisableSecurityHub and disassociation dropped",
        apply=unprotected("DenyDisablingSecurityHub"),
    ),
    Mutant(
        name="governance-flow-logs-unprotected",
        layer="governance",
        guarantee="SCPs: protect flow logs",
        check_id="CKV_PHI_44",
        stack=STACK,
        change="the statement denying ec2:DeleteFlowLogs dropped",
        apply=unprotected("DenyDeletingVpcFlowLogs"),
    ),
    Mutant(
        name="governance-key-deletion-unprotected",
        layer="governance",
        guarantee="SCPs: protect key deletion",
        check_id="CKV_PHI_44",
        stack=STACK,
        change="the statement denying kms:ScheduleKeyDeletion/DisableKey dropped",
        apply=unprotected("DenyDisablingOrDeletingKmsKeys"),
    ),
    Mutant(
        name="governance-break-glass-widened",
        layer="governance",
        guarantee="SCPs: protection except a break-glass role",
        check_id="CKV_PHI_44",
        stack=STACK,
        change="the break-glass exemption widened to every phi-ml-* role",
        apply=scp_changed("protect-security-services", break_glass_widened, organization_of),
    ),
    Mutant(
        name="governance-sse-s3-uploads-allowed-in-workloads",
        layer="governance",
        guarantee="SCPs: deny non-KMS uploads",
        check_id="CKV_PHI_45",
        stack=STACK,
        change="the deny-unencrypted-s3-uploads SCP detached from the Workloads OU",
        apply=detached("deny-unencrypted-s3-uploads-on-workloads", on_unit("workloads")),
    ),
    Mutant(
        name="governance-hipaa-list-admits-mturk",
        layer="governance",
        guarantee="HIPAA-eligible services only where PHI lives",
        check_id="CKV_PHI_45",
        stack=STACK,
        change="mturk:* (not HIPAA eligible) added to the HIPAA allow-list SCP",
        apply=scp_changed(
            "hipaa-eligible-services-only",
            admits_mturk,
            lambda document: address(
                POLICY, named(document, POLICY, "governance/scp-hipaa-eligible-services-only")[0]
            ),
        ),
    ),
    Mutant(
        name="governance-hipaa-list-detached-from-research-eu",
        layer="governance",
        guarantee="HIPAA-eligible services only where PHI lives",
        check_id="CKV_PHI_45",
        stack=STACK,
        change="the HIPAA allow-list SCP detached from the Research-EU OU",
        apply=detached("hipaa-eligible-services-only-on-research-eu", on_unit("research-eu")),
    ),
    Mutant(
        name="governance-prod-account-outside-phi-ous",
        layer="governance",
        guarantee="HIPAA-eligible services only where PHI lives",
        check_id="CKV_PHI_45",
        stack=STACK,
        change="the prod (workload) account moved into the Infrastructure OU",
        apply=prod_account_in_infrastructure,
    ),
    Mutant(
        name="governance-research-eu-allows-us-east-1",
        layer="governance",
        guarantee="region allow-lists with EU-only Research-EU",
        check_id="CKV_PHI_46",
        stack=STACK,
        change="us-east-1 added to the Research-EU region allow-list",
        apply=scp_changed(
            "region-allow-list-research-eu", research_eu_allows_us_east_1, on_unit("research-eu")
        ),
    ),
    Mutant(
        name="governance-research-eu-region-scp-detached",
        layer="governance",
        guarantee="region allow-lists with EU-only Research-EU",
        check_id="CKV_PHI_46",
        stack=STACK,
        change="the Research-EU region allow-list SCP detached from its OU",
        apply=detached("region-allow-list-research-eu-on-research-eu", on_unit("research-eu")),
    ),
    Mutant(
        name="governance-workloads-region-scp-detached",
        layer="governance",
        guarantee="region allow-lists",
        check_id="CKV_PHI_46",
        stack=STACK,
        change="the Workloads region allow-list SCP detached from its OU",
        apply=detached("region-allow-list-workloads-on-workloads", on_unit("workloads")),
    ),
    Mutant(
        name="governance-without-landing-zone",
        layer="governance",
        guarantee="Control Tower landing zone",
        check_id="CKV_PHI_47",
        stack=STACK,
        change="the Control Tower landing zone (and the controls that need it) removed",
        apply=without_landing_zone,
    ),
    Mutant(
        name="governance-encrypted-volumes-control-dropped",
        layer="governance",
        guarantee="Control Tower controls",
        check_id="CKV_PHI_47",
        stack=STACK,
        change="the AWS-GR_ENCRYPTED_VOLUMES control on the Workloads OU removed",
        apply=without_encrypted_volumes_on_workloads,
    ),
    Mutant(
        name="governance-guardduty-admin-is-log-archive",
        layer="governance",
        guarantee="delegated administration to the security account",
        check_id="CKV_PHI_47",
        stack=STACK,
        change="GuardDuty's delegated administrator set to the log archive account",
        apply=guardduty_admin_is_log_archive,
    ),
    Mutant(
        name="governance-without-security-hub-admin",
        layer="governance",
        guarantee="delegated administration to the security account",
        check_id="CKV_PHI_47",
        stack=STACK,
        change="the Security Hub delegated administrator removed",
        apply=without_security_hub_admin,
    ),
)
