"""The feature spec an environment hands its feature builder: the declared groups, the
processing basis and the bad-line limit from the environment file, plus where Feature Store
keeps each group's offline data (known only once the group exists: a Terraform reference in
the ml stack, DescribeFeatureGroup on the emulator)."""

from __future__ import annotations

from collections.abc import Mapping

from environments.schema import WorkloadEnvironment
from ml.feature_spec import (
    BasisKind,
    FeatureColumn,
    FeatureSpec,
    GroupSpec,
    ProcessingBasis,
)


def feature_spec_for(
    environment: WorkloadEnvironment, resolved_output_s3_uris: Mapping[str, str]
) -> FeatureSpec:
    """`resolved_output_s3_uris` maps each group name to its ResolvedOutputS3Uri."""
    settings = environment.ml.features
    return FeatureSpec(
        environment=environment.name,
        jurisdiction=environment.jurisdiction.value,
        basis=ProcessingBasis(
            BasisKind(settings.processing_basis.kind), settings.processing_basis.reference
        ),
        groups=tuple(
            GroupSpec(
                name=group.name,
                record_identifier=group.record_identifier,
                event_time=group.event_time,
                features=tuple(FeatureColumn(f.name, f.type) for f in group.features),
                resolved_output_s3_uri=resolved_output_s3_uris[group.name],
            )
            for group in settings.groups
        ),
        max_bad_line_share=settings.builder.max_bad_line_share,
    )
