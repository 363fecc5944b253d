"""Django admin for support staff: addresses, their bounce history, unmatched mail.

Counters, dates and recorded events are read-only: support staff toggle
IgnoreBounces and read the history, they don't type bounce counts.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage

_EVENT_FIELDS = (
    "received_at",
    "kind",
    "status",
    "diagnostic",
    "recipient",
    "reporting_mta",
    "counted",
)


class BounceEventInline(admin.TabularInline):  # type: ignore[type-arg]
    model = BounceEvent
    fields = _EVENT_FIELDS
    readonly_fields = _EVENT_FIELDS
    ordering = ("-received_at",)
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "bounce history (newest first)"

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).defer("raw_message")


@admin.register(EmailAddressTracker)
class EmailAddressTrackerAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "email",
        "ignore_bounces",
        "suppressed_reason",
        "bounce_count",
        "last_bounce",
        "last_email",
        "msg_count",
    )
    list_filter = ("ignore_bounces", "suppressed_reason")
    list_editable = ("ignore_bounces",)
    search_fields = ("email", "encoded_from")
    show_full_result_count = False
    readonly_fields = (
        "email",
        "encoded_from",
        "msg_count",
        "first_email",
        "last_email",
        "first_bounce",
        "last_bounce",
        "last_bounce2",
        "last_bounce3",
        "bounce_count",
        "suppressed_reason",
        "suppressed_at",
        "suppressed_detail",
    )
    fieldsets = (
        (None, {"fields": ("email", "encoded_from", "ignore_bounces")}),
        ("Suppression", {"fields": ("suppressed_reason", "suppressed_at", "suppressed_detail")}),
        ("Sending", {"fields": ("msg_count", "first_email", "last_email")}),
        (
            "Bounces",
            {
                "fields": (
                    "bounce_count",
                    "first_bounce",
                    "last_bounce",
                    "last_bounce2",
                    "last_bounce3",
                )
            },
        ),
    )
    inlines = (BounceEventInline,)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Rows are created by sending; an address typed by hand would have no VERP local part.
        return False


@admin.register(BounceEvent)
class BounceEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("received_at", "tracker", "kind", "status", "recipient", "reporting_mta")
    list_filter = ("kind", "counted", "source")
    search_fields = ("tracker__email", "recipient", "diagnostic", "status")
    list_select_related = ("tracker",)
    date_hierarchy = "received_at"
    exclude = ("raw_message",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(UnmatchedMessage)
class UnmatchedMessageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("received_at", "envelope_recipient", "envelope_sender", "kind", "reason")
    list_filter = ("kind", "source")
    search_fields = ("envelope_recipient", "envelope_sender", "recipient", "diagnostic")
    date_hierarchy = "received_at"
    exclude = ("raw_message",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
