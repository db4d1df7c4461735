"""From a validated environment to every layer's config, in one place.

The loader calls this right after the schema, so a rule that a layer enforces (a Graviton-only
instance type, a threshold in range, a schedule SageMaker accepts) fails at load time with the
environment file and the YAML field named, exactly like a schema rule. Composition then uses
the same configs, so what was checked is what is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from environments.schema import Jurisdiction, WorkloadEnvironment
from ml.feature_spec import basis_problem, group_problem
from modules.config import LayerConfig
from modules.deployment import DeploymentConfig
from modules.detection import DetectionConfig
from modules.feature_build import FeatureBuildConfig, feature_spec_key, features_pipeline_name
from modules.features import FeaturesConfig
from modules.fhir import FHIR_BUCKET_PURPOSE, FhirConfig
from modules.iam_statements import ECR_IMAGE
from modules.images import ImagesConfig, ReplicationDestination
from modules.inference import InferenceConfig
from modules.ingest import IngestConfig, VpnPeerConfig
from modules.keys import KeyPurpose, KeysConfig
from modules.monitoring import MonitoringConfig
from modules.network import NetworkConfig
from modules.pipelines import PipelineConfig
from modules.regions import EU_RESIDENCY_REGIONS
from modules.registry import RegistryConfig
from modules.storage import StorageConfig
from requirements.aws_values import bgp_asn_problem

DEFAULT_AMAZON_SIDE_ASN = 64512
AUTOSCALING_SERVICE_LINKED_ROLE = (
    "aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
)
GUARDDUTY_MALWARE_SCAN_ROLE = (
    "aws-service-role/malware-protection.guardduty.amazonaws.com/"
    "AWSServiceRoleForAmazonGuardDutyMalwareProtection"
)

Config = TypeVar("Config", bound=LayerConfig)


class LayerConfigError(ValueError):
    """A layer rejected a value: `field` is the environment file's field that holds it."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


@dataclass(frozen=True)
class LayerConfigs:
    storage: StorageConfig
    network: NetworkConfig
    ingest: IngestConfig
    fhir: FhirConfig | None
    features: FeaturesConfig
    pipeline: PipelineConfig
    feature_build: FeatureBuildConfig
    registry: RegistryConfig
    inference: InferenceConfig
    monitoring: MonitoringConfig
    deployment: DeploymentConfig
    detection: DetectionConfig
    keys: KeysConfig
    images: ImagesConfig
    # The environment's keys in the FHIR datastore's region, when that is not the environment's
    # region (KMS keys are regional): the datastore's PHI key and its bucket's logs key.
    fhir_region_keys: KeysConfig | None = None

    @property
    def fhir_bucket_name(self) -> str | None:
        """The datastore region's FHIR bucket (imports, job results, exports), or None when
        the datastore is in the environment's region and reads the raw bucket."""
        if self.fhir is None or self.fhir_region_keys is None:
            return None
        return self.storage.bucket_name(FHIR_BUCKET_PURPOSE, region=self.fhir.region)


def build_layer_config(
    config_type: type[Config], section: str, fields: dict[str, str], **values: Any
) -> Config:
    """Construct a layer config; a rejected value is reported at its environment-file field
    (`fields` maps config field -> YAML path; anything else is reported at `section`)."""
    try:
        return config_type(**values)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        location = problem["loc"]
        field = fields.get(str(location[0]), section) if location else section
        raise LayerConfigError(field, problem["msg"].removeprefix("Value error, ")) from None


def _role_arn(environment: WorkloadEnvironment, name: str) -> str:
    return f"arn:aws:iam::{environment.account_id}:role/{name}"


def _fhir_region(environment: WorkloadEnvironment) -> str | None:
    """The FHIR datastore's region: `ml.fhir.region`, by default the environment's. Like every
    region the environment uses it is inside allowed_regions, and an EU environment's is an
    EU region (its allowed_regions are too; said here in the datastore's own terms)."""
    settings = environment.ml.fhir
    if settings is None:
        return None
    region = settings.region
    if region is None:
        return environment.region
    if environment.jurisdiction is Jurisdiction.EU and region not in EU_RESIDENCY_REGIONS:
        raise LayerConfigError(
            "ml.fhir.region",
            f"'{region}' is outside the EU: an EU environment's FHIR datastore must be in an EU "
            f"region ({', '.join(sorted(EU_RESIDENCY_REGIONS))}; GDPR Chapter V, EHDS residency)",
        )
    if region not in environment.allowed_regions:
        raise LayerConfigError(
            "ml.fhir.region",
            f"'{region}' is outside allowed_regions [{', '.join(environment.allowed_regions)}]",
        )
    return region


def _check_feature_builder_can_fill(environment: WorkloadEnvironment) -> None:
    """Every declared feature is one the FHIR feature builder derives, with its type, and the
    processing basis exists in the environment's jurisdiction."""
    settings = environment.ml.features
    basis = settings.processing_basis
    problem = basis_problem(environment.jurisdiction.value, basis.kind, basis.reference)
    if problem:
        raise LayerConfigError("ml.features.processing_basis", problem)
    for index, group in enumerate(settings.groups):
        found = group_problem(
            group.name,
            group.record_identifier,
            group.event_time,
            [(feature.name, feature.type) for feature in group.features],
        )
        if found:
            position, rule = found
            field = f"ml.features.groups[{index}]"
            raise LayerConfigError(
                field if position is None else f"{field}.features[{position}]", rule
            )


def _built_image_repositories(environment: WorkloadEnvironment) -> tuple[str, ...]:
    """The repositories of the images CI builds, which every environment pulls from its own
    account's registry in its own region (they arrive there by replication)."""
    ml = environment.ml
    references = {
        "ml.features.builder.image": ml.features.builder.image,
        "ml.pipeline.processing_image": ml.pipeline.processing_image,
        "ml.pipeline.inference_image": ml.pipeline.inference_image,
    }
    repositories: list[str] = []
    for field, reference in references.items():
        if reference is None:
            continue
        parts = ECR_IMAGE.match(reference)
        if parts is None:
            raise LayerConfigError(field, f"'{reference}' is not an ECR image reference")
        registry = (parts["account"], parts["region"])
        if registry != (environment.account_id, environment.region):
            raise LayerConfigError(
                field,
                f"the image is in {registry[0]} {registry[1]}, not in this environment's "
                f"registry ({environment.account_id} {environment.region}): the platform's "
                "images are pulled from the account's own repositories, where ECR replicates "
                "them (ml.images)",
            )
        if parts["repository"] not in repositories:
            repositories.append(parts["repository"])
    return tuple(repositories)


def layer_configs(environment: WorkloadEnvironment) -> LayerConfigs:
    """Every layer's config for a workload environment (LayerConfigError on a bad value)."""
    env = environment
    ml = env.ml
    common = {"environment": env.name, "account_id": env.account_id, "region": env.region}
    storage = build_layer_config(
        StorageConfig,
        "storage",
        {"bucket_prefix": "storage.bucket_prefix"},
        bucket_prefix=env.storage.bucket_prefix,
        account_id=env.account_id,
        noncurrent_version_days=env.storage.noncurrent_version_days,
        audit_retention_days=env.logs.audit_retention_days,
        production=env.production,
    )
    network = build_layer_config(
        NetworkConfig,
        "network",
        {"vpc_cidr": "network.vpc_cidr", "az_count": "network.az_count"},
        **common,
        vpc_cidr=env.network.vpc_cidr,
        az_count=env.network.az_count,
        extra_interface_endpoints=env.network.extra_interface_endpoints,
        flow_log_retention_days=env.logs.audit_retention_days,
    )
    vpn, direct_connect = env.ingest.vpn, env.ingest.direct_connect
    # AWS reserves some ASNs for customer gateways in one region only, so the rule needs both.
    asn_problem = bgp_asn_problem(vpn.bgp_asn, region=env.region) if vpn else None
    if asn_problem:
        raise LayerConfigError("ingest.vpn.bgp_asn", asn_problem)
    ingest = build_layer_config(
        IngestConfig,
        "ingest",
        {},
        **common,
        amazon_side_asn=vpn.amazon_side_asn if vpn else DEFAULT_AMAZON_SIDE_ASN,
        vpn=VpnPeerConfig(peer_ip=vpn.peer_ip, bgp_asn=vpn.bgp_asn, onprem_cidrs=vpn.onprem_cidrs)
        if vpn
        else None,
        direct_connect_asn=direct_connect.amazon_side_asn if direct_connect else None,
        vpc_cidr=env.network.vpc_cidr,
        tunnel_log_retention_days=env.logs.audit_retention_days,
    )
    fhir_region = _fhir_region(env)
    fhir = (
        build_layer_config(
            FhirConfig,
            "ml.fhir",
            {
                "datastore_name": "ml.fhir.datastore_name",
                # Where the region came from: the datastore's own field, or the environment's.
                "region": "ml.fhir.region" if ml.fhir.region else "region",
            },
            **{**common, "region": fhir_region},
            datastore_name=ml.fhir.datastore_name,
            smart_on_fhir=ml.fhir.smart_on_fhir,
            production=env.production,
        )
        if ml.fhir
        else None
    )
    # A datastore in the environment's region reads the raw bucket with the data stack's PHI
    # key; one elsewhere reads its own region's bucket with its own region's PHI key, and the
    # import role is a user of that key only.
    fhir_elsewhere = fhir is not None and fhir.region != env.region
    _check_feature_builder_can_fill(env)
    features = build_layer_config(
        FeaturesConfig,
        "ml.features",
        {"groups": "ml.features.groups"},
        **common,
        groups=ml.features.groups,
        production=env.production,
    )
    offline_store_uri = f"s3://{storage.bucket_name('feature-offline')}/{features.offline_prefix}"
    pipeline_fields = {
        "pipeline_name": "ml.pipeline.name",
        "model_package_group_name": "ml.pipeline.model_package_group",
        **{
            name: f"ml.pipeline.{name}" for name in type(ml.pipeline).model_fields if name != "name"
        },
    }
    pipeline = build_layer_config(
        PipelineConfig,
        "ml.pipeline",
        pipeline_fields,
        **common,
        pipeline_name=ml.pipeline.name,
        model_package_group_name=ml.pipeline.model_package_group,
        processing_image=ml.pipeline.processing_image,
        training_image=ml.pipeline.training_image,
        inference_image=ml.pipeline.inference_image,
        processing_instance_type=ml.pipeline.processing_instance_type,
        training_instance_type=ml.pipeline.training_instance_type,
        metric_name=ml.pipeline.metric_name,
        metric_threshold=ml.pipeline.metric_threshold,
        offline_store_uri=offline_store_uri,
        feature_groups=tuple(group.name for group in features.groups),
        feature_spec_key=feature_spec_key(features_pipeline_name(ml.pipeline.name)),
        hyperparameters=ml.pipeline.hyperparameters,
        max_runtime_seconds=ml.pipeline.max_runtime_seconds,
        vpc_cidr=env.network.vpc_cidr,
    )
    builder = ml.features.builder
    feature_build = build_layer_config(
        FeatureBuildConfig,
        "ml.features.builder",
        {
            # The features pipeline is named after the training pipeline.
            "pipeline_name": "ml.pipeline.name",
            "export_prefix": "ml.features.export_prefix",
            **{name: f"ml.features.builder.{name}" for name in type(builder).model_fields},
        },
        **common,
        jurisdiction=env.jurisdiction.value,
        pipeline_name=features_pipeline_name(pipeline.pipeline_name),
        image=builder.image,
        instance_type=builder.instance_type,
        instance_count=builder.instance_count,
        partitions=builder.partitions,
        max_bad_line_share=builder.max_bad_line_share,
        max_runtime_seconds=builder.max_runtime_seconds,
        export_prefix=ml.features.export_prefix,
        offline_prefix=features.offline_prefix,
        groups=features.groups,
        processing_basis_kind=ml.features.processing_basis.kind,
        processing_basis_reference=ml.features.processing_basis.reference,
        vpc_cidr=env.network.vpc_cidr,
    )
    registry = build_layer_config(
        RegistryConfig,
        "ml.registry",
        {name: f"ml.registry.{name}" for name in type(ml.registry).model_fields},
        **common,
        model_package_groups=ml.registry.model_package_groups,
        production_account_id=ml.registry.production_account_id,
    )
    enclave = ml.inference.enclave
    model_name = ml.inference.model_name
    capture_prefix = f"data-capture/{model_name}/"
    inference = build_layer_config(
        InferenceConfig,
        "ml.inference",
        {
            **{name: f"ml.inference.{name}" for name in type(ml.inference).model_fields},
            "inference_image": "ml.pipeline.inference_image",
            **{
                f"enclave_{name}": f"ml.inference.enclave.{name}"
                for name in type(enclave).model_fields
            },
            "key_administrators": "keys.administrators",
        },
        **common,
        model_name=model_name,
        # What the pipeline registers is what the deployer serves: one image, one definition.
        inference_image=pipeline.serving_image,
        model_archive_prefix=pipeline.artifacts_prefix,
        retained_versions=ml.inference.retained_versions,
        endpoint_instance_type=ml.inference.endpoint_instance_type,
        endpoint_instance_count=ml.inference.endpoint_instance_count,
        data_capture_sampling_percent=ml.inference.data_capture_sampling_percent,
        capture_prefix=capture_prefix,
        enclave_instance_type=enclave.instance_type,
        enclave_min_size=enclave.min_size,
        enclave_max_size=enclave.max_size,
        enclave_desired_capacity=enclave.desired_capacity,
        enclave_target_cpu_percent=enclave.target_cpu_percent,
        enclave_image_sha384=enclave.image_sha384,
        enclave_memory_mib=enclave.memory_mib,
        enclave_cpu_count=enclave.cpu_count,
        # The patient-token key lives with its only user, the enclave host role.
        key_administrators=(*env.keys.administrators, env.deployment_role_arn),
        vpc_cidr=env.network.vpc_cidr,
        production=env.production,
    )
    monitoring = build_layer_config(
        MonitoringConfig,
        "ml.monitoring",
        {
            **{name: f"ml.monitoring.{name}" for name in type(ml.monitoring).model_fields},
            "model_package_group": "ml.pipeline.model_package_group",
        },
        **common,
        model_name=model_name,
        model_package_group=pipeline.model_package_group_name,
        monitor_image=ml.monitoring.monitor_image,
        instance_type=ml.monitoring.instance_type,
        schedule_expression=ml.monitoring.schedule_expression,
        pipeline_runs_prefix=pipeline.artifacts_prefix,
        reports_prefix=f"monitoring/{model_name}/reports/",
        capture_prefix=capture_prefix,
        max_runtime_seconds=ml.monitoring.max_runtime_seconds,
        vpc_cidr=env.network.vpc_cidr,
    )
    deployment = build_layer_config(
        DeploymentConfig,
        "ml.pipeline",
        {"model_package_group": "ml.pipeline.model_package_group"},
        **common,
        model_package_group=pipeline.model_package_group_name,
        log_retention_days=env.logs.audit_retention_days,
        vpc_cidr=env.network.vpc_cidr,
    )

    detection = build_layer_config(
        DetectionConfig,
        "security",
        {"finding_severity_threshold": "security.finding_severity_threshold"},
        **common,
        finding_severity_threshold=env.security.finding_severity_threshold,
        # Workload accounts are members; the security-tooling account administers them.
        is_security_account=False,
        vpc_cidr=env.network.vpc_cidr,
        log_retention_days=env.logs.audit_retention_days,
    )

    def roles(*names: str) -> tuple[str, ...]:
        return tuple(_role_arn(env, name) for name in names)

    service_roles = {
        KeyPurpose.PHI_DATA: (roles(fhir.import_role_name) if fhir and not fhir_elsewhere else ())
        # The feature builder reads HealthLake's exports in the raw bucket.
        + roles(feature_build.execution_role_name),
        KeyPurpose.FEATURE_STORE: roles(
            features.role_name, pipeline.execution_role_name, feature_build.execution_role_name
        ),
        KeyPurpose.ML_ARTIFACTS: roles(
            pipeline.execution_role_name,
            feature_build.execution_role_name,
            inference.model_role_name,
            monitoring.monitor_role_name,
            monitoring.rollback_name,
            # Creates the endpoint configurations and job definitions encrypted with the key.
            inference.deployer_name,
            # Fetches the enclave image from the artifacts bucket (through S3 only).
            inference.enclave_host_role_name,
            # Launches the enclave hosts, whose volumes are encrypted with the ML key...
            AUTOSCALING_SERVICE_LINKED_ROLE,
            # ...which GuardDuty's malware protection must read to scan them.
            GUARDDUTY_MALWARE_SCAN_ROLE,
        ),
        KeyPurpose.ALERTS: (detection.quarantine_role_arn,),
    }
    keys = build_layer_config(
        KeysConfig,
        "keys",
        {"administrators": "keys.administrators", "users": "keys.users"},
        **common,
        administrators=(*env.keys.administrators, env.deployment_role_arn),
        users=env.keys.users,
        service_roles=service_roles,
        deployment_role=env.deployment_role_arn,
        # Terraform writes the feature spec the feature build reads.
        deployed_objects={
            KeyPurpose.ML_ARTIFACTS: (
                f"arn:aws:s3:::{storage.bucket_name('ml-artifacts')}/{feature_build.spec_key}",
            )
        },
        production=env.production,
    )
    # Built afresh, not copied from `keys`: in the datastore's region the PHI key serves the
    # datastore and its bucket only (no other service role, no object deployed there).
    fhir_region_keys = (
        KeysConfig(
            environment=env.name,
            account_id=env.account_id,
            region=fhir.region,
            administrators=keys.administrators,
            users=keys.users,
            service_roles={KeyPurpose.PHI_DATA: roles(fhir.import_role_name)},
            deployment_role=keys.deployment_role,
            production=keys.production,
        )
        if fhir is not None and fhir_elsewhere
        else None
    )
    images = build_layer_config(
        ImagesConfig,
        "ml.images",
        {
            "replicate_to": "ml.images.replicate_to",
            "replicated_from": "ml.images.replicated_from",
        },
        **common,
        repositories=_built_image_repositories(env),
        replicate_to=tuple(
            ReplicationDestination(account_id=d.account_id, region=d.region)
            for d in ml.images.replicate_to
        ),
        replicated_from=ml.images.replicated_from,
    )
    return LayerConfigs(
        storage=storage,
        network=network,
        ingest=ingest,
        fhir=fhir,
        features=features,
        pipeline=pipeline,
        feature_build=feature_build,
        registry=registry,
        inference=inference,
        monitoring=monitoring,
        deployment=deployment,
        detection=detection,
        keys=keys,
        images=images,
        fhir_region_keys=fhir_region_keys,
    )
