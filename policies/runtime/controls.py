"""Which catalog controls each runtime check evidences.

The catalog (policies/controls.yaml, `runtime_evidence.runtime_checks`) is the one place for
control -> evidence mappings; this reads it the other way round.
"""

from __future__ import annotations

from policies.catalog import Catalog


def controls_by_check(catalog: Catalog) -> dict[str, tuple[str, ...]]:
    """Runtime check id -> the ids of the controls it evidences, in catalog order."""
    evidenced: dict[str, list[str]] = {}
    for control in catalog.controls:
        for check in control.runtime_evidence.runtime_checks:
            evidenced.setdefault(check, []).append(control.id)
    return {check: tuple(ids) for check, ids in evidenced.items()}
