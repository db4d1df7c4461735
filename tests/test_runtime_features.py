"""The feature-record checks (policies/runtime/features.py): processing basis and consent opt-out,
against a tiny offline store and export written by hand into moto (tests/feature_data.py).

Every pass has a failing twin: an opted-out patient's record, a record under another basis, an
account where nothing was written. No finding may carry a patient identifier.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from environments.loader import load_environments
from environments.schema import OrganizationEnvironment, WorkloadEnvironment
from policies.catalog import load_catalog
from policies.findings import Finding, Findings, Status
from policies.runtime import CHECKS, ReadOnlyViolation, run_checks
from policies.runtime import features as feature_checks
from policies.runtime.clients import ClientFactory
from policies.runtime.expected import ExpectedResources, expected_resources
from policies.runtime.features import denies_secondary_use, opted_out_patients
from policies.runtime.guard import CONTENT_READS
from policies.runtime.model import CheckContext
from tests import feature_data as data
from tests.feature_data import consent, nested_deny, stay, vitals, write_export, write_records
from tools.emulator import running_emulator

ENVIRONMENTS = {e.name: e for e in load_environments()}
_organization = ENVIRONMENTS["org"]
assert isinstance(_organization, OrganizationEnvironment)
ORG: OrganizationEnvironment = _organization
CATALOG = load_catalog()
BASIS = "RT_PHI_FEATURES_PROCESSING_BASIS"
OPT_OUT = "RT_PHI_FEATURES_CONSENT_OPT_OUT"
DEV_BASIS = "hipaa-de-identified:synthetic-population"
VITALS, STAYS = "patient-vitals", "encounters"
# p-out denies research; p-in permits it; p-treat denies treatment only (not secondary use).
PATIENTS = ("p-in", "p-treat", "p-quiet")
OPTED_OUT = "p-out"
CONSENTS = (
    consent(OPTED_OUT, "deny", ("HRESCH",)),
    consent("p-in", "permit", ("HRESCH",)),
    consent("p-treat", "deny", ("TREAT",)),
)


def expected_for(name: str) -> ExpectedResources:
    environment = ENVIRONMENTS[name]
    assert isinstance(environment, WorkloadEnvironment)
    return expected_resources(environment, ORG)


# --- a dev account with its feature groups, in moto ------------------------------------------


class Account:
    """dev's raw and offline buckets and its two feature groups, as DescribeFeatureGroup shows
    them; the records and the export are each test's to write."""

    def __init__(self, session: boto3.Session, expected: ExpectedResources) -> None:
        self.expected = expected
        self.session = session
        assert expected.feature_data is not None
        self.export = expected.feature_data
        self.s3 = self.client("s3")
        self.sagemaker = self.client("sagemaker")

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.expected.region)

    def create(self, *, online: bool = True) -> Account:
        for bucket in ("acme-phi-dev-raw", "acme-phi-dev-feature-offline"):
            self.s3.create_bucket(Bucket=bucket)
        for group, identifier in ((VITALS, "patient_id"), (STAYS, "encounter_id")):
            self.sagemaker.create_feature_group(
                FeatureGroupName=group,
                RecordIdentifierFeatureName=identifier,
                EventTimeFeatureName="event_time",
                FeatureDefinitions=[
                    {"FeatureName": identifier, "FeatureType": "String"},
                    {"FeatureName": "event_time", "FeatureType": "String"},
                    {"FeatureName": "processing_basis", "FeatureType": "String"},
                ],
                OnlineStoreConfig={"EnableOnlineStore": online},
                OfflineStoreConfig={
                    "S3StorageConfig": {
                        "S3Uri": f"s3://acme-phi-dev-feature-offline/feature-store/{group}"
                    },
                    "DisableGlueTableCreation": True,
                },
                RoleArn=f"arn:aws:iam::{self.expected.account_id}:role/phi-ml-dev-feature-store",
            )
        return self

    def consents(self, *consents: dict[str, Any]) -> None:
        write_export(self.s3, self.export.export_bucket, self.export.export_prefix, consents)

    def records(self, group: str, rows: list[dict[str, Any]], **where: Any) -> str:
        return write_records(self.s3, self.sagemaker, group, rows, **where)

    def flowed(self, *, basis: str = DEV_BASIS) -> Account:
        """What a correct run of the flow leaves: every patient but the opted-out one."""
        self.consents(*CONSENTS)
        self.records(VITALS, [vitals(p, basis) for p in PATIENTS])
        self.records(STAYS, [stay(f"e-{p}", p, basis) for p in PATIENTS])
        return self

    def arn(self, group: str) -> str:
        return f"arn:aws:sagemaker:us-east-1:111111111111:feature-group/{group}"

    def check(self, *ids: str, endpoint_url: str | None = None) -> Findings:
        clients = ClientFactory(self.session, self.expected.region, endpoint_url, emulated=True)
        return run_checks(self.expected, clients, catalog=CATALOG, only=ids or {BASIS, OPT_OUT})


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    for name in [n for n in os.environ if n.startswith("AWS_") or n.startswith("MOTO_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    expected = expected_for("dev")
    monkeypatch.setenv("MOTO_ACCOUNT_ID", expected.account_id)
    with mock_aws():
        yield Account(boto3.Session(region_name=expected.region), expected).create()


def of(findings: Findings, check_id: str) -> dict[str, Finding]:
    return {f.resource: f for f in findings.findings if f.check_id == check_id}


def no_identifiers(findings: Findings) -> None:
    """Reports carry counts, never a patient (or encounter) identifier."""
    for finding in findings.findings:
        for identifier in (OPTED_OUT, *PATIENTS):
            assert identifier not in finding.detail, (finding.check_id, finding.detail)
            assert identifier not in finding.resource


# --- what the environment file says the records must show --------------------------------------


@pytest.mark.parametrize(
    ("environment", "label"),
    [
        ("dev", "hipaa-de-identified:synthetic-population"),
        ("prod", "hipaa-research-waiver:IRB-2026-0142"),
        ("eu-research", "ehds-data-permit:HDAB-DE-2026-0042"),
    ],
)
def test_the_expected_basis_is_the_environment_files_kind_and_reference(
    environment: str, label: str
) -> None:
    expected = expected_for(environment).feature_data
    assert expected is not None
    assert expected.processing_basis == label
    assert expected.export_prefix == "fhir-export/"
    assert expected.export_bucket.endswith("-raw")
    # Only the group whose record identifier is the patient has one online record per patient.
    assert expected.patient_keyed_groups == (VITALS,)


def test_an_environment_without_reference_expects_the_kind_alone() -> None:
    dev = ENVIRONMENTS["dev"]
    assert isinstance(dev, WorkloadEnvironment)
    features = dev.ml.features.model_copy(
        update={
            "processing_basis": dev.ml.features.processing_basis.model_copy(
                update={"reference": None}
            )
        }
    )
    unreferenced = dev.model_copy(update={"ml": dev.ml.model_copy(update={"features": features})})
    found = expected_resources(unreferenced, ORG).feature_data
    assert found is not None and found.processing_basis == "hipaa-de-identified"


def test_the_organization_has_no_feature_data_to_check() -> None:
    assert expected_resources(ORG, ORG).feature_data is None
    assert all(check.workload_only for check in feature_checks.CHECKS)


# --- the opt-out rule, restated from FHIR Consent and v3-ActReason ------------------------------


@pytest.mark.parametrize(
    ("consents", "opted_out"),
    [
        # A deny naming a secondary-use purpose, or none (every purpose), opts out ...
        ([consent("a", "deny", ("HRESCH",))], {"a"}),
        ([consent("a", "deny", ("PUBHLTH", "TREAT"))], {"a"}),
        ([consent("a", "deny", ())], {"a"}),
        # ... a deny of treatment only, or a permit, does not.
        ([consent("a", "deny", ("TREAT",))], set()),
        ([consent("a", "permit", ("HRESCH",))], set()),
        # A nested deny covering secondary use opts out, at any depth; one of treatment not.
        ([consent("a", "permit", ("HRESCH",), nested=[nested_deny("CLINTRCH")])], {"a"}),
        (
            [consent("a", "permit", (), nested=[{"type": "permit", "provision": [nested_deny()]}])],
            {"a"},
        ),
        ([consent("a", "permit", ("HRESCH",), nested=[nested_deny("TREAT")])], set()),
        # The latest active Consent decides; at the same time the deny wins.
        (
            [
                consent("a", "deny", when="2026-01-01T00:00:00Z"),
                consent("a", "permit", when="2026-02-01T00:00:00+01:00"),
            ],
            set(),
        ),
        (
            [
                consent("a", "permit", when="2026-01-01T00:00:00Z"),
                consent("a", "deny", when="2026-02-01"),
            ],
            {"a"},
        ),
        (
            [
                consent("a", "permit", when="2026-01-01T00:00:00Z"),
                consent("a", "deny", when="2026-01-01T01:00:00+01:00"),
            ],
            {"a"},
        ),
        # Only active Consents count, and only those that name a moment.
        ([consent("a", "deny", status="inactive")], set()),
        ([consent("a", "deny", status="active")], {"a"}),
        ([consent("a", "deny", when="2026")], set()),
        ([consent("a", "deny", when="2026-01-01T00:00:00")], set()),
    ],
)
def test_who_opted_out(consents: list[dict[str, Any]], opted_out: set[str]) -> None:
    assert opted_out_patients(consents) == opted_out


def test_a_versioned_or_absolute_patient_reference_is_the_same_patient() -> None:
    versioned = consent("a")
    versioned["patient"] = {"reference": "https://fhir.example/r4/Patient/a/_history/3"}
    assert opted_out_patients([versioned]) == {"a"}
    elsewhere = consent("a")
    elsewhere["patient"] = {"reference": "Group/a"}
    assert opted_out_patients([elsewhere]) == set()


def test_a_provision_that_is_not_an_object_denies_nothing() -> None:
    assert not denies_secondary_use(None)
    assert not denies_secondary_use(["deny"])
    assert denies_secondary_use({"type": "deny"})


# --- the checks on a correct flow, and each failing twin ----------------------------------------


def test_records_of_a_correct_flow_pass_both_checks(account: Account) -> None:
    findings = account.flowed().check()
    no_identifiers(findings)
    basis = of(findings, BASIS)
    assert {r: f.status for r, f in basis.items()} == {
        account.arn(VITALS): Status.PASSED,
        account.arn(STAYS): Status.PASSED,
    }
    assert "all 3 records in 1 objects under s3://acme-phi-dev-feature-offline/" in (
        basis[account.arn(VITALS)].detail
    )
    assert repr(DEV_BASIS) in basis[account.arn(VITALS)].detail
    opt_out = of(findings, OPT_OUT)
    export = opt_out["s3://acme-phi-dev-raw/fhir-export/"]
    assert export.status is Status.PASSED
    assert "3 Consent resources (3 active); 1 patients opted out" in export.detail
    stays = opt_out[account.arn(STAYS)]
    assert stays.status is Status.PASSED
    assert "none of the 3 records in 1 objects belongs to any of the 1 opted-out" in stays.detail
    # In-process moto has no GetRecord: the patient-keyed group's online store is not judged,
    # and that is never a pass.
    vitals_online = opt_out[account.arn(VITALS)]
    assert vitals_online.status is Status.NOT_EMULATED
    assert "does not implement GetRecord" in vitals_online.detail
    assert all(f.controls for f in findings.findings)
    assert set(basis[account.arn(VITALS)].controls) == {"EHDS-68", "GDPR-25"}
    assert set(export.controls) == {"EHDS-71", "GDPR-25"}


@pytest.mark.parametrize("group", [VITALS, STAYS])
def test_an_opted_out_patients_record_fails_the_group_that_holds_it(
    account: Account, group: str
) -> None:
    account.flowed()
    row = vitals(OPTED_OUT, DEV_BASIS) if group == VITALS else stay("e-x", OPTED_OUT, DEV_BASIS)
    account.records(group, [row], hour=13, name="20260630T130000Z_fedcba9876543210")
    findings = account.check(OPT_OUT)
    no_identifiers(findings)
    found = of(findings, OPT_OUT)
    assert found[account.arn(group)].status is Status.FAILED
    assert "1 of 4 offline records belong to 1 of the 1 opted-out patients" in (
        found[account.arn(group)].detail
    )
    other = STAYS if group == VITALS else VITALS
    assert found[account.arn(other)].status is not Status.FAILED


def test_a_deletion_marker_is_not_a_record_but_a_row_before_it_is(account: Account) -> None:
    account.flowed()
    marker = vitals(OPTED_OUT, DEV_BASIS, is_deleted=True)
    account.records(STAYS, [{**stay("e-x", OPTED_OUT, DEV_BASIS), "is_deleted": True}], hour=14)
    found = of(account.check(OPT_OUT), OPT_OUT)[account.arn(STAYS)]
    assert found.status is Status.PASSED and "1 deletion markers not counted" in found.detail
    # Twin: the record the marker deleted is still in the offline store.
    account.records(STAYS, [stay("e-x", OPTED_OUT, DEV_BASIS)], hour=15)
    found = of(account.check(OPT_OUT), OPT_OUT)[account.arn(STAYS)]
    assert found.status is Status.FAILED
    assert marker["is_deleted"]


def test_an_opt_out_after_the_build_fails_until_its_records_are_gone(account: Account) -> None:
    account.flowed()
    # p-in withdraws permission later: records built before remain, and must not.
    account.consents(*CONSENTS, consent("p-in", "deny", ("HRESCH",), when="2026-07-01T00:00:00Z"))
    findings = account.check(OPT_OUT)
    export = of(findings, OPT_OUT)["s3://acme-phi-dev-raw/fhir-export/"]
    assert "2 patients opted out" in export.detail
    assert of(findings, OPT_OUT)[account.arn(STAYS)].status is Status.FAILED


def test_a_record_under_another_basis_fails_and_names_the_basis(account: Account) -> None:
    account.flowed()
    account.records(
        STAYS,
        [stay("e-y", "p-in", "gdpr-art-9-2-j:ETHICS-1"), stay("e-z", "p-in", None)],
        hour=16,
    )
    findings = account.check(BASIS)
    no_identifiers(findings)
    found = of(findings, BASIS)
    assert found[account.arn(STAYS)].status is Status.FAILED
    detail = found[account.arn(STAYS)].detail
    assert "2 of 5 records carry another processing_basis than" in detail
    assert "'gdpr-art-9-2-j:ETHICS-1' (1)" in detail and "(none) (1)" in detail
    # The twin in the same run: the other group's records all carry the basis.
    assert found[account.arn(VITALS)].status is Status.PASSED


def test_records_without_the_basis_column_fail(account: Account) -> None:
    account.flowed()
    account.records(VITALS, [{"patient_id": "p-in", "event_time": "x"}], hour=17)
    found = of(account.check(BASIS), BASIS)[account.arn(VITALS)]
    assert found.status is Status.FAILED
    assert "1 of 2 objects have no processing_basis column" in found.detail


def test_an_object_that_is_not_parquet_fails(account: Account) -> None:
    account.flowed()
    bucket, _, prefix = data.resolved_uri(account.sagemaker, VITALS)[5:].partition("/")
    account.s3.put_object(Bucket=bucket, Key=f"{prefix}/year=2026/x.parquet", Body=b"not parquet")
    findings = account.check()
    for check_id in (BASIS, OPT_OUT):
        found = of(findings, check_id)[account.arn(VITALS)]
        assert found.status is Status.FAILED
        assert "1 of 2 objects are not readable Parquet" in found.detail


def test_nothing_written_is_never_a_pass(account: Account) -> None:
    findings = account.check()
    assert findings.findings
    assert Status.PASSED not in {f.status for f in findings.findings}
    for finding in of(findings, BASIS).values():
        assert finding.status is Status.FAILED
        assert "no feature records under s3://" in finding.detail
        assert "the FHIR -> features flow has not run in this account" in finding.detail
    (export,) = of(findings, OPT_OUT).values()
    assert export.status is Status.FAILED
    assert "no Consent resources under s3://acme-phi-dev-raw/fhir-export/" in export.detail


def test_consents_without_records_are_not_a_pass(account: Account) -> None:
    account.consents(*CONSENTS)
    findings = of(account.check(OPT_OUT), OPT_OUT)
    assert findings["s3://acme-phi-dev-raw/fhir-export/"].status is Status.PASSED
    for group in (VITALS, STAYS):
        assert findings[account.arn(group)].status is Status.FAILED
        assert "flow has not run" in findings[account.arn(group)].detail


def test_records_without_consents_are_not_a_pass(account: Account) -> None:
    account.records(VITALS, [vitals("p-in", DEV_BASIS)])
    account.s3.put_object(  # an export without Consents: nothing to judge opt-outs by
        Bucket="acme-phi-dev-raw",
        Key=f"fhir-export/{data.EXPORT_FOLDER}/Patient/Patient-1.ndjson",
        Body=b'{"resourceType": "Patient", "id": "p-in"}\n',
    )
    (export,) = of(account.check(OPT_OUT), OPT_OUT).values()
    assert export.status is Status.FAILED
    assert "0 Consent files read" in export.detail


def test_a_missing_raw_bucket_fails(account: Account) -> None:
    account.s3.delete_bucket(Bucket="acme-phi-dev-raw")
    (export,) = of(account.check(OPT_OUT), OPT_OUT).values()
    assert export.status is Status.FAILED
    assert "the bucket acme-phi-dev-raw does not exist" in export.detail


def test_a_capped_read_says_what_it_left(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    account.flowed()
    account.records(STAYS, [stay("e-w", "p-in", DEV_BASIS)], hour=18)
    monkeypatch.setattr(feature_checks, "MAX_OBJECTS_PER_GROUP", 1)
    found = of(account.check(BASIS), BASIS)[account.arn(STAYS)]
    assert found.status is Status.PASSED
    assert "capped: read the first 1 of 2 objects in key order, the rest was not judged" in (
        found.detail
    )
    # The twin: without the cap every object is read, and nothing says capped.
    monkeypatch.setattr(feature_checks, "MAX_OBJECTS_PER_GROUP", 2)
    found = of(account.check(BASIS), BASIS)[account.arn(STAYS)]
    assert "all 4 records in 2 objects" in found.detail and "capped" not in found.detail


# --- content reads: declared by these checks only ------------------------------------------------


def test_only_the_feature_checks_read_content_and_only_what_they_declare() -> None:
    reading = {check.id: check.content_reads for check in CHECKS if check.content_reads}
    assert reading == {
        BASIS: frozenset({"GetObject"}),
        OPT_OUT: frozenset({"GetObject", "GetRecord"}),
    }
    assert all(reads <= CONTENT_READS for reads in reading.values())


def test_content_clients_are_apart_from_the_shared_read_only_ones(account: Account) -> None:
    account.flowed()
    key = write_records(account.s3, account.sagemaker, VITALS, [vitals("p-in", DEV_BASIS)])
    bucket = "acme-phi-dev-feature-offline"
    clients = ClientFactory(account.session, "us-east-1", emulated=True)
    context = CheckContext(account.expected, clients)
    with pytest.raises(ValueError, match="declares no content reads"):
        context.content_client("s3")
    with pytest.raises(ReadOnlyViolation, match="s3:GetObject"):
        context.client("s3").get_object(Bucket=bucket, Key=key)
    reader = CheckContext(account.expected, clients, content_reads=frozenset({"GetObject"}))
    assert reader.content_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    # The content client reads, and still writes nothing.
    with pytest.raises(ReadOnlyViolation, match="s3:PutObject"):
        reader.content_client("s3").put_object(Bucket=bucket, Key=key, Body=b"")
    # Reading an object did not let the shared client do it.
    with pytest.raises(ReadOnlyViolation, match="s3:GetObject"):
        reader.client("s3").get_object(Bucket=bucket, Key=key)


# --- GetRecord on the emulator's online store (moto server) ---------------------------------------


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Account, str]]:
    for name in [n for n in os.environ if n.startswith("AWS_") or n.startswith("MOTO_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    expected = expected_for("dev")
    with running_emulator() as emulator:
        # moto server files a request under the account of the access key's role session;
        # the default one (123456789012) stands in for dev's account here.
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        endpoint = emulator.endpoint_url

        class OnServer(Account):
            def client(self, service: str) -> Any:
                return self.session.client(service, region_name="us-east-1", endpoint_url=endpoint)

            def arn(self, group: str) -> str:
                return f"arn:aws:sagemaker:us-east-1:{expected.account_id}:feature-group/{group}"

        yield OnServer(session, expected).create().flowed(), endpoint


def put_online(account: Account, patient: str) -> None:
    account.client("sagemaker-featurestore-runtime").put_record(
        FeatureGroupName=VITALS,
        Record=[
            {"FeatureName": "patient_id", "ValueAsString": patient},
            {"FeatureName": "event_time", "ValueAsString": "2026-06-30T11:00:00Z"},
            {"FeatureName": "processing_basis", "ValueAsString": DEV_BASIS},
        ],
    )


@pytest.mark.emulator
def test_the_online_store_of_a_patient_keyed_group_is_looked_up(
    server: tuple[Account, str],
) -> None:
    account, endpoint = server
    put_online(account, "p-in")
    found = of(account.check(OPT_OUT, endpoint_url=endpoint), OPT_OUT)[account.arn(VITALS)]
    assert found.status is Status.PASSED, found.detail
    assert "online: none of 1 opted-out patients looked up has a record" in found.detail
    # Twin: the opted-out patient's record reached the online store.
    put_online(account, OPTED_OUT)
    findings = account.check(OPT_OUT, endpoint_url=endpoint)
    no_identifiers(findings)
    found = of(findings, OPT_OUT)[account.arn(VITALS)]
    assert found.status is Status.FAILED
    assert "online: 1 of 1 opted-out patients looked up have a record" in found.detail
