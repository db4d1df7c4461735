"""requirements.aws_values: each rule refuses what AWS or the registries refuse and accepts its
twin across the boundary; the restated limits still agree with botocore's models."""

from __future__ import annotations

import ipaddress
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import regex  # type: ignore[import-untyped]  # botocore's patterns use \p{L}, as Java does
import yaml

from policies.preflight import names
from requirements import aws_values
from requirements.aws_values import (
    AMAZON_SIDE_ASN_RANGES,
    DOCUMENTATION_IPV4,
    SPECIAL_PURPOSE_IPV4,
    ApiMember,
    SageMakerJob,
    ServiceModelError,
    amazon_side_asn_problem,
    bgp_asn_problem,
    bucket_name_problem,
    ec2_instance_type_problem,
    member_documentation,
    member_enum,
    member_shape,
    public_peer_problem,
    sagemaker_instance_type_problem,
    tag_key_problem,
    tag_value_problem,
)

ENVIRONMENTS = Path(__file__).resolve().parent.parent / "environments"


def assert_sentence(problem: str | None, *fragments: str) -> None:
    """A problem is one sentence: lower-case start, no trailing period, naming its rule."""
    assert problem is not None
    assert not problem[0].isupper(), problem
    assert not problem.endswith("."), problem
    assert "\n" not in problem
    for fragment in fragments:
        assert fragment in problem, (fragment, problem)


def shipped_environments() -> list[dict[str, Any]]:
    return [
        yaml.safe_load(path.read_text()) for path in sorted(ENVIRONMENTS.glob("*/environment.yaml"))
    ]


# --- BGP ASNs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asn", "region", "source"),
    [
        (0, "us-east-1", "RFC 7607"),
        (23456, "us-east-1", "RFC 6793"),
        (64496, "us-east-1", "RFC 5398"),
        (64511, "us-east-1", "RFC 5398"),
        (65535, "us-east-1", "RFC 7300"),
        (65536, "us-east-1", "RFC 5398"),
        (65551, "us-east-1", "RFC 5398"),
        (65552, "us-east-1", "IANA"),
        (131071, "us-east-1", "IANA"),
        (4294967295, "us-east-1", "RFC 7300"),
        (-1, "us-east-1", "CreateCustomerGateway"),
        (2147483648, "us-east-1", "CreateCustomerGateway"),
        (4200000000, "us-east-1", "CreateCustomerGateway"),  # private, but BgpAsnExtended's
        (7224, "us-east-1", "Site-to-Site VPN"),
        (7224, "eu-central-1", "all Regions"),
        (9059, "eu-west-1", "eu-west-1"),
        (10124, "ap-northeast-1", "ap-northeast-1"),
        (17943, "ap-southeast-1", "ap-southeast-1"),
    ],
)
def test_customer_gateway_asn_refused(asn: int, region: str, source: str) -> None:
    assert_sentence(bgp_asn_problem(asn, region=region), str(asn), source)


@pytest.mark.parametrize(
    ("asn", "region"),
    [
        (1, "us-east-1"),
        (23455, "us-east-1"),
        (23457, "us-east-1"),
        (64495, "us-east-1"),
        (64512, "us-east-1"),  # private use, RFC 6996
        (65534, "us-east-1"),
        (131072, "us-east-1"),
        (2147483647, "us-east-1"),
        (9059, "us-east-1"),  # AWS reserves it in eu-west-1 only
        (10124, "eu-west-1"),
        (17943, "ap-northeast-1"),
        (7225, "us-east-1"),
    ],
)
def test_customer_gateway_asn_accepted(asn: int, region: str) -> None:
    assert bgp_asn_problem(asn, region=region) is None


def test_as_trans_problem_reads_as_the_rule_and_its_source() -> None:
    assert bgp_asn_problem(23456, region="us-east-1") == (
        "23456 is AS_TRANS, reserved by RFC 6793: a BGP speaker cannot use it"
    )
    assert bgp_asn_problem(64500, region="us-east-1") == (
        "64500 is in 64496-64511, reserved for documentation by RFC 5398, not for a real network"
    )


@pytest.mark.parametrize("asn", [64511, 65535, 1, 4199999999, 4294967295, 0, 7224])
def test_amazon_side_asn_refused(asn: int) -> None:
    assert_sentence(amazon_side_asn_problem(asn), str(asn), "CreateVpnGateway AmazonSideAsn")


@pytest.mark.parametrize("asn", [64512, 65534, 64600, 4200000000, 4294967294])
def test_amazon_side_asn_accepted(asn: int) -> None:
    assert amazon_side_asn_problem(asn) is None


def test_asn_ranges_are_those_the_ec2_model_documents() -> None:
    """A reworded AWS range (in botocore's documentation of the members) fails here."""
    amazon_side = member_documentation(ApiMember("ec2", "CreateVpnGateway", "AmazonSideAsn"))
    for first, last in AMAZON_SIDE_ASN_RANGES:
        assert f"{first} to {last}" in amazon_side
    direct_connect = member_documentation(
        ApiMember("directconnect", "CreateDirectConnectGateway", "amazonSideAsn")
    )
    for first, last in AMAZON_SIDE_ASN_RANGES:
        assert f"{first:,} to {last:,}" in direct_connect
    low, high = aws_values.CUSTOMER_GATEWAY_ASN_RANGE
    bgp_asn = member_documentation(ApiMember("ec2", "CreateCustomerGateway", "BgpAsn"))
    assert f"Valid values: {low} to {high:,}" in bgp_asn


def test_shipped_environments_asns_pass() -> None:
    checked = 0
    for environment in shipped_environments():
        vpn = (environment.get("ingest") or {}).get("vpn")
        if vpn:
            assert bgp_asn_problem(vpn["bgp_asn"], region=environment["region"]) is None
            assert amazon_side_asn_problem(vpn.get("amazon_side_asn", 64512)) is None
            checked += 1
    assert checked >= 4


# --- IPv4 special-purpose ranges ------------------------------------------------------------


def test_registry_networks_parse_with_host_bits_zero() -> None:
    for entry in SPECIAL_PURPOSE_IPV4:
        network = ipaddress.IPv4Network(entry.network, strict=True)  # raises on host bits
        assert str(network) == entry.network
        assert entry.rfc.startswith("RFC "), entry


def test_registry_has_no_duplicate_or_partially_overlapping_entries() -> None:
    networks = [ipaddress.IPv4Network(entry.network) for entry in SPECIAL_PURPOSE_IPV4]
    assert len(set(networks)) == len(networks)
    for index, network in enumerate(networks):
        for other in networks[index + 1 :]:
            if network.overlaps(other):
                # Nested (the registry's more specific reservations), never the same block.
                assert network.prefixlen != other.prefixlen, (network, other)
                assert network.subnet_of(other) or other.subnet_of(network)


def test_registry_holds_every_block_the_platform_relies_on() -> None:
    held = {entry.network: entry for entry in SPECIAL_PURPOSE_IPV4}
    expected = {
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.0.0/29", "192.0.0.8/32", "192.0.0.9/32",
        "192.0.0.10/32", "192.0.0.170/32", "192.0.0.171/32", "192.0.2.0/24", "192.31.196.0/24",
        "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
        "255.255.255.255/32", "224.0.0.0/4",
    }  # fmt: skip
    assert expected <= set(held)
    reachable = {network for network, entry in held.items() if entry.globally_reachable}
    assert reachable == {
        "192.0.0.9/32", "192.0.0.10/32", "192.31.196.0/24", "192.52.193.0/24", "192.175.48.0/24",
    }  # fmt: skip
    assert {entry.network for entry in DOCUMENTATION_IPV4} == {
        "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
    }  # fmt: skip
    assert {entry.rfc for entry in DOCUMENTATION_IPV4} == {"RFC 5737"}


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("100.64.0.1", "100.64.0.0/10 (Shared Address Space, RFC 6598)"),
        ("100.127.255.255", "RFC 6598"),
        ("10.1.2.3", "RFC 1918"),
        ("172.16.0.1", "RFC 1918"),
        ("172.31.255.255", "RFC 1918"),
        ("192.168.0.0", "RFC 1918"),
        ("127.0.0.1", "Loopback"),
        ("169.254.169.254", "Link Local"),
        ("0.0.0.0", "0.0.0.0/32"),  # noqa: S104  # an address judged, not bound
        ("0.1.2.3", "0.0.0.0/8"),
        ("192.0.0.1", "192.0.0.0/29"),
        ("192.0.0.8", "IPv4 dummy address"),
        ("192.0.0.11", "192.0.0.0/24 (IETF Protocol Assignments"),  # no more specific entry
        ("192.0.0.170", "NAT64/DNS64 Discovery"),
        ("192.88.99.1", "192.88.99.0/24 (Deprecated (6to4 Relay Anycast), RFC 7526)"),
        ("192.88.99.2", "6a44-relay"),
        ("198.18.0.0", "Benchmarking"),
        ("198.19.255.255", "Benchmarking"),
        ("224.0.0.1", "Multicast, RFC 5771"),
        ("239.255.255.255", "Multicast"),
        ("240.0.0.1", "Reserved"),
        ("255.255.255.255", "Limited Broadcast"),
    ],
)
def test_not_globally_reachable_peers_refused(address: str, fragment: str) -> None:
    for allow_documentation in (False, True):
        problem = public_peer_problem(address, allow_documentation=allow_documentation)
        assert_sentence(problem, address, fragment, "not a reachable internet address")


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.167.255.255",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
        "192.0.1.255",
        # Globally reachable as the registry states it (anycast services, AS112, AMT).
        "192.0.0.9",
        "192.0.0.10",
        "192.31.196.1",
        "192.52.193.254",
        "192.175.48.6",
    ],
)
def test_globally_reachable_peers_accepted(address: str) -> None:
    assert public_peer_problem(address, allow_documentation=False) is None


@pytest.mark.parametrize("address", ["203.0.113.10", "198.51.100.40", "192.0.2.1"])
def test_documentation_peers_only_where_placeholders_are_allowed(address: str) -> None:
    assert_sentence(public_peer_problem(address, allow_documentation=False), "RFC 5737")
    assert public_peer_problem(address, allow_documentation=True) is None


def test_documentation_peer_problem_names_range_and_rfc() -> None:
    assert public_peer_problem("203.0.113.10", allow_documentation=False) == (
        "203.0.113.10 is in 203.0.113.0/24 (Documentation (TEST-NET-3), RFC 5737): "
        "not a reachable internet address"
    )


@pytest.mark.parametrize(
    "address", ["", "peer.example.org", "1.2.3", "1.2.3.4.5", "256.1.1.1", "203.0.113.010", "::1"]
)
def test_non_ipv4_peers_refused(address: str) -> None:
    assert_sentence(public_peer_problem(address, allow_documentation=True), "not an IPv4 address")


def test_shipped_environments_peers_are_documentation_placeholders() -> None:
    peers = [
        environment["ingest"]["vpn"]["peer_ip"]
        for environment in shipped_environments()
        if (environment.get("ingest") or {}).get("vpn")
    ]
    assert peers
    for peer in peers:
        assert public_peer_problem(peer, allow_documentation=True) is None
        assert public_peer_problem(peer, allow_documentation=False) is not None


# --- tags -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "cannot be empty"),
        ("k" * 129, "129 characters"),
        ("aws:owner", "aws:"),
        ("AWS:owner", "'AWS:'"),
        ("Aws:owner", "'Aws:'"),
        ("cost!center", "'!'"),
        ("cost,center", "','"),
        ("tab\there", "U+0009"),
        ("line\nbreak", "U+000A"),
        ("emoji\U0001f600", "U+1F600"),
    ],
)
def test_tag_key_refused(key: str, fragment: str) -> None:
    assert_sentence(tag_key_problem(key), fragment)


@pytest.mark.parametrize(
    "key",
    [
        "k",
        "k" * 128,
        "owner",
        "compliance-scope",
        "Cost Center",
        "team:data/ml=x+y-z@site_1.2",
        "awsome",
        "x-aws:y",
        "aws",
        "Ärzte",
        "診療科",
        "٣",  # Arabic-Indic digit three: a Unicode number
    ],
)
def test_tag_key_accepted(key: str) -> None:
    assert tag_key_problem(key) is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("v" * 257, "257 characters"),
        ("aws:managed", "aws:"),
        ("HIPAA, GDPR", "','"),
        ("quote'", '"\'"'),
    ],
)
def test_tag_value_refused(value: str, fragment: str) -> None:
    assert_sentence(tag_value_problem(value), fragment)


@pytest.mark.parametrize("value", ["", "v" * 256, "HIPAA+GDPR+EHDS", "phi", "Clinical AI"])
def test_tag_value_accepted(value: str) -> None:
    assert tag_value_problem(value) is None


def test_tag_rules_agree_with_botocore() -> None:
    """The restated lengths and character classes are those of the tag shapes botocore ships,
    judged character by character over the Basic Multilingual Plane with the model's own
    pattern (the regex module reads \\p{L} as Java does)."""
    for service, shape_name in (("ecs", "Tag"), ("sagemaker", "Tag"), ("iam", "Tag")):
        members = aws_values.service_model(service).shape_for(shape_name).members
        key, value = (members[name] for name in members)
        assert (key.metadata["min"], key.metadata["max"]) == aws_values.TAG_KEY_LENGTH
        assert (value.metadata["min"], value.metadata["max"]) == aws_values.TAG_VALUE_LENGTH
    pattern = aws_values.service_model("iam").shape_for("tagValueType").metadata["pattern"]
    model = regex.compile(pattern)
    unassigned = regex.compile(r"\p{Cn}")
    compared = 0
    for code_point in range(0x10000):
        character = chr(code_point)
        if 0xD800 <= code_point <= 0xDFFF:
            continue  # surrogates: no Python string of text holds one alone
        if unassigned.fullmatch(character) or unicodedata.category(character) == "Cn":
            continue  # one of the two Unicode databases may not know it yet
        ours = tag_value_problem(character) is None
        theirs = model.fullmatch(character) is not None
        assert ours == theirs, f"U+{code_point:04X}: ours {ours}, botocore's pattern {theirs}"
        compared += 1
    assert compared > 50000
    ecs_doc = aws_values.service_model("ecs").shape_for("Tag").documentation
    assert "Do not use <code>aws:</code>" in ecs_doc or "Do not use aws:" in ecs_doc


# --- instance types -------------------------------------------------------------------------


@pytest.mark.parametrize("job", list(SageMakerJob))
def test_sagemaker_instance_type_accepted_for_every_job(job: SageMakerJob) -> None:
    assert sagemaker_instance_type_problem("ml.m5.xlarge", job=job) is None


JOB_MEMBERS = {
    SageMakerJob.PROCESSING: "CreateProcessingJob ProcessingResources.ClusterConfig.InstanceType",
    SageMakerJob.TRAINING: "CreateTrainingJob ResourceConfig.InstanceType",
    SageMakerJob.ENDPOINT: "CreateEndpointConfig ProductionVariants.InstanceType",
    SageMakerJob.MONITORING: (
        "CreateDataQualityJobDefinition JobResources.ClusterConfig.InstanceType"
    ),
}


@pytest.mark.parametrize("job", list(SageMakerJob))
def test_sagemaker_instance_type_typo_refused_with_suggestion(job: SageMakerJob) -> None:
    assert_sentence(
        sagemaker_instance_type_problem("ml.m5.xlarg", job=job),
        f"'ml.m5.xlarg' is not a SageMaker {job} instance type (botocore ",
        f"sagemaker {JOB_MEMBERS[job]}): did you mean 'ml.m5.xlarge'?",
    )


def test_sagemaker_instance_types_are_per_job() -> None:
    """Graviton serving types are endpoint types, not processing ones: each job has its enum."""
    assert sagemaker_instance_type_problem("ml.c7g.xlarge", job=SageMakerJob.ENDPOINT) is None
    assert_sentence(
        sagemaker_instance_type_problem("ml.c7g.xlarge", job=SageMakerJob.PROCESSING),
        "CreateProcessingJob ProcessingResources.ClusterConfig.InstanceType",
    )
    # A network-optimised training type that Processing does not offer.
    assert sagemaker_instance_type_problem("ml.c5n.xlarge", job=SageMakerJob.TRAINING) is None
    assert_sentence(
        sagemaker_instance_type_problem("ml.c5n.xlarge", job=SageMakerJob.PROCESSING),
        "'ml.c5n.xlarge' is not a SageMaker processing instance type",
    )


def test_ec2_instance_type() -> None:
    assert ec2_instance_type_problem("c7g.xlarge") is None
    assert_sentence(
        ec2_instance_type_problem("c7g.xlarge2"),
        "'c7g.xlarge2' is not an EC2 instance type",
        "ec2 CreateLaunchTemplate LaunchTemplateData.InstanceType",
        "did you mean 'c7g.xlarge'?",
    )
    assert_sentence(ec2_instance_type_problem("zzzzzz"), "none of its", "values is close")


def test_model_walk_refuses_what_botocore_lacks() -> None:
    with pytest.raises(ServiceModelError, match="no input member 'Nope'"):
        member_shape(ApiMember("sagemaker", "CreateProcessingJob", "ProcessingResources.Nope"))
    with pytest.raises(ServiceModelError, match="no such operation"):
        member_shape(ApiMember("sagemaker", "CreateNothing", "InstanceType"))
    with pytest.raises(ServiceModelError, match="no service model"):
        member_shape(ApiMember("no-such-service", "CreateNothing", "InstanceType"))
    with pytest.raises(ServiceModelError, match="no enum"):
        member_enum(ApiMember("sagemaker", "CreateProcessingJob", "ProcessingJobName"))


def test_shipped_environments_instance_types_pass() -> None:
    checked = 0
    for environment in shipped_environments():
        ml = environment.get("ml") or {}
        if not ml:
            continue
        pipeline, inference = ml["pipeline"], ml["inference"]
        judged = [
            sagemaker_instance_type_problem(
                pipeline["processing_instance_type"], job=SageMakerJob.PROCESSING
            ),
            sagemaker_instance_type_problem(
                pipeline["training_instance_type"], job=SageMakerJob.TRAINING
            ),
            sagemaker_instance_type_problem(
                inference["endpoint_instance_type"], job=SageMakerJob.ENDPOINT
            ),
            sagemaker_instance_type_problem(
                ml["monitoring"]["instance_type"], job=SageMakerJob.MONITORING
            ),
            ec2_instance_type_problem(inference["enclave"]["instance_type"]),
        ]
        assert judged == [None] * len(judged)
        checked += 1
    assert checked >= 4


# --- S3 bucket names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("ab", "2 characters"),
        ("a" * 64, "64 characters"),
        ("Abc", "character other than"),
        ("a_b", "character other than"),
        ("-abc", "begin and end"),
        ("abc-", "begin and end"),
        ("abc.", "begin and end"),
        ("a..b", "two adjacent periods"),
        ("192.168.5.4", "IP address"),
        ("xn--abc", "'xn--'"),
        ("sthree-abc", "'sthree-'"),
        ("sthree-configurator-abc", "'sthree-'"),
        ("amzn-s3-demo-abc", "'amzn-s3-demo-'"),
        ("abc-s3alias", "access point aliases"),
        ("abc--ol-s3", "Object Lambda"),
        ("abc.mrap", "Multi-Region"),
        ("abc--x-s3", "directory buckets"),
        ("abc--table-s3", "table buckets"),
        ("abc-111122223333-us-east-1-an", "account regional namespace"),
    ],
)
def test_bucket_name_refused(name: str, fragment: str) -> None:
    assert_sentence(bucket_name_problem(name), repr(name), fragment, "naming rules")


@pytest.mark.parametrize(
    "name",
    [
        "abc",
        "a" * 63,
        "acme-phi-dev-raw",
        "a.b",
        "a-b.c",
        "192.168.5.4a",
        "xn-abc",
        "sthree",
        "amzn-s3-demo",
        "abc-s3alia",
        "abc-ol-s3",
        "abc-mrap",
        "abc-x-s3",
        "abc-table-s3",
        "abc-and",
        "abcan",
    ],
)
def test_bucket_name_accepted(name: str) -> None:
    assert bucket_name_problem(name) is None


def test_the_preflight_judges_bucket_names_by_these_rules() -> None:
    """One definition: the preflight's names family judges synthesized buckets with this very
    function, so the loader and the preflight cannot disagree about a name."""
    assert names.S3_JUDGE.problem is bucket_name_problem
    assert set(aws_values.S3_SUFFIX_USES) == set(aws_values.S3_RESERVED_SUFFIXES)


# --- reference sentences --------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        aws_values.BGP_ASN_RULE,
        aws_values.AMAZON_SIDE_ASN_RULE,
        aws_values.PUBLIC_PEER_RULE,
        aws_values.TAG_KEY_RULE,
        aws_values.TAG_VALUE_RULE,
        aws_values.EC2_INSTANCE_TYPE_RULE,
        aws_values.SAGEMAKER_INSTANCE_TYPE_RULE,
        aws_values.BUCKET_NAME_RULE,
    ],
)
def test_rule_sentences_read_as_one_clause(rule: str) -> None:
    assert_sentence(rule)


def test_bgp_asn_rule_names_every_reservation() -> None:
    for block in aws_values.RESERVED_ASNS:
        assert str(block.first) in aws_values.BGP_ASN_RULE
    for asn, region in aws_values.AWS_RESERVED_CUSTOMER_GATEWAY_ASNS.items():
        assert str(asn) in aws_values.BGP_ASN_RULE
        assert region is None or region in aws_values.BGP_ASN_RULE
