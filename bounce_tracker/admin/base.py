"""The base of the three admins: names shown inertly, and the admins' own pages.

Django's admin writes ``str(obj)`` (for an address: text that arrived by mail) into
titles, breadcrumbs and checkbox labels as it is; here with Unicode bidirectional
controls made visible. The admins' own pages (raw message, confirmations) are drawn
in the admin's frame by :meth:`InertTextAdmin.admin_page`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.safestring import SafeString

from bounce_tracker.core.text import visible_text


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

    def object_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        """Extra template context for ``obj``'s page; nothing by default."""
        return {}

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
            context.update(self.object_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def admin_page(
        self, request: HttpRequest, template: str, title: str, **context: Any
    ) -> TemplateResponse:
        """One of this admin's own pages, in the admin's frame (header, breadcrumbs)."""
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request,
            template,
            {**self.admin_site.each_context(request), "title": title, "opts": self.opts, **context},
        )

    def action_page(
        self,
        request: HttpRequest,
        template: str,
        title: str,
        *,
        action_name: str,
        pks: Sequence[Any],
        **context: Any,
    ) -> TemplateResponse:
        """The page a bulk action shows before it acts.

        Its form posts the action and the selected rows (``pks``) back with
        ``post=yes``; "back" returns to the list as it was.
        """
        return self.admin_page(
            request,
            template,
            title,
            pks=pks,
            action_checkbox_name=ACTION_CHECKBOX_NAME,
            action_name=action_name,
            back_url=request.get_full_path(),
            **context,
        )
