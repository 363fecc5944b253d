"""Charsets: bytes of mail text as the text they mean.

Text is decoded in the charset mail really uses: ISO-2022-JP is recognised by its
escapes whatever the label says (or when there is none), and decoded leniently;
labels that name a subset are read as the superset the mail holds (Shift_JIS as
CP932, GB2312 as GB18030, Big5 as CP950, EUC-KR as CP949); names Python doesn't know
are mapped (``x-sjis``, ``ks_c_5601-1987``, ``cp50220``…); bytes that don't decode in
their label are tried in what such a label usually hides; undeclared 8-bit text is
read in the charset its bytes show beyond doubt (:func:`sniff`); full-width forms are
folded. Never a codec that isn't a mail charset or costs more than linear time, and
never text with lone surrogates. :func:`decode_bytes` is the entry point;
:mod:`~bounce_tracker.classify.mime` uses it for parts and header values.
"""

from __future__ import annotations

import codecs

from bounce_tracker.classify.patterns import lazy_re

__all__ = ["decode_bytes", "sniff"]

# Codecs that are not mail charsets, or cost more than linear time on hostile input.
_UNSAFE_CODECS = frozenset(
    {"punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined"}
)


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
_CODEPAGE_RE = lazy_re(r"^(?:windows|win|cp|ms)[-_]?(\d{3,5})$")
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
_SURROGATE_RE = lazy_re("[\ud800-\udfff]")
# ISO-2022-JP's escape sequences: ASCII/JIS-Roman, half-width katakana, JIS X 0208
# (1978, 1983, and the 1990 announcer), JIS X 0212 and JIS X 0213 plane 1.
_JIS_ESCAPE_RE = lazy_re(rb"(\x1b(?:\(B|\(J|\(I|\$@|\$B|&@\x1b\$B|\$\(D|\$\(Q|\$\(O))")
_JIS_KANJI_RE = lazy_re(rb"\x1b(?:\$[@B]|\(I|\$\(Q|\$\(O)")
# JIS bytes (0x21-0x7e) to EUC (high bit set): the same code point in EUC form.
_TO_EUC = bytes(b | 0x80 if 0x21 <= b <= 0x7E else b for b in range(256))
_KANA_TO_EUC = bytes(b | 0x80 if 0x21 <= b <= 0x5F else b for b in range(256))
# Full-width ASCII and half-width katakana (one character each after NFKC).
_WIDTH_RE = lazy_re("[\uff01-\uffee]+")


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


_KANA_RE = lazy_re("[\u3041-\u3096\u30a1-\u30fa\u30fc]")
_HANGUL_RE = lazy_re("[\uac00-\ud7a3]")
_HAN_RE = lazy_re("[\u4e00-\u9fff\uf900-\ufaff]")
_HIGH_RUN_RE = lazy_re(rb"[\x80-\xff]+")
_EUC_CN_RE = lazy_re(rb"(?:[\x00-\x7f]++|[\xa1-\xf7][\xa1-\xfe])*+")
_CYRILLIC_RE = lazy_re("[\u0410-\u044f\u0401\u0451]")
_LOWER_CYRILLIC_RE = lazy_re("[\u0430-\u044f\u0451]")
_LATIN_LETTER_RE = lazy_re("[A-Za-z]")
# How much of an undeclared text the guess reads.
_SNIFF_BYTES = 16 * 1024


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def sniff(data: bytes) -> str | None:
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


def decode_bytes(data: bytes, charset: str | None) -> str:
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
            name = sniff(data) or "cp1252"
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
