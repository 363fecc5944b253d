"""Auto-replies: out-of-office, vacation, autoresponders, challenge-response (RFC 3834).

An ``Auto-Submitted`` header (other than ``no``), one of the ``X-Autoreply``-style
headers, ``Precedence: auto_reply``, an out-of-office subject in several languages,
a challenge-response message, or template wording in the first lines of a message
that isn't a person's reply. Checked after the bounce checks: Postfix and Exim
DSNs carry ``Auto-Submitted`` too.
"""

from __future__ import annotations

import re

from bounce_tracker.classify import languages
from bounce_tracker.classify.patterns import lazy_re
from bounce_tracker.classify.report import REPLY_SUBJECT_RE, Report
from bounce_tracker.classify.text import clip
from bounce_tracker.core.kinds import BounceKind, Classification

_AUTO_REPLY_HEADERS = (
    "x-autoreply",
    "x-autorespond",
    "x-autoresponder",
    "x-autoreply-from",
    "x-mail-autoreply",
    "x-auto-reply",
    "x-vacation",
)
_AUTO_SUBJECT_RE = lazy_re(
    r"auto(?:matic|matische|matisch|matico|mático|matique)?[ _-]?(?:reply|response|antwort"
    r"|antwoord|respuesta|risposta|réponse|resposta|svar|reponse)|\bauto:|\bautosvar"
    r"|out of (?:the )?office|\booo\b|away from (?:the |my )?office|on vacation"
    r"|vacation (?:reply|notice|message|response)"
    r"|\bleft the (?:company|organi[sz]ation|firm)\b|\bno longer (?:with|at|employed)\b"
    r"|" + languages.AUTO_REPLY_SUBJECT,
    re.IGNORECASE,
)
_WEAK_AUTO_SUBJECT_RE = lazy_re(
    r"vacation|\baway\b|absent|absence|holiday|urlaub|congés|vacaciones|ferie|vakantie"
    r"|thank you for (?:your|contacting)|we have received|ticket|received your (?:message|e-?mail)",
    re.IGNORECASE,
)
# A helpdesk's acknowledgement: "Your ticket #12345 has been created".
_TICKET_BODY = (
    r"\byour (?:ticket|request|case|support request)(?: number| no\.?| id)?:? ?#?[\w-]{0,20}"
    r" (?:has been|was) (?:created|received|opened|logged|registered)"
)
# How auto-replies that carry no RFC 3834 header word themselves.
_AUTO_BODY_RE = lazy_re(
    r"\b(?:i am|i'm|i will be|i'll be|we are|we're) (?:currently |now )?(?:out of (?:the )?office"
    r"|away from (?:the |my )?(?:office|desk|e-?mail)|on (?:annual |parental |maternity |paternity"
    r" |sick |study )?(?:leave|vacation|holiday)|out of town|absent)\b"
    r"|\bthis is an? automat(?:ed|ic|ically generated) (?:reply|response|message|notification)"
    r"|\b(?:automatic|automated|auto)[ -]?(?:reply|response)\b"
    r"|\bwith limited (?:access to )?e-?mail"
    # Leavers' responders: "I have left the company", "I am no longer with Example".
    r"|\bi (?:have|'ve) (?:now )?left (?:the |my |our )?(?:company|organi[sz]ation|firm"
    r"|business|university|school|office)\b"
    r"|\b(?:i am|i'm) no longer (?:with|working|employed|at)\b"
    r"|" + _TICKET_BODY + "|" + languages.AUTO_REPLY_BODY,
    re.IGNORECASE,
)
_STRONG_AUTO_BODY_RE = lazy_re(
    r"\bthis is an? automat(?:ed|ic|ically generated) (?:reply|response|message)"
    r"|\b(?:automatic|automated|auto)[ -]?(?:reply|response)\b|" + _TICKET_BODY,
    re.IGNORECASE,
)
_CHALLENGE_RE = lazy_re(
    r"challenge[- ]response|spam ?arrest|boxbe|verify (?:that )?you are (?:a )?(?:real|human"
    r"|person)|to (?:have|get) your (?:message|e-?mail) delivered|awaiting (?:your )?"
    r"(?:verification|approval|confirmation)|sender verification|please (?:verify|confirm)"
    r" (?:your|that you)|(?:message|e-?mail) (?:is )?(?:being )?held (?:pending|until)",
    re.IGNORECASE,
)


def auto_reply_reason(report: Report) -> str:
    """Why the message is an auto-reply, or "" when it isn't."""
    auto_submitted = report.header("auto-submitted").lower().split(";", 1)[0].strip()
    # RFC 3834 section 5: "auto-notified" marks a Sieve notification (RFC 5436) to an
    # address its owner chose, not a reply to the sender; it needs another sign.
    if auto_submitted and auto_submitted not in ("no", "auto-notified"):
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
        or not REPLY_SUBJECT_RE.match(report.subject)
        or _STRONG_AUTO_BODY_RE.search(opening)
    ):
        return "wording"
    return ""


def classify_auto_reply(report: Report) -> Classification | None:
    """An ``auto_reply`` verdict, or None when ``report`` isn't an auto-reply."""
    reason = auto_reply_reason(report)
    if not reason:
        return None
    return Classification(
        kind=BounceKind.AUTO_REPLY,
        status=None,
        diagnostic=clip(report.subject),
        original_message_id=report.original_message_id(),
        reason=f"auto-reply:{reason}",
    )
