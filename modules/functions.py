"""Lambda functions the platform runs for itself (isolating an instance, rolling back an
endpoint), hardened one way everywhere, and packaged byte-identically from their source."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path

from cdktf import AssetType, TerraformAsset
from constructs import Construct

from modules import aws
from modules.iam_statements import deny_insecure_transport, lambda_vpc_access_statements
from modules.inference import https_only_security_group
from modules.keys import CustomerManagedKey
from modules.policy import Statement, assume_role_policy, policy_document, statement
from modules.retention import SIX_YEAR_RETENTION_DAYS

RUNTIME_SOURCES = Path(__file__).resolve().parent.parent / "runtime"
LAMBDA_RUNTIME = "python3.12"
# CloudWatch Logs retention values of six years (HIPAA's documentation retention) or more.
LOG_RETENTION_DAYS_ALLOWED = SIX_YEAR_RETENTION_DAYS
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600  # SQS's maximum: two weeks to investigate
EVENT_RETRY_ATTEMPTS = 8
EVENT_MAX_AGE_SECONDS = 3600


def deterministic_zip(source: Path) -> bytes:
    """The package of a source folder, byte-identical for identical file contents: sorted
    entries, fixed timestamps and permissions, no bytecode. (cdktf's ARCHIVE assets keep file
    modification times, so every fresh clone would produce a new package and a new Lambda
    code version on apply.)"""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if not path.is_file() or "__pycache__" in relative.parts or path.suffix == ".pyc":
                continue
            entry = zipfile.ZipInfo(relative.as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o100644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, path.read_bytes(), compresslevel=9)
    return buffer.getvalue()


def lambda_package(source: Path, file_name: str) -> tuple[str, str]:
    """Write the source's deterministic package to a content-addressed file; return its path
    and its base64 SHA-256 (what Lambda reports as CodeSha256)."""
    package = deterministic_zip(source)
    digest = hashlib.sha256(package)
    folder = Path(tempfile.gettempdir()) / "phi-ml-lambda-packages" / digest.hexdigest()[:32]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    if not path.exists():
        partial = folder / f".{file_name}.{os.getpid()}"
        partial.write_bytes(package)
        partial.replace(path)  # atomic: concurrent synths never see half a package
    return str(path), base64.b64encode(digest.digest()).decode()


def check_log_retention(days: int) -> int:
    if days not in LOG_RETENTION_DAYS_ALLOWED:
        raise ValueError(
            f"log_retention_days {days} must be one of {LOG_RETENTION_DAYS_ALLOWED} "
            "(six years or more, as CloudWatch Logs accepts them)"
        )
    return days


class HardenedFunction(Construct):
    """A Lambda function that runs only inside the VPC (HTTPS to the VPC's endpoints and
    nothing else), is traced (X-Ray Active), has its environment encrypted with a CMK, keeps
    failed asynchronous invocations in a CMK-encrypted dead-letter queue, logs to its own
    CMK-encrypted log group kept six years or more (created before the function, so Lambda
    never creates a plain one), has a fixed reserved concurrency, and may be invoked only by
    the EventBridge rules named in `invoked_by`. Its role holds the basics (its logs, traces,
    network interfaces, dead letters, the environment key) plus `permissions`, nothing else.

    The queue also accepts the failed deliveries of those rules' targets: pass
    `dead_letter_queue_arn` as each target's dead-letter queue.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        description: str,
        source: Path,
        account_id: str,
        region: str,
        environment: dict[str, str],
        permissions: list[Statement],
        environment_key: CustomerManagedKey,
        logs_key: CustomerManagedKey,
        vpc_id: str,
        vpc_cidr: str,
        subnet_ids: list[str],
        log_retention_days: int,
        reserved_concurrency: int,
        invoked_by: dict[str, str],
        timeout_seconds: int = 60,
        memory_mb: int = 256,
    ) -> None:
        super().__init__(scope, id_)
        check_log_retention(log_retention_days)
        if reserved_concurrency < 1:
            raise ValueError("reserved_concurrency must be at least 1")
        rule_arns = list(invoked_by.values())
        queue = aws.SqsQueue(
            self,
            "dead-letters",
            name=f"{name}-dead-letters",
            kms_master_key_id=environment_key.key_arn,
            kms_data_key_reuse_period_seconds=300,
            message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS,
        )
        self.dead_letter_queue_arn: str = queue.arn
        aws.SqsQueuePolicy(
            self,
            "dead-letters-policy",
            queue_url=queue.url,
            policy=policy_document(
                statement(
                    "OnlyTheInvokingRulesDeadLetter",
                    effect="Allow",
                    principal={"Service": "events.amazonaws.com"},
                    actions="sqs:SendMessage",
                    resources=queue.arn,
                    condition={
                        "ArnEquals": {"aws:SourceArn": rule_arns},
                        "StringEquals": {"aws:SourceAccount": account_id},
                    },
                ),
                deny_insecure_transport(actions="sqs:*", resources=queue.arn),
            ),
        )
        log_group = aws.CloudwatchLogGroup(
            self,
            "logs",
            name=f"/aws/lambda/{name}",
            retention_in_days=log_retention_days,
            kms_key_id=logs_key.key_arn,
        )
        self.log_group_name: str = log_group.name
        role = aws.IamRole(
            self,
            "role",
            name=name,
            assume_role_policy=assume_role_policy("lambda.amazonaws.com", account_id),
        )
        self.role_name: str = role.name
        self.role_arn: str = role.arn
        aws.IamRolePolicy(
            self,
            "runtime-policy",
            name="run-in-the-vpc",
            role=role.id,
            policy=policy_document(
                *runtime_statements(
                    account_id=account_id,
                    region=region,
                    log_group_arn=log_group.arn,
                    dead_letter_queue_arn=queue.arn,
                    environment_key_arn=environment_key.key_arn,
                )
            ),
        )
        task_policy = aws.IamRolePolicy(
            self,
            "task-policy",
            name="task",
            role=role.id,
            policy=policy_document(*permissions),
        )
        self.security_group = https_only_security_group(
            self,
            "security-group",
            name=name,
            description=f"{name} function: HTTPS to the VPC endpoints only",
            vpc_id=vpc_id,
            vpc_cidr=vpc_cidr,
            region=region,
            s3=False,
        )
        code_path, code_sha256 = lambda_package(source, f"{source.name}.zip")
        package = TerraformAsset(self, "code", path=code_path, type=AssetType.FILE)
        function = aws.LambdaFunction(
            self,
            "function",
            function_name=name,
            description=description,
            role=role.arn,
            runtime=LAMBDA_RUNTIME,
            architectures=["arm64"],
            handler="handler.handle",
            filename=package.path,
            source_code_hash=code_sha256,
            timeout=timeout_seconds,
            memory_size=memory_mb,
            reserved_concurrent_executions=reserved_concurrency,
            kms_key_arn=environment_key.key_arn,
            environment=aws.LambdaFunctionEnvironment(variables=environment),
            vpc_config=aws.LambdaFunctionVpcConfig(
                subnet_ids=subnet_ids, security_group_ids=[self.security_group.id]
            ),
            dead_letter_config=aws.LambdaFunctionDeadLetterConfig(target_arn=queue.arn),
            tracing_config=aws.LambdaFunctionTracingConfig(mode="Active"),
            logging_config=aws.LambdaFunctionLoggingConfig(
                log_format="Text", log_group=log_group.name
            ),
            # The encrypted group exists before the first invocation could create a plain one,
            # and the role can do its task before the first event arrives.
            depends_on=[log_group, task_policy],
        )
        self.function_name: str = function.function_name
        self.function_arn: str = function.arn
        for rule_id, rule_arn in invoked_by.items():
            aws.LambdaPermission(
                self,
                f"invoked-by-{rule_id}",
                statement_id=f"OnlyTheRule-{rule_id}",
                action="lambda:InvokeFunction",
                function_name=function.function_name,
                principal="events.amazonaws.com",
                source_arn=rule_arn,
                source_account=account_id,
            )


def runtime_statements(
    *,
    account_id: str,
    region: str,
    log_group_arn: str,
    dead_letter_queue_arn: str,
    environment_key_arn: str,
    environment_key_sid: str = "UseTheEnvironmentKey",
) -> list[Statement]:
    """What any VPC function needs to run: its own logs, traces, network interfaces in this
    account and region, its dead-letter queue, and the key of its environment and queue
    (granted under `environment_key_sid`)."""
    return [
        statement(
            "WriteItsOwnLogs",
            effect="Allow",
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=f"{log_group_arn}:*",
        ),
        statement(
            "XRayTracesHaveNoResourceLevelPermissions",
            effect="Allow",
            actions=["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
            resources="*",
        ),
        *lambda_vpc_access_statements(region, account_id),
        statement(
            "DeadLetterFailedInvocations",
            effect="Allow",
            actions="sqs:SendMessage",
            resources=dead_letter_queue_arn,
        ),
        statement(
            # Environment variables and the encrypted dead-letter queue.
            environment_key_sid,
            effect="Allow",
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=environment_key_arn,
        ),
    ]
