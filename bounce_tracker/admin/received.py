"""Stored messages (bounce events and unmatched mail): their columns and raw message.

Their text arrived by mail and is shown as text; the raw message is shown as
escaped text or downloaded, never rendered as HTML. Shared by the bounce events'
and the unmatched mail's admins and by the bounce history on an address's page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from bounce_tracker.admin.base import InertTextAdmin
from bounce_tracker.admin.text import DIAGNOSTIC_PREVIEW, text_column
from bounce_tracker.core.text import shorten, visible_text
from bounce_tracker.models import BounceEvent, UnmatchedMessage

#: The detail page's last fields: where the message came from and what was stored of it.
STORAGE_FIELDS = ("source", "fingerprint", "raw_size", "raw_truncated", "raw_message_links")


class ReceivedMessageColumns:
    """The columns of a stored message's fields, and links to its raw message."""

    raw_url_prefix: str

    status_text = text_column("status", "status")
    diagnostic_text = text_column("diagnostic", "diagnostic", DIAGNOSTIC_PREVIEW)
    diagnostic_full = text_column("diagnostic", "diagnostic")
    recipient_text = text_column("recipient", "failed recipient")
    envelope_sender_text = text_column("envelope_sender", "envelope sender")
    envelope_recipient_text = text_column("envelope_recipient", "envelope recipient")

    @admin.display(description="raw message")
    def raw_message_links(self, obj: BounceEvent | UnmatchedMessage) -> SafeString:
        view = reverse(f"admin:{self.raw_url_prefix}_raw", args=[quote(obj.pk)])
        download = reverse(f"admin:{self.raw_url_prefix}_raw_download", args=[quote(obj.pk)])
        return format_html(
            '<a href="{}">view as text</a> | <a href="{}">download</a>', view, download
        )


class ReceivedMessageAdmin(ReceivedMessageColumns, InertTextAdmin):
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
        views = [
            ("raw/", "raw", self.raw_message_view),
            ("raw/download/", "raw_download", self.raw_message_download),
        ]
        return [
            *(
                path(
                    f"<path:object_id>/{route}",
                    self.admin_site.admin_view(view),
                    name=f"{self.raw_url_prefix}_{suffix}",
                )
                for route, suffix, view in views
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
        return self.admin_page(
            request,
            "admin/bounce_tracker/raw_message.html",
            "Raw message",
            subtitle=visible_text(str(obj)),
            original=obj,
            object_label=visible_text(shorten(str(obj), 80)),
            change_url=reverse(f"admin:{self.raw_url_prefix}_change", args=[quote(obj.pk)]),
            download_url=reverse(f"admin:{self.raw_url_prefix}_raw_download", args=[quote(obj.pk)]),
            raw_text=text,
            stored_bytes=len(raw),
            raw_size=obj.raw_size,
            truncated=obj.raw_truncated or obj.raw_size > len(raw),
        )

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
