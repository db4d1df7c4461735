"""Mutants of the fhir layer (modules/fhir.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tools.mutants.edits import (
    MutantError,
    address,
    bucket_policy_without,
    delete_attribute,
    edit_json,
    named,
)
from tools.mutants.model import Apply, Document, Mutant, RuntimeTwin


def healthlake_aws_owned_key(document: Document) -> str:
    name, conf = named(document, "aws_cloudformation_stack", "fhir/datastore-stack")

    def change(template: Document) -> None:
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::HealthLake::FHIRDatastore":
                sse = resource["Properties"]["SseConfiguration"]
                sse["KmsEncryptionConfig"] = {"CmkType": "AWS_OWNED_KMS_KEY"}

    edit_json(conf, "template_body", change)
    return address("aws_cloudformation_stack", name)


def import_statement(sid: str, change: Callable[[Document], None]) -> Apply:
    """Change the statement `sid` of the import role's policy; the policy is what must fail."""

    def apply(document: Document) -> str:
        name, conf = named(document, "aws_iam_role_policy", "fhir/import-policy")

        def edit(policy: Any) -> None:
            found = [s for s in policy["Statement"] if s.get("Sid") == sid]
            if len(found) != 1:
                raise MutantError(f"no statement {sid!r} in the import policy")
            change(found[0])

        edit_json(conf, "policy", edit)
        return address("aws_iam_role_policy", name)

    return apply


def whole_bucket(statement: Document) -> None:
    """`<bucket>/fhir-import/*` -> `<bucket>/*`."""
    bucket, _, _ = statement["Resource"].partition("}/")
    statement["Resource"] = f"{bucket}}}/*"


def without_prefix_condition(statement: Document) -> None:
    del statement["Condition"]


def eu_import_from_home_raw_bucket(document: Document) -> str:
    """The eu-west-1 datastore's import role pointed at eu-central-1's raw bucket."""
    bucket, _ = named(document, "aws_s3_bucket", "region-storage/fhir/bucket")
    name, conf = named(document, "aws_iam_role_policy", "fhir/import-policy")
    reference = f"${{aws_s3_bucket.{bucket}.arn}}"
    if reference not in conf["policy"]:
        raise MutantError(f"the import policy does not name {reference}")
    conf["policy"] = conf["policy"].replace(reference, "arn:aws:s3:::acme-eu-research-raw")
    return address("aws_iam_role_policy", name)


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="healthlake-aws-owned-key",
        layer="fhir",
        guarantee="datastore encrypted with the PHI key",
        check_id="CKV_PHI_1",
        stack="dev-fhir",
        change="the datastore encrypted with an AWS-owned key",
        apply=healthlake_aws_owned_key,
        runtime=RuntimeTwin(
            "RT_PHI_HEALTHLAKE_CMK", "test_healthlake_datastore_without_the_phi_key_fails"
        ),
    ),
    Mutant(
        name="eu-healthlake-aws-owned-key",
        layer="fhir",
        guarantee="a datastore outside the environment's region gets that region's own PHI key",
        check_id="CKV_PHI_1",
        stack="eu-research-fhir",
        change="eu-research's eu-west-1 datastore encrypted with an AWS-owned key",
        apply=healthlake_aws_owned_key,
    ),
    Mutant(
        name="eu-fhir-bucket-allows-http",
        layer="fhir",
        guarantee="and hardened FHIR bucket, built like the data stack's",
        check_id="CKV_PHI_10",
        stack="eu-research-fhir",
        change="the eu-west-1 FHIR bucket's policy without DenyInsecureTransport",
        apply=bucket_policy_without("region-storage/fhir/bucket", "DenyInsecureTransport"),
    ),
    Mutant(
        name="prod-fhir-destroyable",
        layer="fhir",
        guarantee="prevent_destroy on the production datastore",
        check_id="CKV_PHI_13",
        stack="prod-fhir",
        change="the production datastore stack without lifecycle.prevent_destroy",
        apply=delete_attribute("aws_cloudformation_stack", "fhir/datastore-stack", "lifecycle"),
    ),
    Mutant(
        name="fhir-import-role-reads-whole-bucket",
        layer="fhir",
        guarantee="an import role that reads only the raw bucket's import prefix",
        check_id="CKV_PHI_27",
        stack="dev-fhir",
        change="the import role's s3:GetObject widened from fhir-import/* to the whole raw bucket",
        apply=import_statement("ReadImportPrefixOnly", whole_bucket),
    ),
    Mutant(
        name="fhir-import-role-lists-whole-bucket",
        layer="fhir",
        guarantee="an import role that reads only the raw bucket's import prefix",
        check_id="CKV_PHI_27",
        stack="prod-fhir",
        change="the import role's s3:ListBucket without its s3:prefix condition",
        apply=import_statement("ListImportPrefixOnly", without_prefix_condition),
    ),
    Mutant(
        name="eu-fhir-import-role-reads-home-raw-bucket",
        layer="fhir",
        guarantee="its import role reads only that bucket's import prefix",
        check_id="CKV_PHI_27",
        stack="eu-research-fhir",
        change="the eu-west-1 import role reading eu-central-1's raw bucket, not the region's",
        apply=eu_import_from_home_raw_bucket,
    ),
)
