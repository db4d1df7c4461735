"""Values real AWS, or the internet's registries, refuse: judged when an environment is loaded,
so a bad ASN, peer address, tag, instance type or name stops synthesis instead of an apply.

Each `*_problem` function returns None when the value is fine, else one sentence (lower-case
start, no trailing period) stating the rule and its source. Each has a `*_RULE` sentence for the
generated environment reference. Sources, as read 2026-12:

- BGP ASNs: the IANA Autonomous System Numbers registry and the RFCs it cites (RFC 7607 AS 0,
  RFC 6793 AS_TRANS, RFC 5398 documentation, RFC 7300 last ASNs, RFC 6996 private use); AWS's
  limits from the EC2 API reference (CreateCustomerGateway BgpAsn, CreateVpnGateway
  AmazonSideAsn, also in botocore's model) and the Site-to-Site VPN User Guide (ASNs AWS
  reserves for customer gateways).
- IPv4: the IANA IPv4 Special-Purpose Address Registry (RFC 6890 and its updates), and
  multicast (RFC 5771, the IANA multicast registry).
- Tags, instance types, name limits: botocore's service models (read at call time, so a
  botocore upgrade moves the enums with it), and the restrictions their documentation states.
- S3 bucket names: Amazon S3's general purpose bucket naming rules.

Side-effect free; imports only the standard library and botocore.
"""

from __future__ import annotations

import difflib
import html
import ipaddress
import re
import unicodedata
from enum import StrEnum
from functools import cache
from typing import Any, Final, NamedTuple

import botocore
import botocore.exceptions
import botocore.model
import botocore.session

IANA_ASN_REGISTRY: Final = "https://www.iana.org/assignments/as-numbers/as-numbers.xhtml"
IANA_IPV4_SPECIAL_REGISTRY: Final = (
    "https://www.iana.org/assignments/iana-ipv4-special-registry/iana-ipv4-special-registry.xhtml"
)
CUSTOMER_GATEWAY_OPTIONS: Final = "https://docs.aws.amazon.com/vpn/latest/s2svpn/cgw-options.html"
CREATE_CUSTOMER_GATEWAY: Final = (
    "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateCustomerGateway.html"
)
CREATE_VPN_GATEWAY: Final = (
    "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVpnGateway.html"
)
S3_RULES: Final = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html"


class ServiceModelError(LookupError):
    """botocore's model lacks an operation, member or enum this module reads: a botocore
    upgrade moved it, and the binding here needs review (never a user's mistake)."""


# --- BGP autonomous system numbers ----------------------------------------------------------


class AsnBlock(NamedTuple):
    first: int
    last: int
    why: str  # completes "<asn> is ...": what the block is and who reserves it

    def problem(self, asn: int) -> str:
        where = "" if self.first == self.last else f"in {self.first}-{self.last}, "
        return f"{asn} is {where}{self.why}"


# The registry's reserved blocks (IANA_ASN_REGISTRY), in order. Private use (64512-65534 and
# 4200000000-4294967294, RFC 6996) is not among them: a clinical site without a public ASN
# uses one.
RESERVED_ASNS: Final = (
    AsnBlock(0, 0, "reserved by RFC 7607: no BGP speaker may use AS 0"),
    AsnBlock(23456, 23456, "AS_TRANS, reserved by RFC 6793: a BGP speaker cannot use it"),
    AsnBlock(64496, 64511, "reserved for documentation by RFC 5398, not for a real network"),
    AsnBlock(65535, 65535, "the last 16-bit ASN, reserved by RFC 7300, not for a real network"),
    AsnBlock(65536, 65551, "reserved for documentation by RFC 5398, not for a real network"),
    AsnBlock(65552, 131071, "reserved by IANA (Autonomous System Numbers registry)"),
    AsnBlock(
        4294967295, 4294967295, "the last 32-bit ASN, reserved by RFC 7300, not for a real network"
    ),
)
PRIVATE_ASNS: Final = ((64512, 65534), (4200000000, 4294967294))  # RFC 6996
# CreateCustomerGateway BgpAsn: "Valid values: 1 to 2,147,483,647" (larger ASNs go in
# BgpAsnExtended, which the platform's customer gateway does not set).
CUSTOMER_GATEWAY_ASN_RANGE: Final = (1, 2_147_483_647)
# ASNs AWS reserves for customer gateways, and where (None: "Reserved in all Regions"), as the
# Site-to-Site VPN User Guide lists them (CUSTOMER_GATEWAY_OPTIONS).
AWS_RESERVED_CUSTOMER_GATEWAY_ASNS: Final[dict[int, str | None]] = {
    7224: None,
    9059: "eu-west-1",
    10124: "ap-northeast-1",
    17943: "ap-southeast-1",
}
# CreateVpnGateway AmazonSideAsn ("If you're using a 16-bit ASN, it must be in the 64512 to
# 65534 range. If you're using a 32-bit ASN, it must be in the 4200000000 to 4294967294
# range."); Direct Connect's CreateDirectConnectGateway amazonSideAsn states the same ranges.
AMAZON_SIDE_ASN_RANGES: Final = ((64512, 65534), (4200000000, 4294967294))


def _ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    return " or ".join(f"{first}-{last}" for first, last in ranges)


BGP_ASN_RULE: Final = (
    f"{CUSTOMER_GATEWAY_ASN_RANGE[0]}-{CUSTOMER_GATEWAY_ASN_RANGE[1]} (CreateCustomerGateway "
    "BgpAsn), not an ASN the IANA registry reserves ("
    + ", ".join(f"{b.first}" if b.first == b.last else f"{b.first}-{b.last}" for b in RESERVED_ASNS)
    + ") nor one AWS reserves for customer gateways in the region ("
    + ", ".join(
        f"{asn} {'in all Regions' if region is None else 'in ' + region}"
        for asn, region in AWS_RESERVED_CUSTOMER_GATEWAY_ASNS.items()
    )
    + f"); a private ASN ({_ranges(PRIVATE_ASNS[:1])}) is fine"
)
AMAZON_SIDE_ASN_RULE: Final = (
    f"a private ASN AWS accepts on its side of BGP: {_ranges(AMAZON_SIDE_ASN_RANGES)} "
    "(CreateVpnGateway AmazonSideAsn, CreateDirectConnectGateway amazonSideAsn)"
)


def bgp_asn_problem(asn: int, *, region: str) -> str | None:
    """Why a customer gateway (the on-premises side) cannot use `asn` in `region`, or None."""
    for block in RESERVED_ASNS:
        if block.first <= asn <= block.last:
            return block.problem(asn)
    low, high = CUSTOMER_GATEWAY_ASN_RANGE
    if not low <= asn <= high:
        return (
            f"{asn} is outside {low}-{high}, the ASNs AWS CreateCustomerGateway accepts as BgpAsn "
            "(EC2 API reference)"
        )
    if asn in AWS_RESERVED_CUSTOMER_GATEWAY_ASNS:
        reserved_in = AWS_RESERVED_CUSTOMER_GATEWAY_ASNS[asn]
        if reserved_in is None or reserved_in == region:
            where = "all Regions" if reserved_in is None else reserved_in
            return (
                f"{asn} is reserved by AWS for customer gateways in {where} "
                "(AWS Site-to-Site VPN User Guide, customer gateway options)"
            )
    return None


def amazon_side_asn_problem(asn: int) -> str | None:
    """Why a virtual private gateway or Direct Connect gateway cannot use `asn`, or None."""
    if any(first <= asn <= last for first, last in AMAZON_SIDE_ASN_RANGES):
        return None
    return (
        f"{asn} is outside {_ranges(AMAZON_SIDE_ASN_RANGES)}, the private ASNs AWS accepts as the "
        "Amazon-side ASN (EC2 CreateVpnGateway AmazonSideAsn, Direct Connect "
        "CreateDirectConnectGateway amazonSideAsn)"
    )


# --- IPv4 special-purpose addresses ---------------------------------------------------------


class SpecialRange(NamedTuple):
    network: str  # as the registry writes it: network address, prefix length, host bits zero
    name: str
    rfc: str
    globally_reachable: bool  # the registry's "Globally Reachable" column


# The IANA IPv4 Special-Purpose Address Registry (IANA_IPV4_SPECIAL_REGISTRY, rows as of its
# 2026 CSV), then multicast. Entries nest (192.0.0.0/24 holds the /29 and /32 entries): the most
# specific one decides, as the registry's footnote on 192.0.0.0/24 says ("Not usable unless by
# virtue of a more specific reservation").
SPECIAL_PURPOSE_IPV4: Final[tuple[SpecialRange, ...]] = (
    SpecialRange("0.0.0.0/8", '"This network"', "RFC 791, section 3.2", False),
    SpecialRange("0.0.0.0/32", '"This host on this network"', "RFC 1122, section 3.2.1.3", False),
    SpecialRange("10.0.0.0/8", "Private-Use", "RFC 1918", False),
    SpecialRange("100.64.0.0/10", "Shared Address Space", "RFC 6598", False),
    SpecialRange("127.0.0.0/8", "Loopback", "RFC 1122, section 3.2.1.3", False),
    SpecialRange("169.254.0.0/16", "Link Local", "RFC 3927", False),
    SpecialRange("172.16.0.0/12", "Private-Use", "RFC 1918", False),
    SpecialRange("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890, section 2.1", False),
    # Named DS-Lite (RFC 6333) until RFC 7335 opened it to every IPv4 service continuity
    # mechanism.
    SpecialRange("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", False),
    SpecialRange("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", False),
    SpecialRange("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", True),
    SpecialRange("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
    SpecialRange(
        "192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 section 2.2", False
    ),
    SpecialRange(
        "192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 section 2.2", False
    ),
    SpecialRange("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", False),
    SpecialRange("192.31.196.0/24", "AS112-v4", "RFC 7535", True),
    SpecialRange("192.52.193.0/24", "AMT", "RFC 7450", True),
    # Terminated 2015-03: RFC 7526 section 7 removed the row's booleans; a deprecated relay
    # prefix is no site's address.
    SpecialRange("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", False),
    SpecialRange("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751", False),
    SpecialRange("192.168.0.0/16", "Private-Use", "RFC 1918", False),
    SpecialRange("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", True),
    SpecialRange("198.18.0.0/15", "Benchmarking", "RFC 2544", False),
    SpecialRange("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", False),
    SpecialRange("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", False),
    SpecialRange("240.0.0.0/4", "Reserved", "RFC 1112, section 4", False),
    SpecialRange("255.255.255.255/32", "Limited Broadcast", "RFC 8190, RFC 919 section 7", False),
    # Not in the special-purpose registry (the IANA IPv4 Multicast Address Space Registry holds
    # it): a group address is never a unicast peer, so never reachable as one.
    SpecialRange("224.0.0.0/4", "Multicast", "RFC 5771", False),
)
# RFC 5737's TEST-NETs: the shipped example environments use them as placeholder peers.
DOCUMENTATION_IPV4: Final = tuple(
    entry for entry in SPECIAL_PURPOSE_IPV4 if entry.name.startswith("Documentation")
)
PUBLIC_PEER_RULE: Final = (
    "an IPv4 address the IANA IPv4 Special-Purpose Address Registry marks globally reachable "
    "(not private, shared, loopback, link-local, benchmarking, reserved, deprecated 6to4 relay "
    "or multicast space); the RFC 5737 documentation ranges only where placeholders are allowed"
)


@cache
def _most_specific_first() -> tuple[tuple[ipaddress.IPv4Network, SpecialRange], ...]:
    parsed = ((ipaddress.IPv4Network(entry.network), entry) for entry in SPECIAL_PURPOSE_IPV4)
    return tuple(sorted(parsed, key=lambda pair: -pair[0].prefixlen))


def special_range_of(address: ipaddress.IPv4Address) -> SpecialRange | None:
    """The most specific registry entry holding `address`, or None (ordinary unicast space)."""
    for network, entry in _most_specific_first():
        if address in network:
            return entry
    return None


def public_peer_problem(address: str, *, allow_documentation: bool) -> str | None:
    """Why `address` cannot be an IPsec peer's (customer gateway's) public IPv4 address, or None.
    `allow_documentation` admits RFC 5737's documentation ranges (placeholders)."""
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        return f"{address!r} is not an IPv4 address (four decimal octets, e.g. 198.51.100.7)"
    entry = special_range_of(parsed)
    if entry is None or entry.globally_reachable:
        return None
    if allow_documentation and entry in DOCUMENTATION_IPV4:
        return None
    return (
        f"{parsed} is in {entry.network} ({entry.name}, {entry.rfc}): "
        "not a reachable internet address"
    )


# --- tags -----------------------------------------------------------------------------------

# The restrictions botocore's ecs Tag documentation states for AWS tags generally ("Maximum key
# length - 128 Unicode characters in UTF-8", "Maximum value length - 256 ...", "letters,
# numbers, and spaces representable in UTF-8, and the following characters: + - = . _ : / @",
# "Do not use aws:, AWS:, or any upper or lowercase combination of such as a prefix for either
# keys or values"), the limits and pattern of its TagKey/TagValue shapes
# ([\p{L}\p{Z}\p{N}_.:/=+\-@]*, as IAM's tagKeyType/tagValueType). EC2's Tag.Key documentation
# says 127 characters; its user guide and every other service say 128.
TAG_KEY_LENGTH: Final = (1, 128)
TAG_VALUE_LENGTH: Final = (0, 256)
TAG_PUNCTUATION: Final = "_.:/=+-@"
TAG_CATEGORIES: Final = ("L", "Z", "N")  # Unicode letters, separators (spaces), numbers
RESERVED_TAG_PREFIX: Final = "aws:"  # in any case
_ALLOWED_TAG_CHARACTERS: Final = "letters, numbers, spaces and _ . : / = + - @"
TAG_KEY_RULE: Final = (
    f"{TAG_KEY_LENGTH[0]}-{TAG_KEY_LENGTH[1]} Unicode characters: {_ALLOWED_TAG_CHARACTERS}; "
    f"not starting with {RESERVED_TAG_PREFIX} (in any case), reserved for AWS"
)
TAG_VALUE_RULE: Final = (
    f"{TAG_VALUE_LENGTH[0]}-{TAG_VALUE_LENGTH[1]} Unicode characters: {_ALLOWED_TAG_CHARACTERS}; "
    f"not starting with {RESERVED_TAG_PREFIX} (in any case), reserved for AWS"
)


def _tag_problem(kind: str, text: str, length: tuple[int, int]) -> str | None:
    low, high = length
    shown = repr(text if len(text) <= 40 else text[:40] + "...")
    if len(text) < low:
        return f"a tag {kind} cannot be empty (AWS tags: {kind}s of {low}-{high} characters)"
    if len(text) > high:
        return f"tag {kind} {shown} has {len(text)} characters, more than the {high} AWS allows"
    for character in text:
        allowed = unicodedata.category(character)[0] in TAG_CATEGORIES
        if not allowed and character not in TAG_PUNCTUATION:
            return (
                f"tag {kind} {shown} holds {character!r} (U+{ord(character):04X}): AWS tags "
                f"allow only {_ALLOWED_TAG_CHARACTERS}"
            )
    if text[: len(RESERVED_TAG_PREFIX)].lower() == RESERVED_TAG_PREFIX:
        return (
            f"tag {kind} {shown} starts with {text[: len(RESERVED_TAG_PREFIX)]!r}: AWS reserves "
            f"the {RESERVED_TAG_PREFIX} prefix, in any case, for its own tags"
        )
    return None


def tag_key_problem(key: str) -> str | None:
    """Why AWS refuses `key` as a tag key, or None."""
    return _tag_problem("key", key, TAG_KEY_LENGTH)


def tag_value_problem(value: str) -> str | None:
    """Why AWS refuses `value` as a tag value, or None."""
    return _tag_problem("value", value, TAG_VALUE_LENGTH)


# --- botocore service models ----------------------------------------------------------------


class ApiMember(NamedTuple):
    service: str  # botocore service model name
    operation: str
    member: str  # dotted path into the operation's input, through lists ("": the input)

    @property
    def where(self) -> str:
        return f"botocore {botocore.__version__} {self.service} {self.operation} {self.member}"


@cache
def service_model(service: str) -> Any:
    try:
        return botocore.session.get_session().get_service_model(service)
    except botocore.exceptions.UnknownServiceError:
        raise ServiceModelError(f"botocore has no service model {service!r}") from None


def _element(shape: Any) -> Any:
    while shape.type_name == "list":
        shape = shape.member
    return shape


def member_shape(member: ApiMember) -> Any:
    """The shape at the member's dotted path, walked by member names (as the preflight's
    names.member_shape walks them) so a renamed shape changes nothing here."""
    try:
        shape = service_model(member.service).operation_model(member.operation).input_shape
    except botocore.model.OperationNotFoundError:
        raise ServiceModelError(f"{member.where}: no such operation") from None
    for part in filter(None, member.member.split(".")):
        shape = _element(shape)
        if part not in (getattr(shape, "members", None) or {}):
            raise ServiceModelError(f"{member.where}: no input member {part!r}")
        shape = shape.members[part]
    return _element(shape)


def member_documentation(member: ApiMember) -> str:
    """The member's documentation in the model, as plain text (tags dropped, spaces folded)."""
    parent, _, last = member.member.rpartition(".")
    raw = member_shape(member._replace(member=parent)).members[last].documentation or ""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", str(raw)))).strip()


@cache
def member_enum(member: ApiMember) -> tuple[str, ...]:
    enum = tuple(getattr(member_shape(member), "enum", None) or ())
    if not enum:
        raise ServiceModelError(f"{member.where}: no enum where one is expected")
    return enum


def _enum_problem(value: str, member: ApiMember, what: str) -> str | None:
    allowed = member_enum(member)
    if value in allowed:
        return None
    close = difflib.get_close_matches(value, allowed, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"none of its {len(allowed)} values is close"
    return f"{value!r} is not {what} ({member.where}): {hint}"


# --- instance types -------------------------------------------------------------------------


class SageMakerJob(StrEnum):
    PROCESSING = "processing"
    TRAINING = "training"
    ENDPOINT = "endpoint"
    MONITORING = "monitoring"


# Where each instance type ends up: the launch template of the enclave Auto Scaling group, and
# the request of each SageMaker job kind (each has its own enum: an endpoint type is not
# necessarily a processing type).
EC2_INSTANCE_TYPE_MEMBER: Final = ApiMember(
    "ec2", "CreateLaunchTemplate", "LaunchTemplateData.InstanceType"
)
SAGEMAKER_INSTANCE_TYPE_MEMBERS: Final[dict[SageMakerJob, ApiMember]] = {
    SageMakerJob.PROCESSING: ApiMember(
        "sagemaker", "CreateProcessingJob", "ProcessingResources.ClusterConfig.InstanceType"
    ),
    SageMakerJob.TRAINING: ApiMember(
        "sagemaker", "CreateTrainingJob", "ResourceConfig.InstanceType"
    ),
    SageMakerJob.ENDPOINT: ApiMember(
        "sagemaker", "CreateEndpointConfig", "ProductionVariants.InstanceType"
    ),
    SageMakerJob.MONITORING: ApiMember(
        "sagemaker",
        "CreateDataQualityJobDefinition",
        "JobResources.ClusterConfig.InstanceType",
    ),
}
EC2_INSTANCE_TYPE_RULE: Final = (
    "an EC2 instance type botocore's model lists (ec2 CreateLaunchTemplate "
    "LaunchTemplateData.InstanceType)"
)
SAGEMAKER_INSTANCE_TYPE_RULE: Final = (
    "an instance type botocore's model lists for the job kind: "
    + "; ".join(
        f"{job} {member.operation} {member.member}"
        for job, member in SAGEMAKER_INSTANCE_TYPE_MEMBERS.items()
    )
)


def ec2_instance_type_problem(value: str) -> str | None:
    """Why EC2 refuses `value` as an instance type, or None."""
    return _enum_problem(value, EC2_INSTANCE_TYPE_MEMBER, "an EC2 instance type")


def sagemaker_instance_type_problem(value: str, *, job: SageMakerJob) -> str | None:
    """Why SageMaker refuses `value` as the instance type of a `job`, or None."""
    member = SAGEMAKER_INSTANCE_TYPE_MEMBERS[job]
    return _enum_problem(value, member, f"a SageMaker {job} instance type")


# --- S3 bucket names ------------------------------------------------------------------------

# Amazon S3's general purpose bucket naming rules (S3_RULES), in the order of
# policies/preflight/names.py's bucket_name_problem, so that one can import these.
S3_BUCKET_NAME: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
S3_BUCKET_LENGTH: Final = (3, 63)
S3_RESERVED_PREFIXES: Final = (
    "xn--",
    "sthree-",
    "amzn-s3-demo-",
)  # sthree- holds sthree-configurator
S3_RESERVED_SUFFIXES: Final = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3", "-an")
S3_SUFFIX_USES: Final[dict[str, str]] = {
    "-s3alias": "access point aliases",
    "--ol-s3": "Object Lambda Access Point aliases",
    ".mrap": "Multi-Region Access Points",
    "--x-s3": "directory buckets",
    "--table-s3": "table buckets",
    # "Bucket names can only end with the suffix -an when you create your bucket in your account
    # regional namespace" (-<account>-<region>-an); the platform's buckets are global.
    "-an": "buckets in an account regional namespace",
}
_IP_ADDRESS_FORM: Final = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")
BUCKET_NAME_RULE: Final = (
    "3-63 lowercase letters, digits, periods and hyphens, beginning and ending with a letter or "
    "digit; no two adjacent periods; not an IP address; not starting with "
    + ", ".join(S3_RESERVED_PREFIXES)
    + " nor ending with "
    + ", ".join(S3_RESERVED_SUFFIXES)
    + " (Amazon S3 general purpose bucket naming rules)"
)


def bucket_name_problem(name: str) -> str | None:
    """The first of S3's general purpose bucket naming rules `name` breaks, or None."""
    broken = _bucket_shape_problem(name) or _bucket_reserved_problem(name)
    if broken is None:
        return None
    return f"{name!r} {broken} (Amazon S3 general purpose bucket naming rules)"


def _bucket_shape_problem(name: str) -> str | None:
    if not S3_BUCKET_NAME.fullmatch(name):
        low, high = S3_BUCKET_LENGTH
        if not low <= len(name) <= high:
            return f"has {len(name)} characters; bucket names have {low}-{high}"
        if re.fullmatch(r"[a-z0-9.-]+", name) is None:
            return (
                "holds a character other than lowercase letters, digits, '.' and '-', all a "
                "bucket name may hold"
            )
        return "must begin and end with a lowercase letter or digit"
    if ".." in name:
        return "has two adjacent periods, which a bucket name must not"
    if _IP_ADDRESS_FORM.fullmatch(name):
        return "is formatted as an IP address, which a bucket name must not be"
    return None


def _bucket_reserved_problem(name: str) -> str | None:
    for prefix in S3_RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"starts with {prefix!r}, a prefix S3 reserves"
    for suffix in S3_RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"ends with {suffix!r}, a suffix S3 reserves for {S3_SUFFIX_USES[suffix]}"
    return None
