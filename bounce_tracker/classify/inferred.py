"""A status inferred from the wording, when a report gives none or only a generic one.

Many bounces name the failure in words only ("user unknown", "mailbox full") or
with a generic ``x.0.0``. :func:`infer_status` gives such a failure the RFC 3463
code its words clearly mean; the verdict and its recipients carry it in
``inferred_status`` and keep ``status`` for what the report itself said (so the
recorded ``status`` column never holds a code nobody sent). The class digit comes
from the report: its own status or reply code when it has one, else ``4`` for a
delay and ``5`` for a failure.

Only clear wording counts: exactly one row of :data:`INFERRED_STATUSES` matches
(or, when none does, the convention's rule that decides the wording names one
status, :data:`RULE_STATUSES`: other languages and vendors' words), and it agrees
with the kind already decided (a "user unknown" inside a failure
that was judged soft, e.g. a policy refusal that names the recipient, infers
nothing). The admin shows the same inference beside a stored event's status, from
the stored status, diagnostic and kind, so both read the same function.
"""

from __future__ import annotations

import re
from dataclasses import replace

from bounce_tracker.classify.convention_rules import DEAD_ADDRESS
from bounce_tracker.classify.diagnosis import (
    basic_codes,
    failure_kind,
    normalize_status,
    normalize_text,
)
from bounce_tracker.classify.patterns import lazy_re
from bounce_tracker.core.kinds import BounceKind, Classification

#: Characters of a diagnostic read (the wording that names the failure comes first).
MAX_INFERENCE_CHARS = 2000

#: Wording → the subject and detail of the status it means (RFC 3463), with the kind
#: a 5.x.x failure with that wording must have been given for the row to apply.
INFERRED_STATUSES: tuple[tuple[str, re.Pattern[str], BounceKind], ...] = (
    (
        # 3.1.1: bad destination mailbox address.
        "1.1",
        lazy_re(
            r"\buser unknown|\bunknown (?:user|recipient|mailbox|local[- ]part)"
            r"|\bno such (?:user|mailbox|recipient|address)|\bmailbox (?:does not|doesn't) exist"
            r"|\b(?:user|recipient|mailbox|address) (?:does not|doesn't) exist"
            r"|\bmailbox not found|\binvalid (?:recipient|mailbox)"
        ),
        BounceKind.HARD,
    ),
    (
        # 3.1.2: bad destination system address.
        "1.2",
        lazy_re(
            r"\bhost or domain name not found|\bdomain (?:does not|doesn't) exist"
            r"|\bno such domain|\bdomain not found|\bunknown domain"
        ),
        BounceKind.HARD,
    ),
    (
        # 3.2.2: mailbox full.
        "2.2",
        lazy_re(
            r"\bmailbox (?:is )?full|\bover ?quota|\bquota exceeded|\bexceeded (?:the |its )?quota"
            r"|\binsufficient (?:disk )?space|\bmailbox size limit"
        ),
        BounceKind.SOFT,
    ),
    (
        # 3.3.4: message too big for system.
        "3.4",
        lazy_re(
            r"\bmessage (?:is )?too (?:large|big)|\bmessage size exceeds"
            r"|\bexceeds (?:the )?(?:maximum )?(?:message )?size limit"
        ),
        BounceKind.SOFT,
    ),
    (
        # 3.7.1: delivery not authorized, message refused (policy, spam, block lists).
        "7.1",
        lazy_re(
            r"\bspam\b|\bblock ?list|\bblack ?list|\bspamhaus\b|\bdnsbl\b"
            r"|\b(?:rejected|refused|blocked) (?:for|due to|by) (?:local )?policy"
            r"|\bpolicy (?:violation|rejection|reasons)"
        ),
        BounceKind.SOFT,
    ),
)

#: When no row of :data:`INFERRED_STATUSES` matches, the convention's rule that
#: decides the wording (any language, any vendor) names the status: rule → detail.
#: Only rules whose meaning is one status are listed.
RULE_STATUSES: dict[str, str] = {
    "user unknown": "1.1",
    "unknown user": "1.1",
    "no such user": "1.1",
    "recipient not found": "1.1",
    "access denied (directory-based edge blocking)": "1.1",
    "not listed": "1.1",
    "unrecognized O/R name": "1.1",
    "user unknown (translated)": "1.1",
    "domain not found": "1.2",
    "domain not found (translated)": "1.2",
    "domain accepts no mail": "1.10",
    "moved": "1.6",
    "closed": "2.1",
    "disabled": "2.1",
    "temporarily disabled": "2.1",
    "mailbox suspended": "2.1",
    "suspended (translated)": "2.1",
    "mailbox full": "2.2",
    "too large": "3.4",
    "loop": "4.6",
    "spam": "7.1",
    "blocked": "7.1",
    "policy": "7.1",
    "policy (translated)": "7.1",
    "reputation": "7.1",
    "relay denied": "7.1",
}
_HARD_RULES = frozenset(rule.name for rule in DEAD_ADDRESS.rules)

_INFERRED_KINDS = frozenset({BounceKind.HARD, BounceKind.SOFT, BounceKind.DELAYED})
# Wording that names two states at once (GroupWise: "user or domain does not exist").
_AMBIGUOUS_RE = lazy_re(r"\b(?:user|address|recipient|mailbox) or domain\b")


def infer_status(status: str | None, diagnostic: str, kind: BounceKind) -> str | None:
    """The status ``diagnostic``'s words clearly mean, when ``status`` is None or ``x.0.0``.

    None when the report's own status is specific, when the kind isn't a failure or
    delay, or when the wording is absent, ambiguous (several rows match) or at odds
    with ``kind``.
    """
    status = normalize_status(status)
    if kind not in _INFERRED_KINDS or (status is not None and not status.endswith(".0.0")):
        return None
    text = diagnostic[:MAX_INFERENCE_CHARS]
    lowered = normalize_text(text)
    matches = [row for row in INFERRED_STATUSES if row[1].search(lowered)]
    if _AMBIGUOUS_RE.search(lowered):
        return None
    digit = _class_digit(status, text, kind)
    if not matches:
        return _from_rule(status, text, kind, digit)
    if len(matches) != 1:
        return None
    detail, _pattern, failed_kind = matches[0]
    if digit == "5" and kind != failed_kind:
        return None
    return f"{digit}.{detail}"


def _from_rule(status: str | None, text: str, kind: BounceKind, digit: str) -> str | None:
    """The status the convention's deciding rule names, when it agrees with ``kind``."""
    decided, rule = failure_kind(status, text)
    name = rule.removeprefix("text:") if rule.startswith("text:") else ""
    detail = RULE_STATUSES.get(name)
    if detail is None:
        return None
    if digit == "5" and decided != kind:
        return None
    if (name in _HARD_RULES) != (decided == BounceKind.HARD):
        return None
    return f"{digit}.{detail}"


def _class_digit(status: str | None, text: str, kind: BounceKind) -> str:
    if status is not None:
        return status[0]
    codes = [code for code in basic_codes(text) if code // 100 in (4, 5)]
    if codes:
        return str(codes[0] // 100)
    return "4" if kind == BounceKind.DELAYED else "5"


def with_inferred_status(result: Classification) -> Classification:
    """``result`` with ``inferred_status`` set on it and on each recipient it applies to."""
    if result.failed or result.kind not in _INFERRED_KINDS:
        return result
    recipients = tuple(
        replace(r, inferred_status=infer_status(r.status, r.diagnostic, r.kind))
        for r in result.recipients
    )
    inferred = infer_status(result.status, result.diagnostic, result.kind)
    return replace(result, recipients=recipients, inferred_status=inferred)
