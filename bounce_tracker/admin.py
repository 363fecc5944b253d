"""Django admin for support staff: addresses, their counters and the IgnoreBounces toggle.

The full support workflow (history, actions, charts) is built on this in later
releases; counters and dates are read-only here so staff can't type them.
"""

from __future__ import annotations

from django.contrib import admin

from bounce_tracker.models import EmailAddressTracker


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

    def has_add_permission(self, request: object) -> bool:
        # Rows are created by sending; an address typed by hand would have no VERP local part.
        return False
