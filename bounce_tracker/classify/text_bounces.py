"""Bounces without a DSN: qmail, old Sendmail, Exchange text, Domino, Yahoo, postmasters.

A message is a text bounce when its headers say so (``X-Failed-Recipients``, an
Exchange NDR header, a ``multipart/report`` for delivery status) or its sender,
subject and wording do (the tables in :mod:`bounce_tracker.classify.wording`); a
person's reply or forward quoting a bounce is not one, nor is phishing mail dressed
as one. Its recipients come from ``X-Failed-Recipients``, else the addresses its
words name, else the returned original's recipient; each gets a verdict from the
words beside it (:mod:`bounce_tracker.classify.snippets`). A text bounce attached
to another message (a forward by a person or a service) is read too.
"""

from __future__ import annotations

import re
from dataclasses import replace

from bounce_tracker.classify import diagnosis
from bounce_tracker.classify.auto_reply import auto_reply_reason
from bounce_tracker.classify.delivery_status import overall_kind
from bounce_tracker.classify.diagnosis import best_status, enhanced_codes, failure_kind
from bounce_tracker.classify.dsn import MAX_RECIPIENT_RECORDS
from bounce_tracker.classify.limits import MAX_BOUNCE_TEXT
from bounce_tracker.classify.mime import (
    ORIGINAL_TYPES,
    children,
    first_header,
    header_values,
    param,
)
from bounce_tracker.classify.patterns import lazy_re
from bounce_tracker.classify.report import FORWARD_SUBJECT_RE, REPLY_SUBJECT_RE, Report
from bounce_tracker.classify.snippets import Snippets, decision_share, key_sentence
from bounce_tracker.classify.text import addresses_in, unique
from bounce_tracker.classify.wording import (
    FAILURE_WORDS_RE,
    FROM_DAEMON_RE,
    HOST_SENTENCE_RE,
    PHISH_RE,
    STRONG_MARKER_RE,
    SUBJECT_BOUNCE_RE,
    SUCCESS_RE,
    WEAK_MARKER_RE,
    delay_wording,
    is_delay,
)
from bounce_tracker.core.kinds import BounceKind, Classification, RecipientResult

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up cost)
if TYPE_CHECKING:
    from email.message import Message


def _bounce_signals(report: Report) -> tuple[bool, str]:
    """Whether the message is a bounce without a DSN, and which signal says so."""
    head = report.text[:65536]
    if report.header("x-failed-recipients") or report.header("x-ms-exchange-message-is-ndr"):
        return True, "header"
    if any(
        p.content_type == "multipart/report"
        and param(p.message, "report-type") == "delivery-status"
        for p in report.parts
    ):
        return True, "report"
    daemon = bool(FROM_DAEMON_RE.search(report.sender))
    if REPLY_SUBJECT_RE.match(report.subject) and not daemon:
        # A person's reply: what follows its quoted original ("-----Original
        # Message-----") is the message replied to, not the reply's own words.
        quoted = _INLINE_FORWARD_RE.search(head)
        if quoted:
            head = head[: quoted.start()]
    if STRONG_MARKER_RE.search(head):
        return True, "wording"
    # A person's reply or forward quoting a bounce is not one.
    reply = bool(REPLY_SUBJECT_RE.match(report.subject) or FORWARD_SUBJECT_RE.match(report.subject))
    subject = bool(SUBJECT_BOUNCE_RE.search(report.subject)) and not reply
    weak = bool(WEAK_MARKER_RE.search(head))
    # Old MTAs' delay warnings carry no failure words: "has not yet been delivered".
    if daemon and (subject or weak or FAILURE_WORDS_RE.search(head) or delay_wording(head)):
        return True, "sender"
    automated = report.header("return-path").strip() == "<>" or bool(
        report.header("auto-submitted")
    )
    if weak and not reply and (subject or automated):
        return True, "wording"
    if subject and not auto_reply_reason(report):
        return True, "subject"
    return False, ""


def classify_text_bounce(report: Report) -> Classification | None:
    """The verdict on a bounce without a DSN, or None when ``report`` isn't one."""
    is_bounce, signal = _bounce_signals(report)
    if not is_bounce:
        return None
    snippets = Snippets(report)
    head = f"{report.subject}\n{report.text[:65536]}"
    has_codes = bool(enhanced_codes(snippets.whole) or diagnosis.basic_codes(snippets.whole))
    if signal in ("subject", "sender", "wording") and not has_codes and PHISH_RE.search(head):
        return None
    # Exim and Gmail name the failed addresses in a header; otherwise read the text.
    listed = addresses_in(report.header("x-failed-recipients"))
    addresses = unique([a.lower() for a in listed if not report.is_excluded(a)])
    if not addresses:
        addresses = snippets.addresses()
    if not addresses:
        addresses = report.original_recipient()
    addresses = addresses[:MAX_RECIPIENT_RECORDS]

    if SUCCESS_RE.search(head) and not FAILURE_WORDS_RE.search(snippets.whole):
        kind, rule, action = BounceKind.DELIVERED, "delivered", "delivered"
    elif is_delay(report):
        kind, rule, action = BounceKind.DELAYED, "delayed", "delayed"
    else:
        kind, rule = failure_kind(None, snippets.whole)
        action = "failed"
    whole_status = best_status(enhanced_codes(snippets.whole))
    whole_diagnostic = key_sentence(snippets.whole)

    limit = decision_share(len(addresses))
    recipients: list[RecipientResult] = []
    rules: list[str] = []
    for address in addresses:
        words = snippets.for_address(address)[:limit]
        r_kind, r_rule, r_status, r_diag = kind, rule, whole_status, whole_diagnostic
        if action == "failed" and words and diagnosis.failure_evidence(words):
            r_kind, r_rule = failure_kind(None, words)
            r_status = best_status(enhanced_codes(words)) or whole_status
            r_diag = key_sentence(words)
        recipients.append(
            RecipientResult(
                address=address, status=r_status, kind=r_kind, action=action, diagnostic=r_diag
            )
        )
        rules.append(r_rule)
    if recipients:
        overall = overall_kind([r.kind for r in recipients])
        index = next(i for i, r in enumerate(recipients) if r.kind == overall)
        status, diagnostic, rule = (
            recipients[index].status,
            recipients[index].diagnostic,
            rules[index],
        )
    else:
        overall, status, diagnostic = kind, whole_status, whole_diagnostic
    if overall == BounceKind.DELIVERED:
        status = status if status and status[0] == "2" else None
    return Classification(
        kind=overall,
        status=status,
        diagnostic=diagnostic,
        recipients=tuple(recipients),
        reporting_mta=_reporting_host(report),
        original_message_id=report.original_message_id(),
        reason=f"{signal}:{rule}",
    )


def _reporting_host(report: Report) -> str:
    match = HOST_SENTENCE_RE.search(report.text[:65536])
    if match:
        return match.group(1).strip(".")[:255]
    addresses = addresses_in(report.sender)
    if addresses and FROM_DAEMON_RE.search(report.sender):
        return addresses[0].rpartition("@")[2].lower()[:255]
    return ""


# Where a mail client's inline forward starts: Gmail's "---------- Forwarded message
# ---------", Outlook's "-----Original Message-----", Apple Mail's "Begin forwarded
# message:". The forwarded message's header lines follow it.
_INLINE_FORWARD_RE = lazy_re(
    r"^[ \t]*(?:-{2,}[ \t]*(?:forwarded message|original message|message transféré"
    r"|weitergeleitete nachricht)(?:[ \t]{0,20}-{1,40})?|begin forwarded message:)[ \t]{0,20}$",
    re.IGNORECASE | re.MULTILINE,
)
_FORWARD_FIELD_RE = lazy_re(
    r"^[ \t]*(from|subject|date|sent|to)[ \t]*:[ \t]*([^\n]{0,500})$", re.IGNORECASE
)
#: At most this many inline forward blocks are looked at.
MAX_INLINE_FORWARDS = 5


def _inline_forwarded(report: Report) -> Message | None:
    """The bounce a person or a system forwarded inline, rebuilt as a message, or None.

    A forward whose body is a bounce is classified by the bounce it carries; a reply
    (``Re:``) that quotes or mentions one is a person's message, never a bounce.
    The forwarded block counts only when its own header lines show a report: a
    mail-system sender or a bounce subject.
    """
    if REPLY_SUBJECT_RE.match(report.subject):
        return None
    whole = f"{report.text}\n{report.tail}"[:MAX_BOUNCE_TEXT]
    for count, match in enumerate(_INLINE_FORWARD_RE.finditer(whole)):
        if count >= MAX_INLINE_FORWARDS:
            break
        block = whole[match.end() :].lstrip("\n")
        fields: dict[str, str] = {}
        lines = block.split("\n", 12)
        used = 0
        for line in lines[:12]:
            found = _FORWARD_FIELD_RE.match(line)
            if not found:
                break
            fields.setdefault(found.group(1).lower(), found.group(2).strip())
            used += 1
        sender, subject = fields.get("from", ""), fields.get("subject", "")
        if not (FROM_DAEMON_RE.search(sender) or SUBJECT_BOUNCE_RE.search(subject)):
            continue
        body = "\n".join(lines[used:]) if used < len(lines) else ""
        from email.message import Message  # loaded already: the message was parsed

        inner = Message()
        inner["From"] = sender
        inner["Subject"] = subject
        inner["To"] = fields.get("to", "")
        # Lone surrogates (undecodable bytes kept by a decoder) can't be encoded: replace.
        inner.set_payload(body.encode("utf-8", "replace").decode("utf-8"), "utf-8")
        return inner
    return None


def classify_inline_forward(report: Report) -> Classification | None:
    """A bounce forwarded inline (after a mail client's forward block), or None.

    Tried before the message's own words are read as a bounce: the forwarded block's
    header lines (its ``To:`` is our sender) must not become recipients.
    """
    inline = _inline_forwarded(report)
    if inline is None:
        return None
    result = classify_text_bounce(Report.build(inline))
    if result is None:
        return None
    return replace(result, reason=f"forwarded inline {result.reason}")


def classify_forwarded_bounce(report: Report) -> Classification | None:
    """A text bounce attached to another message (forwarded by a person or a service)."""
    for part in report.parts:
        if part.enclosed != 0 or part.content_type not in ORIGINAL_TYPES:
            continue
        inner = children(part.message)
        if not inner:
            continue
        if not FROM_DAEMON_RE.search(first_header(header_values(inner[0]), "from")):
            continue
        result = classify_text_bounce(Report.build(inner[0]))
        if result is not None:
            return replace(result, reason=f"forwarded {result.reason}")
    return None
