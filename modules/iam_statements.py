"""IAM statements that more than one layer grants, each written once: TLS-only resource
policies, pulling ECR images, and the network interfaces of VPC jobs, models and functions.

Where layers name the same statement differently, the Sid is a parameter, so every policy
keeps the Sids its tests and reviewers know."""

from __future__ import annotations

import re

from modules.policy import Statement, statement

# <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>(:<tag> | @sha256:<digest>): private
# ECR only, pulled through the VPC's ECR endpoints. Repository names as ECR accepts them
# (lower-case parts joined by single . _ - or /), tags as Docker accepts them.
ECR_IMAGE = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@(?P<digest>sha256:[0-9a-f]{64}))$"
)

VPC_DESCRIBE_ACTIONS = (
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
)
# What SageMaker does with the interfaces of a job or model it places in our subnets.
SAGEMAKER_INTERFACE_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
)
ECR_PULL_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
)


def deny_insecure_transport(*, actions: list[str] | str, resources: list[str] | str) -> Statement:
    """A resource policy's refusal of every request not made over TLS."""
    return statement(
        "DenyInsecureTransport",
        effect="Deny",
        principal="*",
        actions=actions,
        resources=resources,
        condition={"Bool": {"aws:SecureTransport": "false"}},
    )


# --- ECR ---------------------------------------------------------------------------------------


def ecr_repository_arn(image_uri: str) -> str:
    """arn:<partition>:ecr:<region>:<account>:repository/<name> of an ECR image URI."""
    parts = ECR_IMAGE.match(image_uri)
    if parts is None:
        raise ValueError(f"{image_uri!r} is not an ECR image URI")
    partition = "aws-cn" if ".amazonaws.com.cn/" in image_uri else "aws"
    return (
        f"arn:{partition}:ecr:{parts['region']}:{parts['account']}:repository/{parts['repository']}"
    )


def ecr_authorization_token(sid: str) -> Statement:
    """ecr:GetAuthorizationToken has no resource type: AWS accepts only "*"."""
    return statement(sid, effect="Allow", actions="ecr:GetAuthorizationToken", resources="*")


def ecr_pull(sid: str, repository_arns: list[str] | str) -> Statement:
    """Pull the images of the named repositories, and of no other."""
    return statement(sid, effect="Allow", actions=list(ECR_PULL_ACTIONS), resources=repository_arns)


def ecr_pull_statements(image_uri: str) -> list[Statement]:
    """Pull one repository's images: the token call is account-wide by AWS's design."""
    return [
        ecr_authorization_token("EcrAuthorizationTokenHasNoResourceLevelPermissions"),
        ecr_pull("PullOnlyThisRepository", ecr_repository_arn(image_uri)),
    ]


# --- network interfaces in the VPC ---------------------------------------------------------------


def describe_vpc(sid: str) -> Statement:
    """The EC2 Describe* calls that place interfaces in a VPC; they have no resource-level
    permissions, so "*" is the only form AWS accepts."""
    return statement(sid, effect="Allow", actions=list(VPC_DESCRIBE_ACTIONS), resources="*")


def sagemaker_vpc_interface_statements(
    region: str, account_id: str, vpc_id: str
) -> list[Statement]:
    """What SageMaker needs to place a job's or model's network interfaces in our subnets.

    The EC2 Describe* actions have no resource-level permissions (AWS requires "*"); creating,
    deleting and permitting interfaces is confined to this account and region, and to subnets
    and security groups of this VPC.
    """
    ec2 = f"arn:aws:ec2:{region}:{account_id}"
    return [
        describe_vpc("DescribeNetworkHasNoResourceLevelPermissions"),
        statement(
            "ManageInterfacesInThisAccountAndRegion",
            effect="Allow",
            actions=list(SAGEMAKER_INTERFACE_ACTIONS),
            resources=f"{ec2}:network-interface/*",
        ),
        statement(
            "UseOnlyThisVpcsSubnetsAndSecurityGroups",
            effect="Allow",
            actions=["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission"],
            resources=[f"{ec2}:subnet/*", f"{ec2}:security-group/*"],
            condition={"StringEquals": {"ec2:Vpc": f"{ec2}:vpc/{vpc_id}"}},
        ),
    ]


def lambda_vpc_access_statements(region: str, account_id: str) -> list[Statement]:
    """As AWSLambdaVPCAccessExecutionRole, but the mutating calls confined to this account and
    region; Describe* has no resource-level permissions."""
    ec2 = f"arn:aws:ec2:{region}:{account_id}"
    return [
        statement(
            "DescribeNetworkInterfacesHasNoResourceLevelPermissions",
            effect="Allow",
            actions=["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"],
            resources="*",
        ),
        statement(
            "ManageItsNetworkInterfaces",
            effect="Allow",
            actions=[
                "ec2:AssignPrivateIpAddresses",
                "ec2:CreateNetworkInterface",
                "ec2:DeleteNetworkInterface",
                "ec2:UnassignPrivateIpAddresses",
            ],
            resources=[
                f"{ec2}:network-interface/*",
                f"{ec2}:subnet/*",
                f"{ec2}:security-group/*",
            ],
        ),
    ]


def sagemaker_job_guards(creation_actions: list[str] | str) -> list[Statement]:
    """Belt and braces for a pipeline definition: even an edited definition cannot start a
    job that talks to the network, skips traffic encryption, or runs outside the VPC."""
    return [
        statement(
            "DenyJobsWithoutNetworkIsolation",
            effect="Deny",
            actions=creation_actions,
            resources="*",
            condition={"Bool": {"sagemaker:NetworkIsolation": "false"}},
        ),
        statement(
            "DenyJobsWithoutTrafficEncryption",
            effect="Deny",
            actions=creation_actions,
            resources="*",
            condition={"Bool": {"sagemaker:InterContainerTrafficEncryption": "false"}},
        ),
        statement(
            "DenyJobsOutsideTheVpc",
            effect="Deny",
            actions=creation_actions,
            resources="*",
            condition={"Null": {"sagemaker:VpcSubnets": "true"}},
        ),
    ]


def pass_role_to_sagemaker_only(role_arn: str) -> Statement:
    return statement(
        "PassItselfToSageMakerOnly",
        effect="Allow",
        actions="iam:PassRole",
        resources=role_arn,
        condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    )


def sagemaker_job_telemetry(log_group_arns: list[str]) -> list[Statement]:
    """The jobs' CloudWatch logs (these log groups only) and SageMaker's job metrics."""
    return [
        statement(
            "WriteJobLogs",
            effect="Allow",
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:DescribeLogStreams",
                "logs:PutLogEvents",
            ],
            resources=log_group_arns,
        ),
        # PutMetricData has no resource-level permissions; the namespace condition confines it.
        statement(
            "PublishSageMakerJobMetrics",
            effect="Allow",
            actions="cloudwatch:PutMetricData",
            resources="*",
            condition={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
        ),
    ]
