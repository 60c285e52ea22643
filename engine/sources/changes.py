"""What changed between two snapshots, as the analysis sees it (quantised values).

Two snapshots with no changes here share a cache key: the dashboard can say "unchanged,
served from the cache" or list exactly which fields moved and from what to what.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.sources.snapshot import FIELDS, FieldSpec, Snapshot


@dataclass(frozen=True)
class FieldChange:
    spec: FieldSpec
    before: float | None  # None: unknown
    after: float | None

    def to_dict(self) -> dict[str, float | str | None]:
        return {"field": self.spec.name, "before": self.before, "after": self.after}


def changes(before: Snapshot, after: Snapshot) -> list[FieldChange]:
    """The fields whose quantised value differs (unknown ↔ known counts), in display order."""
    old, new = before.quantised(), after.quantised()
    return [FieldChange(spec, old[spec.name], new[spec.name]) for spec in FIELDS
            if old[spec.name] != new[spec.name]]  # fmt: skip
