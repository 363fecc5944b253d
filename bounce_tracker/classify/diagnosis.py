"""Hard or soft: what a failure's status code and wording say about the address.

:func:`failure_kind` is the one decision used for every failed recipient, whether
the report is a standard DSN or free text. It reads the RFC 3463 enhanced status
code and the SMTP reply codes from the diagnostic text, normalizes the text, and
leaves the verdict to :func:`bounce_tracker.classify.convention.decide`: the
convention (what is hard, what is soft) and its order of precedence are stated and
tabulated there, in one place. The text wins when wording and status disagree:
real MTAs send ``5.1.1`` for a full mailbox, ``5.7.1`` for an unknown user, ``5.0.0``
for everything, or no enhanced code at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from bounce_tracker.classify import convention
from bounce_tracker.classify.convention import (
    HARD_STATUSES,
    SENDER_STATUSES,
    is_generic_status,
)
from bounce_tracker.classify.patterns import lazy_re
from bounce_tracker.classify.text import ADDRESS_LIKE_RE, WS_RE
from bounce_tracker.core.kinds import BounceKind

__all__ = [
    "HARD_STATUSES",
    "SENDER_STATUSES",
    "basic_codes",
    "best_status",
    "enhanced_codes",
    "failure_evidence",
    "failure_kind",
    "is_generic_status",
    "normalize_status",
    "normalize_text",
]

#: Characters of diagnostic text the decision looks at.
MAX_DECISION_CHARS = 6000

# An RFC 3463 code: class 2/4/5, subject 0-7, detail up to three digits. Not part of a
# longer dotted number (IP addresses, versions, dates): no word character or dot
# before it, no further ".digit" after it.
ENHANCED_CODE_RE = lazy_re(r"(?<![\w.])([245])\.([0-7])\.(\d{1,3})(?!\.?\d)")
# A basic SMTP reply code where replies are quoted: at a line start, after "said",
# "reply", "error", "<<<", "smtp;", a colon, quote or bracket, or right before an
# enhanced code ("550 5.1.1", "550-5.1.1"). A number in running text is not one.
BASIC_CODE_RE = lazy_re(
    r"(?:^|<<<|said|repl(?:y|ied)|error|response|returned|reason|smtp|code|['\"(\[#:;])"
    r"[ \t]*[:;]?[ \t]*([245][0-5]\d)(?=[ \t:-]|$)"
    r"|(?<![\w.])([245][0-5]\d)[ -](?=[245]\.[0-7]\.\d)",
    re.MULTILINE | re.IGNORECASE,
)

_URL_RE = lazy_re(r"(?:https?|ftp)://[^\s<>\"')\]]{1,2000}", re.IGNORECASE)


# The same sentence is read several times per report (its key sentence, its verdict,
# its inferred status): the pure functions below remember their last answers.
_REMEMBERED = 64


def enhanced_codes(text: str) -> list[str]:
    """Every RFC 3463 code in ``text``, in order, normalized (``"5.1.1"``)."""
    return list(_enhanced_codes(text))


@lru_cache(maxsize=_REMEMBERED)
def _enhanced_codes(text: str) -> tuple[str, ...]:
    found = ENHANCED_CODE_RE.findall(text[:MAX_DECISION_CHARS])
    return tuple(f"{a}.{b}.{int(c)}" for a, b, c in found)


def basic_codes(text: str) -> list[int]:
    """The SMTP reply codes (``550``…) quoted in ``text``, in order."""
    return list(_basic_codes(text))


@lru_cache(maxsize=_REMEMBERED)
def _basic_codes(text: str) -> tuple[int, ...]:
    found: list[int] = []
    for match in BASIC_CODE_RE.finditer(text[:MAX_DECISION_CHARS]):
        code = match.group(1) or match.group(2)
        found.append(int(code))
    return tuple(found)


def normalize_status(value: str | None) -> str | None:
    """The first RFC 3463 code in a ``Status`` value (``"5.1.1 (user unknown)"``)."""
    if not value:
        return None
    codes = enhanced_codes(value)
    return codes[0] if codes else None


def best_status(codes: Sequence[str]) -> str | None:
    """The most telling of several codes: the first failure code that isn't x.0.0."""
    failures = [code for code in codes if code[0] in "45"]
    for code in failures:
        if not code.endswith(".0.0"):
            return code
    return failures[0] if failures else None


@lru_cache(maxsize=_REMEMBERED)
def normalize_text(text: str) -> str:
    """Lower case, one space between words; URLs and addresses replaced by placeholders.

    Addresses and URLs carry words ("spam@…", "…/policy") that must not decide.
    """
    text = text[:MAX_DECISION_CHARS]
    text = _URL_RE.sub(" url ", text)
    text = ADDRESS_LIKE_RE.sub("addr", text)
    return WS_RE.sub(" ", text).strip().lower()


@lru_cache(maxsize=_REMEMBERED)
def failure_evidence(text: str) -> bool:
    """Whether ``text`` states a failure: a 4xx/5xx code, or wording some rule knows."""
    if any(code[0] in "45" for code in enhanced_codes(text)):
        return True
    if any(code >= 400 for code in basic_codes(text)):
        return True
    return convention.any_rule_matches(normalize_text(text))


def failure_kind(status: str | None, text: str) -> tuple[BounceKind, str]:
    """HARD or SOFT for one failed recipient, and the name of the rule that decided.

    ``status`` is the enhanced status code (``"5.1.1"``) or None; ``text`` is the
    diagnostic: the Diagnostic-Code value, the quoted SMTP reply, or the sentence of a
    free-text bounce that names the failure. The order of precedence is
    :mod:`bounce_tracker.classify.convention`'s.
    """
    lowered = normalize_text(text)
    status = normalize_status(status) or best_status(enhanced_codes(text))
    return convention.decide(status, basic_codes(text), lowered)
