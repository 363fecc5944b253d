"""The address list's filters: policy state and time of the last bounce."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from bounce_tracker.core.settings import get_settings
from bounce_tracker.policy import AddressState, address_state_q


class AddressStateFilter(admin.SimpleListFilter):
    """The state badge's values, selected by the same rules that draw the badge."""

    title = "state"
    parameter_name = "state"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        return [(str(state.value), str(state.label)) for state in AddressState]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        if value not in AddressState.values:
            return queryset
        return queryset.filter(address_state_q(AddressState(value), get_settings()))


class LastBounceFilter(admin.SimpleListFilter):
    """When the address last bounced (counted bounces only)."""

    title = "last bounce"
    parameter_name = "bounced"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        return [
            ("today", "today"),
            ("7d", "past 7 days"),
            ("30d", "past 30 days"),
            ("never", "never"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        now = timezone.now()
        if value == "today":
            midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
            return queryset.filter(last_bounce__gte=midnight)
        if value in ("7d", "30d"):
            return queryset.filter(last_bounce__gte=now - timedelta(days=int(value[:-1])))
        if value == "never":
            return queryset.filter(last_bounce__isnull=True)
        return queryset
