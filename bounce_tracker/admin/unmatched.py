"""Unmatched mail: listed read-only, and attached to an address by staff.

Attaching classifies the stored message again and records it for the address named,
exactly once (:func:`bounce_tracker.receiving.receive.record_unmatched_message`), then
removes it from unmatched mail; both steps are written to the admin log.

Messages the classifier failed on are kept here too, flagged ``needs_review``: a
"classifier failed" badge in the list, a filter, the traceback on the detail page.
Once the classifier is fixed, attaching one records it; while it still fails, the
message stays where it is and nothing is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString

from bounce_tracker.admin.received import STORAGE_FIELDS, ReceivedMessageAdmin
from bounce_tracker.admin.text import DIAGNOSTIC_PREVIEW, text_column
from bounce_tracker.core.addresses import InvalidAddressError, normalize_email
from bounce_tracker.core.events import Outcome
from bounce_tracker.core.kinds import BounceKind
from bounce_tracker.core.settings import get_settings
from bounce_tracker.core.text import shorten, visible_text
from bounce_tracker.core.verp import local_part_of
from bounce_tracker.models import EmailAddressTracker, EventSource, UnmatchedMessage
from bounce_tracker.receiving.receive import record_unmatched_message


class AttachForm(forms.Form):
    """The address to attach unmatched messages to: it must be tracked already."""

    address = forms.CharField(
        label="Address",
        max_length=254,
        help_text="A tracked address, in any letter case.",
        widget=forms.TextInput(attrs={"class": "vTextField", "autocomplete": "off"}),
    )

    def clean_address(self) -> EmailAddressTracker:
        value = self.cleaned_data["address"].strip()
        try:
            normalized = normalize_email(value)
        except InvalidAddressError as exc:
            raise ValidationError(f"“{visible_text(value)}” is not an email address.") from exc
        tracker = EmailAddressTracker.objects.filter(email=normalized).first()
        if tracker is None:
            raise ValidationError(
                f"No tracked address “{visible_text(normalized)}”: messages can only be "
                "attached to an address that has been sent to."
            )
        return tracker


#: The detail page's fields shown only for a message flagged for review.
REVIEW_FIELDS = ("needs_review", "classifier_error_text")


def review_badge() -> SafeString:
    """The badge of a message the classifier failed on: text, with a class for colour."""
    return format_html('<span class="bt-state bt-state-review">{}</span>', "classifier failed")


def _tracked_address_of(selected: list[UnmatchedMessage]) -> str:
    """The tracked address all ``selected`` messages reached, or "" (the form's default).

    A message the classifier failed on reached a tracked address's bounce address:
    attaching it after the fix then needs no typing.
    """
    local_parts = {local_part_of(unmatched.envelope_recipient) for unmatched in selected}
    if len(local_parts) != 1:
        return ""
    tracker = EmailAddressTracker.objects.for_local_part(local_parts.pop()).first()
    return tracker.email if tracker is not None else ""


def _log_deletion(model_admin: admin.ModelAdmin, request: HttpRequest, obj: Any) -> None:  # type: ignore[type-arg]
    """Admin-log a deletion (``log_deletions`` since Django 5.1, ``log_deletion`` before)."""
    log_deletions = getattr(model_admin, "log_deletions", None)
    if log_deletions is not None:
        log_deletions(request, [obj])
    else:  # Django < 5.1
        model_admin.log_deletion(request, obj, str(obj))  # type: ignore[attr-defined]


@admin.register(UnmatchedMessage)
class UnmatchedMessageAdmin(ReceivedMessageAdmin):
    raw_url_prefix = "bounce_tracker_unmatchedmessage"
    raw_filename_prefix = "unmatched-message"
    list_display = (
        "received_at",
        "envelope_recipient_text",
        "kind_or_review",
        "status_text",
        "diagnostic_text",
        "reason_text",
        "raw_message_links",
    )
    list_display_links = ("received_at",)
    list_filter = ("needs_review", "kind", "source", ("received_at", admin.DateFieldListFilter))
    search_fields = ("envelope_recipient", "envelope_sender", "recipient", "diagnostic", "status")
    search_help_text = "Part of the envelope addresses, the failed recipient or the diagnostic."
    show_full_result_count = False
    if hasattr(admin, "ShowFacets"):
        show_facets = admin.ShowFacets.NEVER
    actions = ("attach_to_address",)
    fields = (
        "received_at",
        "envelope_recipient_text",
        "envelope_sender_text",
        "reason_text",
        "kind",
        "status_text",
        "diagnostic_full",
        "recipient_text",
        *STORAGE_FIELDS,
        *REVIEW_FIELDS,
    )
    readonly_fields = fields

    reason_text = text_column("reason", "why unmatched")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        # The review fields only on a flagged message's page: elsewhere they'd be empty.
        fields = list(super().get_fields(request, obj))
        if obj is None or not obj.needs_review:
            fields = [field for field in fields if field not in REVIEW_FIELDS]
        return fields

    @admin.display(description="kind", ordering="kind")
    def kind_or_review(self, obj: UnmatchedMessage) -> SafeString | str | None:
        """The kind, or a badge on a message the classifier failed on (it has no kind)."""
        if obj.needs_review:
            return review_badge()
        return obj.get_kind_display() or None  # the admin's empty value

    @admin.display(description="classifier error")
    def classifier_error_text(self, obj: UnmatchedMessage) -> SafeString:
        return format_html('<pre class="bt-raw">{}</pre>', visible_text(obj.classifier_error))

    def has_attach_permission(self, request: HttpRequest) -> bool:
        # The list stays read-only; "change" on unmatched mail means attaching it.
        return request.user.has_perm(f"{self.opts.app_label}.change_unmatchedmessage")

    @admin.action(description="Attach to an address (record as its bounce)", permissions=["attach"])
    def attach_to_address(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponse | None:
        """Asks for the address first; then records each message for it, once, and
        removes it from unmatched mail."""
        selected = list(queryset)
        form = AttachForm(
            request.POST if request.POST.get("post") == "yes" else None,
            initial={"address": _tracked_address_of(selected)},
        )
        if form.is_bound and form.is_valid():
            self._attach(request, list(queryset.defer(None)), form.cleaned_data["address"])
            return None
        rows = [
            {
                "received_at": unmatched.received_at,
                "envelope_recipient": visible_text(unmatched.envelope_recipient),
                "kind": "classifier failed, needs review"
                if unmatched.needs_review
                else unmatched.get_kind_display(),
                "status": visible_text(unmatched.status),
                "diagnostic": visible_text(shorten(unmatched.diagnostic, DIAGNOSTIC_PREVIEW)),
            }
            for unmatched in selected
        ]
        return self.action_page(
            request,
            "admin/bounce_tracker/unmatchedmessage/attach_to_address.html",
            "Attach unmatched mail to an address",
            action_name="attach_to_address",
            pks=[unmatched.pk for unmatched in selected],
            form=form,
            rows=rows,
        )

    def _attach(
        self,
        request: HttpRequest,
        unmatched_messages: Iterable[UnmatchedMessage],
        tracker: EmailAddressTracker,
    ) -> None:
        tracker_settings = get_settings()
        address = visible_text(tracker.email)
        recorded = duplicates = 0
        for unmatched in unmatched_messages:
            received = date_format(timezone.localtime(unmatched.received_at), "DATETIME_FORMAT")
            if unmatched.source == EventSource.ESP:
                # Its raw bytes are the ESP's JSON, not a message to classify again.
                self.message_user(
                    request,
                    f"The ESP event for {visible_text(unmatched.envelope_recipient)} received "
                    f"{received} can't be attached: only mail can be classified again.",
                    messages.WARNING,
                )
                continue
            if not unmatched.raw_message and unmatched.raw_size:
                # prune_bounce_events stripped it: nothing left to classify again.
                self.message_user(
                    request,
                    f"The message to {visible_text(unmatched.envelope_recipient)} received "
                    f"{received} can't be attached: its raw message was removed by retention.",
                    messages.WARNING,
                )
                continue
            result = record_unmatched_message(unmatched, tracker, tracker_settings=tracker_settings)
            if result.outcome == Outcome.NEEDS_REVIEW:
                self.message_user(
                    request,
                    f"The classifier still fails on the message to "
                    f"{visible_text(unmatched.envelope_recipient)} received {received} "
                    f"({visible_text(unmatched.reason)}): nothing recorded; it stays here, "
                    "flagged for review.",
                    messages.ERROR,
                )
                continue
            kind = BounceKind(result.kind).label
            if result.outcome == Outcome.RECORDED and result.event is not None:
                recorded += 1
                status = f" {result.event.status}" if result.event.status else ""
                self.log_change(
                    request,
                    tracker,
                    f"Attached unmatched message to {unmatched.envelope_recipient} (received "
                    f"{received}): recorded as {kind}{status}, bounce event #{result.event.pk}.",
                )
            else:
                duplicates += 1
                earlier = result.event
                where = (
                    f" for {visible_text(earlier.tracker.email)} (bounce event #{earlier.pk})"
                    if earlier is not None
                    else ""
                )
                self.message_user(
                    request,
                    f"The message to {visible_text(unmatched.envelope_recipient)} received "
                    f"{received} was already recorded{where}; nothing counted twice.",
                    messages.WARNING,
                )
            with transaction.atomic():
                _log_deletion(self, request, unmatched)
                unmatched.delete()
        if recorded:
            self.message_user(
                request,
                f"Recorded {recorded} message(s) for {address} and removed them from "
                "unmatched mail.",
                messages.SUCCESS,
            )
        elif duplicates:
            self.message_user(request, f"Nothing new recorded for {address}.", messages.WARNING)
