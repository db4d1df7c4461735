"""The VPC endpoints every PHI VPC must have: one definition for the network layer that creates
them and for the policy check (CKV_PHI_8) and runtime check that prove them. Plain data, so the
checks import it without starting jsii."""

# Interface endpoints every PHI VPC has: the ML control and data planes, keys, identity, logs,
# events, container images, metrics, Systems Manager (session access without SSH or bastion),
# EC2 and X-Ray.
REQUIRED_INTERFACE_ENDPOINTS = (
    "sagemaker.api",
    "sagemaker.runtime",
    "kms",
    "sts",
    "logs",
    "events",
    "ecr.api",
    "ecr.dkr",
    "monitoring",
    "ssm",
    "ssmmessages",
    "ec2messages",
    # The quarantine function isolates instances through the EC2 API; functions trace to X-Ray.
    "ec2",
    "xray",
)
GATEWAY_ENDPOINTS = ("s3", "dynamodb")
