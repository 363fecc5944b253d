"""The bounce history on an address's page: the newest events, the rest one link away."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.http import urlencode

from bounce_tracker.admin.received import ReceivedMessageColumns
from bounce_tracker.admin.text import text_column
from bounce_tracker.models import BounceEvent

#: Events shown on an address's page; the rest are one link away.
HISTORY_LIMIT = 50


class NewestEventsFormSet(BaseInlineFormSet):  # type: ignore[type-arg]
    """The inline's rows: the newest ``HISTORY_LIMIT`` events only."""

    def get_queryset(self) -> QuerySet[Any]:
        if not hasattr(self, "_newest"):
            self._newest = super().get_queryset()[:HISTORY_LIMIT]
        return self._newest

    @cached_property
    def hidden_count(self) -> int:
        """How many older events are not shown (one COUNT, only when the page is full)."""
        shown = len(self.get_queryset())
        if shown < HISTORY_LIMIT or self.queryset is None:
            return 0
        return int(self.queryset.count()) - shown

    @cached_property
    def full_history_url(self) -> str:
        changelist = reverse("admin:bounce_tracker_bounceevent_changelist")
        return f"{changelist}?{urlencode({'tracker__id__exact': self.instance.pk})}"


class BounceEventInline(ReceivedMessageColumns, admin.TabularInline):  # type: ignore[type-arg]
    model = BounceEvent
    formset = NewestEventsFormSet
    template = "admin/bounce_tracker/emailaddresstracker/bounce_history_inline.html"
    raw_url_prefix = "bounce_tracker_bounceevent"
    fields = (
        "received_at",
        "kind",
        "counted",
        "source",
        "status_text",
        "diagnostic_text",
        "reporting_mta_text",
        "raw_message_links",
    )
    readonly_fields = fields
    ordering = ("-received_at", "-pk")
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = f"bounce history (newest first, at most {HISTORY_LIMIT})"

    reporting_mta_text = text_column("reporting_mta", "reporting MTA")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).defer("raw_message")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
