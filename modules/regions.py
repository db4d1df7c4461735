"""Region facts shared by the environment model and the layers."""

# AWS regions inside EU member states: GDPR Chapter V and EHDS residency keep EU patient data
# here. Not eu-west-2 (London) nor eu-central-2 (Zurich): the UK and Switzerland have GDPR
# adequacy decisions, which permit transfers, but they are not EU territory.
EU_RESIDENCY_REGIONS = frozenset(
    {"eu-central-1", "eu-west-1", "eu-west-3", "eu-south-1", "eu-south-2", "eu-north-1"}
)
