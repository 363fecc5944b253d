"""The report model: what every check needs from one message, computed once.

:class:`Report` holds the message's headers, its parts in document order, the
headers of the returned original (from a ``message/rfc822`` part, a
``text/rfc822-headers`` part or an inline copy), and the report's *own* words: its
text parts outside the original, cut where an inline copy of the original starts,
quoted lines dropped. Text inside the returned original is never used to decide.
It also knows which addresses are never a recipient of the report: our own VERP
envelope, our sender, and system mailboxes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bounce_tracker.classify import languages
from bounce_tracker.classify.dsn import iter_fields
from bounce_tracker.classify.limits import MAX_BOUNCE_TEXT
from bounce_tracker.classify.mime import (
    HEADER_TYPES,
    Part,
    decode_header_value,
    first_header,
    header_values,
    html_to_text,
    part_text,
    walk,
)
from bounce_tracker.classify.patterns import lazy_re
from bounce_tracker.classify.text import addresses_in, unique

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up cost)
if TYPE_CHECKING:
    from email.message import Message

#: A subject a person's reply carries.
REPLY_SUBJECT_RE = lazy_re(r"^\s*(?:re|aw|sv|vs|antw|odp|rif|r)\s*(?:\[\d+\])?\s*:", re.I)
#: A subject a person's forward carries.
FORWARD_SUBJECT_RE = lazy_re(r"^\s*(?:fwd?|wg|tr|rv|enc|i|doorst)\s*:", re.I)

_ANGLE_ID_RE = lazy_re(r"<[^<>\s]{1,250}>")
# Where the returned original starts inside a text bounce.
_ORIGINAL_START_RE = lazy_re(
    r"^[ \t]*-{2,}[ \t]*(?:below this line is a copy of the message|this is a copy of"
    r"|original message|unsent message|message header follows|returned message"
    r"|the header of the original|the body of the message|undelivered message"
    r"|forwarded message|copy of the original|header of the original)"
    r"|^[ \t]*-+[ \t]*original message[ \t]*-+|^[ \t]*original message headers"
    r"|^[ \t]*(?:the )?original message (?:follows|headers? follows?)"
    r"|^received: from |^return-path: <"
    # Localized reports: "Исходные заголовки сообщения", "元のメッセージ ヘッダー"…
    r"|^[ \t]*(?:" + languages.ORIGINAL_START + ")",
    re.IGNORECASE | re.MULTILINE,
)
_RECEIVED_FOR_RE = lazy_re(r"\bfor\s+<?([^<>\s;]{1,254}@[^<>\s;]{1,254})>?", re.IGNORECASE)
_HEADER_START_RE = lazy_re(r"^(?:received|return-path)[ \t]*:", re.IGNORECASE)
_QUOTED_LINE_RE = lazy_re(r"^[ \t]*>[^\n]*\n?", re.MULTILINE)
_MESSAGE_ID_LINE_RE = lazy_re(r"^[ \t]*message-id[ \t]*:[ \t]*(<[^<>\s]{1,250}>)", re.I | re.M)
_DAEMON_LOCAL_RE = lazy_re(
    r"^(?:postmaster|mailer[-_.]?daemon|mail[-_.]?daemon|maildaemon|abuse|hostmaster|root"
    r"|no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?|mdaemon|microsoftexchange[0-9a-f]{8,})$"
    r"|^bounces?[+=._-]",
    re.IGNORECASE,
)
_VERP_LOCAL_RE = lazy_re(r"[+=]|^bounce", re.IGNORECASE)
_ENVELOPE_HEADERS = (
    "to",
    "cc",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "x-envelope-to",
    "return-path",
    "from",
    "sender",
    "reply-to",
    "errors-to",
)
# Where the bounce address (the original's VERP return path) shows up on a report.
_VERP_HEADERS = frozenset(
    {"to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "return-path"}
)
_ORIGINAL_SENDER_HEADERS = ("from", "sender", "return-path", "reply-to", "errors-to")


@dataclass
class Report:
    """What every check needs from one message, computed once."""

    root: Message
    headers: dict[str, list[str]]
    parts: list[Part]
    subject: str
    sender: str
    #: Headers of the returned original message, when there is one.
    original_headers: dict[str, list[str]]
    #: The report's own words: text parts outside the original, cut where an inline
    #: copy of the original starts, quoted lines dropped.
    text: str
    #: What was cut off ``text`` (an inline copy of the original), for its Message-ID.
    tail: str
    excluded: frozenset[str]
    excluded_domains: frozenset[str]
    #: Whole-report answers computed once (e.g. whether its words announce a failure),
    #: however many recipients ask: see :func:`~bounce_tracker.classify.wording.looks_failed`.
    memo: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, root: Message) -> Report:
        """Read ``root`` (a parsed message, see :func:`~.limits.bounded_input`) once."""
        headers = header_values(root)
        parts = walk(root)
        original_headers: dict[str, list[str]] = {}
        texts: list[str] = []
        html: list[str] = []
        size = 0
        for part in parts:
            if part.enclosed == 1 and not original_headers:
                # Document order: the first part inside a returned message is its top.
                original_headers = header_values(part.message)
            if part.enclosed == 0 and part.content_type in HEADER_TYPES and not original_headers:
                original_headers = _field_headers(part_text(part.message, 64 * 1024))
            if part.enclosed or size >= MAX_BOUNCE_TEXT:
                continue
            if part.content_type not in ("text/plain", "text/html"):
                continue
            disposition = str(part.message.get("content-disposition", "")).lower()
            if "attachment" in disposition and texts:
                continue
            text = part_text(part.message, MAX_BOUNCE_TEXT - size)
            if part.content_type == "text/html":
                html.append(html_to_text(text))
            else:
                texts.append(text)
            size += len(text)
        body = "\n".join(texts or html)[:MAX_BOUNCE_TEXT].replace("\r\n", "\n").replace("\r", "\n")
        tail = ""
        for match in _ORIGINAL_START_RE.finditer(body):
            if match.start() >= 40:
                body, tail = body[: match.start()], body[match.start() :]
                break
        body = _QUOTED_LINE_RE.sub("", body)
        if not original_headers and tail:
            original_headers = _inline_headers(tail)
        excluded, domains = _excluded_addresses(headers, original_headers)
        return cls(
            root=root,
            headers=headers,
            parts=parts,
            subject=first_header(headers, "subject"),
            sender=first_header(headers, "from"),
            original_headers=original_headers,
            text=body,
            tail=tail,
            excluded=excluded,
            excluded_domains=domains,
        )

    def header(self, name: str) -> str:
        """The report's first ``name`` header, decoded ("" when it has none)."""
        return first_header(self.headers, name)

    def original_message_id(self, reported: str = "") -> str | None:
        """The returned original's Message-ID: from its headers, from ``reported`` (a
        report field such as X-Original-Message-ID), from an inline copy, or from the
        report's In-Reply-To."""
        for value in (first_header(self.original_headers, "message-id"), reported):
            match = _ANGLE_ID_RE.search(value)
            if match:
                return match.group(0)
        match = _MESSAGE_ID_LINE_RE.search(self.tail[:200_000])
        if match:
            return match.group(1)
        match = _ANGLE_ID_RE.search(self.header("in-reply-to"))
        return match.group(0) if match else None

    def original_recipient(self) -> list[str]:
        """The one recipient the returned original was addressed to, when it shows one.

        Each tracked copy goes to one recipient, so its To (or the ``for <…>`` of its
        last Received line) names the address a bounce is about when the report itself
        doesn't spell it out.
        """
        candidates = [addresses_in(first_header(self.original_headers, "to"))]
        received = self.original_headers.get("received", [])
        if received:
            candidates.append(_RECEIVED_FOR_RE.findall(decode_header_value(received[0])))
        for found in candidates:
            kept = unique([a.lower() for a in found if not self.is_excluded(a)])
            if len(kept) == 1:
                return kept
        return []

    def is_envelope(self, address: str) -> bool:
        """The report's own envelope (VERP) address or our sender."""
        lowered = address.lower()
        return lowered in self.excluded or lowered.rpartition("@")[2] in self.excluded_domains

    def is_excluded(self, address: str) -> bool:
        """The report's own envelope (VERP) address, our sender, or a system mailbox."""
        local = address.lower().rpartition("@")[0]
        return self.is_envelope(address) or bool(_DAEMON_LOCAL_RE.search(local))


def _inline_headers(tail: str) -> dict[str, list[str]]:
    """The headers of an original message copied into a text bounce."""
    first, _, rest = tail[:65536].partition("\n")
    if _HEADER_START_RE.match(first):
        rest = tail[:65536]
    return _field_headers(rest.lstrip("\r\n \t"))


def _field_headers(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in iter_fields(text):
        if not name:
            break
        found.setdefault(name, []).append(value)
    return found


def _excluded_addresses(
    headers: dict[str, list[str]], original: dict[str, list[str]]
) -> tuple[frozenset[str], frozenset[str]]:
    addresses: set[str] = set()
    domains: set[str] = set()
    for source, names in ((headers, _ENVELOPE_HEADERS), (original, _ORIGINAL_SENDER_HEADERS)):
        for name in names:
            for value in source.get(name, ()):
                for address in addresses_in(decode_header_value(value)):
                    address = address.lower()
                    addresses.add(address)
                    local, _, domain = address.rpartition("@")
                    # The VERP return path: nothing at the bounce domain is a recipient.
                    if name in _VERP_HEADERS and source is headers and _VERP_LOCAL_RE.search(local):
                        domains.add(domain)
    return frozenset(addresses), frozenset(domains)
