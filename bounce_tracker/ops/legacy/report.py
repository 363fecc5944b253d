"""What an import did: counts, a few examples of each kind of event, the summary text."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

#: Examples kept per kind of event for the report (fewer of the routine kinds).
EXAMPLES_PER_KIND = 10
ROUTINE_EXAMPLES = 3
_ROUTINE_KINDS = frozenset({"created", "updated"})


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do)."""

    source: str
    table: str
    dry_run: bool
    source_rows: int = 0
    addresses: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged_addresses: int = 0
    merged_rows: int = 0
    skipped: int = 0
    conflicts: int = 0
    reencoded: int = 0
    unreadable_dates: int = 0
    seconds: float = 0.0
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def note(self, kind: str, text: str) -> None:
        """Keep ``text`` as an example of ``kind`` (the first few only)."""
        limit = ROUTINE_EXAMPLES if kind in _ROUTINE_KINDS else EXAMPLES_PER_KIND
        if len(self.examples[kind]) < limit:
            self.examples[kind].append(text)

    @property
    def rows_per_second(self) -> float:
        """Source rows read per second of the whole run."""
        return self.source_rows / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One paragraph for people."""
        verb = "Dry run, nothing written: would import" if self.dry_run else "Imported"
        would = "would be " if self.dry_run else ""
        parts = [
            f"{verb} {self.source_rows:,} rows of table '{self.table}' from {self.source} "
            f"in {self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s) as "
            f"{self.addresses:,} addresses: {self.created:,} {would}created, "
            f"{self.updated:,} {would}updated, {self.unchanged:,} unchanged."
        ]
        if self.merged_rows:
            parts.append(
                f"{self.merged_rows:,} rows differing only in letter case {would}merged "
                f"into {self.merged_addresses:,} addresses."
            )
        if self.skipped:
            parts.append(f"{self.skipped:,} invalid rows skipped.")
        if self.conflicts:
            parts.append(
                f"{self.conflicts:,} conflicts on encoded_from (the existing value is kept)."
            )
        if self.reencoded:
            parts.append(
                f"{self.reencoded:,} addresses {would}given a new encoded_from "
                "(their EncodedFROM was unusable or taken)."
            )
        if self.unreadable_dates:
            parts.append(f"{self.unreadable_dates:,} unreadable dates {would}stored as NULL.")
        return " ".join(parts)

    def details(self) -> list[str]:
        """Example lines per kind, for the command's output."""
        lines: list[str] = []
        for kind, examples in self.examples.items():
            lines.extend(f"{kind}: {text}" for text in examples)
        return lines
