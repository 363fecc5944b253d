"""Which message in a mailbox is for which VERP address, from its header fields alone.

A message in a mailbox has no envelope, so the VERP address comes from its delivery
headers: the first address whose domain is ``BOUNCE_DOMAIN`` in ``Delivered-To``,
then ``X-Original-To``, ``Envelope-To``, ``X-Envelope-To``, then ``To`` and ``Cc``.
The sender is the ``Return-Path`` (empty for a DSN). Only these fields are fetched
before deciding, so unrelated mail is never read whole nor marked ``\\Seen``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.utils import getaddresses

from bounce_tracker.core.settings import normalize_domain

#: Headers naming the address a message was delivered to, most reliable first.
ADDRESS_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to", "cc")
#: The header fields fetched to decide about a message.
HEADER_FIELDS = (*ADDRESS_HEADERS, "return-path")

_FOLD_RE = re.compile(r"\r?\n[ \t]+")


def header_fields(data: bytes) -> list[tuple[str, str]]:
    """``(lower-case name, unfolded value)`` for each header field of a message or header block."""
    end = re.search(rb"\r?\n\r?\n", data)
    text = data[: end.start() if end else len(data)].decode("utf-8", "replace")
    fields = []
    for line in _FOLD_RE.sub(" ", text).splitlines():
        name, colon, value = line.partition(":")
        if colon and name and not name[0].isspace():
            fields.append((name.strip().lower(), value.strip()))
    return fields


def bounce_address(fields: Iterable[tuple[str, str]], bounce_domain: str) -> str | None:
    """The first address at ``bounce_domain`` in the delivery headers, then To and Cc."""
    values: dict[str, list[str]] = {}
    for name, value in fields:
        values.setdefault(name, []).append(value)
    for name in ADDRESS_HEADERS:
        for _, address in getaddresses(values.get(name, [])):
            local, at, domain = address.strip().rpartition("@")
            if at and local and normalize_domain(domain) == bounce_domain:
                return address.strip()
    return None


def return_path(fields: Iterable[tuple[str, str]]) -> str:
    """The address in the first ``Return-Path`` header; empty for ``<>`` or none."""
    for name, value in fields:
        if name == "return-path":
            addresses = getaddresses([value])
            return addresses[0][1].strip() if addresses else ""
    return ""
