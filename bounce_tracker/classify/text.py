"""Small text helpers every check shares: addresses in free text, whitespace, clipping."""

from __future__ import annotations

import re

from bounce_tracker.classify.limits import MAX_DIAGNOSTIC_CHARS

#: One or more white-space characters (folded to one space).
WS_RE = re.compile(r"\s+")
#: An address written in text; group 1 is the address. Not part of a longer run of
#: address characters, and the domain ends in a label that starts with a letter.
ADDRESS_RE = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])([\w.!#$%&'*+/=?^`{|}~-]{1,64}@(?:[\w-]{1,63}\.){1,10}"
    r"[A-Za-z][\w-]{0,62})",
    re.UNICODE,
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
