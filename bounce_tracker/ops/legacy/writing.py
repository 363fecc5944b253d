"""Writing: merged records into the ``default`` database, one transaction per batch.

Rules 3 to 5 of :mod:`bounce_tracker.ops.legacy` as they meet the database: each
batch is planned against the trackers that exist now (create, merge into an existing
tracker, or re-encode a local part that is unusable or taken), then written with one
``bulk_create`` and one ``bulk_update``. A concurrent writer that takes an address or
a local part meanwhile makes the batch plan again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from bounce_tracker.core.settings import TrackerSettings
from bounce_tracker.core.verp import address_token, encode_local_part
from bounce_tracker.models import EmailAddressTracker
from bounce_tracker.ops.legacy.merging import LegacyRecord, merge_with_existing
from bounce_tracker.ops.legacy.report import ImportReport

#: Attempts for one batch when a concurrent writer took an address or local part.
BATCH_ATTEMPTS = 3


@dataclass
class BatchPlan:
    """What writing one batch does: trackers to create and update, and what to report."""

    create: list[EmailAddressTracker] = field(default_factory=list)
    update: list[EmailAddressTracker] = field(default_factory=list)
    update_fields: set[str] = field(default_factory=set)
    notes: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    conflicts: int = 0
    reencoded: int = 0

    def add_to(self, report: ImportReport) -> None:
        """Count this batch in ``report``."""
        report.created += len(self.create)
        report.updated += len(self.update)
        report.unchanged += self.unchanged
        report.conflicts += self.conflicts
        report.reencoded += self.reencoded
        for kind, text in self.notes:
            report.note(kind, text)


class LegacyWriter:
    """Plans and writes batches of records; with ``dry_run`` it only plans.

    ``legacy_codes`` are the ``EncodedFROM`` values the source's records keep: a
    re-encoded address never gets one of them, even before its owner is written.
    """

    def __init__(
        self,
        tracker_settings: TrackerSettings,
        *,
        dry_run: bool,
        legacy_codes: Collection[str] = (),
    ) -> None:
        self.tracker_settings = tracker_settings
        self.dry_run = dry_run
        self.legacy_codes = frozenset(legacy_codes)

    def write_batch(self, batch: Sequence[LegacyRecord]) -> BatchPlan:
        """Plan ``batch`` and (unless a dry run) write it in one transaction."""
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                with transaction.atomic():
                    plan = self.plan(batch)
                    if not self.dry_run:
                        self._apply(plan)
                return plan
            except IntegrityError:
                # A concurrent writer (the app's backend) created one of these addresses
                # or local parts after it was planned: plan the batch again.
                if attempt == BATCH_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _apply(self, plan: BatchPlan) -> None:
        if plan.create:
            EmailAddressTracker.objects.bulk_create(plan.create)
        if plan.update:
            EmailAddressTracker.objects.bulk_update(plan.update, sorted(plan.update_fields))

    def plan(self, batch: Sequence[LegacyRecord]) -> BatchPlan:
        """What writing ``batch`` does, from the current state of the database."""
        plan = BatchPlan()
        existing = {
            tracker.email: tracker
            for tracker in EmailAddressTracker.objects.filter(
                email__in=[record.email for record in batch]
            )
        }
        wanted = [
            record.encoded_from
            for record in batch
            if record.email not in existing and record.encoded_from
        ]
        taken = dict(
            EmailAddressTracker.objects.filter(encoded_from__in=wanted).values_list(
                "encoded_from", "email"
            )
        )
        needs_code: list[tuple[LegacyRecord, EmailAddressTracker]] = []
        for record in batch:
            tracker = existing.get(record.email)
            if tracker is not None:
                self._plan_merge(plan, tracker, record)
                continue
            tracker = EmailAddressTracker(
                email=record.email, encoded_from=record.encoded_from, **record.values()
            )
            plan.create.append(tracker)
            if record.encoded_from in taken:
                plan.conflicts += 1
                plan.notes.append(
                    (
                        "conflict",
                        f"{record.email}: EncodedFROM {record.encoded_from!r} is already used "
                        f"by the tracker of {taken[record.encoded_from]}, which keeps it",
                    )
                )
                record.unusable_encoded_from = record.encoded_from
                record.reencode_reason = f"is taken by {taken[record.encoded_from]}"
                needs_code.append((record, tracker))
            elif not record.encoded_from:
                needs_code.append((record, tracker))
            else:
                plan.notes.append(("created", f"{record.email} ({record.encoded_from})"))
        self._assign_codes(plan, needs_code)
        return plan

    def _plan_merge(
        self, plan: BatchPlan, tracker: EmailAddressTracker, record: LegacyRecord
    ) -> None:
        if record.encoded_from and record.encoded_from != tracker.encoded_from:
            plan.conflicts += 1
            plan.notes.append(
                (
                    "conflict",
                    f"{record.email}: already tracked with encoded_from "
                    f"{tracker.encoded_from!r}, which is kept; EncodedFROM "
                    f"{record.encoded_from!r} is not imported",
                )
            )
        changes = merge_with_existing(tracker, record)
        if not changes:
            plan.unchanged += 1
            return
        for name, value in changes.items():
            setattr(tracker, name, value)
        plan.update.append(tracker)
        plan.update_fields.update(changes)
        plan.notes.append(("updated", f"{record.email}: {', '.join(sorted(changes))}"))

    def _assign_codes(
        self, plan: BatchPlan, needs_code: list[tuple[LegacyRecord, EmailAddressTracker]]
    ) -> None:
        """This installation's local part for addresses whose EncodedFROM can't be used."""
        if not needs_code:
            return
        candidates = {
            record.email: encode_local_part(record.email, self.tracker_settings)
            for record, _ in needs_code
        }
        taken = set(
            EmailAddressTracker.objects.filter(
                encoded_from__in=list(candidates.values())
            ).values_list("encoded_from", flat=True)
        )
        head = f"{self.tracker_settings.verp_prefix}{self.tracker_settings.verp_delimiter}"
        for record, tracker in needs_code:
            code = candidates[record.email]
            if code in taken or code in self.legacy_codes:
                code = head + address_token(record.email, self.tracker_settings.verp_secret)
            taken.add(code)
            tracker.encoded_from = code
            plan.reencoded += 1
            plan.notes.append(
                (
                    "re-encoded",
                    f"{record.email}: EncodedFROM {record.unusable_encoded_from[:80]!r} "
                    f"{record.reencode_reason}; now {code!r}",
                )
            )
