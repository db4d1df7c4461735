"""The regions family (policies/preflight/regions.py): the platform's stacks use only what
their regions offer and every rule judged something; an endpoint, resource or template that
its region lacks fails exactly its rule on exactly its resource, and its twin passes; a table
naming a service botocore lacks, or endpoint or registry data that cannot be read, stops the
preflight."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import botocore.loaders
import pytest

from policies.findings import Finding, Status
from policies.preflight import regions
from policies.preflight.base import PreflightSourceError, SynthesizedStacks
from tests.preflight.conftest import mutant

Configuration = dict[str, Any]
KMS_ENDPOINT = "network_interface-endpoint-kms"
PIPELINE = "pipelines_pipeline"


@pytest.fixture(scope="module")
def findings(stacks: SynthesizedStacks) -> list[Finding]:
    return regions.check(stacks)


def failures(findings: list[Finding]) -> list[tuple[str, str, str]]:
    return [(f.check_id, f.stack, f.resource) for f in findings if f.status is Status.FAILED]


def test_the_platforms_stacks_use_only_what_their_regions_offer(findings: list[Finding]) -> None:
    assert [f.detail for f in findings if f.status is Status.FAILED] == []


def test_every_regions_rule_judged_the_platforms_stacks(findings: list[Finding]) -> None:
    passed = Counter(f.check_id for f in findings if f.status is Status.PASSED)
    assert [rule.id for rule in regions.RULES if passed[rule.id] == 0] == []


def test_the_eu_datastore_is_judged_in_eu_west_1_where_healthlake_is(
    findings: list[Finding],
) -> None:
    (datastore,) = [
        f
        for f in findings
        if f.check_id == "PF_REGIONS_CLOUDFORMATION_RESOURCE_TYPE" and f.stack == "eu-research-fhir"
    ]
    assert datastore.detail == "FHIRDatastore AWS::HealthLake::FHIRDatastore in eu-west-1: ok"


def test_every_table_entry_names_a_service_with_endpoint_data() -> None:
    services = {*regions.PRIVATELINK_SERVICES.values(), *regions.RESOURCE_SERVICES.values()}
    assert sorted(s for s in services if regions.offered(s, "us-east-1") is not None) == []


@pytest.mark.parametrize(
    ("service", "region", "expected"),
    [
        ("healthlake", "us-east-1", None),
        ("healthlake", "eu-central-1", "healthlake (healthlake) has no endpoint in eu-central-1"),
        ("iam", "eu-central-1", None),  # global in its partition
        ("cloudwatch", "eu-west-1", None),  # its endpoint data is named monitoring
        ("s3", "eu-centrl-1", "'eu-centrl-1' is a region of no partition"),
        ("s3", "", "its aws provider sets no region"),
    ],
)
def test_offered_reads_the_partition_endpoint_data(
    service: str, region: str, expected: str | None
) -> None:
    found = regions.offered(service, region)
    assert found == expected if expected is None else str(found).startswith(expected)


# --- mutants: one edit of one real stack ----------------------------------------------------


def endpoint(prefix: str, **attributes: str) -> Callable[[Configuration], None]:
    def edit(configuration: Configuration) -> None:
        blocks = configuration["resource"]["aws_vpc_endpoint"]
        blocks[next(n for n in sorted(blocks) if n.startswith(prefix))].update(attributes)

    return edit


def provider_region(region: str) -> Callable[[Configuration], None]:
    def edit(configuration: Configuration) -> None:
        configuration["provider"]["aws"][0]["region"] = region

    return edit


def aliased(region: str) -> Callable[[Configuration], None]:
    """The stack's training pipeline created through a second provider in `region`."""

    def edit(configuration: Configuration) -> None:
        configuration["provider"]["aws"].append({"alias": "elsewhere", "region": region})
        blocks = configuration["resource"]["aws_sagemaker_pipeline"]
        blocks[next(n for n in sorted(blocks) if n.startswith(PIPELINE))]["provider"] = (
            "aws.elsewhere"
        )

    return edit


def unknown_type(configuration: Configuration) -> None:
    configuration["resource"]["aws_bogus_widget"] = {"widget": {"name": "w"}}


ENDPOINT_RULE = "PF_REGIONS_VPC_ENDPOINT_SERVICE"
SERVICE_RULE = "PF_REGIONS_RESOURCE_SERVICE"
TEMPLATE_RULE = "PF_REGIONS_CLOUDFORMATION_RESOURCE_TYPE"
EU_KMS = "com.amazonaws.eu-central-1.kms"


class Refused(NamedTuple):
    stack: str
    edit: Callable[[Configuration], None]
    rule_id: str  # the rule it breaks, on the first block of this type and name prefix:
    resource_type: str
    prefix: str


REFUSED: dict[str, Refused] = {
    "healthlake endpoint in eu-central-1": Refused(
        "eu-research-network",
        endpoint(KMS_ENDPOINT, service_name="com.amazonaws.eu-central-1.healthlake"),
        ENDPOINT_RULE,
        "aws_vpc_endpoint",
        KMS_ENDPOINT,
    ),
    "unknown endpoint service": Refused(
        "dev-network",
        endpoint(KMS_ENDPOINT, service_name="com.amazonaws.us-east-1.sagemaker.notebooks"),
        ENDPOINT_RULE,
        "aws_vpc_endpoint",
        KMS_ENDPOINT,
    ),
    "endpoint service of another region": Refused(
        "dev-network",
        endpoint(KMS_ENDPOINT, service_name="com.amazonaws.us-west-2.kms"),
        ENDPOINT_RULE,
        "aws_vpc_endpoint",
        KMS_ENDPOINT,
    ),
    "endpoint service name of another form": Refused(
        "dev-network",
        endpoint(KMS_ENDPOINT, service_name="aws.sagemaker.us-east-1.notebook"),
        ENDPOINT_RULE,
        "aws_vpc_endpoint",
        KMS_ENDPOINT,
    ),
    "healthlake datastore in eu-central-1": Refused(
        "eu-research-fhir",
        provider_region("eu-central-1"),
        TEMPLATE_RULE,
        "aws_cloudformation_stack",
        "",
    ),
    "pipeline through a provider where sagemaker is not": Refused(
        "dev-ml",
        aliased("mx-central-1"),
        SERVICE_RULE,
        "aws_sagemaker_pipeline",
        PIPELINE,
    ),
    "resource type the table does not know": Refused(
        "dev-ml",
        unknown_type,
        SERVICE_RULE,
        "aws_bogus_widget",
        "",
    ),
}
ACCEPTED: dict[str, tuple[str, Callable[[Configuration], None]]] = {
    "kms endpoint in eu-central-1": ("eu-research-network", endpoint(KMS_ENDPOINT)),
    "healthlake endpoint in us-east-1": (
        "dev-network",
        endpoint(KMS_ENDPOINT, service_name="com.amazonaws.us-east-1.healthlake"),
    ),
    "cross-region endpoint naming its service_region": (
        "dev-network",
        endpoint(KMS_ENDPOINT, service_name=EU_KMS, service_region="eu-central-1"),
    ),
    "healthlake datastore in eu-west-2": ("eu-research-fhir", provider_region("eu-west-2")),
    "pipeline through a provider in eu-central-1": ("dev-ml", aliased("eu-central-1")),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_what_the_region_lacks_fails_its_rule_on_its_resource(
    synthesized: Path, tmp_path: Path, case: Refused
) -> None:
    edited = mutant(synthesized, tmp_path, case.stack, case.edit)
    blocks = next(s for s in edited.stacks if s.name == case.stack).configuration["resource"]
    name = next(n for n in sorted(blocks[case.resource_type]) if n.startswith(case.prefix))
    found = regions.check(edited)
    assert failures(found) == [(case.rule_id, case.stack, f"{case.resource_type}.{name}")]
    assert "[source: " in next(f.detail for f in found if f.status is Status.FAILED)


@pytest.mark.parametrize(("stack", "edit"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_its_twin_the_region_offers_passes(
    synthesized: Path, tmp_path: Path, stack: str, edit: Callable[[Configuration], None]
) -> None:
    assert failures(regions.check(mutant(synthesized, tmp_path, stack, edit))) == []


# --- the sources ----------------------------------------------------------------------------


def test_a_table_naming_a_service_botocore_lacks_is_a_source_error(
    stacks: SynthesizedStacks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(regions.RESOURCE_SERVICES, "aws_sqs_", "simple-queues")
    with pytest.raises(PreflightSourceError, match="no service model 'simple-queues'"):
        regions.check(stacks)


@pytest.fixture
def uncached() -> Any:
    regions.endpoint_data.cache_clear()
    regions._registry.cache_clear()
    yield
    regions.endpoint_data.cache_clear()
    regions._registry.cache_clear()


def test_endpoint_data_without_partitions_is_a_source_error(
    stacks: SynthesizedStacks, monkeypatch: pytest.MonkeyPatch, uncached: None
) -> None:
    real = botocore.loaders.Loader.load_data

    def load_data(self: botocore.loaders.Loader, name: str) -> Any:
        return {"version": 3} if name == "endpoints" else real(self, name)

    monkeypatch.setattr(botocore.loaders.Loader, "load_data", load_data)
    with pytest.raises(PreflightSourceError, match=r"endpoints\.json"):
        regions.check(stacks)


def test_an_unreadable_registry_is_a_source_error(
    stacks: SynthesizedStacks, monkeypatch: pytest.MonkeyPatch, uncached: None
) -> None:
    monkeypatch.setattr(regions, "REGISTRY_FOLDER", ("cfnlint", "no_such_data"))
    with pytest.raises(PreflightSourceError, match="registry"):
        regions.check(stacks)
