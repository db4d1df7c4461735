"""Real-time inference: a private SageMaker endpoint and Graviton Nitro Enclave hosts.

The endpoint sees only patient tokens, never identifiers. The parent service on each Graviton
host replaces identifiers with tokens (deterministic, authenticated encryption under a data
key that exists in clear only inside the Nitro Enclave) before a request reaches SageMaker,
and has the enclave re-identify the tokens of the response. The data key is wrapped by the
patient-token KMS key, whose policy lets the host role decrypt only with an attestation
document of the configured enclave image (PCR0): neither the host, its operators, the
endpoint nor its captured data can turn a token back into a patient.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from cdktf import Fn, TerraformResourceLifecycle, Token
from constructs import Construct
from pydantic import AfterValidator, Field, field_validator, model_validator

from ml.enclave import contract as enclave_contract
from ml.sagemaker_paths import MODEL_ARCHIVE
from modules import aws
from modules.config import LayerConfig
from modules.enclave_bootstrap import EnclaveBootstrapConfig, render
from modules.iam_statements import (
    ECR_IMAGE,
    ecr_pull_statements,
    sagemaker_vpc_interface_statements,
)
from modules.keys import CustomerManagedKey, EnclaveKeyConfig, KeyPurpose
from modules.policy import assume_role_policy, policy_document, statement
from modules.storage import HardenedBucket

HTTPS = 443
AL2023_ARM64_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
SSM_MANAGED_INSTANCE_CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
ROOT_DEVICE = "/dev/xvda"  # Amazon Linux 2023's root device name
ROOT_VOLUME_GIB = 30

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

# What an accepted host type offers: on Graviton one vCPU is one core, 4 vCPUs per "xlarge";
# memory per vCPU by family. The parent keeps 2 vCPUs and 2 GiB (vsock proxy, parent service,
# SSM agent); the enclave may have the rest.
_GIB_PER_VCPU = {"c": 2, "m": 4, "r": 8}
PARENT_VCPUS = 2
PARENT_MEMORY_MIB = 2048


def host_vcpus_and_memory_mib(instance_type: str) -> tuple[int, int]:
    """vCPUs and MiB of an accepted Graviton enclave host type (graviton_enclave_instance_type)."""
    family, size = instance_type.split(".")
    multiplier = int(size.removesuffix("xlarge") or "1")
    vcpus = 4 * multiplier
    return vcpus, vcpus * _GIB_PER_VCPU[family[0]] * 1024


def image_sha384(value: str) -> str:
    """The enclave image measurement as nitro-cli prints it: PCR0, a SHA-384 in lower-case hex
    (AfterValidator)."""
    if isinstance(value, str) and enclave_contract.SHA384_HEX.match(value):
        return value
    text = value if isinstance(value, str) else ""
    if len(text) != 96:
        found = f"got {len(text)} characters"
    elif text != text.lower():
        found = "got it in upper case"
    else:
        found = "got characters that are not hexadecimal"
    raise ValueError(
        "the enclave image measurement must be PCR0 of `nitro-cli build-enclave`: 96 "
        f"lower-case hex characters (SHA-384); {found}"
    )


ImageSha384 = Annotated[str, AfterValidator(image_sha384)]

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

NAME_PART = r"^[a-z0-9](?:-?[a-z0-9])*$"
# "phi-ml-" + environment + "-" + model name + "-dq-v" + a 6-digit registry version (the
# deployer's longest name, its data-quality job definition) must fit SageMaker's 63.
MAX_ENVIRONMENT_AND_MODEL_NAME = 44


class InferenceConfig(LayerConfig):
    environment: str = Field(pattern=NAME_PART)
    account_id: str = Field(pattern=r"^[0-9]{12}$")
    region: str
    model_name: str = Field(pattern=NAME_PART)
    # The image the pipeline registers: the model role may pull only its repository, and the
    # deployer serves no package whose image is elsewhere.
    inference_image: EcrImage
    # Key prefix in the artifacts bucket under which the training pipeline writes its runs
    # (model archives, baselines): the model role reads model archives only there.
    model_archive_prefix: str = Field(pattern=r"^(?:[A-Za-z0-9!_.*'()-]+/)+$")
    endpoint_instance_type: str = Field(pattern=r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
    endpoint_instance_count: int = Field(ge=1)
    data_capture_sampling_percent: int = Field(ge=1, le=100)
    # Approved versions kept deployable (model and endpoint configuration), so a rollback has
    # something to return to; the deployer deletes older ones.
    retained_versions: int = Field(default=3, ge=2, le=10)
    capture_prefix: str = Field(pattern=r"^(?:[A-Za-z0-9!_.*'()-]+/)+$")
    enclave_instance_type: GravitonEnclaveInstanceType
    enclave_min_size: int = Field(ge=0)
    enclave_max_size: int = Field(ge=1)
    enclave_desired_capacity: int = Field(ge=0)
    enclave_target_cpu_percent: int = Field(ge=10, le=90)
    enclave_ami_ssm_parameter: str = Field(
        default=AL2023_ARM64_AMI_PARAMETER, pattern=r"^/[A-Za-z0-9_./-]+arm64$"
    )
    # The patient-token enclave: the image measurement the key admits (CI's image build
    # records it, ml/enclave/measure.py) and what the enclave takes from its host. Unset only
    # where a layer is built without the enclave application (hosts that run no enclave and
    # get no key); every environment file sets it (environments/schema.py requires it).
    enclave_image_sha384: ImageSha384 | None = None
    enclave_memory_mib: int = Field(default=2048, ge=512)
    enclave_cpu_count: int = Field(default=2, ge=1)
    # Who manages the patient-token key (never decrypts with it).
    key_administrators: tuple[str, ...] = ()
    vpc_cidr: str
    production: bool

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
        vcpus, memory_mib = host_vcpus_and_memory_mib(self.enclave_instance_type)
        if self.enclave_cpu_count > vcpus - PARENT_VCPUS:
            raise ValueError(
                f"enclave cpu_count {self.enclave_cpu_count} leaves the parent fewer than "
                f"{PARENT_VCPUS} of {self.enclave_instance_type}'s {vcpus} vCPUs"
            )
        if self.enclave_memory_mib > memory_mib - PARENT_MEMORY_MIB:
            raise ValueError(
                f"enclave memory_mib {self.enclave_memory_mib} leaves the parent less than "
                f"{PARENT_MEMORY_MIB} of {self.enclave_instance_type}'s {memory_mib} MiB"
            )
        if self.enclave_image_sha384 is not None and not self.key_administrators:
            raise ValueError("the patient-token key needs key_administrators")
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
    def enclave_host_role_name(self) -> str:
        """Fixed, so the ML key's policy can admit the host role before it exists."""
        return f"{self.name}-enclave"

    @property
    def enclave_host_role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{self.enclave_host_role_name}"

    @property
    def patient_token_key_alias(self) -> str:
        return enclave_contract.patient_token_key_alias(self.environment)

    @property
    def endpoint_arn(self) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:endpoint/{self.name}"

    @property
    def deployer_name(self) -> str:
        """The deployer function's name, shared by its role and dead-letter queue."""
        return f"{self.name}-deployer"


# --- the layer -------------------------------------------------------------------------------


class Inference(Construct):
    """Inference that keeps PHI inside the VPC and encrypted with the ML key.

    What the SageMaker models run as: an execution role that reads only the model archives the
    training pipeline wrote, writes only this endpoint's captures, pulls only the registered
    image's repository, and a security group allowing HTTPS to the VPC's endpoints and S3
    only. The models, endpoint configurations and the endpoint itself are created by the
    deployer when a person approves a version (modules/deployment.py), network-isolated in the
    private subnets, storage and captures encrypted with the ML key. Sensitive pre- and
    post-processing runs on Graviton hosts whose launch template enables Nitro Enclaves,
    requires IMDSv2 with a hop limit of 1, encrypts EBS with the ML key and gives no public IP;
    operators reach them only through Systems Manager. With an enclave image configured, each
    host boots the measured image in production mode (modules/enclave_bootstrap.py), and the
    patient-token key decrypts for that image's attestation only: the endpoint is sent tokens,
    and re-identification happens nowhere but inside the enclave.
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
        self._model_identity(
            config,
            ml_key=ml_key,
            capture_bucket=capture_bucket,
            model_bucket_arn=model_bucket_arn,
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
        )
        self._enclave_hosts(
            config,
            ml_key=ml_key,
            bucket=capture_bucket,
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
        )

    def _model_identity(
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
                    "ReadOnlyModelArchivesThePipelineWrote",
                    effect="Allow",
                    actions="s3:GetObject",
                    resources=f"{model_bucket_arn}/{config.model_archive_prefix}*/{MODEL_ARCHIVE}",
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
        self.model_subnet_ids: list[str] = subnet_ids
        # What serves is the deployer's to create (modules/deployment.py): a model, endpoint
        # configuration and endpoint per approved registry version. Terraform creates none of
        # them, so the first apply needs no model, and the versions rollback returns to are
        # never destroyed by Terraform's replace cycle.
        self.endpoint_name: str = config.name
        self.endpoint_arn: str = config.endpoint_arn
        self.capture_s3_uri: str = f"s3://{capture_bucket.bucket_name}/{config.capture_prefix}"

    def _enclave_hosts(
        self,
        config: InferenceConfig,
        *,
        ml_key: CustomerManagedKey,
        bucket: HardenedBucket,
        vpc_id: str,
        subnet_ids: list[str],
    ) -> None:
        name = config.enclave_host_role_name
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
        user_data = self._patient_token_enclave(config, role=role, ml_key=ml_key, bucket=bucket)
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
            user_data=user_data,
            monitoring=aws.LaunchTemplateMonitoring(enabled=True),
            tag_specifications=[
                aws.LaunchTemplateTagSpecifications(resource_type=kind, tags=tags)
                for kind in ("instance", "volume")
            ],
            tags=tags,
        )
        self.launch_template_id: str = self.launch_template.id
        self.enclave_host_role_arn: str = role.arn
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

    def _patient_token_enclave(
        self,
        config: InferenceConfig,
        *,
        role: aws.IamRole,
        ml_key: CustomerManagedKey,
        bucket: HardenedBucket,
    ) -> str | None:
        """The key only the measured enclave decrypts with, what the host may fetch, and the
        host's bootstrap (base64 user data); None when no enclave image is configured."""
        self.patient_token_key: CustomerManagedKey | None = None
        measurement = config.enclave_image_sha384
        if measurement is None:
            return None
        key = CustomerManagedKey(
            self,
            "patient-token-key",
            config=EnclaveKeyConfig(
                purpose=KeyPurpose.PATIENT_TOKENS,
                alias=config.patient_token_key_alias,
                account_id=config.account_id,
                region=config.region,
                administrators=config.key_administrators,
                enclave_role=config.enclave_host_role_arn,
                image_sha384=measurement,
                prevent_destroy=config.production,
            ),
        )
        # KMS refuses a key policy naming a role that does not exist yet.
        key.key.depends_on = [f"{role.terraform_resource_type}.{role.friendly_unique_id}"]
        self.patient_token_key = key
        objects = [
            f"{bucket.bucket_arn}/{enclave_contract.image_object(measurement)}",
            f"{bucket.bucket_arn}/{enclave_contract.parent_archive_object(measurement)}",
            f"{bucket.bucket_arn}/{enclave_contract.WRAPPED_DATA_KEY_OBJECT}",
        ]
        aws.IamRolePolicy(
            self,
            "enclave-host-artifacts",
            name="fetch-the-measured-enclave-image",
            role=role.id,
            policy=policy_document(
                statement(
                    "ReadTheMeasuredImageItsParentAndTheWrappedDataKey",
                    effect="Allow",
                    actions="s3:GetObject",
                    resources=objects,
                ),
                statement(
                    # The artifacts bucket is encrypted with the ML key; the host reads
                    # through S3 only, and the patient-token key needs no IAM grant (its key
                    # policy names the role, and only its attested requests succeed).
                    "DecryptTheArtifactsThroughS3Only",
                    effect="Allow",
                    actions="kms:Decrypt",
                    resources=ml_key.key_arn,
                    condition={
                        "StringEquals": {"kms:ViaService": f"s3.{config.region}.amazonaws.com"}
                    },
                ),
            ),
        )
        script = render(
            EnclaveBootstrapConfig(
                environment=config.environment,
                account_id=config.account_id,
                region=config.region,
                image_sha384=measurement,
                memory_mib=config.enclave_memory_mib,
                cpu_count=config.enclave_cpu_count,
                # The literal name, not a reference: the script is a literal string.
                artifacts_bucket=bucket.config.name,
                endpoint_name=config.name,
            )
        )
        # Encoded by Terraform, not here: the synthesized template shows the script as text,
        # so a reviewer reads it and a promotion diff normalizes its names like any value.
        return Fn.base64encode(Fn.raw_string(script))
