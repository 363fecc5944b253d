"""Showing text that arrived by mail: escaped, bidi controls visible, long lines wrapped.

Addresses, diagnostics and raw messages are written by strangers. The templates
escape them; these columns also make Unicode bidirectional controls visible
(:func:`bounce_tracker.core.text.visible_text`) so they can't reorder what staff read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString

from bounce_tracker.core.text import shorten, visible_text

#: Characters of a diagnostic shown in lists (the detail page shows all of it).
DIAGNOSTIC_PREVIEW = 200


def text_html(value: object, limit: int | None = None) -> SafeString:
    """Mail-borne text as inert HTML: escaped, bidi controls visible, long lines wrapped."""
    text = "" if value is None else str(value)
    return format_html('<span class="bt-text">{}</span>', visible_text(shorten(text, limit)))


def text_column(
    field: str, description: str, limit: int | None = None
) -> Callable[[Any, Any], SafeString]:
    """A list/readonly column showing ``field`` through :func:`text_html`.

    Sortable by the field, except previews (``limit``) of long text.
    """

    @admin.display(description=description, ordering=None if limit else field)
    def column(model_admin: Any, obj: Any) -> SafeString:
        return text_html(getattr(obj, field), limit)

    return column


def moment_column(field: str, description: str) -> Callable[[Any, Any], SafeString | str]:
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


def safe_next(request: HttpRequest, fallback: str) -> str:
    """The ``next`` URL of a POST (or its query string) when it is local, else ``fallback``."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback
