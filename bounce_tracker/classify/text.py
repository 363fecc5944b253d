"""Small text helpers every check shares: addresses in free text, whitespace, clipping.

The one place for what "an address in text" looks like: the recipients read from a
report's words (:data:`ADDRESS_RE`) and the address-shaped tokens blanked out of a
diagnostic before its words decide (:data:`ADDRESS_LIKE_RE`) are built from the
same parts, and differ only where their jobs do.
"""

from __future__ import annotations

import re

from bounce_tracker.classify.limits import MAX_DIAGNOSTIC_CHARS

#: One or more white-space characters (folded to one space).
WS_RE = re.compile(r"\s+")
# The parts of an address as it appears in text (not RFC 5322's full grammar): a
# local part of dot-atom characters, then up to ten dotted domain labels.
_LOCAL_CHARS = r"[\w.!#$%&'*+/=?^`{|}~-]"
_ADDRESS_BODY = _LOCAL_CHARS + r"{1,64}@(?:[\w-]{1,63}\.){1,10}"

#: An address a report names as a recipient; group 1 is the address. Not the tail of
#: a longer run of address characters, and the domain's last label starts with a
#: letter (``user@192.0.2.1`` is not a recipient).
ADDRESS_RE = re.compile(
    r"(?<!" + _LOCAL_CHARS + r")(" + _ADDRESS_BODY + r"[A-Za-z][\w-]{0,62})", re.UNICODE
)
#: Anything shaped like an address, for blanking out of a diagnostic before its
#: words are weighed (:func:`bounce_tracker.classify.diagnosis.normalize_text`).
#: Wider than :data:`ADDRESS_RE` on purpose: the words in ``spam@192.0.2.1`` or in
#: the last 64 characters of an overlong local part must not decide either.
ADDRESS_LIKE_RE = re.compile(_ADDRESS_BODY + r"[\w-]{1,63}", re.UNICODE)


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
