"""The bounce events: every recorded message, read-only, with its raw message."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from bounce_tracker.admin.received import STORAGE_FIELDS, ReceivedMessageAdmin
from bounce_tracker.admin.text import text_column, text_html
from bounce_tracker.classify.inferred import infer_status
from bounce_tracker.core.kinds import BounceKind
from bounce_tracker.models import BounceEvent


@admin.register(BounceEvent)
class BounceEventAdmin(ReceivedMessageAdmin):
    raw_url_prefix = "bounce_tracker_bounceevent"
    raw_filename_prefix = "bounce-event"
    list_display = (
        "received_at",
        "address",
        "kind",
        "counted",
        "status_text",
        "diagnostic_text",
        "reporting_mta_text",
    )
    list_filter = ("kind", "counted", "source", ("received_at", admin.DateFieldListFilter))
    search_fields = ("tracker__email", "diagnostic", "status")
    search_help_text = "Part of the address, the diagnostic or the status code."
    list_select_related = ("tracker",)
    show_full_result_count = False
    if hasattr(admin, "ShowFacets"):
        show_facets = admin.ShowFacets.NEVER
    fields = (
        "address_link",
        "received_at",
        "kind",
        "counted",
        "status_with_inferred",
        "diagnostic_full",
        "recipient_text",
        "reporting_mta_text",
        "envelope_sender_text",
        "envelope_recipient_text",
        "original_message_id_text",
        "classifier_reason",
        *STORAGE_FIELDS,
    )
    readonly_fields = fields

    reporting_mta_text = text_column("reporting_mta", "reporting MTA")
    original_message_id_text = text_column("original_message_id", "original Message-ID")

    @admin.display(description="status")
    def status_with_inferred(self, obj: BounceEvent) -> SafeString:
        """The recorded status, and beside it the one the diagnostic's words mean when
        the report gave none or only x.0.0 (marked "inferred": the report didn't say it)."""
        try:
            kind = BounceKind(obj.kind)
        except ValueError:
            return text_html(obj.status)
        inferred = infer_status(obj.status or None, obj.diagnostic, kind)
        if inferred is None:
            return text_html(obj.status)
        return format_html(
            '{} <span class="bt-inferred" title="{}">{} (inferred)</span>',
            text_html(obj.status or "-"),
            "Not in the report: inferred from the diagnostic's wording.",
            inferred,
        )

    @admin.display(description="address", ordering="tracker__email")
    def address(self, obj: BounceEvent) -> SafeString:
        return text_html(obj.tracker.email)

    @admin.display(description="address")
    def address_link(self, obj: BounceEvent) -> SafeString:
        url = reverse(
            "admin:bounce_tracker_emailaddresstracker_change", args=[quote(obj.tracker_id)]
        )
        return format_html('<a href="{}">{}</a>', url, text_html(obj.tracker.email))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        for term in search_term.split():
            queryset = queryset.filter(
                Q(tracker__email__contains=term.lower())
                | Q(diagnostic__icontains=term)
                | Q(status__startswith=term)
            )
        return queryset, False
