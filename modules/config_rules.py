"""The AWS Config conformance pack generated from the control catalog: one managed rule per
identifier the catalog names, each saying which controls its evaluations evidence."""

from __future__ import annotations

from typing import Any

import yaml

from policies.catalog import Catalog

# PutConformancePack's TemplateBody: 1 to 51,200 bytes.
TEMPLATE_BODY_LIMIT_BYTES = 51_200
# AWS::Config::ConfigRule Description: at most 256 characters.
DESCRIPTION_LIMIT = 256
_HEADER = "# Generated from policies/controls.yaml by modules/config_rules.py; do not edit.\n"


class ConformancePackTooLargeError(ValueError):
    """The template no longer fits in one conformance pack: split the catalog's rules."""


def rule_name(identifier: str) -> str:
    """S3_BUCKET_SSL_REQUESTS_ONLY -> s3-bucket-ssl-requests-only: derived from the identifier
    alone, so a rule keeps its name (and its evaluation history) as the catalog grows."""
    return identifier.lower().replace("_", "-")


def logical_id(identifier: str) -> str:
    """S3_BUCKET_SSL_REQUESTS_ONLY -> S3BucketSslRequestsOnly (CloudFormation: alphanumeric)."""
    return "".join(part.capitalize() for part in identifier.split("_") if part)


def rule_description(control_ids: tuple[str, ...]) -> str:
    """'Evidence for HIPAA-164.312(b), GDPR-32', naming as many controls as the 256-character
    limit allows and counting the rest."""
    for shown in range(len(control_ids), 0, -1):
        hidden = len(control_ids) - shown
        text = "Evidence for " + ", ".join(control_ids[:shown])
        text += f" and {hidden} more" if hidden else ""
        if len(text) <= DESCRIPTION_LIMIT:
            return text
    return f"Evidence for {len(control_ids)} controls"


def conformance_pack_template(catalog: Catalog) -> str:
    """A conformance pack template body (YAML) holding one AWS::Config::ConfigRule, owned by
    AWS, per managed rule identifier in the catalog."""
    evidence = catalog.config_rules()
    if not evidence:
        raise ValueError("the control catalog names no AWS Config rules: nothing to deploy")
    resources: dict[str, Any] = {}
    for identifier, control_ids in evidence.items():
        properties: dict[str, Any] = {
            "ConfigRuleName": rule_name(identifier),
            "Description": rule_description(control_ids),
            "Source": {"Owner": "AWS", "SourceIdentifier": identifier},
        }
        parameters = catalog.parameters(identifier)
        if parameters:
            properties["InputParameters"] = parameters
        name = logical_id(identifier)
        if name in resources:
            raise ValueError(f"rules {identifier} and another share the logical id {name}")
        resources[name] = {"Type": "AWS::Config::ConfigRule", "Properties": properties}
    body = _HEADER + yaml.safe_dump({"Resources": resources}, sort_keys=False, width=1000)
    size = len(body.encode("utf-8"))
    if size > TEMPLATE_BODY_LIMIT_BYTES:
        raise ConformancePackTooLargeError(
            f"the conformance pack template for {len(resources)} rules is {size} bytes; "
            f"AWS Config accepts at most {TEMPLATE_BODY_LIMIT_BYTES}: split the rules over "
            "more than one conformance pack"
        )
    return body
