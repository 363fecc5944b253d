"""MIME decoding: header values, part types, the text of a part, the walk over parts.

Everything here tolerates what real and hostile mail does to MIME: unknown or
dangerous charsets (never a codec that isn't a mail charset or costs more than
linear time), broken base64 and quoted-printable, RFC 2047 words in odd places,
field parts the parser split into header blocks, HTML-only reports.

Text is decoded before any wording is matched, in the charset mail really uses
(:mod:`~bounce_tracker.classify.charsets`: ISO-2022-JP by its escapes, subset labels
read as their supersets, unknown names mapped, undeclared 8-bit text sniffed);
adjacent RFC 2047 words are joined as bytes first. The walk stops
at :data:`~bounce_tracker.classify.limits.MAX_DEPTH` levels and
:data:`~bounce_tracker.classify.limits.MAX_PARTS` parts, and each part's text at
:data:`~bounce_tracker.classify.limits.MAX_TEXT_CHARS` characters.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from bounce_tracker.classify.charsets import decode_bytes
from bounce_tracker.classify.dsn import MAX_RECIPIENT_RECORDS
from bounce_tracker.classify.limits import (
    FIELD_BLOCKS_READ,
    MAX_DEPTH,
    MAX_HEADER_CHARS,
    MAX_HEADERS,
    MAX_PARTS,
    MAX_TEXT_CHARS,
)
from bounce_tracker.classify.patterns import lazy_re
from bounce_tracker.classify.text import WS_RE

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up cost)
if TYPE_CHECKING:
    from email.message import Message

#: Delivery status reports (RFC 3464, RFC 6533).
DSN_TYPES = frozenset(
    {"message/delivery-status", "message/global-delivery-status", "text/delivery-status"}
)
#: A feedback report (ARF, RFC 5965).
ARF_TYPE = "message/feedback-report"
#: Read receipts (RFC 8098): never a bounce.
MDN_TYPES = frozenset(
    {"message/disposition-notification", "message/global-disposition-notification"}
)
# Parts that hold fields, not a message, even though the parser may nest messages in them.
_FIELD_TYPES = DSN_TYPES | MDN_TYPES | {ARF_TYPE}
#: A returned original message.
ORIGINAL_TYPES = frozenset({"message/rfc822", "message/global", "message/partial"})
#: The headers of a returned original, without its body.
HEADER_TYPES = frozenset(
    {"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"}
)
_ENCODED_WORD_RE = lazy_re(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]{0,2000})\?=")
_BETWEEN_WORDS_RE = lazy_re(r"(\?=)[ \t\r\n]{1,200}(?==\?)")


_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(b for b in range(256) if b not in _BASE64_ALPHABET)


def _b64decode(data: bytes) -> bytes:
    cleaned = data.translate(None, _NOT_BASE64)
    # Padding was dropped with the other non-alphabet bytes: restore it, so that the
    # last one or two bytes of a padded word aren't lost. A lone sextet is noise.
    extra = len(cleaned) % 4
    cleaned = cleaned[:-1] if extra == 1 else cleaned + b"=" * ((4 - extra) % 4)
    try:
        return binascii.a2b_base64(cleaned)
    except (binascii.Error, ValueError):
        return b""


def _word_bytes(match: re.Match[str]) -> bytes:
    _charset, encoding, payload = match.groups()
    data = payload.encode("ascii", "replace")
    if encoding in "bB":
        return _b64decode(data)
    return binascii.a2b_qp(data.replace(b"_", b" "))


def _decode_words(text: str) -> str:
    """RFC 2047 words decoded; adjacent words in one charset are joined as bytes first
    (mailers split a multi-byte character, or an ISO-2022-JP escape run, across words)."""
    pieces: list[str] = []
    position = 0
    run: list[bytes] = []
    run_charset = ""
    run_end = -1
    for match in _ENCODED_WORD_RE.finditer(text):
        charset = match.group(1).split("*", 1)[0].lower()
        if run and (match.start() != run_end or charset != run_charset):
            pieces.append(decode_bytes(b"".join(run), run_charset))
            run = []
        if not run:
            pieces.append(text[position : match.start()])
            run_charset = charset
        run.append(_word_bytes(match))
        run_end = position = match.end()
    if run:
        pieces.append(decode_bytes(b"".join(run), run_charset))
    pieces.append(text[position:])
    return "".join(pieces)


def decode_header_value(value: str) -> str:
    """A header value as readable text: 8-bit, raw ISO-2022-JP and RFC 2047 words
    decoded, unfolded."""
    text = value[:MAX_HEADER_CHARS].encode("utf-8", "surrogateescape")
    # Raw 8-bit headers carry no charset: UTF-8, else what the bytes show (_sniff).
    decoded = decode_bytes(text, None)
    if "=?" in decoded:
        decoded = _BETWEEN_WORDS_RE.sub(r"\1", decoded)
        decoded = _decode_words(decoded)
    return WS_RE.sub(" ", decoded).strip()


def header_values(message: Message) -> dict[str, list[str]]:
    """Header values by lower-case name, raw (undecoded) and capped."""
    found: dict[str, list[str]] = {}
    for count, (name, value) in enumerate(message.raw_items()):
        if count >= MAX_HEADERS:
            break
        found.setdefault(str(name).strip().lower(), []).append(str(value)[:MAX_HEADER_CHARS])
    return found


def first_header(headers: dict[str, list[str]], name: str) -> str:
    """The first ``name`` header of ``headers`` (from :func:`header_values`), decoded."""
    values = headers.get(name)
    return decode_header_value(values[0]) if values else ""


def content_type_of(message: Message) -> str:
    """The part's content type in lower case; ``text/plain`` when it can't be read."""
    try:
        return message.get_content_type()
    except Exception:
        return "text/plain"


def param(message: Message, name: str) -> str:
    """A ``Content-Type`` parameter in lower case, or "" when missing or unreadable."""
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
assert FIELD_BLOCKS_READ == _MAX_FIELD_BLOCKS  # limits cuts field parts after these


def _rebuild_fields(payload: list[Message], depth: int = 0) -> str:
    """The text of a field part that the parser split into nested header blocks."""
    blocks: list[str] = []
    for sub in payload:
        lines = [f"{name}: {value}" for name, value in sub.raw_items()]
        if sub.is_multipart():
            if depth < 3:
                lines.append(_rebuild_fields(children(sub, _MAX_FIELD_BLOCKS), depth + 1))
        else:
            lines.append(_leaf_bytes(sub).decode("utf-8", "surrogateescape"))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def children(message: Message, limit: int = MAX_PARTS) -> list[Message]:
    """The nested messages of a multipart, message/* or field part (none for a leaf)."""
    if not message.is_multipart():
        return []
    payload = message.get_payload()
    if not isinstance(payload, list):
        return []
    from email.message import Message  # loaded already: the message was parsed

    return [child for child in payload[:limit] if isinstance(child, Message)]


def _leaf_bytes(message: Message) -> bytes:
    """The body of a leaf part as bytes, transfer encoding undone.

    Never ``get_payload()`` without ``decode=True``: for 8-bit bodies it decodes
    with whatever charset the part declares (punycode, RFC 2231 tuples…).
    """
    data = message.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


_META_CHARSET_RE = lazy_re(rb"(?i)<meta\b[^<>]{0,300}?charset\s*=\s*[\"']?([A-Za-z0-9_.:-]{1,40})")


def part_text(message: Message, limit: int = MAX_TEXT_CHARS) -> str:
    """The decoded text of a leaf part (or of a field part), at most ``limit`` characters."""
    if not message.is_multipart():
        data = _leaf_bytes(message)[: limit * 4]
        charset = _charset(message)
        if charset is None and content_type_of(message) == "text/html":
            # An HTML part often names its charset only in a <meta> tag.
            meta = _META_CHARSET_RE.search(data[:4096])
            charset = meta.group(1).decode("ascii") if meta else None
        return decode_bytes(data, charset)[:limit]
    # A field part (message/delivery-status…) the parser split into header blocks.
    encoded = _rebuild_fields(children(message, _MAX_FIELD_BLOCKS))
    cte = str(message.get("content-transfer-encoding", "")).strip().lower()[:40]
    data = encoded[: limit * 2].encode("utf-8", "surrogateescape")
    if cte == "base64":
        data = _b64decode(data)
    elif cte == "quoted-printable":
        data = binascii.a2b_qp(data)
    return decode_bytes(data, _charset(message))[:limit]


_SCRIPT_START_RE = lazy_re(r"<(script|style|head)\b", re.IGNORECASE)
_BLOCK_TAG_RE = lazy_re(r"(?i)<\s*(?:br|/p|/div|/tr|/li|/h\d|/table|p|div|tr|li)\b[^<>]{0,2000}>")
_TAG_RE = lazy_re(r"<[^<>]{0,2000}>")
_SCRIPT_END_RES = {
    tag: lazy_re(f"</{tag}[^<>]{{0,200}}>?", re.IGNORECASE | re.ASCII)
    for tag in ("script", "style", "head")
}


def html_to_text(html: str) -> str:
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
class Part:
    """One MIME part and where it sits in the message."""

    message: Message
    content_type: str
    depth: int
    #: How many returned messages (message/rfc822) this part is inside.
    enclosed: int


def walk(root: Message) -> list[Part]:
    """Every part in document order, at most MAX_DEPTH deep and MAX_PARTS in all."""
    parts: list[Part] = []
    stack: list[tuple[Message, int, int]] = [(root, 0, 0)]
    while stack and len(parts) < MAX_PARTS:
        message, depth, enclosed = stack.pop()
        content_type = content_type_of(message)
        parts.append(Part(message, content_type, depth, enclosed))
        if depth >= MAX_DEPTH or content_type in _FIELD_TYPES:
            continue
        inside = enclosed + 1 if content_type.startswith("message/") else enclosed
        stack.extend((child, depth + 1, inside) for child in reversed(children(message)))
    return parts
