"""The one place that imports the AWS provider bindings (cdktf-cdktf-provider-aws 20.1.0).

The bindings' package `__init__` imports all ~2,200 resource submodules (about 10 s and 1.6 GB).
Each submodule only needs the package's `_jsii` assembly, so we register a bare package object
and import just the submodules used: identical classes, identical synth output, a fraction of
the start-up. Setting PHI_PLAIN_PROVIDER_IMPORT=1 uses the plain import instead (the
byte-identity test compares both). Moving to another bindings package (e.g. the cdktn fork)
changes this file only.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from typing import Any

_PACKAGE = "cdktf_cdktf_provider_aws"


def _register_bare_package() -> None:
    if _PACKAGE in sys.modules:
        return
    if os.environ.get("PHI_PLAIN_PROVIDER_IMPORT") == "1":
        importlib.import_module(_PACKAGE)
        return
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"{_PACKAGE} is not installed (run `make setup`)")
    package = types.ModuleType(_PACKAGE)
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    package.__package__ = _PACKAGE
    sys.modules[_PACKAGE] = package


def _submodule(name: str) -> Any:
    _register_bare_package()
    return importlib.import_module(f"{_PACKAGE}.{name}")


_provider = _submodule("provider")
AwsProvider = _provider.AwsProvider
AwsProviderAssumeRole = _provider.AwsProviderAssumeRole
AwsProviderDefaultTags = _provider.AwsProviderDefaultTags

_availability_zones = _submodule("data_aws_availability_zones")
DataAwsAvailabilityZones = _availability_zones.DataAwsAvailabilityZones

KmsKey = _submodule("kms_key").KmsKey
KmsAlias = _submodule("kms_alias").KmsAlias

S3Bucket = _submodule("s3_bucket").S3Bucket
S3BucketVersioningA = _submodule("s3_bucket_versioning").S3BucketVersioningA
# Lists of nested blocks need the typed struct classes: jsii converts a plain dict only where a
# single struct is expected, and silently synthesizes `[{}]` for a list of dicts.
_sse = _submodule("s3_bucket_server_side_encryption_configuration")
S3BucketServerSideEncryptionConfigurationA = _sse.S3BucketServerSideEncryptionConfigurationA
S3BucketServerSideEncryptionConfigurationRuleA = _sse.S3BucketServerSideEncryptionConfigurationRuleA
S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA = (
    _sse.S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA
)
S3BucketPublicAccessBlock = _submodule("s3_bucket_public_access_block").S3BucketPublicAccessBlock
S3BucketOwnershipControls = _submodule("s3_bucket_ownership_controls").S3BucketOwnershipControls
S3BucketPolicy = _submodule("s3_bucket_policy").S3BucketPolicy
S3BucketLoggingA = _submodule("s3_bucket_logging").S3BucketLoggingA
_lifecycle = _submodule("s3_bucket_lifecycle_configuration")
S3BucketLifecycleConfiguration = _lifecycle.S3BucketLifecycleConfiguration
S3BucketLifecycleConfigurationRule = _lifecycle.S3BucketLifecycleConfigurationRule
S3BucketLifecycleConfigurationRuleFilter = _lifecycle.S3BucketLifecycleConfigurationRuleFilter
S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration = (
    _lifecycle.S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration
)
S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload = (
    _lifecycle.S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload
)
S3BucketObjectLockConfigurationA = _submodule(
    "s3_bucket_object_lock_configuration"
).S3BucketObjectLockConfigurationA

Vpc = _submodule("vpc").Vpc
Subnet = _submodule("subnet").Subnet
RouteTable = _submodule("route_table").RouteTable
RouteTableAssociation = _submodule("route_table_association").RouteTableAssociation
VpcEndpoint = _submodule("vpc_endpoint").VpcEndpoint
SecurityGroup = _submodule("security_group").SecurityGroup
VpcSecurityGroupIngressRule = _submodule(
    "vpc_security_group_ingress_rule"
).VpcSecurityGroupIngressRule
DefaultSecurityGroup = _submodule("default_security_group").DefaultSecurityGroup
FlowLog = _submodule("flow_log").FlowLog
CloudwatchLogGroup = _submodule("cloudwatch_log_group").CloudwatchLogGroup
IamRole = _submodule("iam_role").IamRole
IamRolePolicy = _submodule("iam_role_policy").IamRolePolicy

VpnGateway = _submodule("vpn_gateway").VpnGateway
VpnGatewayRoutePropagation = _submodule("vpn_gateway_route_propagation").VpnGatewayRoutePropagation
CustomerGateway = _submodule("customer_gateway").CustomerGateway
VpnConnection = _submodule("vpn_connection").VpnConnection
DxGateway = _submodule("dx_gateway").DxGateway
DxGatewayAssociation = _submodule("dx_gateway_association").DxGatewayAssociation
