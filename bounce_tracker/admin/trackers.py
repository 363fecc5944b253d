"""The addresses: list, search, state, the IgnoreBounces buttons and the bulk actions.

What support staff can change depends on two permissions of ``EmailAddressTracker``
(both given to the "Bounce support" group, see :mod:`bounce_tracker.core.permissions`):

``bounce_tracker.toggle_ignore_bounces``
    the IgnoreBounces buttons (list and detail page) and the two bulk actions;
``bounce_tracker.unsuppress_address``
    the "un-suppress and reset counters" action, which asks for confirmation first.

The changes themselves are :mod:`bounce_tracker.core.operations`, which row-lock the
addresses and write each change to Django's admin log. Counters and dates are
read-only for everyone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from bounce_tracker.admin import dashboard
from bounce_tracker.admin.base import InertTextAdmin
from bounce_tracker.admin.filters import AddressStateFilter, LastBounceFilter
from bounce_tracker.admin.inlines import BounceEventInline
from bounce_tracker.admin.state import policy_note, state_badge, verdict_text
from bounce_tracker.admin.text import moment_column, safe_next, text_column, text_html
from bounce_tracker.core.operations import set_ignore_bounces, unsuppress, unsuppress_changes
from bounce_tracker.core.settings import get_settings, merged_settings, normalize_domain
from bounce_tracker.core.text import visible_text
from bounce_tracker.core.verp import local_part_of
from bounce_tracker.models import COUNTER_FIELDS, EmailAddressTracker
from bounce_tracker.policy import address_state

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

TOGGLE_PERMISSION = "toggle_ignore_bounces"
UNSUPPRESS_PERMISSION = "unsuppress_address"
#: Addresses listed by name on the un-suppress confirmation page.
CONFIRMATION_LIST_LIMIT = 1000
#: The toggle button's label for the value it sets.
_TOGGLE_LABELS = {"on": "Ignore bounces", "off": "Stop ignoring"}


def _user(request: HttpRequest) -> AbstractBaseUser | None:
    """Who the admin log names: the admin's views only serve logged-in staff."""
    user = request.user
    return user if user.is_authenticated else None


def address_search_q(term: str) -> Q:
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
    readonly_fields = (
        "address",
        "encoded_from_text",
        *COUNTER_FIELDS,
        "last_event_kind",
        "suppressed_reason",
        "suppressed_at",
        "suppressed_detail_text",
    )
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

    encoded_from_text = text_column("encoded_from", "VERP local part")
    suppressed_detail_text = text_column("suppressed_detail", "suppression detail")

    @admin.display(description="email address", ordering="email")
    def address(self, obj: EmailAddressTracker) -> SafeString:
        return text_html(obj.email)

    last_bounce_at = moment_column("last_bounce", "last bounce")
    last_email_at = moment_column("last_email", "last email")

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
            queryset = queryset.filter(address_search_q(term))
        return queryset, False

    # --- the detail page

    def object_context(self, request: HttpRequest, obj: EmailAddressTracker) -> dict[str, Any]:
        """The verdict in words above the fields, and the IgnoreBounces button."""
        tracker_settings = get_settings()
        state = address_state(obj, tracker_settings)
        context: dict[str, Any] = {
            "bt_state": state,
            "bt_state_badge": state_badge(state),
            "bt_verdict": visible_text(verdict_text(obj)),
            # POLICY is the sending side's setting: shown as written, never imported here.
            "bt_policy_note": policy_note(str(merged_settings().get("POLICY"))),
            "bt_observe_only": tracker_settings.observe_only,
        }
        if self.has_toggle_ignore_bounces_permission(request):
            target = "off" if obj.ignore_bounces else "on"
            context["bt_toggle"] = {
                "url": reverse(self._url_name("ignore_bounces"), args=[quote(obj.pk)]),
                "value": target,
                "label": _TOGGLE_LABELS[target],
                "next": request.get_full_path(),
            }
        return context

    # --- custom URLs

    def _url_name(self, suffix: str) -> str:
        return f"admin:{self.opts.app_label}_{self.opts.model_name}_{suffix}"

    def get_urls(self) -> list[URLPattern]:
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
        changed = set_ignore_bounces(tracker, wanted == "on", by=_user(request), reason="one click")
        name = visible_text(tracker.email)
        if changed:
            self.message_user(request, f"Ignore bounces is now {wanted} for {name}.")
        else:
            self.message_user(
                request, f"Ignore bounces was already {wanted} for {name}.", messages.WARNING
            )
        fallback = reverse(self._url_name("changelist"))
        return HttpResponseRedirect(safe_next(request, fallback))

    # --- bulk actions

    @admin.action(
        description="Ignore bounces of the selected addresses (always send)",
        permissions=[TOGGLE_PERMISSION],
    )
    def ignore_bounces_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        changed = set_ignore_bounces(queryset, True, by=_user(request), reason="bulk action")
        self.message_user(request, f"Ignore bounces turned on for {len(changed)} address(es).")

    @admin.action(
        description="Stop ignoring bounces of the selected addresses",
        permissions=[TOGGLE_PERMISSION],
    )
    def stop_ignoring_bounces_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        changed = set_ignore_bounces(queryset, False, by=_user(request), reason="bulk action")
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
            changed = unsuppress(queryset, by=_user(request))
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
        return self.action_page(
            request,
            "admin/bounce_tracker/emailaddresstracker/unsuppress_confirmation.html",
            "Un-suppress and reset counters?",
            action_name="unsuppress_selected",
            pks=[tracker.pk for tracker in trackers],
            rows=rows,
            not_listed=max(0, len(trackers) - CONFIRMATION_LIST_LIMIT),
        )
