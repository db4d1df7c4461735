"""Region facts shared by the environment model and the layers (defined in the requirements
leaf, which the checks that judge them read too)."""

from requirements.residency import EU_RESIDENCY_REGIONS

__all__ = ["EU_RESIDENCY_REGIONS"]
