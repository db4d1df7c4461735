"""The mutation corpus: per layer of the README's table, one mutant per guarantee clause."""

from __future__ import annotations

from tools.mutants.corpus import (
    audit,
    deployment,
    detection,
    features,
    fhir,
    governance,
    inference,
    ingest,
    keys,
    monitoring,
    network,
    pipelines,
    registry,
    stacks,
    storage,
)
from tools.mutants.model import Mutant

MUTANTS: tuple[Mutant, ...] = (
    *keys.MUTANTS,
    *storage.MUTANTS,
    *network.MUTANTS,
    *ingest.MUTANTS,
    *fhir.MUTANTS,
    *features.MUTANTS,
    *pipelines.MUTANTS,
    *registry.MUTANTS,
    *inference.MUTANTS,
    *governance.MUTANTS,
    *audit.MUTANTS,
    *detection.MUTANTS,
    *monitoring.MUTANTS,
    *deployment.MUTANTS,
    *stacks.MUTANTS,
)
