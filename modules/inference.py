"""Real-time inference: a private SageMaker endpoint and Graviton Nitro Enclave hosts."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from typing import Annotated

from cdktf import TerraformResourceLifecycle, Token
from constructs import Construct
from pydantic import AfterValidator, Field, field_validator, model_validator

from modules import aws
from modules.config import LayerConfig
from modules.iam_statements import (
    ECR_IMAGE,
    ecr_pull_statements,
    sagemaker_vpc_interface_statements,
)
from modules.keys import CustomerManagedKey
from modules.policy import assume_role_policy, policy_document, statement
from modules.storage import HardenedBucket

HTTPS = 443
AL2023_ARM64_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
SSM_MANAGED_INSTANCE_CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
ROOT_DEVICE = "/dev/xvda"  # Amazon Linux 2023's root device name
ROOT_VOLUME_GIB = 30
JSON_CONTENT_TYPES = ["application/json", "application/jsonlines"]
CSV_CONTENT_TYPES = ["text/csv"]

# --- the Graviton Nitro Enclave host rule ----------------------------------------------------
#
# AWS's Nitro Enclaves requirements: a *virtualized* Nitro instance (bare metal is not a parent
# instance); Intel/AMD types need >= 4 vCPUs, Graviton types >= 2 vCPUs; some Graviton families
# have been listed as excluded over time (A1, T4g, G5g, Hpc7g, Im4gn, Is4gen, and at Graviton3's
# launch C7gd, C7gn, M7gd, R7gd). The platform's rule is narrower and stable:
# - only the general purpose (m), compute (c) and memory (r) Graviton families, generation 7
#   (Graviton3) or later: the "c7g, r7g, m7g and later generations". Graviton2 (c6g,
#   m6g, r6g) and A1 are refused by that floor, x86 families because enclave hosts are arm64;
# - only the base families: storage (d), network (n) and other variants are refused until
#   someone checks AWS's current list and adds them here on purpose;
# - xlarge or larger (>= 4 vCPUs on Graviton, one vCPU per core): an enclave takes whole cores
#   away from its parent, so 2 vCPUs would leave one core each to the enclave and to the parent's
#   vsock proxy, SSM agent and pre/post-processing;
# - no bare metal.
_INSTANCE_TYPE = re.compile(r"^(?P<family>[a-z][a-z0-9-]*)\.(?P<size>[a-z0-9-]+)$")
_GRAVITON_FAMILY = re.compile(r"^(?P<category>[cmr])(?P<generation>[0-9]+)g(?P<variant>[a-z-]*)$")
_ENCLAVE_SIZE = re.compile(r"^(?:[0-9]+)?xlarge$")
MINIMUM_GRAVITON_GENERATION = 7
ACCEPTED = "c7g, m7g, r7g or a later generation (c8g, m8g, r8g, ...), size xlarge or larger"


def graviton_enclave_instance_type(value: str) -> str:
    """The value itself if it is an accepted Nitro Enclave host type, else ValueError."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"enclave instance type is empty: expected {ACCEPTED}")
    parts = _INSTANCE_TYPE.match(value)
    if parts is None:
        raise ValueError(
            f"{value!r} is not an EC2 instance type name (expected <family>.<size>, "
            f"e.g. c7g.xlarge)"
        )
    family, size = parts["family"], parts["size"]
    graviton = _GRAVITON_FAMILY.match(family)
    if graviton is None:
        raise ValueError(
            f"{value!r} is not a Graviton c/m/r instance type; Nitro Enclave hosts must be "
            f"{ACCEPTED}"
        )
    generation = int(graviton["generation"])
    if generation < MINIMUM_GRAVITON_GENERATION:
        raise ValueError(
            f"{value!r} is Graviton generation {generation}; Nitro Enclave hosts must be {ACCEPTED}"
        )
    if graviton["variant"]:
        base = f"{graviton['category']}{generation}g"
        raise ValueError(
            f"{value!r} is the {family} variant of {base}; only the base families are accepted "
            f"for Nitro Enclave hosts ({ACCEPTED})"
        )
    if size.startswith("metal"):
        raise ValueError(
            f"{value!r} is bare metal; Nitro Enclaves need a virtualized instance ({ACCEPTED})"
        )
    if not _ENCLAVE_SIZE.match(size):
        raise ValueError(
            f"{value!r} has fewer than 4 vCPUs or an unknown size; Nitro Enclave hosts must be "
            f"{ACCEPTED}"
        )
    return value


GravitonEnclaveInstanceType = Annotated[str, AfterValidator(graviton_enclave_instance_type)]

# --- container images ------------------------------------------------------------------------


def ecr_image(value: str) -> str:
    """An ECR image URI with a tag or a digest (AfterValidator)."""
    if not ECR_IMAGE.match(value):
        raise ValueError(
            f"{value!r} is not an ECR image URI "
            f"(<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> or @sha256:<digest>)"
        )
    return value


EcrImage = Annotated[str, AfterValidator(ecr_image)]


def https_only_security_group(
    scope: Construct,
    id_: str,
    *,
    name: str,
    description: str,
    vpc_id: str,
    vpc_cidr: str,
    region: str,
    s3: bool = True,
) -> aws.SecurityGroup:
    """No ingress; egress HTTPS only: to the VPC (PrivateLink endpoints) and, with `s3`, to the
    S3 gateway endpoint's prefix list (model artifacts, captured data, ECR image layers)."""
    group = aws.SecurityGroup(
        scope,
        id_,
        name=name,
        description=description,
        vpc_id=vpc_id,
        # No inline `egress`: with the separate rule resources below it would make every apply
        # delete their rules and the next one recreate them. Terraform removes the default
        # allow-all egress rule AWS adds to a new group.
        tags={"Name": name},
    )
    aws.VpcSecurityGroupEgressRule(
        scope,
        f"{id_}-https-to-vpc",
        security_group_id=group.id,
        description="HTTPS to PrivateLink endpoints in the VPC",
        ip_protocol="tcp",
        from_port=HTTPS,
        to_port=HTTPS,
        cidr_ipv4=vpc_cidr,
    )
    if not s3:
        return group
    prefix_list = aws.DataAwsPrefixList(
        scope, f"{id_}-s3-prefix-list", name=f"com.amazonaws.{region}.s3"
    )
    aws.VpcSecurityGroupEgressRule(
        scope,
        f"{id_}-https-to-s3",
        security_group_id=group.id,
        description="HTTPS to S3 through the gateway endpoint",
        ip_protocol="tcp",
        from_port=HTTPS,
        to_port=HTTPS,
        prefix_list_id=prefix_list.id,
    )
    return group


# --- configuration ---------------------------------------------------------------------------

_S3_MODEL = re.compile(
    r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>[^\s]+\.tar\.gz)$"
)
NAME_PART = r"^[a-z0-9](?:-?[a-z0-9])*$"
# "phi-ml-" + environment + "-" + model name + "-" + 10-hex version must fit SageMaker's 63.
MAX_ENVIRONMENT_AND_MODEL_NAME = 44


class InferenceConfig(LayerConfig):
    environment: str = Field(pattern=NAME_PART)
    account_id: str = Field(pattern=r"^[0-9]{12}$")
    region: str
    model_name: str = Field(pattern=NAME_PART)
    inference_image: EcrImage
    model_data_url: str
    endpoint_instance_type: str = Field(pattern=r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
    endpoint_instance_count: int = Field(ge=1)
    data_capture_sampling_percent: int = Field(ge=1, le=100)
    capture_prefix: str = Field(pattern=r"^(?:[A-Za-z0-9!_.*'()-]+/)+$")
    enclave_instance_type: GravitonEnclaveInstanceType
    enclave_min_size: int = Field(ge=0)
    enclave_max_size: int = Field(ge=1)
    enclave_desired_capacity: int = Field(ge=0)
    enclave_target_cpu_percent: int = Field(ge=10, le=90)
    enclave_ami_ssm_parameter: str = Field(
        default=AL2023_ARM64_AMI_PARAMETER, pattern=r"^/[A-Za-z0-9_./-]+arm64$"
    )
    vpc_cidr: str
    production: bool

    @field_validator("model_data_url")
    @classmethod
    def _model_archive_in_s3(cls, value: str) -> str:
        if not _S3_MODEL.match(value):
            raise ValueError(f"{value!r} is not an s3://<bucket>/<key>.tar.gz model archive")
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _ipv4_network(cls, value: str) -> str:
        ipaddress.IPv4Network(value)  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _consistent(self) -> InferenceConfig:
        if len(self.environment) + len(self.model_name) > MAX_ENVIRONMENT_AND_MODEL_NAME:
            raise ValueError(
                f"environment and model_name together exceed {MAX_ENVIRONMENT_AND_MODEL_NAME} "
                f"characters (SageMaker names are at most 63)"
            )
        if not self.enclave_min_size <= self.enclave_desired_capacity <= self.enclave_max_size:
            raise ValueError(
                f"enclave sizes must satisfy min <= desired <= max, got "
                f"{self.enclave_min_size} <= {self.enclave_desired_capacity} <= "
                f"{self.enclave_max_size}"
            )
        if self.production and "@sha256:" not in self.inference_image:
            # Change control: production serves exactly the image that was validated.
            raise ValueError("production inference_image must be pinned by @sha256: digest")
        return self

    @property
    def name(self) -> str:
        return f"phi-ml-{self.environment}-{self.model_name}"

    @property
    def model_role_name(self) -> str:
        """Fixed, so the ML key's policy can admit the role before it exists."""
        return f"{self.name}-model"

    @property
    def model_bucket(self) -> str:
        match = _S3_MODEL.match(self.model_data_url)
        assert match is not None  # validated above
        return match["bucket"]

    @property
    def model_key(self) -> str:
        match = _S3_MODEL.match(self.model_data_url)
        assert match is not None
        return match["key"]

    @property
    def deployment_version(self) -> str:
        """Short digest of what is deployed: a new model or endpoint configuration name (and so
        a new, separately retained SageMaker resource) for every change of it."""
        deployed = {
            "image": self.inference_image,
            "model": self.model_data_url,
            "instance_type": self.endpoint_instance_type,
            "instance_count": self.endpoint_instance_count,
            "sampling": self.data_capture_sampling_percent,
            "capture_prefix": self.capture_prefix,
        }
        return hashlib.sha256(json.dumps(deployed, sort_keys=True).encode()).hexdigest()[:10]


# --- the layer -------------------------------------------------------------------------------


class Inference(Construct):
    """Inference that keeps PHI inside the VPC and encrypted with the ML key.

    The SageMaker model runs network-isolated in the private subnets; its execution role reads
    only the model archive and pulls only its own image. The endpoint configuration encrypts
    the instance storage and the captured requests/responses with the ML key. Sensitive pre- and
    post-processing runs on Graviton hosts whose launch template enables Nitro Enclaves,
    requires IMDSv2 with a hop limit of 1, encrypts EBS with the ML key and gives no public IP;
    operators reach them only through Systems Manager.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: InferenceConfig,
        ml_key: CustomerManagedKey,
        capture_bucket: HardenedBucket,
        model_bucket_arn: str,
        vpc_id: str,
        subnet_ids: list[str],
    ) -> None:
        super().__init__(scope, id_)
        self.config = config
        if not Token.is_unresolved(model_bucket_arn) and model_bucket_arn != (
            f"arn:aws:s3:::{config.model_bucket}"
        ):
            raise ValueError(
                f"model_data_url {config.model_data_url} is not in bucket {model_bucket_arn}"
            )
        self._endpoint(
            config,
            ml_key=ml_key,
            capture_bucket=capture_bucket,
            model_bucket_arn=model_bucket_arn,
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
        )
        self._enclave_hosts(config, ml_key=ml_key, vpc_id=vpc_id, subnet_ids=subnet_ids)

    def _endpoint(
        self,
        config: InferenceConfig,
        *,
        ml_key: CustomerManagedKey,
        capture_bucket: HardenedBucket,
        model_bucket_arn: str,
        vpc_id: str,
        subnet_ids: list[str],
    ) -> None:
        name = config.name
        self.model_security_group = https_only_security_group(
            self,
            "model-security-group",
            name=config.model_role_name,
            description="SageMaker model ENIs: HTTPS to the VPC endpoints and S3 only",
            vpc_id=vpc_id,
            vpc_cidr=config.vpc_cidr,
            region=config.region,
        )
        role = aws.IamRole(
            self,
            "model-execution-role",
            name=f"{name}-model",
            assume_role_policy=assume_role_policy("sagemaker.amazonaws.com", config.account_id),
        )
        self.model_execution_role_arn: str = role.arn
        capture_objects = f"{capture_bucket.bucket_arn}/{config.capture_prefix}*"
        keys = sorted({ml_key.key_arn, capture_bucket.kms_key.key_arn})
        aws.IamRolePolicy(
            self,
            "model-execution-policy",
            name="serve-this-model-only",
            role=role.id,
            policy=policy_document(
                statement(
                    "ReadOnlyTheModelArchive",
                    effect="Allow",
                    actions="s3:GetObject",
                    resources=f"{model_bucket_arn}/{config.model_key}",
                ),
                statement(
                    # Data capture is written with the model's execution role.
                    "WriteCapturedDataUnderTheCapturePrefix",
                    effect="Allow",
                    actions="s3:PutObject",
                    resources=capture_objects,
                ),
                statement(
                    "UseTheMlKey",
                    effect="Allow",
                    actions=["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"],
                    resources=keys,
                ),
                statement(
                    "WriteThisEndpointsContainerLogs",
                    effect="Allow",
                    actions=[
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                    ],
                    resources=(
                        f"arn:aws:logs:{config.region}:{config.account_id}:log-group:"
                        f"/aws/sagemaker/Endpoints/{name}:*"
                    ),
                ),
                *ecr_pull_statements(config.inference_image),
                *sagemaker_vpc_interface_statements(config.region, config.account_id, vpc_id),
            ),
        )
        # Every change of what is deployed is a new model and configuration name; created
        # before the old ones are destroyed, so the endpoint never points at a missing one.
        replace_first = TerraformResourceLifecycle(create_before_destroy=True)
        version_name = f"{name}-{config.deployment_version}"
        model = aws.SagemakerModel(
            self,
            "model",
            name=version_name,
            execution_role_arn=role.arn,
            enable_network_isolation=True,
            primary_container=aws.SagemakerModelPrimaryContainer(
                image=config.inference_image,
                model_data_url=config.model_data_url,
                mode="SingleModel",
            ),
            vpc_config=aws.SagemakerModelVpcConfig(
                subnets=subnet_ids, security_group_ids=[self.model_security_group.id]
            ),
            lifecycle=replace_first,
        )
        endpoint_config = aws.SagemakerEndpointConfiguration(
            self,
            "endpoint-config",
            name=version_name,
            kms_key_arn=ml_key.key_arn,
            production_variants=[
                aws.SagemakerEndpointConfigurationProductionVariants(
                    variant_name="primary",
                    model_name=model.name,
                    instance_type=config.endpoint_instance_type,
                    initial_instance_count=config.endpoint_instance_count,
                    initial_variant_weight=1,
                )
            ],
            data_capture_config=aws.SagemakerEndpointConfigurationDataCaptureConfig(
                enable_capture=True,
                initial_sampling_percentage=config.data_capture_sampling_percent,
                destination_s3_uri=f"s3://{capture_bucket.bucket_name}/{config.capture_prefix}",
                kms_key_id=ml_key.key_arn,
                capture_options=[
                    aws.SagemakerEndpointConfigurationDataCaptureConfigCaptureOptions(
                        capture_mode="Input"
                    ),
                    aws.SagemakerEndpointConfigurationDataCaptureConfigCaptureOptions(
                        capture_mode="Output"
                    ),
                ],
                capture_content_type_header=(
                    aws.SagemakerEndpointConfigurationDataCaptureConfigCaptureContentTypeHeader(
                        json_content_types=JSON_CONTENT_TYPES,
                        csv_content_types=CSV_CONTENT_TYPES,
                    )
                ),
            ),
            lifecycle=replace_first,
        )
        # Not prevent_destroy: the endpoint holds no data (captures are in S3), and a refused
        # destroy would block the replacements that model updates need.
        endpoint = aws.SagemakerEndpoint(
            self, "endpoint", name=name, endpoint_config_name=endpoint_config.name
        )
        self.endpoint_name: str = endpoint.name
        self.endpoint_arn: str = endpoint.arn
        self.endpoint_config_name: str = endpoint_config.name

    def _enclave_hosts(
        self,
        config: InferenceConfig,
        *,
        ml_key: CustomerManagedKey,
        vpc_id: str,
        subnet_ids: list[str],
    ) -> None:
        name = f"{config.name}-enclave"
        self.enclave_security_group = https_only_security_group(
            self,
            "enclave-security-group",
            name=name,
            description="Nitro Enclave hosts: HTTPS to the VPC endpoints and S3 only",
            vpc_id=vpc_id,
            vpc_cidr=config.vpc_cidr,
            region=config.region,
        )
        role = aws.IamRole(
            self,
            "enclave-host-role",
            name=name,
            assume_role_policy=assume_role_policy("ec2.amazonaws.com", config.account_id),
        )
        # Session access through the ssm/ssmmessages/ec2messages endpoints; nothing else.
        aws.IamRolePolicyAttachment(
            self, "enclave-host-ssm", role=role.name, policy_arn=SSM_MANAGED_INSTANCE_CORE
        )
        profile = aws.IamInstanceProfile(self, "enclave-host-profile", name=name, role=role.name)
        ami = aws.DataAwsSsmParameter(self, "enclave-ami", name=config.enclave_ami_ssm_parameter)
        tags = {"Name": name, "phi-ml:role": "nitro-enclave-host"}
        self.launch_template = aws.LaunchTemplate(
            self,
            "enclave-launch-template",
            name=name,
            description="Graviton Nitro Enclave host: IMDSv2, encrypted EBS, no public IP",
            image_id=ami.insecure_value,
            instance_type=config.enclave_instance_type,
            update_default_version=True,
            ebs_optimized="true",
            enclave_options=aws.LaunchTemplateEnclaveOptions(enabled=True),
            metadata_options=aws.LaunchTemplateMetadataOptions(
                http_endpoint="enabled",
                http_tokens="required",
                http_put_response_hop_limit=1,
                instance_metadata_tags="disabled",
            ),
            block_device_mappings=[
                aws.LaunchTemplateBlockDeviceMappings(
                    device_name=ROOT_DEVICE,
                    ebs=aws.LaunchTemplateBlockDeviceMappingsEbs(
                        encrypted="true",
                        kms_key_id=ml_key.key_arn,
                        volume_type="gp3",
                        volume_size=ROOT_VOLUME_GIB,
                        delete_on_termination="true",
                    ),
                )
            ],
            network_interfaces=[
                aws.LaunchTemplateNetworkInterfaces(
                    device_index=0,
                    associate_public_ip_address="false",
                    delete_on_termination="true",
                    security_groups=[self.enclave_security_group.id],
                )
            ],
            iam_instance_profile=aws.LaunchTemplateIamInstanceProfile(arn=profile.arn),
            monitoring=aws.LaunchTemplateMonitoring(enabled=True),
            tag_specifications=[
                aws.LaunchTemplateTagSpecifications(resource_type=kind, tags=tags)
                for kind in ("instance", "volume")
            ],
            tags=tags,
        )
        self.launch_template_id: str = self.launch_template.id
        group = aws.AutoscalingGroup(
            self,
            "enclave-hosts",
            name=name,
            vpc_zone_identifier=subnet_ids,
            min_size=config.enclave_min_size,
            max_size=config.enclave_max_size,
            desired_capacity=config.enclave_desired_capacity,
            launch_template=aws.AutoscalingGroupLaunchTemplate(
                id=self.launch_template.id,
                version=Token.as_string(self.launch_template.latest_version),
            ),
            health_check_type="EC2",
            health_check_grace_period=300,
            default_instance_warmup=300,
            # A new template version (new AMI, new type) rolls through the group.
            instance_refresh=aws.AutoscalingGroupInstanceRefresh(
                strategy="Rolling",
                preferences=aws.AutoscalingGroupInstanceRefreshPreferences(
                    min_healthy_percentage=50
                ),
            ),
            # The launch template tags instances and volumes; the group carries the same tags
            # so it is attributable on its own (provider default tags do not reach it).
            tag=[
                aws.AutoscalingGroupTagBlock(key=key, value=value, propagate_at_launch=False)
                for key, value in tags.items()
            ],
            # Target tracking owns the running count; applies must not reset it.
            lifecycle=TerraformResourceLifecycle(ignore_changes=["desired_capacity"]),
        )
        self.autoscaling_group_name: str = group.name
        aws.AutoscalingPolicy(
            self,
            "enclave-cpu-target",
            name=f"{name}-cpu-target",
            autoscaling_group_name=group.name,
            policy_type="TargetTrackingScaling",
            target_tracking_configuration=aws.AutoscalingPolicyTargetTrackingConfiguration(
                target_value=config.enclave_target_cpu_percent,
                predefined_metric_specification=(
                    aws.AutoscalingPolicyTargetTrackingConfigurationPredefinedMetricSpecification(
                        predefined_metric_type="ASGAverageCPUUtilization"
                    )
                ),
            ),
        )
