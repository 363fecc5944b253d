"""Django admin for support staff: addresses, their bounce history, unmatched mail.

Support staff answer "why doesn't this customer get our mail?" here. What they can do
depends on two permissions of ``EmailAddressTracker`` (both given to the "Bounce
support" group by migration 0002):

``bounce_tracker.toggle_ignore_bounces``
    the IgnoreBounces buttons (list and detail page) and the two bulk actions;
``bounce_tracker.unsuppress_address``
    the "un-suppress and reset counters" action, which asks for confirmation first.

Counters, dates and recorded events are read-only for everyone. Every change made
here is written to Django's admin log. Text that arrived by mail (addresses,
diagnostics, raw messages) is shown as text: escaped by the templates, with Unicode
bidirectional controls made visible so that they can't reorder what staff read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import SafeString

from bounce_tracker.core.addresses import InvalidAddressError, normalize_email
from bounce_tracker.core.events import Outcome
from bounce_tracker.core.kinds import BounceKind
from bounce_tracker.core.settings import get_settings, normalize_domain
from bounce_tracker.core.verp import local_part_of
from bounce_tracker.models import (
    BounceEvent,
    EmailAddressTracker,
    EventSource,
    UnmatchedMessage,
)
from bounce_tracker.policy import AddressState, address_state, address_state_q, evaluate
from bounce_tracker.receiving.receive import record_unmatched_message

TOGGLE_PERMISSION = "toggle_ignore_bounces"
UNSUPPRESS_PERMISSION = "unsuppress_address"
#: Events shown on an address's page; the rest are one link away.
HISTORY_LIMIT = 50
#: Characters of a diagnostic shown in lists (the detail page shows all of it).
DIAGNOSTIC_PREVIEW = 200
#: Rows changed per transaction by the bulk actions (also keeps ``IN`` lists short).
CHUNK_SIZE = 500
#: Addresses listed by name on the un-suppress confirmation page.
CONFIRMATION_LIST_LIMIT = 1000

# Unicode bidirectional controls (LRM, RLM, ALM, embeddings, overrides, isolates):
# an RTL override makes "gro.elpmaxe@..." read as an unrelated address.
_BIDI_CONTROLS_RE = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

_DEFAULT_POLICY = "bounce_tracker.policy.default_policy"
#: The toggle button's label for the value it sets.
_TOGGLE_LABELS = {"on": "Ignore bounces", "off": "Stop ignoring"}


# --- showing text that arrived by mail --------------------------------------------------


def visible_text(text: str) -> str:
    """``text`` with bidirectional controls replaced by visible ``[U+202E]`` markers."""
    return _BIDI_CONTROLS_RE.sub(lambda match: f"[U+{ord(match.group()):04X}]", text)


def shorten(text: str, limit: int | None) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "\u2026"


def text_html(value: object, limit: int | None = None) -> SafeString:
    """Mail-borne text as inert HTML: escaped, bidi controls visible, long lines wrapped."""
    text = "" if value is None else str(value)
    return format_html('<span class="bt-text">{}</span>', visible_text(shorten(text, limit)))


def _text_column(
    field: str, description: str, limit: int | None = None
) -> Callable[[Any, Any], SafeString]:
    """A list/readonly column showing ``field`` through :func:`text_html`.

    Sortable by the field, except previews (``limit``) of long text.
    """

    @admin.display(description=description, ordering=None if limit else field)
    def column(model_admin: Any, obj: Any) -> SafeString:
        return text_html(getattr(obj, field), limit)

    return column


def _moment_column(field: str, description: str) -> Callable[[Any, Any], SafeString | str]:
    """A compact, sortable date-and-time column (``2026-05-03 14:07``, local time)."""

    @admin.display(description=description, ordering=field)
    def column(model_admin: Any, obj: Any) -> SafeString | str:
        moment = getattr(obj, field)
        if moment is None:
            return "never"
        local = timezone.localtime(moment)
        return format_html(
            '<time datetime="{}">{}</time>', local.isoformat(), local.strftime("%Y-%m-%d %H:%M")
        )

    return column


def _day(moment: datetime | None) -> str:
    return date_format(timezone.localtime(moment), "DATE_FORMAT") if moment else "never"


def _chunks(items: Sequence[Any], size: int = CHUNK_SIZE) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _safe_next(request: HttpRequest, fallback: str) -> str:
    """The ``next`` URL of a POST (or its query string) when it is local, else ``fallback``."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


def _log_deletion(model_admin: admin.ModelAdmin, request: HttpRequest, obj: Any) -> None:  # type: ignore[type-arg]
    """Admin-log a deletion (``log_deletions`` since Django 5.1, ``log_deletion`` before)."""
    log_deletions = getattr(model_admin, "log_deletions", None)
    if log_deletions is not None:
        log_deletions(request, [obj])
    else:  # Django < 5.1
        model_admin.log_deletion(request, obj, str(obj))  # type: ignore[attr-defined]


# --- policy state, in words ---------------------------------------------------------------


def state_badge(state: AddressState) -> SafeString:
    """The state as a badge: a text label, with a CSS class for colour."""
    return format_html('<span class="bt-state bt-state-{}">{}</span>', state.value, state.label)


def verdict_text(tracker: EmailAddressTracker, now: datetime | None = None) -> str:
    """The default rules' verdict on ``tracker`` in words, e.g. "sent to" or "not sent to
    since May 3, 2026: hard bounce (5.1.1 user unknown)"."""
    verdict = evaluate(tracker, get_settings(), now)
    if verdict.send:
        return f"sent to: {verdict.reason}" if verdict.reason else "sent to"
    return verdict.reason


def unsuppress_changes(tracker: EmailAddressTracker) -> list[str]:
    """What "un-suppress and reset counters" changes on ``tracker``, one line per change."""
    changes = []
    if tracker.suppressed_reason:
        label = tracker.get_suppressed_reason_display()
        since = f" since {_day(tracker.suppressed_at)}" if tracker.suppressed_at else ""
        detail = f": {visible_text(tracker.suppressed_detail)}" if tracker.suppressed_detail else ""
        changes.append(f"suppression mark cleared (was: {label}{since}{detail})")
    if tracker.bounce_count:
        changes.append(f"bounce count reset from {tracker.bounce_count} to 0")
    if tracker.first_bounce or tracker.last_bounce or tracker.last_bounce2 or tracker.last_bounce3:
        changes.append(
            f"first and last bounce times cleared (first bounce {_day(tracker.first_bounce)}, "
            f"last bounce {_day(tracker.last_bounce)})"
        )
    return changes


_UNSUPPRESS_VALUES: dict[str, Any] = {
    "suppressed_reason": "",
    "suppressed_at": None,
    "suppressed_detail": "",
    "bounce_count": 0,
    "first_bounce": None,
    "last_bounce": None,
    "last_bounce2": None,
    "last_bounce3": None,
}


# --- filters ----------------------------------------------------------------------------


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


# --- the bounce history on an address's page --------------------------------------------


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


class RawMessageLinksMixin:
    """A column with links to the raw-message view and download of an event/message."""

    raw_url_prefix: str

    @admin.display(description="raw message")
    def raw_message_links(self, obj: BounceEvent | UnmatchedMessage) -> SafeString:
        view = reverse(f"admin:{self.raw_url_prefix}_raw", args=[quote(obj.pk)])
        download = reverse(f"admin:{self.raw_url_prefix}_raw_download", args=[quote(obj.pk)])
        return format_html(
            '<a href="{}">view as text</a> | <a href="{}">download</a>', view, download
        )


class BounceEventInline(RawMessageLinksMixin, admin.TabularInline):  # type: ignore[type-arg]
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

    status_text = _text_column("status", "status")
    diagnostic_text = _text_column("diagnostic", "diagnostic", DIAGNOSTIC_PREVIEW)
    reporting_mta_text = _text_column("reporting_mta", "reporting MTA")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).defer("raw_message")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- a base for the three admins ---------------------------------------------------------


class _VisibleName:
    """Stands in for a row where Django's admin writes ``str(obj)`` into an attribute."""

    def __init__(self, obj: Any) -> None:
        self.pk = obj.pk
        self._name = visible_text(str(obj))

    def __str__(self) -> str:
        return self._name


class InertTextAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Shows each row's name (mail-borne for addresses) with bidi controls made visible."""

    @admin.display(description=getattr(admin.ModelAdmin.action_checkbox, "short_description", ""))
    def action_checkbox(self, obj: Any) -> SafeString:
        # Django 5 writes str(obj) into the checkbox's aria-label.
        return super().action_checkbox(_VisibleName(obj))

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None:  # the title and breadcrumb show str(obj)
            context["subtitle"] = visible_text(str(obj))
        return super().render_change_form(request, context, add, change, form_url, obj)


# --- addresses --------------------------------------------------------------------------


_TRACKER_READONLY = (
    "address",
    "encoded_from_text",
    "msg_count",
    "first_email",
    "last_email",
    "first_bounce",
    "last_bounce",
    "last_bounce2",
    "last_bounce3",
    "bounce_count",
    "last_event_kind",
    "suppressed_reason",
    "suppressed_at",
    "suppressed_detail_text",
)


@admin.register(EmailAddressTracker)
class EmailAddressTrackerAdmin(InertTextAdmin):
    list_display = (
        "address",
        "state",
        "bounce_count",
        "last_bounce_at",
        "last_email_at",
        "msg_count",
    )
    list_display_links = ("address",)
    list_filter = (AddressStateFilter, LastBounceFilter, "last_event_kind", "ignore_bounces")
    # get_search_results does the searching; search_fields only turns the box on.
    search_fields = ("email", "encoded_from")
    search_help_text = (
        "Part of an address in any letter case, a VERP local part, or a whole bounce address."
    )
    show_full_result_count = False
    if hasattr(admin, "ShowFacets"):  # Django 5.0+: counting per filter choice is slow here
        show_facets = admin.ShowFacets.NEVER
    actions = ("ignore_bounces_selected", "stop_ignoring_bounces_selected", "unsuppress_selected")
    readonly_fields = _TRACKER_READONLY
    fieldsets = (
        (None, {"fields": ("address", "encoded_from_text", "ignore_bounces")}),
        (
            "Suppression",
            {"fields": ("suppressed_reason", "suppressed_at", "suppressed_detail_text")},
        ),
        ("Sending", {"fields": ("msg_count", "first_email", "last_email")}),
        (
            "Bounces",
            {
                "fields": (
                    "bounce_count",
                    "last_event_kind",
                    "first_bounce",
                    "last_bounce",
                    "last_bounce2",
                    "last_bounce3",
                )
            },
        ),
    )
    inlines = (BounceEventInline,)

    encoded_from_text = _text_column("encoded_from", "VERP local part")
    suppressed_detail_text = _text_column("suppressed_detail", "suppression detail")

    @admin.display(description="email address", ordering="email")
    def address(self, obj: EmailAddressTracker) -> SafeString:
        return text_html(obj.email)

    last_bounce_at = _moment_column("last_bounce", "last bounce")
    last_email_at = _moment_column("last_email", "last email")

    @admin.display(description="state")
    def state(self, obj: EmailAddressTracker) -> SafeString:
        return state_badge(address_state(obj, get_settings()))

    # --- permissions

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Rows are created by sending; an address typed by hand would have no VERP local part.
        return False

    def has_toggle_ignore_bounces_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.{TOGGLE_PERMISSION}")

    def has_unsuppress_address_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.{UNSUPPRESS_PERMISSION}")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        readonly = list(super().get_readonly_fields(request, obj))
        if not self.has_toggle_ignore_bounces_permission(request):
            readonly.append("ignore_bounces")
        return readonly

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Write only what the form changed: a full save would put back the counters as
        # they were read, undoing a bounce recorded in the meantime.
        editable = {field.name for field in obj._meta.concrete_fields}
        obj.save(update_fields=[name for name in form.changed_data if name in editable])

    # --- the list

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        columns: list[Any] = list(super().get_list_display(request))
        if self.has_toggle_ignore_bounces_permission(request):
            # Next to the state it changes.
            columns.insert(columns.index("state") + 1, self._toggle_column(request.get_full_path()))
        return columns

    def _toggle_column(self, back_url: str) -> Callable[[EmailAddressTracker], SafeString]:
        """The one-click IgnoreBounces button of each row.

        The list is one big form (for the actions) and forms can't nest, so each button
        submits that form, CSRF token included, to the toggle URL (``formaction``).
        """

        @admin.display(description="ignore bounces")
        def ignore_bounces_toggle(obj: EmailAddressTracker) -> SafeString:
            target = "off" if obj.ignore_bounces else "on"
            url = reverse(self._url_name("ignore_bounces"), args=[quote(obj.pk)])
            return format_html(
                '<button type="submit" class="button bt-toggle bt-toggle-{}" formmethod="post"'
                ' formaction="{}?{}" name="ignore_bounces" value="{}" aria-label="{}: {}">'
                "{}</button>",
                target,
                url,
                urlencode({"next": back_url}),
                target,
                _TOGGLE_LABELS[target],
                visible_text(obj.email),
                _TOGGLE_LABELS[target],
            )

        return ignore_bounces_toggle

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        # Addresses and local parts are stored lower-case (and IDN domains in their
        # ASCII form): lower-casing the term makes a case-sensitive LIKE find them on
        # every database, including MariaDB's binary collation on these columns.
        for term in search_term.split():
            queryset = queryset.filter(_address_search_q(term))
        return queryset, False

    # --- the detail page

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None:
            tracker_settings = get_settings()
            context["bt_state"] = address_state(obj, tracker_settings)
            context["bt_state_badge"] = state_badge(context["bt_state"])
            context["bt_verdict"] = visible_text(verdict_text(obj))
            context["bt_policy_note"] = _policy_note(tracker_settings.policy)
            context["bt_observe_only"] = tracker_settings.observe_only
            if self.has_toggle_ignore_bounces_permission(request):
                target = "off" if obj.ignore_bounces else "on"
                context["bt_toggle"] = {
                    "url": reverse(self._url_name("ignore_bounces"), args=[quote(obj.pk)]),
                    "value": target,
                    "label": _TOGGLE_LABELS[target],
                    "next": request.get_full_path(),
                }
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- custom URLs

    def _url_name(self, suffix: str) -> str:
        return f"admin:{self.opts.app_label}_{self.opts.model_name}_{suffix}"

    def get_urls(self) -> list[URLPattern]:
        from bounce_tracker.admin import dashboard

        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "dashboard/",
                self.admin_site.admin_view(dashboard.dashboard_view),
                name="bounce_tracker_dashboard",
            ),
            path(
                "<path:object_id>/ignore-bounces/",
                self.admin_site.admin_view(self.toggle_ignore_bounces_view),
                name=f"{prefix}_ignore_bounces",
            ),
            *super().get_urls(),
        ]

    def toggle_ignore_bounces_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST ``ignore_bounces=on|off``: set IgnoreBounces on one address, then go back.

        The wanted value is sent rather than "flip", so a double click or a stale page
        can't undo what the first click did.
        """
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_toggle_ignore_bounces_permission(request):
            raise PermissionDenied
        wanted = request.POST.get("ignore_bounces")
        if wanted not in ("on", "off"):
            return HttpResponseBadRequest("ignore_bounces must be 'on' or 'off'.")
        tracker = self.get_object(request, unquote(object_id))
        if tracker is None:
            raise Http404("No such address.")
        changed = self.set_ignore_bounces(request, [tracker.pk], wanted == "on", "one click")
        state = "on" if wanted == "on" else "off"
        name = visible_text(tracker.email)
        if changed:
            self.message_user(request, f"Ignore bounces is now {state} for {name}.")
        else:
            self.message_user(
                request, f"Ignore bounces was already {state} for {name}.", messages.WARNING
            )
        fallback = reverse(self._url_name("changelist"))
        return HttpResponseRedirect(_safe_next(request, fallback))

    # --- changes, each logged

    def set_ignore_bounces(
        self, request: HttpRequest, pks: Sequence[Any], value: bool, how: str
    ) -> list[EmailAddressTracker]:
        """Set ``ignore_bounces`` on the rows that differ; log each change; return them."""
        message = f"Turned ignore bounces {'on' if value else 'off'} ({how})."
        changed: list[EmailAddressTracker] = []
        for chunk in _chunks(list(pks)):
            with transaction.atomic():
                rows = list(
                    EmailAddressTracker.objects.select_for_update()
                    .filter(pk__in=chunk)
                    .exclude(ignore_bounces=value)
                )
                if not rows:
                    continue
                EmailAddressTracker.objects.filter(pk__in=[row.pk for row in rows]).update(
                    ignore_bounces=value
                )
                for row in rows:
                    row.ignore_bounces = value
                    self.log_change(request, row, message)
                changed += rows
        return changed

    def unsuppress(self, request: HttpRequest, pks: Sequence[Any]) -> list[EmailAddressTracker]:
        """Clear the suppression mark and the bounce counters and times; log each change.

        Rows are locked while read and reset, so the log says exactly what was reset.
        The bounce history (events) is kept.
        """
        changed: list[EmailAddressTracker] = []
        for chunk in _chunks(list(pks)):
            with transaction.atomic():
                rows = list(EmailAddressTracker.objects.select_for_update().filter(pk__in=chunk))
                rows = [row for row in rows if unsuppress_changes(row)]
                if not rows:
                    continue
                EmailAddressTracker.objects.filter(pk__in=[row.pk for row in rows]).update(
                    **_UNSUPPRESS_VALUES
                )
                for row in rows:
                    message = "Un-suppressed and reset counters: " + "; ".join(
                        unsuppress_changes(row)
                    )
                    for field, value in _UNSUPPRESS_VALUES.items():
                        setattr(row, field, value)
                    self.log_change(request, row, message + ".")
                changed += rows
        return changed

    # --- bulk actions

    @admin.action(
        description="Ignore bounces of the selected addresses (always send)",
        permissions=[TOGGLE_PERMISSION],
    )
    def ignore_bounces_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        pks = list(queryset.values_list("pk", flat=True))
        changed = self.set_ignore_bounces(request, pks, True, "bulk action")
        self.message_user(request, f"Ignore bounces turned on for {len(changed)} address(es).")

    @admin.action(
        description="Stop ignoring bounces of the selected addresses",
        permissions=[TOGGLE_PERMISSION],
    )
    def stop_ignoring_bounces_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        pks = list(queryset.values_list("pk", flat=True))
        changed = self.set_ignore_bounces(request, pks, False, "bulk action")
        self.message_user(request, f"Ignore bounces turned off for {len(changed)} address(es).")

    @admin.action(
        description="Un-suppress the selected addresses and reset their counters",
        permissions=[UNSUPPRESS_PERMISSION],
    )
    def unsuppress_selected(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponse | None:
        """Shows what will change first; acts only on the confirmation POST."""
        if request.POST.get("post") == "yes":
            pks = list(queryset.values_list("pk", flat=True))
            changed = self.unsuppress(request, pks)
            self.message_user(
                request, f"Un-suppressed and reset the counters of {len(changed)} address(es)."
            )
            return None
        trackers = list(queryset)
        tracker_settings = get_settings()
        rows = [
            {
                "address": visible_text(tracker.email),
                "state_badge": state_badge(address_state(tracker, tracker_settings)),
                "changes": unsuppress_changes(tracker),
            }
            for tracker in trackers[:CONFIRMATION_LIST_LIMIT]
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Un-suppress and reset counters?",
            "opts": self.opts,
            "rows": rows,
            "not_listed": max(0, len(trackers) - CONFIRMATION_LIST_LIMIT),
            "pks": [tracker.pk for tracker in trackers],
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "action_name": "unsuppress_selected",
            "back_url": request.get_full_path(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request,
            "admin/bounce_tracker/emailaddresstracker/unsuppress_confirmation.html",
            context,
        )


def _policy_note(policy: str) -> str:
    if policy == _DEFAULT_POLICY:
        return ""
    return f"Verdict by the default rules; this site's POLICY setting is {policy}."


def _address_search_q(term: str) -> Q:
    """Rows whose address or VERP local part contains ``term`` (any letter case)."""
    term = term.lower()
    query = Q(email__contains=term) | Q(encoded_from__contains=term)
    if "@" in term:
        # A whole bounce address (bounces+token@bounces.example.com) finds its row.
        query |= Q(encoded_from=local_part_of(term))
    if not term.isascii():
        # Domains are stored in their ASCII (IDNA) form: "bücher" finds xn--bcher-kva.
        local_part, at, domain = term.rpartition("@")
        ascii_term = f"{local_part}{at}{normalize_domain(domain)}" if domain else term
        if ascii_term != term:
            query |= Q(email__contains=ascii_term)
    return query


# --- bounce events ------------------------------------------------------------------------


class RawMessageAdmin(RawMessageLinksMixin, InertTextAdmin):
    """Read-only admin of a model with a stored raw message: a text view and a download."""

    raw_filename_prefix: str

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Lists and detail pages never need the raw bytes (up to RAW_MESSAGE_MAX_BYTES each).
        return super().get_queryset(request).defer("raw_message")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/raw/",
                self.admin_site.admin_view(self.raw_message_view),
                name=f"{self.raw_url_prefix}_raw",
            ),
            path(
                "<path:object_id>/raw/download/",
                self.admin_site.admin_view(self.raw_message_download),
                name=f"{self.raw_url_prefix}_raw_download",
            ),
            *super().get_urls(),
        ]

    def _raw_object(self, request: HttpRequest, object_id: str) -> Any:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            obj = self.get_queryset(request).defer(None).get(pk=unquote(object_id))
        except (self.model.DoesNotExist, ValidationError, ValueError) as exc:
            raise Http404("No such message.") from exc
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        return obj

    def raw_message_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The stored raw message as text: UTF-8 with replacement characters, escaped."""
        obj = self._raw_object(request, object_id)
        raw = bytes(obj.raw_message)
        text = visible_text(raw.decode("utf-8", errors="replace"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Raw message",
            "subtitle": visible_text(str(obj)),
            "opts": self.opts,
            "original": obj,
            "object_label": visible_text(shorten(str(obj), 80)),
            "change_url": reverse(f"admin:{self.raw_url_prefix}_change", args=[quote(obj.pk)]),
            "download_url": reverse(
                f"admin:{self.raw_url_prefix}_raw_download", args=[quote(obj.pk)]
            ),
            "raw_text": text,
            "stored_bytes": len(raw),
            "raw_size": obj.raw_size,
            "truncated": obj.raw_truncated or obj.raw_size > len(raw),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/bounce_tracker/raw_message.html", context)

    def raw_message_download(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The stored raw bytes as a file download; never rendered by the browser."""
        obj = self._raw_object(request, object_id)
        raw = bytes(obj.raw_message)
        response = HttpResponse(raw, content_type="application/octet-stream")
        response["Content-Disposition"] = (
            f'attachment; filename="{self.raw_filename_prefix}-{obj.pk}.eml"'
        )
        response["Content-Length"] = str(len(raw))
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return response


@admin.register(BounceEvent)
class BounceEventAdmin(RawMessageAdmin):
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
        "status_text",
        "diagnostic_full",
        "recipient_text",
        "reporting_mta_text",
        "envelope_sender_text",
        "envelope_recipient_text",
        "original_message_id_text",
        "classifier_reason",
        "source",
        "fingerprint",
        "raw_size",
        "raw_truncated",
        "raw_message_links",
    )
    readonly_fields = fields

    status_text = _text_column("status", "status")
    diagnostic_text = _text_column("diagnostic", "diagnostic", DIAGNOSTIC_PREVIEW)
    diagnostic_full = _text_column("diagnostic", "diagnostic")
    recipient_text = _text_column("recipient", "failed recipient")
    reporting_mta_text = _text_column("reporting_mta", "reporting MTA")
    envelope_sender_text = _text_column("envelope_sender", "envelope sender")
    envelope_recipient_text = _text_column("envelope_recipient", "envelope recipient")
    original_message_id_text = _text_column("original_message_id", "original Message-ID")

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


# --- unmatched mail ---------------------------------------------------------------------


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


@admin.register(UnmatchedMessage)
class UnmatchedMessageAdmin(RawMessageAdmin):
    raw_url_prefix = "bounce_tracker_unmatchedmessage"
    raw_filename_prefix = "unmatched-message"
    list_display = (
        "received_at",
        "envelope_recipient_text",
        "kind",
        "status_text",
        "diagnostic_text",
        "reason_text",
        "raw_message_links",
    )
    list_display_links = ("received_at",)
    list_filter = ("kind", "source", ("received_at", admin.DateFieldListFilter))
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
        "source",
        "fingerprint",
        "raw_size",
        "raw_truncated",
        "raw_message_links",
    )
    readonly_fields = fields

    envelope_recipient_text = _text_column("envelope_recipient", "envelope recipient")
    envelope_sender_text = _text_column("envelope_sender", "envelope sender")
    reason_text = _text_column("reason", "why unmatched")
    status_text = _text_column("status", "status")
    diagnostic_text = _text_column("diagnostic", "diagnostic", DIAGNOSTIC_PREVIEW)
    diagnostic_full = _text_column("diagnostic", "diagnostic")
    recipient_text = _text_column("recipient", "failed recipient")

    def has_attach_permission(self, request: HttpRequest) -> bool:
        # The list stays read-only; "change" on unmatched mail means attaching it.
        return request.user.has_perm(f"{self.opts.app_label}.change_unmatchedmessage")

    @admin.action(description="Attach to an address (record as its bounce)", permissions=["attach"])
    def attach_to_address(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponse | None:
        """Asks for the address first; then records each message for it, once, and
        removes it from unmatched mail."""
        form = AttachForm(request.POST if request.POST.get("post") == "yes" else None)
        if form.is_bound and form.is_valid():
            self._attach(request, list(queryset.defer(None)), form.cleaned_data["address"])
            return None
        selected = list(queryset)
        rows = [
            {
                "received_at": unmatched.received_at,
                "envelope_recipient": visible_text(unmatched.envelope_recipient),
                "kind": unmatched.get_kind_display(),
                "status": visible_text(unmatched.status),
                "diagnostic": visible_text(shorten(unmatched.diagnostic, DIAGNOSTIC_PREVIEW)),
            }
            for unmatched in selected
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Attach unmatched mail to an address",
            "opts": self.opts,
            "form": form,
            "rows": rows,
            "pks": [unmatched.pk for unmatched in selected],
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "action_name": "attach_to_address",
            "back_url": request.get_full_path(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/bounce_tracker/unmatchedmessage/attach_to_address.html", context
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
