"""Small text helpers every check shares: addresses in free text, whitespace, clipping.

The one place for what "an address in text" looks like: the recipients read from a
report's words (:data:`ADDRESS_RE`) and the address-shaped tokens blanked out of a
diagnostic before its words decide (:data:`ADDRESS_LIKE_RE`) are built from the
same parts, and differ only where their jobs do.
"""

from __future__ import annotations

import re

from bounce_tracker.classify.limits import MAX_DIAGNOSTIC_CHARS
from bounce_tracker.classify.patterns import lazy_re

#: One or more white-space characters (folded to one space).
WS_RE = lazy_re(r"\s+")
# Scripts written without spaces (CJK ideographs, kana, Hangul, full-width forms): a
# word in them runs straight into an address ("宛先taro@example.jpは存在しません"), so
# they are never part of one. Other letters are (EAI local parts, IDN labels).
_CJK = "\u3000-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef"
# A character of a local part as it appears in text (not RFC 5322's full grammar):
# one class, for speed: anything but white space, RFC 5322's specials, control
# characters, Latin-1 and general punctuation (quotes, dashes) and those scripts.
_LOCAL_CHARS = (
    r"[^\s\"(),:;<>@\[\\\]\x00-\x1f\x7f\u00a0-\u00bf\u00d7\u00f7\u2000-\u206f" + _CJK + r"]"
)
# A character of a domain label: the same without the dot and atext's symbols (letters,
# digits, "-" and "_").
_LABEL_CHARS = (
    r"[^\s\"(),:;<>@\[\\\]!#$%&'*+/=?^`{|}~.\x00-\x1f\x7f\u00a0-\u00bf\u00d7\u00f7"
    r"\u2000-\u206f" + _CJK + r"]"
)
# A local part, then up to ten dotted domain labels. The look-ahead (one character
# class, cheap) finds the "@" before the rest runs: most positions of a text are not
# in an address.
_ADDRESS_BODY = (
    r"(?=[^\s@]{1,64}@)" + _LOCAL_CHARS + r"{1,64}@(?:" + _LABEL_CHARS + r"{1,63}\.){1,10}"
)

#: An address a report names as a recipient; group 1 is the address. Not the tail of
#: a longer run of address characters, and the domain's last label is ASCII and starts
#: with a letter (``user@192.0.2.1`` is not a recipient, and the Cyrillic word after
#: ``ivan@mail.example`` in "ivan@mail.example" + "не найден" is not its top-level domain).
ADDRESS_RE = lazy_re(
    r"(?<!" + _LOCAL_CHARS + r")(" + _ADDRESS_BODY + r"[A-Za-z][A-Za-z0-9-]{0,62})", re.UNICODE
)
#: Anything shaped like an address, for blanking out of a diagnostic before its
#: words are weighed (:func:`bounce_tracker.classify.diagnosis.normalize_text`).
#: Wider than :data:`ADDRESS_RE` on purpose: the words in ``spam@192.0.2.1`` or in
#: the last 64 characters of an overlong local part must not decide either.
ADDRESS_LIKE_RE = lazy_re(
    _ADDRESS_BODY + r"(?:[A-Za-z0-9-]{1,63}|[^\W\x00-\x7f" + _CJK + r"]{1,63})", re.UNICODE
)


def addresses_in(text: str) -> list[str]:
    """Every address written in ``text``, in order, trailing dots dropped."""
    return [match.group(1).strip(".") for match in ADDRESS_RE.finditer(text)]


def clip(text: str) -> str:
    """``text`` on one line, white space folded, at most ``MAX_DIAGNOSTIC_CHARS`` long."""
    return WS_RE.sub(" ", text).strip()[:MAX_DIAGNOSTIC_CHARS]


def unique(items: list[str]) -> list[str]:
    """``items`` without repeats (ignoring letter case), first spelling and order kept."""
    seen: set[str] = set()
    kept: list[str] = []
    for item in items:
        key = item.lower()
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept
