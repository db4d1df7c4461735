"""What a stack's provider `default_tags` say about it: owner, scope, production.

Every stack's `provider "aws"` carries the tags of its environment (environments/composition.py
`default_tags`), and the provider applies them to every resource it creates. They are the only
place the synthesized JSON says which environment, jurisdiction or data classification a stack
belongs to, so the checks that depend on those facts read them here.
"""

from __future__ import annotations

from typing import Any

from policies.checks._conf import blocks, scalar

# The tags every resource carries (README "Stacks"): who owns it, which environment, what data,
# under which regulations. Audits (HIPAA 164.308(a)(1)(ii)(A) risk analysis, GDPR Art. 30
# records of processing) start from this inventory.
REQUIRED_TAGS = ("environment", "owner", "data-classification", "compliance-scope")

# compliance-scope values that make a stack an EU one (its data is EU patients' data).
EU_SCOPES = frozenset({"GDPR", "EHDS"})

# The environment name the platform gives its production environment.
PRODUCTION_ENVIRONMENT = "prod"


def default_tags(provider_conf: dict[str, Any]) -> dict[str, str]:
    """The `default_tags` of one provider configuration, plain JSON or checkov's HCL-ified form."""
    for default_tags_block in blocks(provider_conf, "default_tags"):
        for tags in blocks(default_tags_block, "tags"):
            # checkov adds __startline__/__endline__ to every dict it parses.
            return {str(k): str(v) for k, v in tags.items() if not str(k).startswith("__")}
    return {}


def is_aliased(provider_conf: dict[str, Any]) -> bool:
    return scalar(provider_conf, "alias") is not None


def compliance_scopes(tags: dict[str, str]) -> set[str]:
    """`compliance-scope` is `+`-joined (`GDPR+EHDS`)."""
    return {s.strip() for s in tags.get("compliance-scope", "").split("+") if s.strip()}


def is_eu_stack(tags: dict[str, str]) -> bool:
    """A stack in GDPR or EHDS scope holds EU patients' data (schema: an EU environment must
    include GDPR; EHDS is EU law only)."""
    return bool(compliance_scopes(tags) & EU_SCOPES)


def is_production(tags: dict[str, str]) -> bool:
    """The environment file's `production: true` is not among the tags the platform emits
    today, so: a `production` tag of "true" (when the platform emits one), or the `prod`
    environment."""
    return (
        tags.get("production", "").strip().lower() == "true"
        or tags.get("environment") == PRODUCTION_ENVIRONMENT
    )
