"""`make ml-demo ENV=dev`: the whole model loop on the local AWS emulator, no AWS account.

    python -m tools.ml_demo dev [--patients 1500] [--seed 7] [--reports reports/ml]

Starts moto on loopback and applies `<env>-ml` and the stacks it depends on exactly as
`make e2e` does. Then, against what was applied (every definition, rule, function setting and
name is read back from the emulator, none is rebuilt here):

1. feature build: a synthetic HealthLake export lands in the raw bucket; the emulator records
   an execution of the synthesized features pipeline (StartPipelineExecution) and the pipeline
   interpreter (tools/pipeline_interpreter.py) runs that execution's definition step by step,
   the step programs of `ml/` in-process with the container paths mapped to a scratch root;
2. trigger: the feature build's "Pipeline Execution Status Change" event is checked against the
   deployed trigger rule (TestEventPattern) and the rule's target parameters are resolved from
   it as EventBridge does (dynamic JSON paths);
3. training: the training pipeline's execution with those parameters, interpreted the same way;
   its RegisterModel step registers a PendingManualApproval version in the emulator's registry;
4. approval: a person's decision (UpdateModelPackage Approved, with a comment), and the
   approval event handed to the deployer function (runtime/deployer, run in-process with the
   settings the deployed function has), which deploys the version and points the monitor at
   its baseline;
5. steps 1-4 again for a second version (a later export of a fifth as many new patients), so
   there is something to go back to;
6. monitoring: a capture batch like the training data finds no violation; a drifted one (vital
   signs shifted) violates the serving version's baseline constraints (ml/monitor_baseline),
   and the monitoring job's "CompletedWithViolations" event goes to the rollback function
   (runtime/rollback, in-process with its deployed settings), which returns the endpoint to the
   first version and rejects the drifted one in the registry;
7. lineage: tools/lineage.py traces the version served after the rollback.

It writes `<reports>/<env>/run.json` (each step's status and seconds, the metric on held-out
data, every package's ARN and status history, the endpoint's serving version before and after
the rollback) and `<reports>/<env>/lineage.txt` / `lineage.json`. Exit 0 when the loop closed
(registered, approved, deployed, rolled back, lineage without findings), 1 when a step did not
do what it must, 2 on bad input. The emulator stops at the end; nothing outlives the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
from botocore.config import Config

from environments.layer_configs import layer_configs
from environments.schema import WorkloadEnvironment
from ml import synthetic_fhir
from ml.dataset_splits import read_split
from ml.monitor_baseline import detect_violations
from ml.sagemaker_paths import DATASET_MANIFEST, SPLIT_FILES
from modules.feature_build import EXPORT_FOLDER_PARAMETER, features_pipeline_name
from requirements.model_lineage import DATASET_MANIFEST_URI
from runtime.deployer import handler as deployer
from runtime.rollback import handler as rollback
from tools import lineage
from tools.cli import UsageError, add_jobs_option, positive_int, run_command
from tools.e2e import (
    deploy_stacks,
    emulator_session,
    has_environment,
    provider_identities,
    synthesize_local,
)
from tools.feature_flow import AS_OF, upload_export
from tools.features import workload
from tools.pipeline_interpreter import (
    PipelineInterpreter,
    PipelineRun,
    S3ObjectStore,
    temporary_environment,
)
from tools.terraform import (
    Outcome,
    Progress,
    Terraform,
    emulator_workspace,
    load_stacks,
    require_local_target,
    with_dependencies,
)

DEFAULT_OUTDIR: Final = Path("cdktf.out.local")
DEFAULT_REPORTS: Final = Path("reports/ml")
# Enough patients for the model to clear the gate deterministically (tests/ml holds the
# population's signal and the shuffled-label twin that never clears it).
DEFAULT_PATIENTS: Final = 1500
DEFAULT_SEED: Final = 7
RUN_FILE: Final = "run.json"
# The drifted batch: heart rate and systolic pressure shifted far past the training range.
DRIFT_SHIFT: Final = 60.0
DRIFTED_FEATURES: Final = ("heart_rate", "systolic_bp")
CAPTURE_ROWS: Final = 200
APPROVER_COMMENT: Final = "Reviewed evaluation and baseline (make ml-demo)"


class LoopError(RuntimeError):
    """A step of the loop did not do what it must (the run is reported, exit 1)."""


@dataclass
class StepLog:
    """run.json's `steps`: what ran, in order, with its outcome and time."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str, **details: Any) -> Iterator[dict[str, Any]]:
        entry: dict[str, Any] = {"step": name, "status": "Executing", **details}
        self.entries.append(entry)
        started = time.perf_counter()
        try:
            yield entry
        except BaseException as problem:
            entry["status"] = "Failed"
            entry["failure"] = " ".join(str(problem).split())[:500]
            raise
        finally:
            entry["seconds"] = round(time.perf_counter() - started, 3)
        entry["status"] = "Succeeded"


@dataclass
class Emulated:
    """Clients of the applied environment on the emulator, as its deployment identity."""

    session: Any
    endpoint_url: str

    def client(self, service: str) -> Any:
        config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2})
        return self.session.client(service, endpoint_url=self.endpoint_url, config=config)

    @contextlib.contextmanager
    def as_lambda(self, variables: Mapping[str, str]) -> Iterator[None]:
        """The process environment a function's handler sees in Lambda: its settings, its
        region and credentials (here: the emulator's, and the emulator's endpoint)."""
        credentials = self.session.get_credentials().get_frozen_credentials()
        values = {
            **variables,
            "AWS_REGION": self.session.region_name,
            "AWS_DEFAULT_REGION": self.session.region_name,
            "AWS_ACCESS_KEY_ID": credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
            "AWS_SESSION_TOKEN": credentials.token or "",
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }
        with temporary_environment(values):
            yield


def json_path(event: Mapping[str, Any], path: str) -> Any:
    """EventBridge's dynamic path parameter: `$.a.b` is that part of the event."""
    value: Any = event
    for part in path.removeprefix("$.").split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise LoopError(f"target parameter {path} names nothing in the event")
        value = value[part]
    return value


def pipeline_status_event(run: PipelineRun, pipeline_arn: str, ended: str) -> dict[str, Any]:
    """SageMaker's "SageMaker Model Building Pipeline Execution Status Change" event of a
    finished execution, as EventBridge delivers it."""
    account, region = pipeline_arn.split(":")[4], pipeline_arn.split(":")[3]
    return {
        "version": "0",
        "id": f"status-{run.execution_id}",
        "detail-type": "SageMaker Model Building Pipeline Execution Status Change",
        "source": "aws.sagemaker",
        "account": account,
        "time": ended,
        "region": region,
        "resources": [pipeline_arn, run.execution_arn],
        "detail": {
            "pipelineExecutionDisplayName": run.execution_id,
            "currentPipelineExecutionStatus": run.status,
            "previousPipelineExecutionStatus": "Executing",
            "executionStartTime": run.start_time,
            "executionEndTime": ended,
            "pipelineArn": pipeline_arn,
            "pipelineExecutionArn": run.execution_arn,
        },
    }


def package_event(package: Mapping[str, Any]) -> dict[str, Any]:
    """The registry's "SageMaker Model Package State Change" event for `package` as it is."""
    arn = str(package["ModelPackageArn"])
    return {
        "version": "0",
        "id": f"state-{arn.rsplit('/', 1)[1]}-{package['ModelApprovalStatus']}",
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "account": arn.split(":")[4],
        "time": _now(),
        "region": arn.split(":")[3],
        "resources": [arn],
        "detail": {
            "ModelPackageGroupName": package["ModelPackageGroupName"],
            "ModelPackageArn": arn,
            "ModelPackageVersion": package["ModelPackageVersion"],
            "ModelApprovalStatus": package["ModelApprovalStatus"],
        },
    }


def monitoring_event(schedule_arn: str, endpoint: str, exit_message: str) -> dict[str, Any]:
    """The monitoring job's "SageMaker Processing Job State Change" event (detail is
    DescribeProcessingJob of the job the schedule started)."""
    account, region = schedule_arn.split(":")[4], schedule_arn.split(":")[3]
    job = f"model-monitoring-{datetime.now(UTC):%Y%m%d%H%M}-ml-demo"
    job_arn = f"arn:aws:sagemaker:{region}:{account}:processing-job/{job}"
    return {
        "version": "0",
        "id": f"monitoring-{job}",
        "detail-type": "SageMaker Processing Job State Change",
        "source": "aws.sagemaker",
        "account": account,
        "time": _now(),
        "region": region,
        "resources": [job_arn],
        "detail": {
            "ProcessingJobName": job,
            "ProcessingJobArn": job_arn,
            "ProcessingJobStatus": "Completed",
            "ExitMessage": exit_message,
            "MonitoringScheduleArn": schedule_arn,
            "Environment": {
                "sagemaker_endpoint_name": endpoint,
                "sagemaker_monitoring_schedule_name": schedule_arn.rsplit("/", 1)[1],
            },
        },
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def drifted(rows: np.ndarray[Any, Any], columns: Sequence[str]) -> np.ndarray[Any, Any]:
    """The same rows (columns named as in the dataset manifest, the payload's order) with the
    vital signs a sicker, or miscalibrated, population would show: heart rate and systolic
    pressure shifted by DRIFT_SHIFT."""
    shifted = rows.copy()
    for index, name in enumerate(columns):
        if name in DRIFTED_FEATURES:
            shifted[:, index] += DRIFT_SHIFT
    return shifted


class ModelLoop:
    """The loop against one applied environment; every step logged in `self.log`."""

    def __init__(
        self,
        environment: WorkloadEnvironment,
        emulated: Emulated,
        *,
        folder: Path,
        patients: int,
        seed: int,
    ) -> None:
        self.environment = environment
        self.emulated = emulated
        self.folder = folder
        self.patients = patients
        self.seed = seed
        self.configs = layer_configs(environment)
        self.log = StepLog()
        self.sagemaker = emulated.client("sagemaker")
        self.s3 = emulated.client("s3")
        self.events = emulated.client("events")
        self.functions = emulated.client("lambda")
        self.history: dict[str, list[dict[str, str]]] = {}
        self.packages: list[str] = []
        self.metrics: dict[str, float] = {}
        self.scratch = Path(tempfile.mkdtemp(prefix="phi-ml-ml-demo-"))

    # --- the pieces the stacks applied -------------------------------------------------------

    def definition(self, pipeline_name: str) -> tuple[str, dict[str, Any]]:
        described = self.sagemaker.describe_pipeline(PipelineName=pipeline_name)
        return str(described["PipelineArn"]), json.loads(described["PipelineDefinition"])

    def function_settings(self, name: str) -> dict[str, str]:
        configuration = self.functions.get_function_configuration(FunctionName=name)
        return dict(configuration.get("Environment", {}).get("Variables", {}))

    def key_arn(self, purpose: str) -> str:
        alias = f"alias/phi-ml/{self.environment.name}/{purpose}"
        return str(self.emulated.client("kms").describe_key(KeyId=alias)["KeyMetadata"]["Arn"])

    def note_status(self, arn: str, at: str) -> str:
        package = self.sagemaker.describe_model_package(ModelPackageName=arn)
        status = str(package["ModelApprovalStatus"])
        self.history.setdefault(arn, []).append({"after": at, "status": status})
        return status

    def serving(self) -> dict[str, str | None]:
        endpoint = self.configs.inference.name
        config = self.sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        arn = self.sagemaker.describe_endpoint_config(EndpointConfigName=config)[
            "EndpointConfigArn"
        ]
        tags = {t["Key"]: t["Value"] for t in self.sagemaker.list_tags(ResourceArn=arn)["Tags"]}
        return {"endpoint_config": config, "model_package": tags.get(deployer.TAG_MODEL_PACKAGE)}

    def interpreter(self, definition: dict[str, Any], pipeline_arn: str) -> PipelineInterpreter:
        return PipelineInterpreter(
            definition,
            store=S3ObjectStore(self.s3),
            scratch=self.scratch,
            register=self.register,
            pipeline_arn=pipeline_arn,
            record_training_job=self.record_training_job,
        )

    def record_training_job(self, name: str, request: dict[str, Any]) -> None:
        """The training job as SageMaker Pipelines creates it (CreateTrainingJob with the step's
        resolved arguments), so lineage can describe it; the interpreter then runs it."""
        self.sagemaker.create_training_job(TrainingJobName=name, **request)

    def register(self, arguments: dict[str, Any]) -> str:
        arn = str(self.sagemaker.create_model_package(**arguments)["ModelPackageArn"])
        self.packages.append(arn)
        return arn

    def execute(
        self, pipeline_name: str, parameters: Mapping[str, str]
    ) -> tuple[PipelineRun, str, str]:
        """The emulator records the execution; the interpreter runs its steps as it. Returns
        the run, the pipeline ARN and the end time."""
        pipeline_arn, definition = self.definition(pipeline_name)
        started = self.sagemaker.start_pipeline_execution(
            PipelineName=pipeline_name,
            PipelineParameters=[{"Name": k, "Value": v} for k, v in parameters.items()],
        )
        run = self.interpreter(definition, pipeline_arn).run(
            parameters, execution_arn=started["PipelineExecutionArn"]
        )
        for record in run.steps:
            self.log.entries.append({"step": f"{pipeline_name}/{record.name}", **record.summary()})
        if run.status != "Succeeded":
            raise LoopError(f"{pipeline_name} {run.execution_arn}: {run.failure_reason}")
        return run, pipeline_arn, _now()

    # --- the loop ----------------------------------------------------------------------------

    def feature_build(self, generation: int) -> tuple[PipelineRun, str, str]:
        features = self.environment.ml.features
        folder = f"ml-demo-{generation}/"
        export_root = self.scratch / f"export-{generation}"
        with self.log.step("synthetic export", generation=generation) as entry:
            # The second export is new data for a later version: a fifth of the population
            # again (other patients, its own seed), so the offline store grows as it would.
            patients = self.patients if generation == 1 else max(1, self.patients // 5)
            entry["patients"] = patients
            generated = synthetic_fhir.generate(patients, self.seed + generation - 1, as_of=AS_OF)
            synthetic_fhir.write_export(generated, export_root)
            entry["files"] = upload_export(
                self.s3,
                export_root,
                self.configs.storage.bucket_name("raw"),
                f"{features.export_prefix}{folder}",
                self.key_arn("phi-data"),
            )
        return self.execute(
            features_pipeline_name(self.configs.pipeline.pipeline_name),
            {EXPORT_FOLDER_PARAMETER: folder},
        )

    def trigger(self, build: PipelineRun, features_arn: str, ended: str) -> dict[str, str]:
        """What the deployed rule starts training with, for this build's status event."""
        rule_name = f"{self.configs.pipeline.pipeline_name}-trigger"
        with self.log.step("trigger rule matches the feature build") as entry:
            event = pipeline_status_event(build, features_arn, ended)
            rule = self.events.describe_rule(Name=rule_name)
            matched = self.events.test_event_pattern(
                EventPattern=rule["EventPattern"], Event=json.dumps(event)
            )["Result"]
            failed = {
                **event,
                "detail": {**event["detail"], "currentPipelineExecutionStatus": "Failed"},
            }
            matched_failed = self.events.test_event_pattern(
                EventPattern=rule["EventPattern"], Event=json.dumps(failed)
            )["Result"]
            entry.update(matches_succeeded=matched, matches_failed=matched_failed)
            if not matched or matched_failed:
                raise LoopError(
                    f"rule {rule_name}: matches the succeeded build: {matched}, a failed one: "
                    f"{matched_failed}"
                )
            (target,) = self.events.list_targets_by_rule(Rule=rule_name)["Targets"]
            parameters = {
                p["Name"]: str(
                    json_path(event, p["Value"]) if p["Value"].startswith("$.") else p["Value"]
                )
                for p in target["SageMakerPipelineParameters"]["PipelineParameterList"]
            }
            entry["parameters"] = parameters
        return parameters

    def train(self, parameters: Mapping[str, str]) -> str:
        before = len(self.packages)
        run, _, _ = self.execute(self.configs.pipeline.pipeline_name, parameters)
        if len(self.packages) != before + 1:
            raise LoopError(f"{run.execution_arn} registered no model version")
        arn = self.packages[-1]
        if self.note_status(arn, "registered") != "PendingManualApproval":
            raise LoopError(f"{arn} was not registered for approval")
        report = self.sagemaker.describe_model_package(ModelPackageName=arn)["ModelMetrics"]
        self.metrics[arn] = self._metric(report["ModelQuality"]["Statistics"]["S3Uri"])
        return arn

    def _metric(self, report_uri: str) -> float:
        bucket, _, key = report_uri.removeprefix("s3://").partition("/")
        report = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        metrics = report["binary_classification_metrics"]
        return float(metrics[self.configs.pipeline.metric_name]["value"])

    def approve_and_deploy(self, arn: str) -> dict[str, Any]:
        with self.log.step("approval (a person)", package=arn):
            self.sagemaker.update_model_package(
                ModelPackageArn=arn,
                ModelApprovalStatus="Approved",
                ApprovalDescription=APPROVER_COMMENT,
            )
            self.note_status(arn, "approved")
        with self.log.step("deployer", package=arn) as entry:
            package = self.sagemaker.describe_model_package(ModelPackageName=arn)
            settings = self.function_settings(self.configs.inference.deployer_name)
            with self.emulated.as_lambda(settings):
                outcome = deployer.handle(package_event(package), None)
            entry["outcome"] = outcome["status"]
            if outcome["status"] != "deployed":
                raise LoopError(f"deployer answered {outcome}")
            serving = self.serving()
            if serving["model_package"] != arn:
                raise LoopError(f"the endpoint serves {serving}, not {arn}")
        return outcome

    def monitor(self) -> dict[str, Any]:
        """A clean capture batch and a drifted one against the serving version's baseline; the
        drifted one's violation event to the rollback function."""
        serving = self.serving()
        package = self.sagemaker.describe_model_package(
            ModelPackageName=str(serving["model_package"])
        )
        baseline = package["DriftCheckBaselines"]["ModelDataQuality"]
        statistics = self._document(baseline["Statistics"]["S3Uri"])
        constraints = self._document(baseline["Constraints"]["S3Uri"])
        rows, columns = self._capture_rows(package)
        with self.log.step("monitor: capture like the training data") as entry:
            clean = detect_violations(statistics, constraints, rows)
            entry["violations"] = len(clean)
            if clean:
                raise LoopError(f"the undrifted batch violates the baseline: {clean[:2]}")
        with self.log.step("monitor: drifted capture") as entry:
            found = detect_violations(statistics, constraints, drifted(rows, columns))
            entry["violations"] = len(found)
            entry["checks"] = sorted({v["constraint_check_type"] for v in found})
            if not found:
                raise LoopError("the drifted batch violates nothing: monitoring would miss it")
        monitoring = self.configs.monitoring
        event = monitoring_event(
            monitoring.schedule_arn,
            self.configs.inference.name,
            f"CompletedWithViolations: Job completed successfully with {len(found)} violations.",
        )
        with self.log.step("rollback function") as entry:
            settings = self.function_settings(monitoring.rollback_name)
            with self.emulated.as_lambda(settings):
                outcome = rollback.handle(event, None)
            entry["outcome"] = outcome["status"]
            if outcome["status"] != "rolled-back":
                raise LoopError(f"rollback answered {outcome}")
        return {"violations": found, "outcome": outcome}

    def _document(self, uri: str) -> dict[str, Any]:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return dict(json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()))

    def _capture_rows(self, package: Mapping[str, Any]) -> tuple[np.ndarray[Any, Any], list[str]]:
        """Inference payloads like the ones the model was trained on: held-out test rows of
        the serving version's dataset, without the label (what the endpoint receives)."""
        manifest_uri = package["CustomerMetadataProperties"][DATASET_MANIFEST_URI]
        bucket, _, manifest_key = manifest_uri.removeprefix("s3://").partition("/")
        prefix = manifest_key.rsplit("/", 1)[0]
        local = self.scratch / "capture"
        local.mkdir(parents=True, exist_ok=True)
        for name in (DATASET_MANIFEST, SPLIT_FILES["test"]):
            self.s3.download_file(bucket, f"{prefix}/{name}", str(local / name))
        split = read_split(local, "test")
        names = [feature.name for feature in split.manifest.features]
        return np.asarray(split.features[:CAPTURE_ROWS], dtype=np.float64), names

    def trace(self) -> dict[str, Any]:
        with self.log.step("lineage of the serving version") as entry:
            document = lineage.traced(
                self.environment,
                self.emulated.session,
                package=None,
                endpoint_url=self.emulated.endpoint_url,
            )
            (self.folder / "lineage.json").write_text(
                json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
            (self.folder / "lineage.txt").write_text(
                lineage.render_text(document), encoding="utf-8"
            )
            entry["findings"] = len(document["findings"])
            if document["findings"]:
                raise LoopError(f"lineage has findings: {document['findings'][:3]}")
        return document

    def run(self) -> dict[str, Any]:
        try:
            versions = []
            for generation in (1, 2):
                build, features_arn, ended = self.feature_build(generation)
                parameters = self.trigger(build, features_arn, ended)
                arn = self.train(parameters)
                self.approve_and_deploy(arn)
                versions.append(arn)
            before = self.serving()
            monitoring = self.monitor()
            after = self.serving()
            for arn in versions:
                self.note_status(arn, "rollback")
            if after["model_package"] != versions[0]:
                raise LoopError(f"after the rollback the endpoint serves {after}")
            self.trace()
            return {
                "serving_before_rollback": before,
                "serving_after_rollback": after,
                "violations": monitoring["violations"],
            }
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def report(self, outcome: dict[str, Any] | None, failure: str | None) -> dict[str, Any]:
        return {
            "environment": self.environment.name,
            "emulator": self.emulated.endpoint_url,
            "patients": self.patients,
            "seed": self.seed,
            "succeeded": failure is None,
            **({"failure": failure} if failure else {}),
            "steps": self.log.entries,
            "metric": {
                "name": self.configs.pipeline.metric_name,
                "threshold": self.configs.pipeline.metric_threshold,
                "held_out": self.metrics,
            },
            "packages": [
                {"arn": arn, "status_history": self.history.get(arn, [])} for arn in self.packages
            ],
            **(outcome or {}),
            "lineage": str(self.folder / "lineage.txt"),
        }


def run_ml_demo(
    environment_name: str,
    *,
    outdir: Path,
    reports: Path,
    patients: int,
    seed: int,
    jobs: int,
    base_environment: Mapping[str, str],
    progress_note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    started = time.monotonic()
    environment = workload(environment_name)
    folder = reports / environment_name
    folder.mkdir(parents=True, exist_ok=True)
    if not has_environment(outdir, environment_name):
        synthesize_local(outdir, environment_name)
    stacks = load_stacks(outdir)
    ml_stack = stacks.get(f"{environment_name}-ml")
    if ml_stack is None:
        raise UsageError(f"{outdir} holds no {environment_name}-ml stack")
    wanted = with_dependencies(stacks, [ml_stack])
    require_local_target(outdir, wanted)
    terraform = Terraform.from_environment(base_environment)
    progress = Progress(wanted)
    with emulator_workspace(
        outdir,
        wanted,
        terraform,
        log=folder / "emulator.log",
        progress=progress,
        prefix="phi-ml-ml-",
    ) as workspace:
        deployed = deploy_stacks(
            workspace.terraform,
            workspace.stacks,
            workspace.emulator,
            jobs=jobs,
            progress=progress,
            pending={},
        )
        failed = [r for r in deployed.values() if r.outcome is not Outcome.APPLIED]
        if failed:
            raise UsageError(
                f"{failed[0].stack} did not apply on the emulator: {failed[0].problem or '?'}"
            )
        endpoint_url = workspace.emulator.endpoint_url
        identity = next(
            i for i in provider_identities([ml_stack]) if i.account == environment.account_id
        )
        emulated = Emulated(
            emulator_session(endpoint_url, identity, "phi-ml-ml-demo"), endpoint_url
        )
        loop = ModelLoop(environment, emulated, folder=folder, patients=patients, seed=seed)
        progress.note(
            "model loop: feature build -> training -> approval -> deploy -> drift -> rollback"
        )
        outcome, failure = None, None
        try:
            outcome = loop.run()
        except LoopError as problem:
            failure = str(problem)
        document = loop.report(outcome, failure)
    document["seconds_total"] = round(time.monotonic() - started, 1)
    (folder / RUN_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return document


def summary_lines(document: dict[str, Any]) -> list[str]:
    lines = [f"ml-demo: {document['environment']} on the emulator ({document['emulator']})"]
    for entry in document["steps"]:
        lines.append(f"  {entry['status']:<9} {entry['seconds']:>8.2f} s  {entry['step']}")
    metric = document["metric"]
    for arn, value in metric["held_out"].items():
        lines.append(f"  {metric['name']} {value:.4f} (gate {metric['threshold']}) {arn}")
    for package in document["packages"]:
        statuses = " -> ".join(s["status"] for s in package["status_history"])
        lines.append(f"  {package['arn']}: {statuses}")
    if "serving_after_rollback" in document:
        lines.append(
            f"  serving before rollback: {document['serving_before_rollback']['model_package']}"
        )
        lines.append(
            f"  serving after rollback:  {document['serving_after_rollback']['model_package']}"
        )
    if document.get("failure"):
        lines.append(f"  FAILED: {document['failure']}")
    return lines


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.ml_demo", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("environment", metavar="ENV", help="a workload environment (dev, ...)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTDIR, help="local synthesis")
    parser.add_argument("--reports", type=Path, default=DEFAULT_REPORTS)
    parser.add_argument("--patients", type=positive_int, default=DEFAULT_PATIENTS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    add_jobs_option(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)

    def close_the_loop() -> int:
        document = run_ml_demo(
            arguments.environment,
            outdir=arguments.out,
            reports=arguments.reports,
            patients=arguments.patients,
            seed=arguments.seed,
            jobs=arguments.jobs,
            base_environment=os.environ,
        )
        print("\n".join(summary_lines(document)))
        folder = arguments.reports / arguments.environment
        print(
            f"  {document['seconds_total']} s in all; run {folder / RUN_FILE}; "
            f"lineage {document['lineage']}"
        )
        return 0 if document["succeeded"] else 1

    return run_command(close_the_loop)


if __name__ == "__main__":
    sys.exit(main())
