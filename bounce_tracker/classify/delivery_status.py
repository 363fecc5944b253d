"""The verdict on a standard delivery status notification (RFC 3464, RFC 6533).

Each recipient block of the report (read by :mod:`bounce_tracker.classify.dsn`) is
decided from its ``Action``, ``Status`` and ``Diagnostic-Code``: delivered, relayed
or expanded is ``delivered``, ``delayed`` is ``delayed``, ``failed`` is hard or
soft by :func:`bounce_tracker.classify.diagnosis.failure_kind`. A report that left
``Action`` out gets one from its status class and its wording. When the status
alone decided, the report's human-readable words about the recipient have their
say. The message's kind is the worst of its recipients' (:func:`overall_kind`).
"""

from __future__ import annotations

import re

from bounce_tracker.classify import diagnosis
from bounce_tracker.classify.diagnosis import (
    best_status,
    enhanced_codes,
    failure_kind,
    normalize_status,
)
from bounce_tracker.classify.dsn import (
    ReportFields,
    field_address,
    parse_report_fields,
    strip_type,
)
from bounce_tracker.classify.mime import DSN_TYPES, part_text
from bounce_tracker.classify.patterns import lazy_re
from bounce_tracker.classify.report import Report
from bounce_tracker.classify.snippets import Snippets, decision_share, key_sentence
from bounce_tracker.classify.text import clip
from bounce_tracker.classify.wording import looks_failed
from bounce_tracker.core.kinds import BounceKind, Classification, RecipientResult

_DELIVERED_ACTIONS = frozenset({"delivered", "relayed", "expanded"})
_DSN_TEXT_RE = lazy_re(r"^[ \t]*final-recipient[ \t]*:", re.IGNORECASE | re.MULTILINE)
# Words beside a recipient that say the queue gave up on it. OpenSMTPD 6.8 reports an
# expired envelope with "Action: delayed" and "<rcpt>: Envelope expired": it has been
# removed from the queue, so it failed (soft, never judged), whatever Action says.
_GAVE_UP_RE = lazy_re(
    r"\benvelope expired\b|\bexpired (?:in|from) (?:the )?queue|\bremoved from (?:the )?queue"
    r"|\b(?:gave|giving|given) up\b",
    re.IGNORECASE,
)


def overall_kind(kinds: list[BounceKind]) -> BounceKind:
    """A report's kind from its recipients' kinds: hard, else soft, else delayed, else
    delivered. Text bounces follow the same rule."""
    for kind in (BounceKind.HARD, BounceKind.SOFT, BounceKind.DELAYED):
        if kind in kinds:
            return kind
    return BounceKind.DELIVERED


def classify_dsn(report: Report) -> Classification | None:
    """The verdict on a DSN, or None when ``report`` has no recipient block to read.

    The blocks come from a delivery-status part (the report's own before one inside
    a returned message), else from ``Final-Recipient`` fields in the report's text.
    """
    parts = sorted(
        (p for p in report.parts if p.content_type in DSN_TYPES), key=lambda p: p.enclosed
    )
    fields: ReportFields | None = None
    for part in parts:
        fields = parse_report_fields(part_text(part.message))
        if fields.recipients:
            break
    reason = "dsn"
    if (fields is None or not fields.recipients) and _DSN_TEXT_RE.search(report.text):
        fields = parse_report_fields(report.text)
        reason = "dsn-text"
    if fields is None or not fields.recipients:
        return None

    snippets = Snippets(report)
    limit = decision_share(len(fields.recipients))
    recipients: list[RecipientResult] = []
    rules: list[str] = []
    for record in fields.recipients:
        result, rule = _dsn_recipient(record, report, snippets, len(fields.recipients), limit)
        recipients.append(result)
        rules.append(rule)
    kind = overall_kind([r.kind for r in recipients])
    index = next(i for i, r in enumerate(recipients) if r.kind == kind)
    primary = recipients[index]
    extra = {"recipients_truncated": "true"} if fields.truncated else {}
    # Never name the report's own envelope (our VERP address) as a recipient.
    # Only the exact address: a Final-Recipient at the bounce domain is still named by
    # the DSN itself (a test or a small site may bounce to a mailbox of its own domain).
    named = [r for r in recipients if not (r.address and r.address.lower() in report.excluded)]
    return Classification(
        kind=kind,
        status=primary.status,
        diagnostic=primary.diagnostic,
        recipients=tuple(named),
        reporting_mta=strip_type(fields.per_message.get("reporting-mta", ""))[:255],
        original_message_id=report.original_message_id(
            fields.per_message.get("x-original-message-id", "")
        ),
        reason=f"{reason}:{rules[index]}",
        extra=extra,
    )


def _dsn_recipient(
    record: dict[str, str], report: Report, snippets: Snippets, count: int, limit: int
) -> tuple[RecipientResult, str]:
    """One recipient block's verdict; its decisions read at most ``limit`` characters."""
    address = field_address(record.get("final-recipient", ""))
    if not address or "@" not in address:
        address = field_address(record.get("original-recipient", "")) or address
    diagnostic = strip_type(record.get("diagnostic-code", ""))
    status = normalize_status(record.get("status"))
    from_text = best_status(enhanced_codes(diagnostic))
    if from_text and (status is None or (status.endswith(".0.0") and from_text[0] == status[0])):
        status = from_text
    # Without any enhanced code, the class of the basic reply ("550 …") still counts.
    decisive = status
    if decisive is None:
        codes = diagnosis.basic_codes(diagnostic[:limit])
        if codes and codes[0] // 100 in (4, 5):
            decisive = f"{codes[0] // 100}.0.0"
    action = (record.get("action", "").strip().lower().split() or [""])[0].strip(";,()")
    if action not in _DELIVERED_ACTIONS and action not in ("failed", "delayed"):
        action = _infer_action(decisive, diagnostic, report)

    if action in _DELIVERED_ACTIONS:
        kind, rule = BounceKind.DELIVERED, action
    elif (
        action == "delayed"
        and address
        and _GAVE_UP_RE.search(snippets.for_address(address)[:limit])
    ):
        action = "failed"
        kind, rule = BounceKind.SOFT, "delayed but expired"
    elif action == "delayed":
        kind, rule = BounceKind.DELAYED, "delayed"
    else:
        kind, rule = failure_kind(decisive, diagnostic[:limit])
        if not rule.startswith(("text:", "temporary:")):
            # The Status field alone decided: let the report's human-readable words
            # (often more specific, e.g. Exchange's and Gmail's) have their say.
            words = snippets.for_address(address) if address else ""
            if not words and count == 1:
                words = snippets.whole
            words = words[:limit]
            if words:
                text_kind, text_rule = failure_kind(decisive, words)
                if text_rule.startswith(("text:", "temporary:")):
                    kind, rule = text_kind, f"{text_rule} (report text)"
                    diagnostic = diagnostic or key_sentence(words)
    if not diagnostic and kind != BounceKind.DELIVERED and address:
        diagnostic = key_sentence(snippets.for_address(address)[:limit])
    result = RecipientResult(
        address=address,
        status=status,
        kind=kind,
        action=action or None,
        diagnostic=clip(diagnostic),
        remote_mta=strip_type(record.get("remote-mta", ""))[:255],
    )
    return result, rule


def _infer_action(status: str | None, diagnostic: str, report: Report) -> str:
    """The Action a report left out, from its status class and what the message says."""
    if status is None:
        return "failed" if diagnostic or looks_failed(report) else "delayed"
    if status[0] == "2":
        return "delivered"
    if status[0] == "4" and not looks_failed(report):
        return "delayed"
    return "failed"
