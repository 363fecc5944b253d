"""The tracker table: one row per recipient address, as in the original recipe.

The field names mirror the original MySQL ``EmailAddressTracker`` table
(``EmailAddress`` → ``email``, ``EncodedFROM`` → ``encoded_from`` …) because
outside tools and the legacy import rely on them.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from bounce_tracker.core.addresses import normalize_email
from bounce_tracker.core.kinds import BounceKind

KIND_CHOICES = [(kind.value, kind.label) for kind in BounceKind]

#: The original table's counters and dates, in its column order: what sending and
#: bouncing change, beside the address, its VERP local part and IgnoreBounces.
COUNTER_FIELDS = (
    "msg_count",
    "first_email",
    "last_email",
    "first_bounce",
    "last_bounce",
    "last_bounce2",
    "last_bounce3",
    "bounce_count",
)


class CaseFoldedCharField(models.CharField):  # type: ignore[type-arg]
    """A CharField whose values are stored lower-cased and compared byte for byte.

    Values are lower-cased on the way in, which makes a plain unique index
    case-insensitive on every database. On MySQL/MariaDB the column also gets a
    binary collation: the usual ``*_general_ci`` collations treat ``josé`` and
    ``jose`` as equal, which would merge two different addresses into one row.
    The collation is chosen per connection, so migrations stay database-neutral.
    """

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return value.lower() if isinstance(value, str) else value

    def db_parameters(self, connection: BaseDatabaseWrapper) -> dict[str, Any]:
        parameters = super().db_parameters(connection)
        if connection.vendor == "mysql" and not self.db_collation:
            parameters["collation"] = "utf8mb4_bin"
        return parameters


class SuppressionReason(models.TextChoices):
    """Why an address is not sent to; stored on the tracker row."""

    HARD_BOUNCE = "hard", _("hard bounce")
    COMPLAINT = "complaint", _("spam complaint")
    MANUAL = "manual", _("suppressed by staff")


class EmailAddressTrackerQuerySet(models.QuerySet["EmailAddressTracker"]):
    """Lookups that fold letter case the way the stored values are folded."""

    def for_email(self, address: str) -> EmailAddressTrackerQuerySet:
        """Rows for ``address`` in any letter case."""
        return self.filter(email=normalize_email(address))

    def for_local_part(self, local_part: str) -> EmailAddressTrackerQuerySet:
        """Rows whose VERP local part is ``local_part`` in any letter case."""
        return self.filter(encoded_from=local_part.lower())

    def suppressed(self) -> EmailAddressTrackerQuerySet:
        """Rows marked suppressed (hard bounce, complaint, staff) and not ignoring bounces."""
        return self.exclude(suppressed_reason="").filter(ignore_bounces=False)


class EmailAddressTracker(models.Model):
    """Per-address sending and bounce counters, and the suppression state.

    Timestamps are NULL for "never" (the original table used zero dates).
    """

    email = CaseFoldedCharField(
        _("email address"),
        max_length=254,
        unique=True,
        help_text=_("Stored lower-case: one row per address in any letter case."),
    )
    encoded_from = CaseFoldedCharField(
        _("VERP local part"),
        max_length=64,
        unique=True,
        help_text=_("The local part of the return path this address's mail is sent with."),
    )
    ignore_bounces = models.BooleanField(
        _("ignore bounces"),
        default=False,
        help_text=_("Always send to this address, whatever it bounced."),
    )
    msg_count = models.PositiveIntegerField(_("messages sent"), default=0)
    first_email = models.DateTimeField(_("first email"), null=True, blank=True)
    last_email = models.DateTimeField(_("last email"), null=True, blank=True)
    first_bounce = models.DateTimeField(_("first bounce"), null=True, blank=True)
    last_bounce = models.DateTimeField(_("last bounce"), null=True, blank=True)
    last_bounce2 = models.DateTimeField(_("second-to-last bounce"), null=True, blank=True)
    last_bounce3 = models.DateTimeField(_("third-to-last bounce"), null=True, blank=True)
    bounce_count = models.PositiveIntegerField(_("bounces"), default=0)
    suppressed_reason = models.CharField(
        _("suppressed because"),
        max_length=16,
        blank=True,
        default="",
        choices=SuppressionReason.choices,
        help_text=_("Empty when the address is not suppressed."),
    )
    suppressed_at = models.DateTimeField(_("suppressed since"), null=True, blank=True)
    suppressed_detail = models.CharField(
        _("suppression detail"),
        max_length=255,
        blank=True,
        default="",
        help_text=_("E.g. the status code and diagnostic of the bounce that suppressed it."),
    )
    last_event_kind = models.CharField(
        _("kind of last message"),
        max_length=16,
        blank=True,
        default="",
        choices=KIND_CHOICES,
        help_text=_("The kind of the last message received for this address."),
    )

    objects = EmailAddressTrackerQuerySet.as_manager()

    class Meta:
        verbose_name = _("email address tracker")
        verbose_name_plural = _("email address trackers")
        permissions = [  # noqa: RUF012 - Django's Meta convention
            ("toggle_ignore_bounces", "Can turn IgnoreBounces on and off"),
            ("unsuppress_address", "Can un-suppress an address and reset its counters"),
        ]
        ordering = ("email",)
        indexes = [  # noqa: RUF012 - Django's Meta convention
            models.Index(
                fields=["suppressed_reason", "ignore_bounces"], name="bounce_trk_suppressed_idx"
            ),
            models.Index(fields=["last_bounce"], name="bounce_trk_last_bounce_idx"),
        ]
        # email and encoded_from are unique, so they are indexed already.

    def __str__(self) -> str:
        return str(self.email)

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = normalize_email(self.email)
        self.encoded_from = self.encoded_from.lower()
        super().save(*args, **kwargs)

    @property
    def is_suppressed(self) -> bool:
        """Marked suppressed (hard bounce, complaint, staff) and not ignoring bounces."""
        return bool(self.suppressed_reason) and not self.ignore_bounces

    def suppress(self, reason: SuppressionReason, detail: str = "") -> None:
        """Mark this address suppressed now (saves only the suppression fields)."""
        self.suppressed_reason = reason
        self.suppressed_at = timezone.now()
        self.suppressed_detail = detail[:255]
        self.save(update_fields=["suppressed_reason", "suppressed_at", "suppressed_detail"])

    def unsuppress(self) -> None:
        """Clear the suppression mark (counters and bounce times are kept)."""
        self.suppressed_reason = ""
        self.suppressed_at = None
        self.suppressed_detail = ""
        self.save(update_fields=["suppressed_reason", "suppressed_at", "suppressed_detail"])


class EventSource(models.TextChoices):
    """How a bounce event reached the tracker."""

    PIPE = "pipe", _("Postfix pipe (handle_bounce)")
    LMTP = "lmtp", _("LMTP receiver")
    ADMIN = "admin", _("attached by staff")
    SMTP = "smtp", _("refused at send time")
    ESP = "esp", _("ESP event (django-anymail)")
    MAILBOX = "mailbox", _("bounce mailbox (IMAP/POP3)")


class ReceivedMessage(models.Model):
    """What every message received for the bounce domain keeps, matched or not.

    ``fingerprint`` is unique: the same message delivered twice (Postfix retries
    after a temporary failure or a crash) is recorded once.
    """

    envelope_sender = models.CharField(_("envelope sender"), max_length=254, blank=True, default="")
    envelope_recipient = models.CharField(_("envelope recipient"), max_length=254)
    status = models.CharField(
        _("status"),
        max_length=16,
        blank=True,
        default="",
        help_text=_("RFC 3463 enhanced status code, e.g. 5.1.1."),
    )
    diagnostic = models.TextField(_("diagnostic"), blank=True, default="")
    recipient = models.CharField(
        _("failed recipient"),
        max_length=254,
        blank=True,
        default="",
        help_text=_("The recipient the report names (may differ after forwarding)."),
    )
    source = models.CharField(
        _("source"), max_length=16, choices=EventSource.choices, default=EventSource.PIPE
    )
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    fingerprint = models.CharField(_("fingerprint"), max_length=64, unique=True)
    raw_message = models.BinaryField(_("raw message"), blank=True, default=b"")
    raw_size = models.PositiveIntegerField(_("size in bytes"), default=0)
    raw_truncated = models.BooleanField(_("raw message truncated"), default=False)

    class Meta:
        abstract = True


class BounceEvent(ReceivedMessage):
    """One message that reached the bounce address for a tracked address; counted once."""

    tracker = models.ForeignKey(
        EmailAddressTracker,
        on_delete=models.CASCADE,
        related_name="bounce_events",
        verbose_name=_("address"),
    )
    kind = models.CharField(_("kind"), max_length=16, choices=KIND_CHOICES)
    counted = models.BooleanField(
        _("counted"),
        default=False,
        help_text=_("Whether it shifted the bounce times and added to the bounce count."),
    )
    reporting_mta = models.CharField(_("reporting MTA"), max_length=255, blank=True, default="")
    original_message_id = models.CharField(
        _("original Message-ID"), max_length=255, blank=True, default=""
    )
    classifier_reason = models.CharField(_("classified by"), max_length=100, blank=True, default="")

    class Meta:
        verbose_name = _("bounce event")
        verbose_name_plural = _("bounce events")
        ordering = ("-received_at",)
        indexes = [  # noqa: RUF012 - Django's Meta convention
            models.Index(fields=["tracker", "-received_at"], name="bounce_evt_tracker_idx"),
            models.Index(fields=["kind", "received_at"], name="bounce_evt_kind_idx"),
            models.Index(fields=["received_at"], name="bounce_evt_received_idx"),
        ]

    def __str__(self) -> str:
        try:
            label = BounceKind(self.kind).label
        except ValueError:  # a kind stored by a newer version
            label = self.kind
        status = f" {self.status}" if self.status else ""
        return f"{label}{status}, {self.received_at:%Y-%m-%d %H:%M}"


class UnmatchedMessage(ReceivedMessage):
    """Mail to the bounce domain that matches no tracked address, or that needs review.

    Stored rather than refused, so Postfix doesn't retry it for days and staff can
    still look at it (and attach it to an address). A message the classifier failed
    on is kept here too, whatever address it reached, flagged ``needs_review``: it
    was not counted, and staff attach it once the classifier is fixed.
    """

    reason = models.CharField(_("why unmatched"), max_length=255)
    kind = models.CharField(_("kind"), max_length=16, choices=KIND_CHOICES, blank=True, default="")
    needs_review = models.BooleanField(
        _("needs review"),
        default=False,
        help_text=_("The classifier failed on this message: it was not counted."),
    )
    classifier_error = models.TextField(
        _("classifier error"),
        blank=True,
        default="",
        help_text=_("The classifier's exception and traceback, when it failed."),
    )

    class Meta:
        verbose_name = _("unmatched message")
        verbose_name_plural = _("unmatched messages")
        ordering = ("-received_at",)
        indexes = [  # noqa: RUF012 - Django's Meta convention
            models.Index(fields=["received_at"], name="bounce_unm_received_idx"),
            # The dashboard's count and the separate caps of flagged and other rows.
            models.Index(fields=["needs_review", "id"], name="bounce_unm_review_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.envelope_recipient}: {self.reason}"
