"""The patient-token key: only the enclave image of the configured measurement (PCR0) decrypts
with it, through the host role's requests carrying its attestation document; administrators
manage it and never use it; nobody plants a plaintext of their choosing. Asked of the policy
with the IAM evaluator, and of the key the inference layer synthesizes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cdktf import TerraformStack
from pydantic import ValidationError

from environments.layer_configs import layer_configs
from environments.loader import ENVIRONMENT_FILE, ENVIRONMENTS_DIR, EnvironmentFileError
from environments.loader import load_environment as load_environment_file
from environments.schema import WorkloadEnvironment
from ml.enclave import contract
from modules import aws
from modules.enclave_bootstrap import EnclaveBootstrapConfig, render
from modules.inference import Inference, InferenceConfig
from modules.keys import (
    IMAGE_SHA384_KEY,
    CustomerManagedKey,
    CustomerManagedKeyConfig,
    EnclaveKeyConfig,
    KeyPurpose,
    enclave_key_policy,
    key_policy,
)
from modules.policy import policy_document, statement
from modules.storage import HardenedBucket, HardenedBucketConfig
from tests.iam import iam_allows
from tests.kms_policy import key_policy_allows
from tests.synth import resources, role_policy_named, statements, synth_stack
from tests.terraform_check import provider_mirror_cli_config, terraform_validate

ACCOUNT = "123456789012"
REGION = "eu-west-1"
PCR0 = "a1" * 48
OTHER_PCR0 = "b2" * 48
HOST_ROLE = f"arn:aws:iam::{ACCOUNT}:role/phi-ml-unit-readmission-enclave"
ADMINISTRATORS = (
    f"arn:aws:iam::{ACCOUNT}:role/key-admin",
    f"arn:aws:iam::{ACCOUNT}:role/phi-ml-terraform",
)
STRANGER = f"arn:aws:iam::{ACCOUNT}:role/data-scientist"
ATTESTED = {IMAGE_SHA384_KEY: PCR0}
RECIPIENT_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateRandom")
# Everything that yields a plaintext, or makes a ciphertext of a chosen plaintext.
PLAINTEXT_ACTIONS = (
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateRandom",
    "kms:DeriveSharedSecret",
    "kms:Encrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
)


def key_config(**overrides: Any) -> EnclaveKeyConfig:
    values: dict[str, Any] = {
        "purpose": KeyPurpose.PATIENT_TOKENS,
        "alias": "alias/phi-ml/unit/patient-tokens",
        "account_id": ACCOUNT,
        "region": REGION,
        "administrators": ADMINISTRATORS,
        "enclave_role": HOST_ROLE,
        "image_sha384": PCR0,
    }
    return EnclaveKeyConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def policy() -> str:
    return enclave_key_policy(key_config())


# --- who decrypts ------------------------------------------------------------------------------


@pytest.mark.parametrize("action", RECIPIENT_ACTIONS)
def test_the_measured_enclave_decrypts_and_generates(policy: str, action: str) -> None:
    assert key_policy_allows(policy, HOST_ROLE, action, ATTESTED)


def test_the_measurement_compares_without_case(policy: str) -> None:
    """StringEqualsIgnoreCase, as AWS documents: an upper-case PCR0 is the same image."""
    assert key_policy_allows(policy, HOST_ROLE, "kms:Decrypt", {IMAGE_SHA384_KEY: PCR0.upper()})


def test_another_image_is_refused(policy: str) -> None:
    assert not key_policy_allows(policy, HOST_ROLE, "kms:Decrypt", {IMAGE_SHA384_KEY: OTHER_PCR0})


def test_the_host_role_without_attestation_is_refused(policy: str) -> None:
    """The host's own credentials, the parent's, decrypt nothing."""
    for action in RECIPIENT_ACTIONS:
        assert not key_policy_allows(policy, HOST_ROLE, action, {}), action


def test_another_principal_is_refused_even_with_the_measurement(policy: str) -> None:
    assert not key_policy_allows(policy, STRANGER, "kms:Decrypt", ATTESTED)
    assert not key_policy_allows(policy, STRANGER, "kms:Decrypt", {})


@pytest.mark.parametrize("administrator", ADMINISTRATORS)
def test_administrators_manage_but_never_decrypt(policy: str, administrator: str) -> None:
    for action in ("kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:DescribeKey"):
        assert key_policy_allows(policy, administrator, action), action
    for context in ({}, ATTESTED):
        for action in (*PLAINTEXT_ACTIONS, "kms:CreateGrant"):
            assert not key_policy_allows(policy, administrator, action, context), action


def test_the_host_role_cannot_manage_the_key(policy: str) -> None:
    """Twin of the administrators' case: managing is theirs alone."""
    for action in ("kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:CreateGrant"):
        assert not key_policy_allows(policy, HOST_ROLE, action, ATTESTED), action


@pytest.mark.parametrize(
    "action",
    ["kms:Encrypt", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptTo", "kms:ReEncryptFrom"],
)
def test_nobody_wraps_a_plaintext_of_their_choosing(policy: str, action: str) -> None:
    """A ciphertext of a chosen key would be a data key the enclave accepts and its author
    knows: no principal, attested or not, can make one."""
    for principal in (HOST_ROLE, STRANGER, *ADMINISTRATORS):
        for context in ({}, ATTESTED):
            assert not key_policy_allows(policy, principal, action, context), principal


def test_a_later_broad_statement_still_needs_the_measurement(policy: str) -> None:
    """The Deny stands whatever Allow is added: the key policy stays the one record of who
    can re-identify."""
    document = json.loads(policy)
    document["Statement"].append(
        statement(
            "SomeoneAddsEverything",
            effect="Allow",
            principal={"AWS": [STRANGER, HOST_ROLE]},
            actions="kms:*",
            resources="*",
        )
    )
    widened = json.dumps(document)
    assert not key_policy_allows(widened, STRANGER, "kms:Decrypt", {})
    assert not key_policy_allows(widened, HOST_ROLE, "kms:Decrypt", {})
    assert key_policy_allows(widened, STRANGER, "kms:Decrypt", ATTESTED)  # twin: it was widened


def test_the_evaluator_sees_a_policy_without_the_condition_as_open() -> None:
    """Twin: the same statements without the attestation condition would let the host role
    decrypt in clear, so the tests above are about the condition, not the evaluator."""
    unconditional = policy_document(
        statement(
            "OnlyTheMeasuredEnclaveDecryptsAndGenerates",
            effect="Allow",
            principal={"AWS": HOST_ROLE},
            actions=list(RECIPIENT_ACTIONS),
            resources="*",
        )
    )
    assert key_policy_allows(unconditional, HOST_ROLE, "kms:Decrypt", {})


def test_the_ordinary_key_policy_would_let_its_users_decrypt_in_clear() -> None:
    """Why the patient-token key has its own policy: a platform key's users decrypt without
    any attestation."""
    ordinary = key_policy(
        CustomerManagedKeyConfig(
            purpose=KeyPurpose.ML_ARTIFACTS,
            alias="alias/unit/ml",
            account_id=ACCOUNT,
            region=REGION,
            administrators=ADMINISTRATORS,
            users=(HOST_ROLE,),
        )
    )
    assert key_policy_allows(ordinary, HOST_ROLE, "kms:Decrypt", {})
    assert not key_policy_allows(enclave_key_policy(key_config()), HOST_ROLE, "kms:Decrypt", {})


def test_no_root_statement_hands_the_key_to_iam_policies(policy: str) -> None:
    for candidate in statements(policy):
        principals = candidate["Principal"]["AWS"]
        for principal in principals if isinstance(principals, list) else [principals]:
            assert not principal.endswith(":root"), candidate["Sid"]


# --- the key's configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("measurement", "why"),
    [
        (PCR0.upper(), "upper case"),
        (PCR0[:-1], "95 characters"),
        (PCR0 + "0", "97 characters"),
        ("g" * 96, "not hex"),
        ("", "empty"),
    ],
)
def test_the_key_refuses_a_measurement_that_is_not_a_sha384(measurement: str, why: str) -> None:
    with pytest.raises(ValidationError, match="96 lower-case hex characters"):
        key_config(image_sha384=measurement)


def test_the_key_accepts_a_sha384_measurement() -> None:
    assert key_config().image_sha384 == PCR0  # twin


def test_the_enclave_role_cannot_also_administer() -> None:
    with pytest.raises(ValidationError, match="cannot both administer and use"):
        key_config(administrators=(HOST_ROLE,))


# --- the key the inference layer creates -------------------------------------------------------

SETTINGS: dict[str, Any] = {
    "environment": "unit",
    "account_id": ACCOUNT,
    "region": REGION,
    "model_name": "readmission",
    "inference_image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/phi-ml/serving:1.0.0",
    "model_archive_prefix": "pipelines/unit-readmission/",
    "endpoint_instance_type": "ml.c7g.xlarge",
    "endpoint_instance_count": 1,
    "data_capture_sampling_percent": 25,
    "capture_prefix": "data-capture/readmission/",
    "enclave_instance_type": "c7g.xlarge",
    "enclave_min_size": 1,
    "enclave_max_size": 2,
    "enclave_desired_capacity": 1,
    "enclave_target_cpu_percent": 60,
    "enclave_image_sha384": PCR0,
    "enclave_memory_mib": 2048,
    "enclave_cpu_count": 2,
    "key_administrators": ADMINISTRATORS,
    "vpc_cidr": "10.42.0.0/16",
    "production": False,
}
BUCKET = "unit-ml-artifacts"


def build(stack: TerraformStack, **overrides: Any) -> Inference:
    ml_key = CustomerManagedKey(
        stack,
        "ml-artifacts-key",
        config=CustomerManagedKeyConfig(
            purpose=KeyPurpose.ML_ARTIFACTS,
            alias="alias/unit/ml-artifacts",
            account_id=ACCOUNT,
            region=REGION,
            administrators=ADMINISTRATORS,
            users=(f"arn:aws:iam::{ACCOUNT}:role/ml-engineer",),
        ),
    )
    bucket = HardenedBucket(
        stack,
        "artifacts",
        config=HardenedBucketConfig(name=BUCKET, account_id=ACCOUNT, noncurrent_version_days=30),
        kms_key=ml_key,
        access_logs=None,
    )
    vpc = aws.Vpc(stack, "vpc", cidr_block="10.42.0.0/16")
    subnet = aws.Subnet(stack, "subnet", vpc_id=vpc.id, cidr_block="10.42.0.0/24")
    return Inference(
        stack,
        "inference",
        config=InferenceConfig(**{**SETTINGS, **overrides}),
        ml_key=ml_key,
        capture_bucket=bucket,
        model_bucket_arn=bucket.bucket_arn,
        vpc_id=vpc.id,
        subnet_ids=[subnet.id],
    )


@pytest.fixture(scope="module")
def synth() -> dict[str, Any]:
    return synth_stack(build)


def patient_token_key(synthesized: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (name, key)
        for name, key in resources(synthesized, "aws_kms_key").items()
        if key["tags"]["key-purpose"] == KeyPurpose.PATIENT_TOKENS.value
    ]
    return found


def test_the_layer_creates_the_key_for_its_host_role(synth: dict[str, Any]) -> None:
    name, key = patient_token_key(synth)
    (role,) = [r for n, r in resources(synth, "aws_iam_role").items() if "enclave" in n]
    assert f"arn:aws:iam::{ACCOUNT}:role/{role['name']}" == HOST_ROLE
    policy = key["policy"]
    assert key_policy_allows(policy, HOST_ROLE, "kms:Decrypt", ATTESTED)
    assert not key_policy_allows(policy, HOST_ROLE, "kms:Decrypt", {IMAGE_SHA384_KEY: OTHER_PCR0})
    assert not key_policy_allows(policy, HOST_ROLE, "kms:Decrypt", {})
    assert key["enable_key_rotation"] is True
    assert key["deletion_window_in_days"] == 30
    # KMS refuses a policy naming a role that does not exist yet.
    (role_name,) = [n for n, r in resources(synth, "aws_iam_role").items() if "enclave" in n]
    assert key["depends_on"] == [f"aws_iam_role.{role_name}"]
    (alias,) = [a for a in resources(synth, "aws_kms_alias").values() if name in a["target_key_id"]]
    assert alias["name"] == contract.patient_token_key_alias("unit")


def test_production_keys_refuse_destroy() -> None:
    pinned = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/phi-ml/serving@sha256:{'0' * 64}"
    production = synth_stack(lambda s: build(s, production=True, inference_image=pinned))
    _, key = patient_token_key(production)
    assert key["lifecycle"] == {"prevent_destroy": True}


def test_a_layer_without_an_enclave_image_has_no_key_and_no_bootstrap() -> None:
    """Twin: the key, the host's artifact access and its bootstrap come with the image."""
    bare = synth_stack(lambda s: build(s, enclave_image_sha384=None, key_administrators=()))
    purposes = [k["tags"]["key-purpose"] for k in resources(bare, "aws_kms_key").values()]
    assert KeyPurpose.PATIENT_TOKENS.value not in purposes
    (template,) = resources(bare, "aws_launch_template").values()
    assert "user_data" not in template
    assert all(
        p["name"] != "fetch-the-measured-enclave-image"
        for p in resources(bare, "aws_iam_role_policy").values()
    )


def test_the_host_reads_only_the_measured_image_its_parent_and_the_wrapped_key(
    synth: dict[str, Any],
) -> None:
    (bucket,) = resources(synth, "aws_s3_bucket")
    arn = f"${{aws_s3_bucket.{bucket}.arn}}"
    policy = role_policy_named(synth, "fetch-the-measured-enclave-image")
    for key in (
        contract.image_object(PCR0),
        contract.parent_archive_object(PCR0),
        contract.WRAPPED_DATA_KEY_OBJECT,
    ):
        assert iam_allows(policy, "s3:GetObject", f"{arn}/{key}"), key
    for key in (contract.image_object(OTHER_PCR0), "data-capture/readmission/x.jsonl"):
        assert not iam_allows(policy, "s3:GetObject", f"{arn}/{key}"), key
    assert not iam_allows(policy, "s3:PutObject", f"{arn}/{contract.WRAPPED_DATA_KEY_OBJECT}")


def test_the_host_decrypts_artifacts_only_through_s3(synth: dict[str, Any]) -> None:
    (ml_key,) = [
        n
        for n, k in resources(synth, "aws_kms_key").items()
        if "ml-artifacts" in k["tags"].values()
    ]
    key_arn = f"${{aws_kms_key.{ml_key}.arn}}"
    policy = role_policy_named(synth, "fetch-the-measured-enclave-image")
    via_s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    assert iam_allows(policy, "kms:Decrypt", key_arn, via_s3)
    assert not iam_allows(policy, "kms:Decrypt", key_arn, {})
    assert not iam_allows(policy, "kms:GenerateDataKey", key_arn, via_s3)


BASE64ENCODE_PREFIX, BASE64ENCODE_SUFFIX = '${base64encode("', '")}'


def user_data_script(template: dict[str, Any]) -> str:
    """The script inside the template's `${base64encode("...")}` (a JSON-escaped literal)."""
    expression = template["user_data"]
    assert expression.startswith(BASE64ENCODE_PREFIX), expression[:40]
    assert expression.endswith(BASE64ENCODE_SUFFIX)
    literal = expression.removeprefix(BASE64ENCODE_PREFIX).removesuffix(BASE64ENCODE_SUFFIX)
    assert "${" not in literal and "%{" not in literal  # no template sequence inside
    script = json.loads(f'"{literal}"')
    assert isinstance(script, str)
    return script


def bootstrap_config(**overrides: Any) -> EnclaveBootstrapConfig:
    values: dict[str, Any] = {
        "environment": "unit",
        "account_id": ACCOUNT,
        "region": REGION,
        "image_sha384": PCR0,
        "memory_mib": 2048,
        "cpu_count": 2,
        "artifacts_bucket": BUCKET,
        "endpoint_name": "phi-ml-unit-readmission",
    }
    return EnclaveBootstrapConfig(**{**values, **overrides})


def test_the_launch_template_carries_the_bootstrap(synth: dict[str, Any]) -> None:
    (template,) = resources(synth, "aws_launch_template").values()
    assert user_data_script(template) == render(bootstrap_config())


def test_the_bootstrap_follows_the_layers_values() -> None:
    """Twin: other enclave values give another script, so the equality above is no accident."""
    other = synth_stack(lambda s: build(s, enclave_memory_mib=3072))
    (template,) = resources(other, "aws_launch_template").values()
    assert user_data_script(template) == render(bootstrap_config(memory_mib=3072))
    assert user_data_script(template) != render(bootstrap_config())


@pytest.mark.terraform
def test_terraform_encodes_the_script_itself(tmp_path: Path, synth: dict[str, Any]) -> None:
    """What EC2 receives: Terraform evaluates the expression, and base64 gives the script."""
    cli_config = provider_mirror_cli_config(tmp_path)
    (template,) = resources(synth, "aws_launch_template").values()
    (tmp_path / "main.tf.json").write_text(
        json.dumps({"output": {"user_data": {"value": template["user_data"]}}})
    )
    environment = {**os.environ, "TF_CLI_CONFIG_FILE": str(cli_config), "TF_IN_AUTOMATION": "1"}
    for command in (
        ["terraform", "init", "-input=false", "-no-color"],
        ["terraform", "apply", "-auto-approve", "-input=false", "-no-color"],
    ):
        subprocess.run(command, cwd=tmp_path, env=environment, check=True, capture_output=True)
    encoded = subprocess.run(
        ["terraform", "output", "-raw", "user_data"],
        cwd=tmp_path,
        env=environment,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert base64.b64decode(encoded).decode() == render(bootstrap_config())


# --- the shipped environments -------------------------------------------------------------------


def shipped(name: str) -> WorkloadEnvironment:
    environment = load_environment_file(ENVIRONMENTS_DIR / name / ENVIRONMENT_FILE)
    assert isinstance(environment, WorkloadEnvironment)
    return environment


@pytest.mark.parametrize("name", ["dev", "staging", "prod", "eu-research"])
def test_every_environment_configures_the_enclave_and_its_key(name: str) -> None:
    environment = shipped(name)
    configs = layer_configs(environment)
    enclave = environment.ml.inference.enclave
    assert configs.inference.enclave_image_sha384 == enclave.image_sha384
    assert configs.inference.enclave_memory_mib == enclave.memory_mib
    assert configs.inference.enclave_cpu_count == enclave.cpu_count
    administrators = configs.inference.key_administrators
    assert environment.deployment_role_arn in administrators
    assert configs.inference.enclave_host_role_arn not in administrators
    # The ML key admits the host role (it fetches the image from the artifacts bucket).
    ml_key = configs.keys.key_config(KeyPurpose.ML_ARTIFACTS)
    assert configs.inference.enclave_host_role_arn in ml_key.service_roles
    # ...and no other key does.
    phi_key = configs.keys.key_config(KeyPurpose.PHI_DATA)
    assert configs.inference.enclave_host_role_arn not in phi_key.service_roles


# --- the measurement in the configuration ------------------------------------------------------


@pytest.mark.parametrize(
    ("measurement", "why"),
    [
        (PCR0.upper(), "got it in upper case"),
        (PCR0[:64], "got 64 characters"),
        ("sha384:" + PCR0, "got 103 characters"),
        ("z" * 96, "not hexadecimal"),
    ],
)
def test_the_layer_refuses_a_measurement_that_is_not_pcr0(measurement: str, why: str) -> None:
    with pytest.raises(ValidationError, match="PCR0 of `nitro-cli build-enclave`") as refused:
        InferenceConfig(**{**SETTINGS, "enclave_image_sha384": measurement})
    assert why in str(refused.value)


def test_the_layer_accepts_pcr0() -> None:
    assert InferenceConfig(**SETTINGS).enclave_image_sha384 == PCR0  # twin


@pytest.mark.parametrize(
    ("override", "rule"),
    [
        ({"enclave_cpu_count": 3}, "leaves the parent fewer than 2"),
        ({"enclave_memory_mib": 7168}, "leaves the parent less than 2048"),
        ({"key_administrators": ()}, "needs key_administrators"),
    ],
)
def test_the_enclave_leaves_the_parent_its_share(override: dict[str, Any], rule: str) -> None:
    with pytest.raises(ValidationError, match=rule):
        InferenceConfig(**{**SETTINGS, **override})


def test_a_larger_host_gives_the_enclave_more() -> None:
    """Twin: on c7g.2xlarge (8 vCPUs, 16 GiB) the same values fit."""
    assert InferenceConfig(
        **{
            **SETTINGS,
            "enclave_instance_type": "c7g.2xlarge",
            "enclave_cpu_count": 6,
            "enclave_memory_mib": 14336,
        }
    )


def test_the_environment_file_names_the_bad_measurement(tmp_path: Path) -> None:
    text = (ENVIRONMENTS_DIR / "dev" / ENVIRONMENT_FILE).read_text(encoding="utf-8")
    measurement = shipped("dev").ml.inference.enclave.image_sha384
    assert text.count(measurement) == 1
    path = tmp_path / "dev" / ENVIRONMENT_FILE
    path.parent.mkdir()
    path.write_text(text.replace(measurement, measurement.upper()), encoding="utf-8")
    with pytest.raises(EnvironmentFileError) as refused:
        load_environment_file(path)
    message = str(refused.value)
    assert "ml.inference.enclave.image_sha384" in message
    assert "lower-case hex" in message
    # Twin: the file as shipped loads.
    path.write_text(text, encoding="utf-8")
    assert load_environment_file(path)


@pytest.mark.terraform
def test_terraform_validates_the_layer_with_its_enclave(tmp_path: Path) -> None:
    terraform_validate(tmp_path, build, region=REGION)
