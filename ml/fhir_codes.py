"""The FHIR R4 vocabulary the synthetic population writes and the feature builder reads.

One definition of every code system, code and export path both sides rely on, so the
generator can never drift from what the builder recognises.
"""

from __future__ import annotations

from typing import Final

FHIR_VERSION: Final = "4.0.1"

LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
UCUM: Final = "http://unitsofmeasure.org"
ICD10: Final = "http://hl7.org/fhir/sid/icd-10-cm"
OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CONSENT_SCOPE: Final = "http://terminology.hl7.org/CodeSystem/consentscope"
DISCHARGE_DISPOSITION: Final = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
CONDITION_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION: Final = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/condition-category"
MRN_SYSTEM: Final = "urn:oid:2.16.840.1.113883.3.9999.1"  # the synthetic hospital's MRNs

# LOINC vital signs (the FHIR vital-signs profile's codes), with their UCUM units.
HEART_RATE: Final = "8867-4"
SYSTOLIC_BP: Final = "8480-6"
DIASTOLIC_BP: Final = "8462-4"
SPO2: Final = "59408-5"
VITAL_UNITS: Final = {
    HEART_RATE: ("/min", "beats/minute"),
    SYSTOLIC_BP: ("mm[Hg]", "mmHg"),
    DIASTOLIC_BP: ("mm[Hg]", "mmHg"),
    SPO2: ("%", "%"),
}
VITAL_NAMES: Final = {
    HEART_RATE: "Heart rate",
    SYSTOLIC_BP: "Systolic blood pressure",
    DIASTOLIC_BP: "Diastolic blood pressure",
    SPO2: "Oxygen saturation in Arterial blood by Pulse oximetry",
}

# Encounter.class for an inpatient stay (v3-ActCode), the only class that counts as an
# admission for readmission.
INPATIENT: Final = "IMP"
# An ambulatory visit (a follow-up appointment): an encounter that is not an admission.
AMBULATORY: Final = "AMB"

# discharge-disposition codes (terminology.hl7.org), with their display text.
DISCHARGE_DISPOSITIONS: Final = {
    "home": "Home",
    "snf": "Skilled nursing facility",
    "rehab": "Rehabilitation",
    "oth-hosp": "Other healthcare facility",
    "aadvice": "Left against advice",
}

# Chronic conditions the population carries (ICD-10-CM), with display text.
CONDITIONS: Final = {
    "I50.9": "Heart failure, unspecified",
    "J44.9": "Chronic obstructive pulmonary disease, unspecified",
    "E11.9": "Type 2 diabetes mellitus without complications",
    "N18.3": "Chronic kidney disease, stage 3",
}

# Consent: the scope of a secondary-use decision, and the purposes (v3-ActReason) whose
# denial excludes a patient from every feature group (EHDS Art. 71 opt-out, GDPR Art. 21).
CONSENT_SCOPE_RESEARCH: Final = "research"
CONSENT_CATEGORY_LOINC: Final = "59284-0"  # "Patient Consent"
SECONDARY_USE_PURPOSES: Final = frozenset({"HRESCH", "CLINTRCH", "HOPERAT", "PUBHLTH"})
RESEARCH_PURPOSE: Final = "HRESCH"

# StartFHIRExportJob writes <S3Uri>/<datastore id>-FHIR_EXPORT-<job id>/<Type>/<Type>-<n>.ndjson
# (AWS HealthLake developer guide, "Exporting files from a HealthLake data store").
EXPORT_FOLDER_MARKER: Final = "-FHIR_EXPORT-"
EXPORTED_TYPES: Final = ("Patient", "Encounter", "Observation", "Condition", "Consent")


def export_folder(datastore_id: str, job_id: str) -> str:
    return f"{datastore_id}{EXPORT_FOLDER_MARKER}{job_id}"


def export_file(resource_type: str, index: int) -> str:
    """Path of one NDJSON file inside an export folder."""
    return f"{resource_type}/{resource_type}-{index}.ndjson"


# Every resource type of FHIR R4 (4.0.1, hl7.org/fhir/R4/resourcelist.html), read from the
# fhirclient 4.4.0 models generated from it. A line whose resourceType is not one of these is
# not FHIR R4 at all; a real type the builder does not use is skipped, not an error.
R4_RESOURCE_TYPES: Final = frozenset(
    {
        "Account",
        "ActivityDefinition",
        "AdverseEvent",
        "AllergyIntolerance",
        "Appointment",
        "AppointmentResponse",
        "AuditEvent",
        "Basic",
        "Binary",
        "BiologicallyDerivedProduct",
        "BodyStructure",
        "Bundle",
        "CapabilityStatement",
        "CarePlan",
        "CareTeam",
        "CatalogEntry",
        "ChargeItem",
        "ChargeItemDefinition",
        "Claim",
        "ClaimResponse",
        "ClinicalImpression",
        "CodeSystem",
        "Communication",
        "CommunicationRequest",
        "CompartmentDefinition",
        "Composition",
        "ConceptMap",
        "Condition",
        "Consent",
        "Contract",
        "Coverage",
        "CoverageEligibilityRequest",
        "CoverageEligibilityResponse",
        "DetectedIssue",
        "Device",
        "DeviceDefinition",
        "DeviceMetric",
        "DeviceRequest",
        "DeviceUseStatement",
        "DiagnosticReport",
        "DocumentManifest",
        "DocumentReference",
        "EffectEvidenceSynthesis",
        "Encounter",
        "Endpoint",
        "EnrollmentRequest",
        "EnrollmentResponse",
        "EpisodeOfCare",
        "EventDefinition",
        "Evidence",
        "EvidenceVariable",
        "ExampleScenario",
        "ExplanationOfBenefit",
        "FamilyMemberHistory",
        "Flag",
        "Goal",
        "GraphDefinition",
        "Group",
        "GuidanceResponse",
        "HealthcareService",
        "ImagingStudy",
        "Immunization",
        "ImmunizationEvaluation",
        "ImmunizationRecommendation",
        "ImplementationGuide",
        "InsurancePlan",
        "Invoice",
        "Library",
        "Linkage",
        "List",
        "Location",
        "Measure",
        "MeasureReport",
        "Media",
        "Medication",
        "MedicationAdministration",
        "MedicationDispense",
        "MedicationKnowledge",
        "MedicationRequest",
        "MedicationStatement",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "MessageDefinition",
        "MessageHeader",
        "MolecularSequence",
        "NamingSystem",
        "NutritionOrder",
        "Observation",
        "ObservationDefinition",
        "OperationDefinition",
        "OperationOutcome",
        "Organization",
        "OrganizationAffiliation",
        "Parameters",
        "Patient",
        "PaymentNotice",
        "PaymentReconciliation",
        "Person",
        "PlanDefinition",
        "Practitioner",
        "PractitionerRole",
        "Procedure",
        "Provenance",
        "Questionnaire",
        "QuestionnaireResponse",
        "RelatedPerson",
        "RequestGroup",
        "ResearchDefinition",
        "ResearchElementDefinition",
        "ResearchStudy",
        "ResearchSubject",
        "RiskAssessment",
        "RiskEvidenceSynthesis",
        "Schedule",
        "SearchParameter",
        "ServiceRequest",
        "Slot",
        "Specimen",
        "SpecimenDefinition",
        "StructureDefinition",
        "StructureMap",
        "Subscription",
        "Substance",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
        "SupplyDelivery",
        "SupplyRequest",
        "Task",
        "TerminologyCapabilities",
        "TestReport",
        "TestScript",
        "ValueSet",
        "VerificationResult",
        "VisionPrescription",
    }
)
