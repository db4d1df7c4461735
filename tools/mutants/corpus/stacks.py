"""Mutants of what every stack guarantees (environments/composition.py: README "Stacks")."""

from __future__ import annotations

from tools.mutants.model import Document, Mutant


def provider_in_us_east_1(document: Document) -> str:
    document["provider"]["aws"][0]["region"] = "us-east-1"
    return "provider.aws"


def provider_without_owner(document: Document) -> str:
    del document["provider"]["aws"][0]["default_tags"][0]["tags"]["owner"]
    return "provider.aws"


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="provider-without-owner",
        layer="stacks",
        guarantee="tags every resource with environment, owner, data-classification and "
        "compliance-scope",
        check_id="CKV_PHI_14",
        stack="dev-ml",
        change="the provider's default tags without owner",
        apply=provider_without_owner,
    ),
    Mutant(
        name="eu-research-in-us-east-1",
        layer="stacks",
        guarantee="an EU environment's stacks deploy to EU regions only",
        check_id="CKV_PHI_11",
        stack="eu-research-data",
        change="eu-research's data stack provider in us-east-1",
        apply=provider_in_us_east_1,
    ),
    Mutant(
        name="eu-research-fhir-in-us-east-1",
        layer="stacks",
        guarantee="an EU environment's datastore stack deploys to EU regions only",
        check_id="CKV_PHI_11",
        stack="eu-research-fhir",
        change="eu-research's eu-west-1 datastore stack provider in us-east-1",
        apply=provider_in_us_east_1,
    ),
)
