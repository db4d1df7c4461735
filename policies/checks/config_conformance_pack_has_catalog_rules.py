"""CKV_PHI_50 "Ensure the AWS Config conformance pack evaluates every Config rule of the control
catalog, with the catalog's parameters".

The control catalog (policies/controls.yaml) promises, per control, the AWS Config managed rules
whose evaluations are its runtime evidence (HIPAA 45 CFR 164.308(a)(8) evaluation, 164.312(b)
audit controls; GDPR Art. 32(1)(d) regular testing and evaluation; EHDS Art. 73(1)). A rule
missing from the deployed pack leaves its controls without that evidence while the report still
cites it; a rule run with its default parameters (365 days of log retention instead of 2192)
judges the wrong requirement. The catalog is the requirement, not the code under judgment
(modules/config_rules.py generates the pack from it), so this check reads the catalog file
itself, as data, with no import of the code that builds the pack.

Judged, with the stack in view:
- each `aws_config_conformance_pack` and `aws_config_organization_conformance_pack` passes when
  its `template_body` (YAML or JSON) holds, for every rule identifier any control lists under
  `runtime_evidence.config_rules`, an `AWS::Config::ConfigRule` with `Source.Owner` AWS and that
  `Source.SourceIdentifier`, whose `InputParameters` give every parameter `config_rule_parameters`
  sets for it the catalog's value (compared as strings). A pack given by `template_s3_uri`
  cannot be read here and fails. Rules beyond the catalog's are not judged.
- each `aws_config_configuration_recorder` in a stack without a conformance pack fails: nothing
  evaluates what it records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from checkov.common.models.enums import CheckCategories

from policies.checks._conf import scalar
from policies.checks._documents import as_list, cloudformation_resources, get_path
from policies.checks._stack import Stack, StackCheck, Verdict, address, register

CATALOG = Path(__file__).resolve().parents[1] / "controls.yaml"
PACKS = ("aws_config_conformance_pack", "aws_config_organization_conformance_pack")
RECORDER = "aws_config_configuration_recorder"
CONFIG_RULE = "AWS::Config::ConfigRule"


def catalog_rules(path: Path = CATALOG) -> dict[str, dict[str, str]]:
    """Each Config rule identifier the catalog names -> the parameters it sets for it."""
    catalog = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(catalog, dict):
        raise ValueError(f"{path}: not a control catalog")
    parameters = catalog.get("config_rule_parameters") or {}
    rules: dict[str, dict[str, str]] = {}
    for control in as_list(catalog.get("controls")):
        for rule in as_list(get_path(control, "runtime_evidence", "config_rules")):
            given = parameters.get(rule) or {}
            rules[str(rule)] = {str(k): str(v) for k, v in given.items()}
    if not rules:
        raise ValueError(f"{path}: the catalog names no AWS Config rules")
    return rules


def pack_rules(template: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Each AWS-managed rule identifier of a pack template -> its InputParameters."""
    found: dict[str, dict[str, str]] = {}
    for _, properties in cloudformation_resources(template, CONFIG_RULE):
        source = properties.get("Source")
        if not isinstance(source, dict) or source.get("Owner") != "AWS":
            continue
        given = properties.get("InputParameters")
        found[str(source.get("SourceIdentifier"))] = (
            {str(k): str(v) for k, v in given.items()} if isinstance(given, dict) else {}
        )
    return found


def read_template(pack: dict[str, Any]) -> dict[str, Any] | None:
    body = scalar(pack, "template_body")
    if not isinstance(body, str):
        return None
    try:
        template = yaml.safe_load(body)
    except yaml.YAMLError:
        return None
    return template if isinstance(template, dict) else None


def pack_problem(pack: dict[str, Any], required: Mapping[str, Mapping[str, str]]) -> str | None:
    template = read_template(pack)
    if template is None:
        return "no readable template_body"
    deployed = pack_rules(template)
    missing = sorted(rule for rule in required if rule not in deployed)
    if missing:
        return f"catalog rules missing: {', '.join(missing)}"
    wrong = sorted(
        f"{rule}.{key}"
        for rule, parameters in required.items()
        for key, value in parameters.items()
        if deployed[rule].get(key) != value
    )
    return f"parameters differing from the catalog: {', '.join(wrong)}" if wrong else None


class ConfigConformancePackHasCatalogRules(StackCheck):
    def __init__(self) -> None:
        super().__init__(
            name=(
                "Ensure the AWS Config conformance pack evaluates every Config rule of the "
                "control catalog, with the catalog's parameters"
            ),
            id="CKV_PHI_50",
            category=CheckCategories.LOGGING,
            judged_types=[*PACKS, RECORDER],
        )

    def evaluate(self, stack: Stack) -> Iterable[Verdict]:
        packs = [(t, n, c) for t in PACKS for n, c in sorted(stack.resources(t).items())]
        if not packs:
            for name in sorted(stack.resources(RECORDER)):
                yield Verdict(address(RECORDER, name), False, "no conformance pack evaluates it")
            return
        required = catalog_rules()
        for pack_type, name, pack in packs:
            problem = pack_problem(pack, required)
            yield Verdict(address(pack_type, name), problem is None, problem or "")


check = register(ConfigConformancePackHasCatalogRules())
