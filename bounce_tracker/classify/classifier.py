"""Classify a message that reached the bounce address: what kind, which status, whom.

:func:`classify_message` is a pure function from raw bytes to a
:class:`Classification`. It never raises, and it imports nothing from Django, so
``handle_bounce`` and ``inspect_bounce`` stay cheap to start.

The order of the checks:

1. an ARF feedback report (RFC 5965) is a complaint, unless it says ``not-spam``;
2. a standard DSN (RFC 3464/6533, fields read by :mod:`bounce_tracker.classify.dsn`) decides
   per recipient from ``Action``, ``Status`` and ``Diagnostic-Code``; hard or soft is
   :func:`bounce_tracker.classify.diagnosis.failure_kind`'s call;
3. a bounce without a DSN (qmail, old Sendmail, Exchange text, Domino…) is
   recognised by its sender, subject and wording, and its recipients and reasons
   are read from the text; a person's reply or forward quoting one is not a bounce,
   but a text bounce attached to a forward is read;
4. otherwise an RFC 3834 auto-reply (or a vacation/challenge message, also one
   without the headers that says so in its first lines);
5. anything else is ``not_bounce``.

Delivery Status Notifications from Postfix and Exim carry ``Auto-Submitted``, so
bounce detection comes before auto-reply detection. Text inside the returned
original message is never used to decide: a newsletter that says "mailbox full"
must not make its own bounce soft.

Hostile input is bounded (see the ``MAX_*`` constants): at most
:data:`MAX_PARSE_BYTES` are parsed, MIME nesting and part counts are capped before
the standard library parser sees them, at most :data:`MAX_TEXT_CHARS` of text are
decoded per part, every regular expression does bounded work per position, and
nothing is decompressed. At most :data:`~bounce_tracker.classify.dsn.MAX_RECIPIENT_RECORDS`
recipients are kept; ``extra["recipients_truncated"]`` says when more were dropped.
"""

from __future__ import annotations

import binascii
import codecs
import re
from dataclasses import dataclass, replace
from email import message_from_bytes
from email.message import Message

from bounce_tracker.classify import diagnosis
from bounce_tracker.classify.diagnosis import (
    best_status,
    enhanced_codes,
    failure_kind,
    normalize_status,
)
from bounce_tracker.classify.dsn import (
    MAX_RECIPIENT_RECORDS,
    ReportFields,
    field_address,
    iter_fields,
    parse_report_fields,
    strip_type,
)
from bounce_tracker.core.kinds import BounceKind, Classification, RecipientResult

# --- limits on hostile input ---------------------------------------------------------

#: Bytes of the raw message handed to the parser; the rest (deep in the returned
#: original) is never needed to classify.
MAX_PARSE_BYTES = 4 * 1024 * 1024
#: Lines handed to the parser.
MAX_LINES = 100_000
#: Lines starting with "--" (MIME boundaries) handed to the parser.
MAX_BOUNDARY_LINES = 2000
#: multipart/* and message/* containers handed to the parser (bounds its recursion).
MAX_CONTAINERS = 64
#: Bytes kept of one Content-Type field (the stdlib parameter parser is quadratic).
MAX_CONTENT_TYPE_BYTES = 1024
#: MIME levels walked below the top (nested multipart or message/rfc822).
MAX_DEPTH = 10
#: MIME parts walked in all.
MAX_PARTS = 500
#: Characters of text decoded from one part.
MAX_TEXT_CHARS = 1024 * 1024
#: Characters of the report's own text (outside the original) scanned for wording.
MAX_BOUNCE_TEXT = 256 * 1024
#: Characters of one header value looked at.
MAX_HEADER_CHARS = 4000
#: Headers of one message looked at.
MAX_HEADERS = 300
#: Characters kept in ``diagnostic``.
MAX_DIAGNOSTIC_CHARS = 1000
#: Characters of diagnostic text the per-recipient decisions of one report read in
#: all. A report naming many recipients gets fewer per recipient (at most
#: :data:`~bounce_tracker.classify.diagnosis.MAX_DECISION_CHARS`, at least
#: :data:`MIN_RECIPIENT_DECISION_CHARS`), so that its cost doesn't grow with
#: recipients times diagnostic length.
MAX_REPORT_DECISION_CHARS = 256 * 1024
#: Characters of diagnostic text one recipient's decision reads however many there are.
MIN_RECIPIENT_DECISION_CHARS = 256

_DSN_TYPES = frozenset(
    {"message/delivery-status", "message/global-delivery-status", "text/delivery-status"}
)
_ARF_TYPE = "message/feedback-report"
_MDN_TYPES = frozenset(
    {"message/disposition-notification", "message/global-disposition-notification"}
)
# Parts that hold fields, not a message, even though the parser may nest messages in them.
_FIELD_TYPES = _DSN_TYPES | _MDN_TYPES | {_ARF_TYPE}
_ORIGINAL_TYPES = frozenset({"message/rfc822", "message/global", "message/partial"})
_HEADER_TYPES = frozenset(
    {"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"}
)
# Codecs that are not mail charsets, or cost more than linear time on hostile input.
_UNSAFE_CODECS = frozenset(
    {"punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined"}
)

_CONTAINER_RE = re.compile(rb"(?im)^content-type:[ \t]*(?:\r?\n[ \t]+)?(?:multipart|message)/")
_CONTENT_TYPE_FIELD_RE = re.compile(rb"(?im)^content-type:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*")


def _nth_offset(data: bytes, needle: bytes, n: int) -> int:
    """Offset of the n-th ``needle`` in ``data``, or len(data) when there are fewer."""
    if data.count(needle) < n:
        return len(data)
    offset = -1
    for _ in range(n):
        offset = data.find(needle, offset + 1)
    return offset


def _bounded_input(raw: bytes) -> bytes:
    """The prefix of ``raw`` that the stdlib parser can take in bounded time and memory."""
    # Leading blank lines (mbox exports, some MTAs) would end the headers at once.
    raw = bytes(raw[:MAX_PARSE_BYTES]).lstrip(b" \t\r\n")
    if b"\n" not in raw and b"\r" in raw:
        raw = raw.replace(b"\r", b"\n")
    cut = min(
        len(raw),
        _nth_offset(raw, b"\n", MAX_LINES),
        _nth_offset(raw, b"\r", MAX_LINES),
        _nth_offset(raw, b"\n--", MAX_BOUNDARY_LINES),
    )
    for count, match in enumerate(_CONTAINER_RE.finditer(raw, 0, cut)):
        if count >= MAX_CONTAINERS:
            cut = match.start()
            break
    raw = raw[:cut]
    pieces: list[bytes] = []
    done = 0
    for match in _CONTENT_TYPE_FIELD_RE.finditer(raw):
        if match.end() - match.start() > MAX_CONTENT_TYPE_BYTES:
            pieces.append(raw[done : match.start() + MAX_CONTENT_TYPE_BYTES])
            done = match.end()
    if pieces:
        pieces.append(raw[done:])
        raw = b"".join(pieces)
    return raw


# --- headers and text ----------------------------------------------------------------

_ENCODED_WORD_RE = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]{0,2000})\?=")
_BETWEEN_WORDS_RE = re.compile(r"(\?=)[ \t\r\n]{1,200}(?==\?)")
_WS_RE = re.compile(r"\s+")
_ANGLE_ID_RE = re.compile(r"<[^<>\s]{1,250}>")
_EMAIL_RE = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])([\w.!#$%&'*+/=?^`{|}~-]{1,64}@(?:[\w-]{1,63}\.){1,10}"
    r"[A-Za-z][\w-]{0,62})",
    re.UNICODE,
)


def _codec(charset: str | None) -> str | None:
    """A safe text codec name for a declared charset, or None."""
    if not charset:
        return None
    try:
        info = codecs.lookup(charset.strip().strip("\"'")[:40])
    except (LookupError, ValueError, TypeError):
        return None
    if info.name in _UNSAFE_CODECS or not getattr(info, "_is_text_encoding", True):
        return None
    if info.name == "ascii":
        return None
    return info.name


# Lone surrogates: a few codecs (UTF-7) decode to them even with errors="replace".
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """``data`` as text in ``charset`` (else UTF-8, else cp1252), never with surrogates.

    Text with lone surrogates can't be encoded again (UTF-8, even with
    ``surrogateescape``), which later steps do to header values.
    """
    name = _codec(charset)
    if name is not None:
        try:
            text = data.decode(name, "replace")
        except (LookupError, ValueError, TypeError):
            pass
        else:
            return text if text.isascii() else _SURROGATE_RE.sub("\ufffd", text)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(b for b in range(256) if b not in _BASE64_ALPHABET)


def _b64decode(data: bytes) -> bytes:
    cleaned = data.translate(None, _NOT_BASE64)
    cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
    try:
        return binascii.a2b_base64(cleaned)
    except (binascii.Error, ValueError):
        return b""


def _decode_word(match: re.Match[str]) -> str:
    charset, encoding, payload = match.groups()
    data = payload.encode("ascii", "replace")
    is_base64 = encoding in "bB"
    decoded = _b64decode(data) if is_base64 else binascii.a2b_qp(data.replace(b"_", b" "))
    return _decode_bytes(decoded, charset.split("*", 1)[0])


def decode_header_value(value: str) -> str:
    """A header value as readable text: 8-bit and RFC 2047 words decoded, unfolded."""
    text = value[:MAX_HEADER_CHARS].encode("utf-8", "surrogateescape")
    decoded = _decode_bytes(text, "utf-8")
    if "=?" in decoded:
        decoded = _BETWEEN_WORDS_RE.sub(r"\1", decoded)
        decoded = _ENCODED_WORD_RE.sub(_decode_word, decoded)
    return _WS_RE.sub(" ", decoded).strip()


def _headers(message: Message) -> dict[str, list[str]]:
    """Header values by lower-case name, raw (undecoded) and capped."""
    found: dict[str, list[str]] = {}
    for count, (name, value) in enumerate(message.raw_items()):
        if count >= MAX_HEADERS:
            break
        found.setdefault(str(name).strip().lower(), []).append(str(value)[:MAX_HEADER_CHARS])
    return found


def _first(headers: dict[str, list[str]], name: str) -> str:
    values = headers.get(name)
    return decode_header_value(values[0]) if values else ""


def _addresses_in(text: str) -> list[str]:
    return [match.group(1).strip(".") for match in _EMAIL_RE.finditer(text)]


def _content_type(message: Message) -> str:
    try:
        return message.get_content_type()
    except Exception:
        return "text/plain"


def _param(message: Message, name: str) -> str:
    try:
        value = message.get_param(name)
    except Exception:
        return ""
    if isinstance(value, tuple):
        value = value[2]
    return str(value or "").strip().lower()


def _charset(message: Message) -> str | None:
    try:
        return message.get_content_charset()
    except Exception:
        return None


# Header blocks read from one field part: the per-message block and the recipients.
_MAX_FIELD_BLOCKS = MAX_RECIPIENT_RECORDS + 10


def _rebuild_fields(payload: list[Message], depth: int = 0) -> str:
    """The text of a field part that the parser split into nested header blocks."""
    blocks: list[str] = []
    for sub in payload:
        lines = [f"{name}: {value}" for name, value in sub.raw_items()]
        if sub.is_multipart():
            if depth < 3:
                lines.append(_rebuild_fields(_children(sub, _MAX_FIELD_BLOCKS), depth + 1))
        else:
            lines.append(_leaf_bytes(sub).decode("utf-8", "surrogateescape"))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _children(message: Message, limit: int = MAX_PARTS) -> list[Message]:
    """The nested messages of a multipart, message/* or field part (none for a leaf)."""
    if not message.is_multipart():
        return []
    payload = message.get_payload()
    if not isinstance(payload, list):
        return []
    return [child for child in payload[:limit] if isinstance(child, Message)]


def _leaf_bytes(message: Message) -> bytes:
    """The body of a leaf part as bytes, transfer encoding undone.

    Never ``get_payload()`` without ``decode=True``: for 8-bit bodies it decodes
    with whatever charset the part declares (punycode, RFC 2231 tuples…).
    """
    data = message.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _part_text(message: Message, limit: int = MAX_TEXT_CHARS) -> str:
    """The decoded text of a leaf part (or of a field part), at most ``limit`` characters."""
    if not message.is_multipart():
        return _decode_bytes(_leaf_bytes(message)[: limit * 4], _charset(message))[:limit]
    # A field part (message/delivery-status…) the parser split into header blocks.
    encoded = _rebuild_fields(_children(message, _MAX_FIELD_BLOCKS))
    cte = str(message.get("content-transfer-encoding", "")).strip().lower()[:40]
    data = encoded[: limit * 2].encode("utf-8", "surrogateescape")
    if cte == "base64":
        data = _b64decode(data)
    elif cte == "quoted-printable":
        data = binascii.a2b_qp(data)
    return _decode_bytes(data, _charset(message))[:limit]


_SCRIPT_START_RE = re.compile(r"<(script|style|head)\b", re.IGNORECASE)
_BLOCK_TAG_RE = re.compile(
    r"(?i)<\s*(?:br|/p|/div|/tr|/li|/h\d|/table|p|div|tr|li)\b[^<>]{0,2000}>"
)
_TAG_RE = re.compile(r"<[^<>]{0,2000}>")
_SCRIPT_END_RES = {
    tag: re.compile(f"</{tag}[^<>]{{0,200}}>?", re.IGNORECASE | re.ASCII)
    for tag in ("script", "style", "head")
}


def _html_to_text(html: str) -> str:
    """Rough text of an HTML part: scripts and styles dropped, tags become spaces."""
    import html as html_module  # only for the rare HTML-only bounce

    pieces: list[str] = []
    position = 0
    while True:
        match = _SCRIPT_START_RE.search(html, position)
        if match is None:
            pieces.append(html[position:])
            break
        pieces.append(html[position : match.start()])
        # Not html.lower().find(): lower() may lengthen the text ("İ"), so its
        # offsets would not be offsets into ``html``.
        end = _SCRIPT_END_RES[match.group(1).lower()].search(html, match.end())
        if end is None:
            break
        position = end.end()
    text = _BLOCK_TAG_RE.sub("\n", "".join(pieces))
    return html_module.unescape(_TAG_RE.sub(" ", text))


# --- walking the MIME tree -----------------------------------------------------------


@dataclass
class _Part:
    message: Message
    content_type: str
    depth: int
    #: How many returned messages (message/rfc822) this part is inside.
    enclosed: int


def _walk(root: Message) -> list[_Part]:
    """Every part in document order, at most MAX_DEPTH deep and MAX_PARTS in all."""
    parts: list[_Part] = []
    stack: list[tuple[Message, int, int]] = [(root, 0, 0)]
    while stack and len(parts) < MAX_PARTS:
        message, depth, enclosed = stack.pop()
        content_type = _content_type(message)
        parts.append(_Part(message, content_type, depth, enclosed))
        if depth >= MAX_DEPTH or content_type in _FIELD_TYPES:
            continue
        inside = enclosed + 1 if content_type.startswith("message/") else enclosed
        stack.extend((child, depth + 1, inside) for child in reversed(_children(message)))
    return parts


# --- the report as a whole -----------------------------------------------------------

# Where the returned original starts inside a text bounce.
_ORIGINAL_START_RE = re.compile(
    r"^[ \t]*-{2,}[ \t]*(?:below this line is a copy of the message|this is a copy of"
    r"|original message|unsent message|message header follows|returned message"
    r"|the header of the original|the body of the message|undelivered message"
    r"|forwarded message|copy of the original|header of the original)"
    r"|^[ \t]*-+[ \t]*original message[ \t]*-+|^[ \t]*original message headers"
    r"|^[ \t]*(?:the )?original message (?:follows|headers? follows?)"
    r"|^received: from |^return-path: <",
    re.IGNORECASE | re.MULTILINE,
)
_RECEIVED_FOR_RE = re.compile(r"\bfor\s+<?([^<>\s;]{1,254}@[^<>\s;]{1,254})>?", re.IGNORECASE)
_HEADER_START_RE = re.compile(r"^(?:received|return-path)[ \t]*:", re.IGNORECASE)
_QUOTED_LINE_RE = re.compile(r"^[ \t]*>[^\n]*\n?", re.MULTILINE)
_SUCCESS_REPLY_LINE_RE = re.compile(r"^[ \t]*<<<[ \t]*[123]\d\d[ -][^\n]*\n?", re.MULTILINE)
_SUMMARY_LINE_RE = re.compile(
    r"^[ \t]*(?:subject|betreff|objet|asunto|oggetto|onderwerp|assunto|temat|sent|date|datum"
    r"|gesendet|envoy[ée]|enviado|inviato)[ \t]*:[^\n]*\n?|^[^\n]{0,100}\bsubject of the message"
    r"[^\n]*\n?",
    re.IGNORECASE | re.MULTILINE,
)
_REPLY_SUBJECT_RE = re.compile(r"^\s*(?:re|aw|sv|vs|antw|odp|rif|r)\s*(?:\[\d+\])?\s*:", re.I)
_FORWARD_SUBJECT_RE = re.compile(r"^\s*(?:fwd?|wg|tr|rv|enc|i|doorst)\s*:", re.I)
_MESSAGE_ID_LINE_RE = re.compile(r"^[ \t]*message-id[ \t]*:[ \t]*(<[^<>\s]{1,250}>)", re.I | re.M)
_HEADERISH_LINE_RE = re.compile(
    r"^[ \t]*(?:message-id|references|in-reply-to|x-[\w-]{1,60}|received|dkim-signature"
    r"|list-[\w-]{1,30}|thread-index|authentication-results|arc-[\w-]{1,30}|return-path"
    r"|from|sender|reply-to|errors-to|mail from|>>>)[ \t]*:?",
    re.IGNORECASE,
)
_DAEMON_LOCAL_RE = re.compile(
    r"^(?:postmaster|mailer[-_.]?daemon|mail[-_.]?daemon|maildaemon|abuse|hostmaster|root"
    r"|no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?|mdaemon|microsoftexchange[0-9a-f]{8,})$"
    r"|^bounces?[+=._-]",
    re.IGNORECASE,
)
_VERP_LOCAL_RE = re.compile(r"[+=]|^bounce", re.IGNORECASE)
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
class _Report:
    """What every check needs from one message, computed once."""

    root: Message
    headers: dict[str, list[str]]
    parts: list[_Part]
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

    @classmethod
    def build(cls, root: Message) -> _Report:
        headers = _headers(root)
        parts = _walk(root)
        original_headers: dict[str, list[str]] = {}
        texts: list[str] = []
        html: list[str] = []
        size = 0
        for part in parts:
            if part.enclosed == 1 and not original_headers:
                # Document order: the first part inside a returned message is its top.
                original_headers = _headers(part.message)
            if part.enclosed == 0 and part.content_type in _HEADER_TYPES and not original_headers:
                original_headers = _field_headers(_part_text(part.message, 64 * 1024))
            if part.enclosed or size >= MAX_BOUNCE_TEXT:
                continue
            if part.content_type not in ("text/plain", "text/html"):
                continue
            disposition = str(part.message.get("content-disposition", "")).lower()
            if "attachment" in disposition and texts:
                continue
            text = _part_text(part.message, MAX_BOUNCE_TEXT - size)
            if part.content_type == "text/html":
                html.append(_html_to_text(text))
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
            subject=_first(headers, "subject"),
            sender=_first(headers, "from"),
            original_headers=original_headers,
            text=body,
            tail=tail,
            excluded=excluded,
            excluded_domains=domains,
        )

    def header(self, name: str) -> str:
        return _first(self.headers, name)

    def original_message_id(self, reported: str = "") -> str | None:
        """The returned original's Message-ID: from its headers, from ``reported`` (a
        report field such as X-Original-Message-ID), from an inline copy, or from the
        report's In-Reply-To."""
        for value in (_first(self.original_headers, "message-id"), reported):
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
        candidates = [_addresses_in(_first(self.original_headers, "to"))]
        received = self.original_headers.get("received", [])
        if received:
            candidates.append(_RECEIVED_FOR_RE.findall(decode_header_value(received[0])))
        for found in candidates:
            kept = _unique([a.lower() for a in found if not self.is_excluded(a)])
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
                for address in _addresses_in(decode_header_value(value)):
                    address = address.lower()
                    addresses.add(address)
                    local, _, domain = address.rpartition("@")
                    # The VERP return path: nothing at the bounce domain is a recipient.
                    if name in _VERP_HEADERS and source is headers and _VERP_LOCAL_RE.search(local):
                        domains.add(domain)
    return frozenset(addresses), frozenset(domains)


# --- 1. ARF complaints -----------------------------------------------------------------


def _arf(report: _Report) -> Classification | None:
    feedback = next((p for p in report.parts if p.content_type == _ARF_TYPE), None)
    is_report = any(
        p.content_type == "multipart/report"
        and _param(p.message, "report-type") == "feedback-report"
        for p in report.parts
    )
    jmrp = _first(report.original_headers, "x-hmxmroriginalrecipient")
    if feedback is None and not is_report and not jmrp:
        return None
    fields = list(iter_fields(_part_text(feedback.message, 256 * 1024))) if feedback else []
    feedback_type = next((v for n, v in fields if n == "feedback-type"), "").strip().lower()
    feedback_type = feedback_type.split(";", 1)[0].strip()
    message_id = report.original_message_id()
    if feedback_type in ("not-spam", "auth-failure"):
        return Classification(
            kind=BounceKind.NOT_BOUNCE,
            status=None,
            diagnostic=f"Feedback-Type: {feedback_type}",
            original_message_id=message_id,
            reason=f"arf:{feedback_type}",
        )
    addresses: list[str] = []
    for name, value in fields:
        if name in ("original-rcpt-to", "removal-recipient"):
            address = field_address(value)
            if address and "@" in address:
                addresses.append(address)
    if jmrp:
        addresses.extend(_addresses_in(jmrp))
    if not addresses:
        addresses = report.original_recipient()
    reporting = next((v for n, v in fields if n == "reporting-mta"), "")
    recipients = tuple(
        RecipientResult(address=address, status=None, kind=BounceKind.COMPLAINT)
        for address in _unique(addresses)[:MAX_RECIPIENT_RECORDS]
    )
    return Classification(
        kind=BounceKind.COMPLAINT,
        status=None,
        diagnostic=_clip(f"Feedback-Type: {feedback_type or 'abuse'}"),
        recipients=recipients,
        reporting_mta=strip_type(reporting)[:255],
        original_message_id=message_id,
        reason="arf" if feedback is not None or is_report else "arf:jmrp",
    )


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    kept: list[str] = []
    for item in items:
        key = item.lower()
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


# --- 2. standard DSNs ---------------------------------------------------------------

_DELIVERED_ACTIONS = frozenset({"delivered", "relayed", "expanded"})
_DSN_TEXT_RE = re.compile(r"^[ \t]*final-recipient[ \t]*:", re.IGNORECASE | re.MULTILINE)


def _clip(text: str) -> str:
    return _WS_RE.sub(" ", text).strip()[:MAX_DIAGNOSTIC_CHARS]


def _decision_share(count: int) -> int:
    """Characters of text one recipient's decision reads, in a report naming ``count``."""
    share = MAX_REPORT_DECISION_CHARS // max(count, 1)
    return max(MIN_RECIPIENT_DECISION_CHARS, min(diagnosis.MAX_DECISION_CHARS, share))


def _overall(kinds: list[BounceKind]) -> BounceKind:
    for kind in (BounceKind.HARD, BounceKind.SOFT, BounceKind.DELAYED):
        if kind in kinds:
            return kind
    return BounceKind.DELIVERED


def _dsn(report: _Report) -> Classification | None:
    parts = sorted(
        (p for p in report.parts if p.content_type in _DSN_TYPES), key=lambda p: p.enclosed
    )
    fields: ReportFields | None = None
    for part in parts:
        fields = parse_report_fields(_part_text(part.message))
        if fields.recipients:
            break
    reason = "dsn"
    if (fields is None or not fields.recipients) and _DSN_TEXT_RE.search(report.text):
        fields = parse_report_fields(report.text)
        reason = "dsn-text"
    if fields is None or not fields.recipients:
        return None

    snippets = _Snippets(report)
    limit = _decision_share(len(fields.recipients))
    recipients: list[RecipientResult] = []
    rules: list[str] = []
    for record in fields.recipients:
        result, rule = _dsn_recipient(record, report, snippets, len(fields.recipients), limit)
        recipients.append(result)
        rules.append(rule)
    kind = _overall([r.kind for r in recipients])
    index = next(i for i, r in enumerate(recipients) if r.kind == kind)
    primary = recipients[index]
    extra = {"recipients_truncated": "true"} if fields.truncated else {}
    # Never name the report's own envelope (our VERP address) as a recipient.
    named = [r for r in recipients if not (r.address and report.is_envelope(r.address))]
    return Classification(
        kind=kind,
        status=primary.status,
        diagnostic=primary.diagnostic,
        recipients=tuple(named),
        reporting_mta=strip_type(fields.per_message.get("reporting-mta", ""))[:255],
        original_message_id=report.original_message_id(
            fields.per_message.get("x-original-message-id", "")
        ),
        reason=f"{reason}:{rules[index]}",
        extra=extra,
    )


def _dsn_recipient(
    record: dict[str, str], report: _Report, snippets: _Snippets, count: int, limit: int
) -> tuple[RecipientResult, str]:
    """One recipient block's verdict; its decisions read at most ``limit`` characters."""
    address = field_address(record.get("final-recipient", ""))
    if not address or "@" not in address:
        address = field_address(record.get("original-recipient", "")) or address
    diagnostic = strip_type(record.get("diagnostic-code", ""))
    status = normalize_status(record.get("status"))
    from_text = best_status(enhanced_codes(diagnostic))
    if from_text and (status is None or (status.endswith(".0.0") and from_text[0] == status[0])):
        status = from_text
    # Without any enhanced code, the class of the basic reply ("550 …") still counts.
    decisive = status
    if decisive is None:
        codes = diagnosis.basic_codes(diagnostic[:limit])
        if codes and codes[0] // 100 in (4, 5):
            decisive = f"{codes[0] // 100}.0.0"
    action = (record.get("action", "").strip().lower().split() or [""])[0].strip(";,()")
    if action not in _DELIVERED_ACTIONS and action not in ("failed", "delayed"):
        action = _infer_action(decisive, diagnostic, report)

    if action in _DELIVERED_ACTIONS:
        kind, rule = BounceKind.DELIVERED, action
    elif action == "delayed":
        kind, rule = BounceKind.DELAYED, "delayed"
    else:
        kind, rule = failure_kind(decisive, diagnostic[:limit])
        if not rule.startswith(("text:", "temporary:")):
            # The Status field alone decided: let the report's human-readable words
            # (often more specific, e.g. Exchange's and Gmail's) have their say.
            words = snippets.for_address(address) if address else ""
            if not words and count == 1:
                words = snippets.whole
            words = words[:limit]
            if words:
                text_kind, text_rule = failure_kind(decisive, words)
                if text_rule.startswith(("text:", "temporary:")):
                    kind, rule = text_kind, f"{text_rule} (report text)"
                    diagnostic = diagnostic or _key_sentence(words)
    if not diagnostic and kind != BounceKind.DELIVERED and address:
        diagnostic = _key_sentence(snippets.for_address(address)[:limit])
    result = RecipientResult(
        address=address,
        status=status,
        kind=kind,
        action=action or None,
        diagnostic=_clip(diagnostic),
        remote_mta=strip_type(record.get("remote-mta", ""))[:255],
    )
    return result, rule


def _infer_action(status: str | None, diagnostic: str, report: _Report) -> str:
    """The Action a report left out, from its status class and what the message says."""
    if status is None:
        return "failed" if diagnostic or _looks_failed(report) else "delayed"
    if status[0] == "2":
        return "delivered"
    if status[0] == "4" and not _looks_failed(report):
        return "delayed"
    return "failed"


# --- 3. bounces without a DSN --------------------------------------------------------

_FROM_DAEMON_RE = re.compile(
    r"mailer[-_ ]?daemon|\bpostmaster\b|mail ?delivery|delivery ?(?:subsystem|system|service)"
    r"|\bmail system\b|mail administrator|\bmdaemon\b|microsoftexchange[0-9a-f]{8}",
    re.IGNORECASE,
)
_SUBJECT_BOUNCE_RE = re.compile(
    r"undeliver|undelivered|not (?:been )?delivered|non[- ]?deliver|delivery (?:status"
    r" notification|failure|failed|report|problem|notification|error|incomplete)"
    r"|(?:mail|message) delivery failed|failure notice|returned mail|return(?:ed)? to sender"
    r"|mail system error|could ?n[o']?t be delivered|delivery has failed|delivery to .{0,80} failed"
    r"|unzustellbar|nicht zustellbar|non remis|non recapitabile|onbestelbaar|no se puede entregar"
    r"|não (?:é possível )?entreg|n'a pas pu|échec de (?:la )?remise|ej levererbart|ikke levere"
    r"|kunne ikke leveres|niedostarczaln|nedoručiteln|недоставл|配信不能|無法傳遞|无法投递"
    r"|^\s*rejected\b|\bbounced? (?:mail|message)|delayed mail|delivery delayed|message delayed"
    r"|warning: could not send|warning: message .{0,120} delayed|mail delivery problem"
    r"|returning message to sender",
    re.IGNORECASE,
)
# Sentences only mail software writes: on their own they make a message a bounce.
_STRONG_MARKER_RE = re.compile(
    r"this is the qmail-send program|(?:wasn't|was not) able to deliver your message"
    r"|created automatically by mail delivery software|could not be delivered to one or more"
    r"|has not yet been delivered to one or more|following addresses had (?:permanent|transient)"
    r"|transcript of (?:the )?session follows|delivery has failed to these recipients"
    r"|delivery is delayed to these recipients|diagnostic information for administrators"
    r"|not listed in (?:the )?(?:domino directory|public address book)"
    r"|message that you sent was undeliverable|unable to deliver your message to the following"
    r"|error occurred while trying to deliver the mail|delivery to the following recipients? "
    r"(?:failed|has been delayed|was unsuccessful|was aborted)|i'm sorry to have to inform you"
    r" that|this is the (?:mail system|postfix program) at host|following recipient\(?s?\)?"
    r" (?:cannot|could not) be reached|following recipients? did not receive this message"
    r"|did not reach (?:some or all of )?the intended recipient|did not reach the following"
    r" recipient|could not be delivered to (?:the"
    r" following|some) recipients?|unable to deliver (?:the )?message to the following"
    r"|smtp error from remote (?:mail )?server|technical details of (?:permanent|temporary)"
    r" failure|error that the other server returned|response from the remote server was"
    r"|does not like recipient\.|giving up on \S{1,255}\.|the following message to .{0,100}"
    r" was undeliverable|running the courier mail server",
    re.IGNORECASE,
)
# Wording that is a bounce only with another sign (a bounce subject, a null sender…).
_WEAK_MARKER_RE = re.compile(
    r"your message (?:could ?n[o']?t|was ?n[o']?t|did not|has not|cannot|can't) (?:be )?"
    r"(?:delivered|reach)|was not delivered to|remote host said:|(?:permanent|fatal) (?:error"
    r"|failure)|undeliverable (?:mail|message)|message (?:was )?(?:undeliverable|not delivered)"
    r"|mail delivery (?:failed|system)|delivery status notification|delivery failed"
    r"|delivery report|retry timeout exceeded|the original message was received at"
    r"|konnte nicht zugestellt|n'a pas pu être (?:remis"
    r"|distribué|délivré)|no (?:se )?pud(?:o|e) (?:ser )?entregar|non è stato possibile"
    r" recapitare|kon niet worden (?:bezorgd|afgeleverd)|não pôde ser entregue",
    re.IGNORECASE,
)
_FAILURE_WORDS_RE = re.compile(
    r"undeliver|not (?:be )?delivered|could ?n[o']?t (?:be )?deliver|unable to deliver|failed"
    r"|failure|rejected|returned|permanent|\berror\b|bounced|(?<![\w.])[45]\.\d\.\d"
    r"|(?:^|\s)[45][0-5]\d[ -]",
    re.IGNORECASE,
)
_DELAY_RE = re.compile(
    r"warning (?:message )?only|do not need to resend|will (?:continue|keep) (?:trying|to try"
    r"|attempting|to attempt)|will be retried|will retry|still (?:be )?(?:trying|retrying|being"
    r" retried|attempting)|has not (?:yet )?been delivered|not yet been delivered|hasn't been"
    r" delivered yet|no action is required on your part|delivery (?:is|has been) delayed"
    r"|\(delay\)|delivery delayed|delayed mail|message delayed|could not send message for past"
    r"|warning: message .{0,120} delayed|temporary problem delivering|retry for .{0,40} more"
    r"|is delayed to these recipients|delivery incomplete|zustellung verzögert|remise différée"
    r"|will try (?:again|to deliver)|trying to deliver",
    re.IGNORECASE,
)
_PERMANENT_RE = re.compile(
    r"permanent (?:error|fatal|failure)|failed permanently|permanently (?:rejected|failed)"
    r"|gave up|given up|giving up|could not be delivered for \d|message expired|has expired"
    r"|delivery (?:has )?failed|retry timeout exceeded|time limit exceeded"
    r"|have been (?:deleted|removed) from the queue|will not be (?:retried|delivered)"
    r"|non[- ]?deliver|undeliverable|returning message to sender|returned to sender",
    re.IGNORECASE,
)
_SUCCESS_RE = re.compile(
    r"\(success\)|\(relay\)|successful mail delivery|^\s*(?:delivered|relayed)\s*:"
    r"|delivery to these recipients or groups is complete|was successfully delivered"
    r"|has been successfully delivered|delivery to the following recipients? (?:was )?"
    r"(?:successful|succeeded|complete)|your message (?:has been|was) delivered",
    re.IGNORECASE | re.MULTILINE,
)
_PHISH_RE = re.compile(
    r"\bclick (?:here|below|the link)|\b(?:log ?in|sign ?in) (?:to|here|now)"
    r"|\bverify your (?:account|mailbox|e-?mail|password)|\brelease (?:your )?(?:pending|held"
    r"|blocked|these)? ?messages|\bpassword\b|\bmailbox (?:will be )?(?:deactivat|suspend|clos)"
    r"|\bupgrade your (?:mailbox|storage)|\brecover (?:your )?messages",
    re.IGNORECASE,
)
_HOST_SENTENCE_RE = re.compile(
    r"(?:qmail-send program at|mail system at host|running the courier mail server|generating"
    r" server:|reporting-mta:[ \t]*dns;)[ \t]*([\w.-]{3,255})",
    re.IGNORECASE,
)


def _looks_failed(report: _Report) -> bool:
    """The subject or text announce a failure rather than a delay."""
    head = f"{report.subject}\n{report.text[:65536]}"
    if _DELAY_RE.search(head) and not _PERMANENT_RE.search(head):
        return False
    return bool(_SUBJECT_BOUNCE_RE.search(report.subject) or _PERMANENT_RE.search(head))


def _is_delay(report: _Report) -> bool:
    head = f"{report.subject}\n{report.text[:65536]}"
    return bool(_DELAY_RE.search(head)) and not _PERMANENT_RE.search(head)


def _decision_text(text: str) -> str:
    """Bounce wording without lines that only echo the original or our side of SMTP."""
    text = _SUCCESS_REPLY_LINE_RE.sub("", text)
    return _SUMMARY_LINE_RE.sub("", text)


class _Snippets:
    """The words of a text bounce next to each recipient it names."""

    def __init__(self, report: _Report) -> None:
        self.report = report
        self.text = _decision_text(report.text)
        self.whole = self.text[: diagnosis.MAX_DECISION_CHARS]
        self._windows: dict[str, list[str]] | None = None

    def addresses(self) -> list[str]:
        return list(self._collect())

    def for_address(self, address: str) -> str:
        return "\n".join(self._collect().get(address.lower(), []))[: diagnosis.MAX_DECISION_CHARS]

    def _collect(self) -> dict[str, list[str]]:
        if self._windows is not None:
            return self._windows
        found: list[tuple[int, str]] = []
        for line_match in re.finditer(r"[^\n]{1,20000}", self.text):
            line = line_match.group(0)
            if "@" not in line or _HEADERISH_LINE_RE.match(line):
                continue
            for match in _EMAIL_RE.finditer(line):
                address = match.group(1).strip(".").lower()
                if not self.report.is_excluded(address):
                    found.append((line_match.start() + match.start(), address))
                if len(found) >= 4 * MAX_RECIPIENT_RECORDS:
                    break
        # Each mention of an address opens a window that runs to the next mention of
        # a different address (at most 2000 characters).
        next_other = [len(self.text)] * len(found)
        for index in range(len(found) - 2, -1, -1):
            if found[index + 1][1] != found[index][1]:
                next_other[index] = found[index + 1][0]
            else:
                next_other[index] = next_other[index + 1]
        windows: dict[str, list[str]] = {}
        sizes: dict[str, int] = {}
        for index, (start, address) in enumerate(found):
            if address not in windows and len(windows) >= MAX_RECIPIENT_RECORDS:
                continue
            chunks = windows.setdefault(address, [])
            if sizes.get(address, 0) < diagnosis.MAX_DECISION_CHARS:
                chunk = self.text[start : min(start + 2000, next_other[index])]
                chunks.append(chunk)
                sizes[address] = sizes.get(address, 0) + len(chunk)
        self._windows = windows
        return windows


def _key_sentence(text: str) -> str:
    """The line of ``text`` that states the failure, with its continuation lines."""
    lines = [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        if enhanced_codes(line) or diagnosis.basic_codes(line) or diagnosis.failure_evidence(line):
            chunk = [line]
            for follower in lines[index + 1 : index + 4]:
                if not follower:
                    break
                chunk.append(follower)
            return _clip(" ".join(chunk))
    return _clip(" ".join(line for line in lines if line)[:300])


def _bounce_signals(report: _Report) -> tuple[bool, str]:
    """Whether the message is a bounce without a DSN, and which signal says so."""
    head = report.text[:65536]
    if report.header("x-failed-recipients") or report.header("x-ms-exchange-message-is-ndr"):
        return True, "header"
    if any(
        p.content_type == "multipart/report"
        and _param(p.message, "report-type") == "delivery-status"
        for p in report.parts
    ):
        return True, "report"
    if _STRONG_MARKER_RE.search(head):
        return True, "wording"
    # A person's reply or forward quoting a bounce is not one.
    reply = bool(
        _REPLY_SUBJECT_RE.match(report.subject) or _FORWARD_SUBJECT_RE.match(report.subject)
    )
    daemon = bool(_FROM_DAEMON_RE.search(report.sender))
    subject = bool(_SUBJECT_BOUNCE_RE.search(report.subject)) and not reply
    weak = bool(_WEAK_MARKER_RE.search(head))
    if daemon and (subject or weak or _FAILURE_WORDS_RE.search(head)):
        return True, "sender"
    automated = report.header("return-path").strip() == "<>" or bool(
        report.header("auto-submitted")
    )
    if weak and not reply and (subject or automated):
        return True, "wording"
    if subject and not _auto_reply_reason(report):
        return True, "subject"
    return False, ""


def _text_bounce(report: _Report) -> Classification | None:
    is_bounce, signal = _bounce_signals(report)
    if not is_bounce:
        return None
    snippets = _Snippets(report)
    head = f"{report.subject}\n{report.text[:65536]}"
    has_codes = bool(enhanced_codes(snippets.whole) or diagnosis.basic_codes(snippets.whole))
    if signal in ("subject", "sender", "wording") and not has_codes and _PHISH_RE.search(head):
        return None
    # Exim and Gmail name the failed addresses in a header; otherwise read the text.
    listed = _addresses_in(report.header("x-failed-recipients"))
    addresses = _unique([a.lower() for a in listed if not report.is_excluded(a)])
    if not addresses:
        addresses = snippets.addresses()
    if not addresses:
        addresses = report.original_recipient()
    addresses = addresses[:MAX_RECIPIENT_RECORDS]

    if _SUCCESS_RE.search(head) and not _FAILURE_WORDS_RE.search(snippets.whole):
        kind, rule, action = BounceKind.DELIVERED, "delivered", "delivered"
    elif _is_delay(report):
        kind, rule, action = BounceKind.DELAYED, "delayed", "delayed"
    else:
        kind, rule = failure_kind(None, snippets.whole)
        action = "failed"
    whole_status = best_status(enhanced_codes(snippets.whole))
    whole_diagnostic = _key_sentence(snippets.whole)

    limit = _decision_share(len(addresses))
    recipients: list[RecipientResult] = []
    rules: list[str] = []
    for address in addresses:
        words = snippets.for_address(address)[:limit]
        r_kind, r_rule, r_status, r_diag = kind, rule, whole_status, whole_diagnostic
        if action == "failed" and words and diagnosis.failure_evidence(words):
            r_kind, r_rule = failure_kind(None, words)
            r_status = best_status(enhanced_codes(words)) or whole_status
            r_diag = _key_sentence(words)
        recipients.append(
            RecipientResult(
                address=address, status=r_status, kind=r_kind, action=action, diagnostic=r_diag
            )
        )
        rules.append(r_rule)
    if recipients:
        overall = _overall([r.kind for r in recipients])
        index = next(i for i, r in enumerate(recipients) if r.kind == overall)
        status, diagnostic, rule = (
            recipients[index].status,
            recipients[index].diagnostic,
            rules[index],
        )
    else:
        overall, status, diagnostic = kind, whole_status, whole_diagnostic
    if overall == BounceKind.DELIVERED:
        status = status if status and status[0] == "2" else None
    return Classification(
        kind=overall,
        status=status,
        diagnostic=diagnostic,
        recipients=tuple(recipients),
        reporting_mta=_reporting_host(report),
        original_message_id=report.original_message_id(),
        reason=f"{signal}:{rule}",
    )


def _reporting_host(report: _Report) -> str:
    match = _HOST_SENTENCE_RE.search(report.text[:65536])
    if match:
        return match.group(1).strip(".")[:255]
    addresses = _addresses_in(report.sender)
    if addresses and _FROM_DAEMON_RE.search(report.sender):
        return addresses[0].rpartition("@")[2].lower()[:255]
    return ""


# --- 4. auto-replies -----------------------------------------------------------------

_AUTO_REPLY_HEADERS = (
    "x-autoreply",
    "x-autorespond",
    "x-autoresponder",
    "x-autoreply-from",
    "x-mail-autoreply",
    "x-auto-reply",
    "x-vacation",
)
_AUTO_SUBJECT_RE = re.compile(
    r"auto(?:matic|matische|matisch|matico|mático|matique)?[ _-]?(?:reply|response|antwort"
    r"|antwoord|respuesta|risposta|réponse|resposta|svar|reponse)|\bauto:|\bautosvar"
    r"|out of (?:the )?office|\booo\b|abwesenheit|réponse automatique|respuesta autom[aá]tica"
    r"|risposta automatica|automatisch antwoord|resposta autom[aá]tica|automaattinen vastaus"
    r"|automatyczna odpowied|автоответ|автоматический ответ|自動返信|自动回复|自動回覆"
    r"|fuera de la oficina|absence du bureau|away from (?:the |my )?office|on vacation"
    r"|vacation (?:reply|notice|message|response)",
    re.IGNORECASE,
)
_WEAK_AUTO_SUBJECT_RE = re.compile(
    r"vacation|\baway\b|absent|absence|holiday|urlaub|congés|vacaciones|ferie|vakantie"
    r"|thank you for (?:your|contacting)|we have received|ticket|received your (?:message|e-?mail)",
    re.IGNORECASE,
)
# How auto-replies that carry no RFC 3834 header word themselves.
_AUTO_BODY_RE = re.compile(
    r"\b(?:i am|i'm|i will be|i'll be|we are|we're) (?:currently |now )?(?:out of (?:the )?office"
    r"|away from (?:the |my )?(?:office|desk|e-?mail)|on (?:annual |parental |maternity |paternity"
    r" |sick |study )?(?:leave|vacation|holiday)|out of town|absent)\b"
    r"|\bthis is an? automat(?:ed|ic|ically generated) (?:reply|response|message|notification)"
    r"|\b(?:automatic|automated|auto)[ -]?(?:reply|response)\b"
    r"|\bwith limited (?:access to )?e-?mail"
    r"|\bich bin (?:bis|vom|ab|derzeit|zurzeit|momentan|nicht)\b|\bnicht im büro"
    r"|\bje suis (?:actuellement )?absente?\b|\bestoy fuera de la oficina|\bme encuentro fuera"
    r"|\bsono (?:fuori ufficio|assente)|\bik ben (?:niet aanwezig|afwezig|met vakantie)",
    re.IGNORECASE,
)
_STRONG_AUTO_BODY_RE = re.compile(
    r"\bthis is an? automat(?:ed|ic|ically generated) (?:reply|response|message)"
    r"|\b(?:automatic|automated|auto)[ -]?(?:reply|response)\b",
    re.IGNORECASE,
)
_CHALLENGE_RE = re.compile(
    r"challenge[- ]response|spam ?arrest|boxbe|verify (?:that )?you are (?:a )?(?:real|human"
    r"|person)|to (?:have|get) your (?:message|e-?mail) delivered|awaiting (?:your )?"
    r"(?:verification|approval|confirmation)|sender verification|please (?:verify|confirm)"
    r" (?:your|that you)|(?:message|e-?mail) (?:is )?(?:being )?held (?:pending|until)",
    re.IGNORECASE,
)


def _auto_reply_reason(report: _Report) -> str:
    """Why the message is an auto-reply, or "" when it isn't."""
    auto_submitted = report.header("auto-submitted").lower().split(";", 1)[0].strip()
    if auto_submitted and auto_submitted != "no":
        return f"auto-submitted:{auto_submitted[:40]}"
    for name in _AUTO_REPLY_HEADERS:
        value = report.header(name).lower()
        if value and value not in ("no", "false", "0"):
            return name
    precedence = (report.header("precedence") or report.header("x-precedence")).lower()
    if precedence.replace("-", "_") == "auto_reply":
        return "precedence:auto_reply"
    if _AUTO_SUBJECT_RE.search(report.subject):
        return "subject"
    automated = bool(
        report.header("x-auto-response-suppress")
        or precedence in ("bulk", "junk")
        or report.header("return-path").strip() == "<>"
    )
    if automated and _WEAK_AUTO_SUBJECT_RE.search(report.subject):
        return "subject+automated"
    challenge = _CHALLENGE_RE.search(f"{report.subject}\n{report.text[:16384]}")
    if challenge and (automated or _CHALLENGE_RE.search(report.subject)):
        return "challenge"
    # Template replies (an Outlook rule, a webmail responder) often carry no header:
    # trust their wording unless the message looks like a person's reply.
    opening = report.text[:2000]
    if _AUTO_BODY_RE.search(opening) and (
        automated
        or not _REPLY_SUBJECT_RE.match(report.subject)
        or _STRONG_AUTO_BODY_RE.search(opening)
    ):
        return "wording"
    return ""


def _auto_reply(report: _Report) -> Classification | None:
    reason = _auto_reply_reason(report)
    if not reason:
        return None
    return Classification(
        kind=BounceKind.AUTO_REPLY,
        status=None,
        diagnostic=_clip(report.subject),
        original_message_id=report.original_message_id(),
        reason=f"auto-reply:{reason}",
    )


# --- putting it together -------------------------------------------------------------


def _not_bounce(report: _Report) -> Classification:
    mdn = any(p.content_type in _MDN_TYPES for p in report.parts)
    return Classification(
        kind=BounceKind.NOT_BOUNCE,
        status=None,
        diagnostic=_clip(report.subject),
        reason="mdn" if mdn else "no bounce signals",
    )


def _forwarded_bounce(report: _Report) -> Classification | None:
    """A text bounce attached to another message (forwarded by a person or a service)."""
    for part in report.parts:
        if part.enclosed != 0 or part.content_type not in _ORIGINAL_TYPES:
            continue
        inner = _children(part.message)
        if not inner:
            continue
        if not _FROM_DAEMON_RE.search(_first(_headers(inner[0]), "from")):
            continue
        result = _text_bounce(_Report.build(inner[0]))
        if result is not None:
            return replace(result, reason=f"forwarded {result.reason}")
    return None


def _classify(raw: bytes) -> Classification:
    # The default policy of the email package is compat32: the most forgiving parser,
    # and it doesn't import email.policy's header registry (start-up cost).
    root = message_from_bytes(_bounded_input(raw))
    report = _Report.build(root)
    result = _arf(report) or _dsn(report)
    if result is not None:
        return result
    result = _text_bounce(report)
    if result is None or result.reason.endswith(":failed"):
        # No failure named in the message's own words: maybe it carries a bounce.
        result = _forwarded_bounce(report) or result
    return result or _auto_reply(report) or _not_bounce(report)


def classify_message(raw: bytes) -> Classification:
    """Classify ``raw`` (a whole message as bytes). Never raises.

    Any input gets a verdict; input the parser can't make sense of is ``not_bounce``
    with the reason ``"unparsable: <exception type>"``.
    """
    try:
        return _classify(raw)
    except Exception as exc:
        return Classification(
            kind=BounceKind.NOT_BOUNCE,
            status=None,
            diagnostic="",
            reason=f"unparsable: {type(exc).__name__}",
        )


def classify_reply(
    text: str, *, status: str | None = None, recipient: str | None = None, source: str = ""
) -> Classification:
    """Classify one failure reported as text rather than as a message.

    For an SMTP server's reply at send time (``"550 5.1.1 <a@example.org>: User
    unknown"``) or an ESP's description of a bounce: the same rules as a DSN's
    Diagnostic-Code (:func:`bounce_tracker.classify.diagnosis.failure_kind`), so 5.1.1 is hard
    and a 4xx reply soft. ``status`` is an enhanced status code known from elsewhere;
    ``source`` goes into the reason (e.g. ``"smtp"``).
    """
    text = text[: diagnosis.MAX_DECISION_CHARS]
    status = diagnosis.normalize_status(status) or diagnosis.best_status(
        diagnosis.enhanced_codes(text)
    )
    kind, rule = diagnosis.failure_kind(status, text)
    diagnostic = _WS_RE.sub(" ", text).strip()[:MAX_DIAGNOSTIC_CHARS]
    return Classification(
        kind=kind,
        status=status,
        diagnostic=diagnostic,
        recipients=(RecipientResult(recipient, status, kind, diagnostic=diagnostic),),
        reason=f"{source}:{rule}" if source else rule,
    )
