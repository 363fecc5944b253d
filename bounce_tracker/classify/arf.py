"""Feedback reports (ARF, RFC 5965): a spam complaint about one of our messages.

A ``message/feedback-report`` part, a ``multipart/report`` with
``report-type=feedback-report``, or Microsoft's JMRP (an original carrying
``X-HmXmrOriginalRecipient``) is a complaint about the recipients it names
(``Original-Rcpt-To``, ``Removal-Recipient``, else the original's own recipient).
A ``Feedback-Type`` in :data:`NOT_COMPLAINT_FEEDBACK_TYPES` is not a complaint.
ESP events read the same list (:mod:`bounce_tracker.receiving.esp`).
"""

from __future__ import annotations

from bounce_tracker.classify.dsn import (
    MAX_RECIPIENT_RECORDS,
    field_address,
    iter_fields,
    strip_type,
)
from bounce_tracker.classify.mime import ARF_TYPE, first_header, param, part_text
from bounce_tracker.classify.report import Report
from bounce_tracker.classify.text import addresses_in, clip, unique
from bounce_tracker.core.kinds import BounceKind, Classification, RecipientResult

#: ARF feedback types that are not a complaint about the mail: a "not spam"
#: correction, an authentication failure report. ``not_bounce``, never suppressing.
NOT_COMPLAINT_FEEDBACK_TYPES = frozenset({"not-spam", "auth-failure"})


def normalize_feedback_type(value: str) -> str:
    """A ``Feedback-Type`` value as compared: lower case, parameters dropped."""
    return value.strip().lower().split(";", 1)[0].strip()


def classify_arf(report: Report) -> Classification | None:
    """The verdict on a feedback report, or None when ``report`` isn't one."""
    feedback = next((p for p in report.parts if p.content_type == ARF_TYPE), None)
    is_report = any(
        p.content_type == "multipart/report"
        and param(p.message, "report-type") == "feedback-report"
        for p in report.parts
    )
    jmrp = first_header(report.original_headers, "x-hmxmroriginalrecipient")
    if feedback is None and not is_report and not jmrp:
        return None
    fields = list(iter_fields(part_text(feedback.message, 256 * 1024))) if feedback else []
    declared = next((v for n, v in fields if n == "feedback-type"), "")
    feedback_type = normalize_feedback_type(declared)
    message_id = report.original_message_id()
    if feedback_type in NOT_COMPLAINT_FEEDBACK_TYPES:
        return Classification(
            kind=BounceKind.NOT_BOUNCE,
            status=None,
            diagnostic=f"Feedback-Type: {feedback_type}",
            original_message_id=message_id,
            reason=f"arf:{feedback_type}",
        )
    addresses: list[str] = []
    for name, value in fields:
        if name in ("original-rcpt-to", "removal-recipient"):
            address = field_address(value)
            if address and "@" in address:
                addresses.append(address)
    if jmrp:
        addresses.extend(addresses_in(jmrp))
    if not addresses:
        addresses = report.original_recipient()
    reporting = next((v for n, v in fields if n == "reporting-mta"), "")
    recipients = tuple(
        RecipientResult(address=address, status=None, kind=BounceKind.COMPLAINT)
        for address in unique(addresses)[:MAX_RECIPIENT_RECORDS]
    )
    return Classification(
        kind=BounceKind.COMPLAINT,
        status=None,
        diagnostic=clip(f"Feedback-Type: {feedback_type or 'abuse'}"),
        recipients=recipients,
        reporting_mta=strip_type(reporting)[:255],
        original_message_id=message_id,
        reason="arf" if feedback is not None or is_report else "arf:jmrp",
    )
