"""HealthLake: the environment's FHIR datastore active and encrypted with the PHI key.

The datastore is looked up in its own region (eu-research's is in eu-west-1: eu-central-1 has
no HealthLake), and "the PHI key" is the environment's PHI key alias resolved there. The local
emulator has no HealthLake at all: there the check says "not emulated", never "pass".
"""

from __future__ import annotations

from collections.abc import Iterator

from botocore.exceptions import ClientError

from policies.runtime.clients import error_message, is_credentials_problem, pages
from policies.runtime.model import (
    CheckContext,
    Missing,
    Outcome,
    RuntimeCheck,
    failed,
    not_emulated,
    passed,
)

CUSTOMER_MANAGED = "CUSTOMER_MANAGED_KMS_KEY"
LIVE_STATES = ("ACTIVE", "CREATING", "UPDATING")


def datastore_encryption(home: CheckContext) -> Iterator[Outcome]:
    name = home.expected.fhir_datastore
    if name is None:
        return
    context = home.in_region(home.expected.fhir_region or home.region)
    placeholder = context.arn("healthlake", f"datastore/fhir/{name}")

    def evaluate() -> Outcome:
        healthlake = context.client("healthlake")
        try:
            found = list(
                pages(
                    healthlake,
                    "list_fhir_datastores",
                    "DatastorePropertiesList",
                    Filter={"DatastoreName": name},
                )
            )
        except ClientError as problem:
            # moto has no HealthLake at all (a server answers HTTP 500, in-process 404): the
            # fhir stack is planned there, never applied.
            if context.emulated and not is_credentials_problem(problem):
                return not_emulated(
                    placeholder, f"HealthLake is not emulated ({error_message(problem)})"
                )
            raise
        stores = [
            store
            for store in found
            if store.get("DatastoreName") == name and store.get("DatastoreStatus") in LIVE_STATES
        ]
        if not stores:
            raise Missing(f"no live HealthLake datastore named {name}")
        store = stores[0]
        arn = str(store.get("DatastoreArn", placeholder))
        encryption = store.get("SseConfiguration", {}).get("KmsEncryptionConfig", {})
        if encryption.get("CmkType") != CUSTOMER_MANAGED:
            return failed(arn, f"encrypted with {encryption.get('CmkType')}, not a customer key")
        same, why = context.same_key(encryption.get("KmsKeyId"), context.expected.phi_key_alias)
        return (passed if same else failed)(arn, f"{store.get('DatastoreStatus')}, {why}")

    yield context.judge(placeholder, evaluate)


CHECKS = (
    RuntimeCheck(
        "RT_PHI_HEALTHLAKE_CMK",
        "HealthLake FHIR datastore encrypted with the PHI key",
        datastore_encryption,
        workload_only=True,
    ),
)
