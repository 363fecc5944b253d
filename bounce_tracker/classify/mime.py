"""MIME decoding: header values, part types, the text of a part, the walk over parts.

Everything here tolerates what real and hostile mail does to MIME: unknown or
dangerous charsets (never a codec that isn't a mail charset or costs more than
linear time), broken base64 and quoted-printable, RFC 2047 words in odd places,
field parts the parser split into header blocks, HTML-only reports.

Text is decoded before any wording is matched, in the charset mail really uses:
ISO-2022-JP is recognised by its escapes whatever the label says (or when there is
none); labels that name a subset are read as the superset the mail holds (Shift_JIS
as CP932, GB2312 as GB18030, Big5 as CP950, EUC-KR as CP949); names Python doesn't
know are mapped (``x-sjis``, ``ks_c_5601-1987``, ``cp50220``…); bytes that don't decode
in their label are tried in what such a label usually hides; undeclared 8-bit text is
read in the charset its bytes show beyond doubt (:func:`_sniff`); adjacent RFC 2047
words are joined as bytes; full-width forms are folded. The walk stops
at :data:`~bounce_tracker.classify.limits.MAX_DEPTH` levels and
:data:`~bounce_tracker.classify.limits.MAX_PARTS` parts, and each part's text at
:data:`~bounce_tracker.classify.limits.MAX_TEXT_CHARS` characters.
"""

from __future__ import annotations

import binascii
import codecs
import re
from dataclasses import dataclass
from email.message import Message

from bounce_tracker.classify.dsn import MAX_RECIPIENT_RECORDS
from bounce_tracker.classify.limits import (
    MAX_DEPTH,
    MAX_HEADER_CHARS,
    MAX_HEADERS,
    MAX_PARTS,
    MAX_TEXT_CHARS,
)
from bounce_tracker.classify.text import WS_RE

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
# Codecs that are not mail charsets, or cost more than linear time on hostile input.
_UNSAFE_CODECS = frozenset(
    {"punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined"}
)

_ENCODED_WORD_RE = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]{0,2000})\?=")
_BETWEEN_WORDS_RE = re.compile(r"(\?=)[ \t\r\n]{1,200}(?==\?)")


# Charset names mail software writes that Python doesn't know, and labels whose
# charset is a subset of what the mail really holds: Shift_JIS mail is Windows-31J
# (NEC and IBM extensions), "gb2312" mail is GBK, "big5" is CP950, "ks_c_5601-1987"
# and EUC-KR are CP949, and ISO-8859-1 text is windows-1252 (as browsers read it).
_CHARSET_ALIASES = {
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "x-ms-cp932": "cp932",
    "ms_kanji": "cp932",
    "x-euc-jp": "euc_jp",
    "x-euc": "euc_jp",
    "x-gbk": "gb18030",
    "gb_2312-80": "gb18030",
    "euc-cn": "gb18030",
    "x-euc-cn": "gb18030",
    "cn-gb": "gb18030",
    "x-x-big5": "cp950",
    "big5-x": "cp950",
    "x-cp1251": "cp1251",
    "win-1251": "cp1251",
    "cp-1251": "cp1251",
    "windows-874": "cp874",
    "x-windows-949": "cp949",
    "ks_c_5601": "cp949",
    "iso-8859-8-i": "iso8859-8",
    # Microsoft's ISO-2022-JP and EUC-JP variants (NEC and IBM extensions).
    "cp50220": "iso2022_jp",
    "cp50221": "iso2022_jp_ext",
    "cp50222": "iso2022_jp_ext",
    "iso-2022-jp-ms": "iso2022_jp",
    "euc-jp-ms": "euc_jis_2004",
    "cp51932": "euc_jis_2004",
    "sjis-open": "cp932",
    "sjis-win": "cp932",
    "shift-jis": "cp932",
    "cn-big5": "cp950",
    "unicode-1-1-utf-8": "utf-8",
    "utf-8n": "utf-8",
    "unicode20utf8": "utf-8",
    "utf8mb4": "utf-8",
    "ansi_x3.4-1968": "ascii",
}
_CODEPAGE_RE = re.compile(r"^(?:windows|win|cp|ms)[-_]?(\d{3,5})$")
_CODEC_UPGRADES = {
    "shift_jis": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "big5": "cp950",
    "euc_kr": "cp949",
    "latin-1": "cp1252",
    "iso8859-1": "cp1252",
}
# What else a part labelled in one of these charsets turns out to hold when its bytes
# don't decode strictly (Shift_JIS labelled ISO-2022-JP, UTF-8 labelled anything…).
_JAPANESE = ("utf-8", "euc_jp", "cp932")
_FALLBACKS = {
    "iso2022_jp": _JAPANESE,
    "iso2022_jp_1": _JAPANESE,
    "iso2022_jp_2": _JAPANESE,
    "iso2022_jp_ext": _JAPANESE,
    "iso2022_jp_3": _JAPANESE,
    "iso2022_jp_2004": _JAPANESE,
    "euc_jp": ("utf-8", "cp932", "euc_jis_2004"),
    "euc_jis_2004": ("utf-8", "cp932"),
    "cp932": ("utf-8", "euc_jp"),
    "gb18030": ("utf-8",),
    "hz": ("utf-8", "gb18030"),
    "cp950": ("utf-8", "big5hkscs", "gb18030"),
    "big5hkscs": ("utf-8", "cp950"),
    "cp949": ("utf-8", "iso2022_kr"),
    "iso2022_kr": ("utf-8", "cp949"),
    "utf-7": ("utf-8",),
    "cp1252": ("utf-8", "latin-1"),
    "ascii": ("utf-8", "cp1252"),
}


def _codec(charset: str | None) -> str | None:
    """A safe text codec name for a declared charset, or None."""
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()[:40]
    label = _CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError, TypeError):
        # "x-big5", "x-mac-cyrillic", "windows-936", "cp-1250": the same name plainer.
        plain = _CODEPAGE_RE.sub(r"cp\1", label.removeprefix("x-"))
        plain = _CHARSET_ALIASES.get(plain, plain)
        try:
            info = codecs.lookup(plain)
        except (LookupError, ValueError, TypeError):
            return None
    if info.name in _UNSAFE_CODECS or not getattr(info, "_is_text_encoding", True):
        return None
    if info.name == "ascii":
        return None
    return _CODEC_UPGRADES.get(info.name, info.name)


# Lone surrogates: a few codecs (UTF-7) decode to them even with errors="replace".
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# ISO-2022-JP's escape sequences: ASCII/JIS-Roman, half-width katakana, JIS X 0208
# (1978, 1983, and the 1990 announcer), JIS X 0212 and JIS X 0213 plane 1.
_JIS_ESCAPE_RE = re.compile(rb"(\x1b(?:\(B|\(J|\(I|\$@|\$B|&@\x1b\$B|\$\(D|\$\(Q|\$\(O))")
_JIS_KANJI_RE = re.compile(rb"\x1b(?:\$[@B]|\(I|\$\(Q|\$\(O)")
# JIS bytes (0x21-0x7e) to EUC (high bit set): the same code point in EUC form.
_TO_EUC = bytes(b | 0x80 if 0x21 <= b <= 0x7E else b for b in range(256))
_KANA_TO_EUC = bytes(b | 0x80 if 0x21 <= b <= 0x5F else b for b in range(256))
# Full-width ASCII and half-width katakana (one character each after NFKC).
_WIDTH_RE = re.compile("[\uff01-\uffee]+")


def _decode_iso2022jp(data: bytes) -> str:
    """7-bit ISO-2022-JP text, leniently: any escape may come at any point, line ends
    need not return to ASCII, and NEC's row-13 symbols (①, ㈱…) that Windows writes
    decode (through EUC-JIS-2004, which holds them)."""
    pieces: list[str] = []
    mode = b"\x1b(B"
    for index, chunk in enumerate(_JIS_ESCAPE_RE.split(data)):
        if index % 2:
            mode = chunk[-3:] if chunk.startswith(b"\x1b&@") else chunk
            continue
        if not chunk:
            continue
        if mode in (b"\x1b$@", b"\x1b$B", b"\x1b$(Q", b"\x1b$(O"):
            pieces.append(chunk.translate(_TO_EUC).decode("euc_jis_2004", "replace"))
        elif mode == b"\x1b$(D":
            # JIS X 0212 (rare supplementary kanji): EUC-JP writes it after SS3.
            pairs = chunk.translate(_TO_EUC)
            euc = b"".join(b"\x8f" + pairs[i : i + 2] for i in range(0, len(pairs), 2))
            pieces.append(euc.decode("euc_jp", "replace"))
        elif mode == b"\x1b(I":
            pieces.append(chunk.translate(_KANA_TO_EUC).decode("cp932", "replace"))
        else:
            pieces.append(chunk.decode("ascii", "replace"))
    return "".join(pieces)


def _fold_width(text: str) -> str:
    """Full-width letters and digits as ASCII, half-width katakana as full width (NFKC
    of those characters only: one character in, at most one out)."""
    import unicodedata  # C module; only for text that has such characters

    return _WIDTH_RE.sub(lambda match: unicodedata.normalize("NFKC", match.group(0)), text)


def _clean(text: str) -> str:
    if text.isascii():
        return text
    text = _SURROGATE_RE.sub("\ufffd", text)
    return _fold_width(text) if _WIDTH_RE.search(text) else text


_KANA_RE = re.compile("[\u3041-\u3096\u30a1-\u30fa\u30fc]")
_HANGUL_RE = re.compile("[\uac00-\ud7a3]")
_HAN_RE = re.compile("[\u4e00-\u9fff\uf900-\ufaff]")
_HIGH_RUN_RE = re.compile(rb"[\x80-\xff]+")
_EUC_CN_RE = re.compile(rb"(?:[\x00-\x7f]++|[\xa1-\xf7][\xa1-\xfe])*+")
_CYRILLIC_RE = re.compile("[\u0410-\u044f\u0401\u0451]")
_LOWER_CYRILLIC_RE = re.compile("[\u0430-\u044f\u0451]")
_LATIN_LETTER_RE = re.compile("[A-Za-z]")
# How much of an undeclared text the guess reads.
_SNIFF_BYTES = 16 * 1024


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _sniff(data: bytes) -> str | None:
    """The charset of undeclared 8-bit text that isn't UTF-8, when the text says so.

    Only what the bytes show beyond doubt: Japanese (EUC-JP or Shift_JIS text has
    kana, which Chinese and Korean text never has), Korean (CP949 decodes to Hangul
    syllables and next to no Hanja), Chinese (every 8-bit byte in a GB2312 pair),
    Russian (most letters are Cyrillic in windows-1251; KOI8-R when the
    windows-1251 reading is mostly capitals, as KOI8-R's lower case reads there).
    Anything else is left to windows-1252, as before.
    """
    head = data[:_SNIFF_BYTES]
    # Don't cut a multi-byte character in two at the end of the sample.
    head = head[: len(head) - 1] if len(data) > _SNIFF_BYTES and head[-1] >= 0x80 else head
    for codec in ("euc_jp", "cp932"):
        text = _strict(head, codec)
        if text is not None and len(_KANA_RE.findall(text)) >= 2:
            return codec
    text = _strict(head, "cp949")
    if text is not None:
        hangul = len(_HANGUL_RE.findall(text))
        hanja = len(_HAN_RE.findall(text))
        if hangul >= 2 and hanja * 10 <= hangul:
            return "cp949"
    # Runs of 8-bit bytes: words in Cyrillic text (a space between them), whole
    # phrases in Chinese (no spaces).
    runs = [len(run) for run in _HIGH_RUN_RE.findall(head)]
    long_runs = bool(runs) and sum(runs) >= 10 * len(runs)
    # EUC-CN's shape (GB2312): every 8-bit byte in a pair of A1-F7, A1-FE.
    if long_runs and _EUC_CN_RE.fullmatch(head) and _strict(head, "gb18030") is not None:
        return "gb18030"
    text = head.decode("cp1251", "replace")
    cyrillic = len(_CYRILLIC_RE.findall(text))
    if cyrillic >= 4 and cyrillic >= len(_LATIN_LETTER_RE.findall(text)):
        lower = len(_LOWER_CYRILLIC_RE.findall(text))
        return "cp1251" if lower * 2 >= cyrillic else "koi8_r"
    return None


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """``data`` as text in ``charset`` (else UTF-8, else cp1252), never with surrogates.

    ISO-2022-JP is recognised by its escapes whatever the label says (it often has
    none); bytes that don't decode in the declared charset are tried in what such a
    label usually hides (:data:`_FALLBACKS`) before decoding with replacement marks.
    Text with lone surrogates can't be encoded again (UTF-8, even with
    ``surrogateescape``), which later steps do to header values.
    """
    name = _codec(charset)
    if (
        b"\x1b" in data
        and name not in ("iso2022_jp_2", "iso2022_kr", "iso2022_jp_3", "iso2022_jp_2004")
        and _JIS_KANJI_RE.search(data)
        and data.isascii()
    ):
        return _clean(_decode_iso2022jp(data))
    if name is None:
        try:
            return _clean(data.decode("utf-8"))
        except UnicodeDecodeError:
            name = _sniff(data) or "cp1252"
            return _clean(data.decode(name, "replace"))
    for candidate in (name, *_FALLBACKS.get(name, ("utf-8",))):
        try:
            return _clean(data.decode(candidate))
        except (UnicodeDecodeError, LookupError, ValueError, TypeError):
            continue
    try:
        return _clean(data.decode(name, "replace"))
    except (LookupError, ValueError, TypeError):
        return _clean(data.decode("utf-8", "replace"))


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
            pieces.append(_decode_bytes(b"".join(run), run_charset))
            run = []
        if not run:
            pieces.append(text[position : match.start()])
            run_charset = charset
        run.append(_word_bytes(match))
        run_end = position = match.end()
    if run:
        pieces.append(_decode_bytes(b"".join(run), run_charset))
    pieces.append(text[position:])
    return "".join(pieces)


def decode_header_value(value: str) -> str:
    """A header value as readable text: 8-bit, raw ISO-2022-JP and RFC 2047 words
    decoded, unfolded."""
    text = value[:MAX_HEADER_CHARS].encode("utf-8", "surrogateescape")
    # Raw 8-bit headers carry no charset: UTF-8, else what the bytes show (_sniff).
    decoded = _decode_bytes(text, None)
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
    return [child for child in payload[:limit] if isinstance(child, Message)]


def _leaf_bytes(message: Message) -> bytes:
    """The body of a leaf part as bytes, transfer encoding undone.

    Never ``get_payload()`` without ``decode=True``: for 8-bit bodies it decodes
    with whatever charset the part declares (punycode, RFC 2231 tuples…).
    """
    data = message.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


_META_CHARSET_RE = re.compile(
    rb"(?i)<meta\b[^<>]{0,300}?charset\s*=\s*[\"']?([A-Za-z0-9_.:-]{1,40})"
)


def part_text(message: Message, limit: int = MAX_TEXT_CHARS) -> str:
    """The decoded text of a leaf part (or of a field part), at most ``limit`` characters."""
    if not message.is_multipart():
        data = _leaf_bytes(message)[: limit * 4]
        charset = _charset(message)
        if charset is None and content_type_of(message) == "text/html":
            # An HTML part often names its charset only in a <meta> tag.
            meta = _META_CHARSET_RE.search(data[:4096])
            charset = meta.group(1).decode("ascii") if meta else None
        return _decode_bytes(data, charset)[:limit]
    # A field part (message/delivery-status…) the parser split into header blocks.
    encoded = _rebuild_fields(children(message, _MAX_FIELD_BLOCKS))
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
