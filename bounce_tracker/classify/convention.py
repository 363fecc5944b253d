"""The hard/soft convention as one table: wording → verdict, with the reason for each.

**Hard** means the address will never accept mail again: the user or mailbox does
not exist, the domain does not exist (an authoritative NXDOMAIN) or publishes a null
MX (RFC 7505), the mailbox has moved, or the account is closed for good (disabled,
deactivated, discontinued or closed, without a word that it is temporary).
**Soft** is everything else: a full mailbox, a suspended or temporarily disabled
account, policy refusals of any kind, the sender's own address or host, TLS,
content and size, DNS trouble that is not a clean NXDOMAIN, loops, system errors,
and every 4xx.

Order of precedence, applied by :func:`decide` (the first tier that matches wins):

1. **Sender side** (:data:`SENDER_SIDE`, or status 5.1.7/5.1.8): soft. Our sender
   address or domain, SPF/DKIM/DMARC, our host, IP or network ("we no longer accept
   mail from this network") say nothing about the recipient, whatever else the reply
   says ("Sender address rejected: User unknown in local recipient table").
2. **Mailbox state** (:data:`MAILBOX_STATE`): soft. Full, over quota, suspended,
   temporarily disabled: the mailbox exists, even when the reply also says
   "unknown" or uses 5.1.1.
3. **Dead address** (:data:`DEAD_ADDRESS`): hard, wording that names the recipient's
   state ("user unknown", "no such mailbox", "domain not found", null MX, moved,
   account closed or disabled). It wins over any status, 5.7.x included: where the
   wording and the status disagree, the wording naming the recipient's state
   decides. It is soft when the failure was temporary (a 4xx, see
   :func:`is_temporary`) or, for a DNS verdict, when the wording says the lookup
   failed only for now (SERVFAIL, timeouts, "try again", a malformed reply).
4. **Policy and other failures** (:data:`POLICY`): soft. Blocklists, "access
   denied", rate limits, reputation, TLS and certificates, content, size, network
   and DNS trouble, loops, expiry, relaying, system errors. They come before the
   generic phrases of tier 5, so "could not be found" about a certificate or
   "no longer" about a network never makes a hard bounce.
5. **Generic phrases** (:data:`GENERIC_DEAD`): "could not be found", "does not
   exist", "no longer", "does not accept mail". Hard only with no status or one that
   doesn't name another cause (5.0.0, 5.1.x, 5.5.0, or a hard status): a 5.7.x
   status with a generic phrase is soft.
6. **Weak recipient wording** (:data:`WEAK_DEAD`): "mailbox unavailable",
   "recipient rejected". Hard only with a generic status, or with no status and a
   550/553 reply.
7. **The status alone**: :data:`HARD_STATUSES` are hard, every other one soft. A
   5.7.x status never makes a hard bounce by itself.
8. **A bare reply code**: 551 (user not local) is hard, anything else soft; many
   bare 550s are unknown users, as many are policy blocks, and a wrongly suppressed
   address costs more than one more soft bounce.

The table itself (:class:`Rule` rows grouped in tiers, :class:`Tier`) is in
:mod:`bounce_tracker.classify.convention_rules`; this module re-exports it.

Every pattern is matched against lower-cased text with one space between words, in
which addresses and URLs are replaced by placeholders (their words must not decide).
"""

from __future__ import annotations

from bounce_tracker.classify import languages
from bounce_tracker.classify.convention_rules import (
    DEAD_ADDRESS,
    GENERIC_DEAD,
    MAILBOX_STATE,
    POLICY,
    SENDER_SIDE,
    TIERS,
    WEAK_DEAD,
    Rule,
    Tier,
)
from bounce_tracker.classify.patterns import lazy_re
from bounce_tracker.core.kinds import BounceKind

__all__ = [
    "DEAD_ADDRESS",
    "GENERIC_DEAD",
    "HARD_STATUSES",
    "MAILBOX_STATE",
    "POLICY",
    "SENDER_SIDE",
    "SENDER_STATUSES",
    "TIERS",
    "WEAK_DEAD",
    "Rule",
    "Tier",
    "any_rule_matches",
    "decide",
    "is_generic_status",
    "is_temporary",
]

HARD_STATUSES = frozenset({"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.4.4", "5.4.310"})
# 5.1.7/5.1.8: bad sender mailbox or domain (RFC 3463); 5.7.27: the sender's domain
# has a null MX (RFC 7505 section 4.2).
SENDER_STATUSES = frozenset({"5.1.7", "5.1.8", "4.1.7", "4.1.8", "5.7.27"})
# Statuses too generic to name a cause other than the address: they make the weak
# and generic wording of tiers 5 and 6 believable. See is_generic_status().
_GENERIC_STATUS_RE = lazy_re(r"^5\.(?:0\.0|1\.\d+|5\.0)$")

_DNS_TEMPORARY_RE = lazy_re(
    # "Host not found, try again" (Postfix: TRY_AGAIN) or "try again later"; not Gmail's
    # advice "Check for typos or unnecessary spaces and try again" beside an NXDOMAIN.
    r"\b(?:not found|failure|failed|error|timeout|lookup)[,.;:]? try again|\btry again later"
    r"|\btemporar|\bservfail|\btime ?d? ?out|\btime-out|\blookup fail"
    r"|\bdns (?:server|lookup) (?:fail|error)|\bname server (?:failure|timeout)"
    r"|\bnot (?:yet )?(?:reached|reachable)|\bmalformed"
    # The same in other languages: "Домен не найден: временная ошибка DNS".
    r"|" + languages.TEMPORARY
)
_PERMANENT_CODE_RE = lazy_re(r"(?<![\w.])5\.[0-7]\.\d|(?:^|[\s'\"(#;:<\[-])5[0-5]\d(?=[ \-]|$)")


def is_generic_status(status: str) -> bool:
    """Whether ``status`` is too generic to show a cause other than the address.

    5.0.0, any 5.1.x and 5.5.0: MTAs send them for unknown users and for much else,
    so they neither prove the address dead nor show another cause (unlike, say,
    5.2.2 for a full mailbox or 5.7.1 for a policy refusal).
    """
    return _GENERIC_STATUS_RE.match(status) is not None


def is_temporary(status: str | None, codes: list[int], lowered: str) -> bool:
    """A 4.x.x status (or 4xx reply) with no permanent code anywhere in the text."""
    if status is not None:
        if status[0] != "4":
            return False
    elif not codes or codes[0] // 100 != 4:
        return False
    return _PERMANENT_CODE_RE.search(lowered) is None


def any_rule_matches(lowered: str) -> bool:
    """Whether some rule of the table knows ``lowered`` (normalized text)."""
    return any(tier.match(lowered) for tier in TIERS)


def decide(status: str | None, codes: list[int], lowered: str) -> tuple[BounceKind, str]:
    """HARD or SOFT by the order of precedence (module docstring), and why.

    ``status`` is the normalized enhanced status code or None, ``codes`` the basic
    reply codes in the text, ``lowered`` the normalized diagnostic text. The second
    value names what decided: ``text:<rule>``, ``status:<code>``, ``code:<reply>``…
    """
    temporary = is_temporary(status, codes, lowered)
    if status in SENDER_STATUSES:
        return BounceKind.SOFT, f"status:{status} sender"
    for tier in (SENDER_SIDE, MAILBOX_STATE):
        rule = tier.match(lowered)
        if rule:
            return BounceKind.SOFT, f"text:{rule.name}"
    rule = DEAD_ADDRESS.match(lowered)
    if rule:
        if rule.name.startswith("domain") and _DNS_TEMPORARY_RE.search(lowered):
            return BounceKind.SOFT, "text:dns lookup failed for now"
        if temporary:
            return BounceKind.SOFT, f"temporary:{rule.name}"
        return BounceKind.HARD, f"text:{rule.name}"
    rule = POLICY.match(lowered)
    if rule:
        return BounceKind.SOFT, f"text:{rule.name}"
    rule = GENERIC_DEAD.match(lowered)
    if rule and not temporary:
        if status is None or is_generic_status(status) or status in HARD_STATUSES:
            return BounceKind.HARD, f"text:{rule.name}"
        return BounceKind.SOFT, f"status:{status} text:{rule.name}"
    rule = WEAK_DEAD.match(lowered)
    if rule and not temporary:
        weak_ok = status is None or is_generic_status(status)
        if weak_ok and (status is not None or any(c in (550, 553) for c in codes)):
            return BounceKind.HARD, f"text:{rule.name}"
    if status is not None:
        if status in HARD_STATUSES:
            return BounceKind.HARD, f"status:{status}"
        return BounceKind.SOFT, f"status:{status}"
    if codes:
        if codes[0] == 551 and not temporary:
            return BounceKind.HARD, "code:551"
        return BounceKind.SOFT, f"code:{codes[0]}"
    return BounceKind.SOFT, "failed"
