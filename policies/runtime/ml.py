"""SageMaker: endpoint configurations encrypted with the ML key and capturing requests and
responses into KMS-encrypted storage, feature groups encrypted on both stores with the
feature-store key, model package groups never readable by anyone outside the environment's
account and its production account.

Every endpoint configuration of the environment counts, not only the one in service: rollback
(runtime/rollback) returns the endpoint to an earlier configuration, so those must hold too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from policies.runtime import policy_documents as documents
from policies.runtime.clients import error_code, error_message, pages
from policies.runtime.model import (
    CheckContext,
    Missing,
    Outcome,
    RuntimeCheck,
    failed,
    not_demonstrated,
    not_emulated,
    passed,
)

CAPTURE_MODES = ("Input", "Output")


def _each_endpoint_config(
    context: CheckContext, evaluate: Callable[[dict[str, Any], str], Outcome]
) -> Iterator[Outcome]:
    sagemaker = context.client("sagemaker")
    prefix = context.expected.endpoint_config_prefix or ""
    placeholder = context.arn("sagemaker", f"endpoint-config/{prefix}*")
    names = context.discover(
        placeholder,
        lambda: [
            str(config["EndpointConfigName"])
            for config in pages(
                sagemaker, "list_endpoint_configs", "EndpointConfigs", NameContains=prefix
            )
            if str(config["EndpointConfigName"]).startswith(prefix)
        ],
    )
    if isinstance(names, Outcome):
        yield names
        return
    if not names:
        # The deployer creates them when a person approves a version; an account where none
        # was approved yet has nothing to judge, which is not evidence either way.
        yield not_demonstrated(
            placeholder,
            f"no endpoint configuration named {prefix}*: no model version deployed yet",
        )
        return
    for name in sorted(names):
        arn = context.arn("sagemaker", f"endpoint-config/{name}")

        def described(name: str = name, arn: str = arn) -> Outcome:
            return evaluate(sagemaker.describe_endpoint_config(EndpointConfigName=name), arn)

        yield context.judge(arn, described)


def endpoint_kms(context: CheckContext) -> Iterator[Outcome]:
    def evaluate(config: dict[str, Any], arn: str) -> Outcome:
        same, why = context.same_key(config.get("KmsKeyId"), context.expected.ml_key_alias)
        return (passed if same else failed)(arn, f"instance storage: {why}")

    return _each_endpoint_config(context, evaluate)


def data_capture(context: CheckContext) -> Iterator[Outcome]:
    def evaluate(config: dict[str, Any], arn: str) -> Outcome:
        capture = config.get("DataCaptureConfig")
        if not capture or not capture.get("EnableCapture", True):
            return failed(arn, "data capture is off")
        problems = []
        if not capture.get("InitialSamplingPercentage"):
            problems.append("it samples 0% of requests")
        modes = {option.get("CaptureMode") for option in capture.get("CaptureOptions", [])}
        absent = [mode for mode in CAPTURE_MODES if mode not in modes]
        if absent:
            problems.append(f"it does not capture {' or '.join(absent)}")
        same, why = context.same_key(capture.get("KmsKeyId"), context.expected.ml_key_alias)
        if not same:
            problems.append(f"captured data: {why}")
        if problems:
            return failed(arn, "data capture on, but " + "; ".join(problems))
        return passed(
            arn,
            f"captures requests and responses ({capture['InitialSamplingPercentage']}%) to "
            f"{capture.get('DestinationS3Uri')}, {why}",
        )

    return _each_endpoint_config(context, evaluate)


def feature_group_encryption(context: CheckContext) -> Iterator[Outcome]:
    sagemaker = context.client("sagemaker")
    key = context.expected.feature_key_alias

    def evaluate(name: str, arn: str) -> Outcome:
        try:
            group = sagemaker.describe_feature_group(FeatureGroupName=name)
        except ClientError as problem:
            if error_code(problem) == "ResourceNotFound":
                raise Missing(f"no feature group {name}") from problem
            raise
        problems: list[str] = []
        notes: list[str] = []
        offline = group.get("OfflineStoreConfig")
        if offline:
            same, why = context.same_key(offline.get("S3StorageConfig", {}).get("KmsKeyId"), key)
            (notes if same else problems).append(f"offline store {why}")
        online = group.get("OnlineStoreConfig")
        if online and online.get("EnableOnlineStore", True):
            kms = online.get("SecurityConfig", {}).get("KmsKeyId")
            same, why = context.same_key(kms, key)
            (notes if same else problems).append(f"online store {why}")
        if problems:
            return failed(arn, "; ".join(problems))
        if online is None and context.emulated:
            return not_emulated(
                arn,
                f"{'; '.join(notes)}; moto does not report OnlineStoreConfig, so the online "
                "store's key cannot be read",
            )
        if not notes:
            return failed(arn, "the feature group has neither an online nor an offline store")
        return passed(arn, "; ".join(notes))

    for name in context.expected.feature_groups:
        arn = context.arn("sagemaker", f"feature-group/{name}")
        yield context.judge(arn, partial(evaluate, name, arn))


def model_package_group_policy(context: CheckContext) -> Iterator[Outcome]:
    sagemaker = context.client("sagemaker")
    readers = set(context.expected.model_package_readers)

    def evaluate(name: str, arn: str) -> Outcome:
        try:
            sagemaker.describe_model_package_group(ModelPackageGroupName=name)
        except ClientError as problem:
            if error_code(problem) == "ValidationException":
                raise Missing(f"no model package group {name}: {error_message(problem)}") from None
            raise
        try:
            text = sagemaker.get_model_package_group_policy(ModelPackageGroupName=name)[
                "ResourcePolicy"
            ]
        except ClientError as problem:
            # SageMaker's answer for a group without a resource policy.
            if "Cannot find resource policy" in error_message(problem):
                return passed(arn, "no resource policy: only this account's IAM policies apply")
            raise
        try:
            policy = documents.parse(text)
        except ValueError as problem:
            return failed(arn, f"the resource policy cannot be read: {problem}")
        allows = [s for s in documents.statements(policy) if s.get("Effect") == "Allow"]
        if any(documents.is_anyone(s) for s in allows):
            return failed(arn, "the resource policy allows any principal (*)")
        strangers = sorted(
            set().union(*(documents.principal_accounts(s) for s in allows)) - readers
        )
        if strangers:
            return failed(arn, f"the resource policy admits other accounts: {', '.join(strangers)}")
        return passed(arn, f"readable only by {', '.join(sorted(readers))}")

    for name in context.expected.model_package_groups:
        arn = context.arn("sagemaker", f"model-package-group/{name}")
        yield context.judge(arn, partial(evaluate, name, arn))


CHECKS = (
    RuntimeCheck(
        "RT_PHI_SAGEMAKER_ENDPOINT_KMS",
        "SageMaker endpoint configuration encrypted with the ML key",
        endpoint_kms,
        workload_only=True,
    ),
    RuntimeCheck(
        "RT_PHI_SAGEMAKER_DATA_CAPTURE",
        "SageMaker endpoint captures requests and responses, KMS-encrypted",
        data_capture,
        workload_only=True,
    ),
    RuntimeCheck(
        "RT_PHI_FEATURE_GROUP_ENCRYPTION",
        "Feature group online and offline stores encrypted with the feature-store key",
        feature_group_encryption,
        workload_only=True,
    ),
    RuntimeCheck(
        "RT_PHI_MODEL_PACKAGE_GROUP_NOT_PUBLIC",
        "Model package group policy never public, only the production account reads",
        model_package_group_policy,
        workload_only=True,
    ),
)
