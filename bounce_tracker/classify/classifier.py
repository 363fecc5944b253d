"""Classify a message that reached the bounce address: the order of the checks.

:func:`classify_message` is a pure function from raw bytes to a
:class:`~bounce_tracker.core.kinds.Classification`. It never raises, and it imports
nothing from Django, so ``handle_bounce`` and ``inspect_bounce`` stay cheap to start.
The message is cut to a bounded prefix (:mod:`~bounce_tracker.classify.limits`),
parsed, and read once into a :class:`~bounce_tracker.classify.report.Report`; then
the checks run in this order, the first verdict wins:

1. an ARF feedback report (RFC 5965) is a complaint, unless it says ``not-spam``
   (:mod:`~bounce_tracker.classify.arf`);
2. a standard DSN (RFC 3464/6533, fields read by :mod:`~bounce_tracker.classify.dsn`)
   decides per recipient from ``Action``, ``Status`` and ``Diagnostic-Code``
   (:mod:`~bounce_tracker.classify.delivery_status`); hard or soft is
   :func:`bounce_tracker.classify.diagnosis.failure_kind`'s call;
3. an Amazon SES notification delivered as mail (SNS's e-mail JSON): bounce,
   complaint, delivery or delay by its ``notificationType``
   (:mod:`~bounce_tracker.classify.ses_mail`);
4. a bounce without a DSN (qmail, old Sendmail, Exchange text, Domino…) is
   recognised by its sender, subject and wording, and its recipients and reasons
   are read from the text; a forward whose body is a bounce (inline after a mail
   client's forward block, or attached) is classified by the bounce it carries, a
   person's reply quoting one is not a bounce
   (:mod:`~bounce_tracker.classify.text_bounces`);
5. otherwise an RFC 3834 auto-reply (or a vacation/challenge message, also one
   without the headers that says so in its first lines)
   (:mod:`~bounce_tracker.classify.auto_reply`);
6. anything else is ``not_bounce``.

A failure or delay whose report gave no status, or only ``x.0.0``, gets the status
its wording clearly means in ``inferred_status`` (:mod:`~bounce_tracker.classify.inferred`).

Delivery Status Notifications from Postfix and Exim carry ``Auto-Submitted``, so
bounce detection comes before auto-reply detection. Text inside the returned
original message is never used to decide: a newsletter that says "mailbox full"
must not make its own bounce soft.

Hostile input is bounded (see :mod:`~bounce_tracker.classify.limits`): at most
:data:`~bounce_tracker.classify.limits.MAX_PARSE_BYTES` are parsed, MIME nesting and
part counts are capped before the standard library parser sees them, at most
:data:`~bounce_tracker.classify.limits.MAX_TEXT_CHARS` of text are decoded per part,
every regular expression does bounded work per position, and nothing is
decompressed. At most :data:`~bounce_tracker.classify.dsn.MAX_RECIPIENT_RECORDS`
recipients are kept; ``extra["recipients_truncated"]`` says when more were dropped.
"""

from __future__ import annotations

from email import message_from_bytes

from bounce_tracker.classify import diagnosis
from bounce_tracker.classify.arf import classify_arf
from bounce_tracker.classify.auto_reply import classify_auto_reply
from bounce_tracker.classify.delivery_status import classify_dsn
from bounce_tracker.classify.inferred import with_inferred_status
from bounce_tracker.classify.limits import bounded_input
from bounce_tracker.classify.mime import MDN_TYPES
from bounce_tracker.classify.report import Report
from bounce_tracker.classify.ses_mail import classify_ses_mail
from bounce_tracker.classify.text import clip
from bounce_tracker.classify.text_bounces import (
    classify_forwarded_bounce,
    classify_inline_forward,
    classify_text_bounce,
)
from bounce_tracker.core.kinds import BounceKind, Classification, RecipientResult


def _not_bounce(report: Report) -> Classification:
    mdn = any(p.content_type in MDN_TYPES for p in report.parts)
    return Classification(
        kind=BounceKind.NOT_BOUNCE,
        status=None,
        diagnostic=clip(report.subject),
        reason="mdn" if mdn else "no bounce signals",
    )


def _classify(raw: bytes) -> Classification:
    # The default policy of the email package is compat32: the most forgiving parser,
    # and it doesn't import email.policy's header registry (start-up cost).
    root = message_from_bytes(bounded_input(raw))
    report = Report.build(root)
    result = classify_arf(report) or classify_dsn(report) or classify_ses_mail(report)
    if result is not None:
        return with_inferred_status(result)
    result = classify_inline_forward(report) or classify_text_bounce(report)
    if result is None or result.reason.endswith(":failed"):
        # No failure named in the message's own words: maybe it carries a bounce.
        result = classify_forwarded_bounce(report) or result
    if result is not None:
        return with_inferred_status(result)
    return classify_auto_reply(report) or _not_bounce(report)


def classify_message(raw: bytes) -> Classification:
    """Classify ``raw`` (a whole message as bytes). Never raises.

    Any input gets a verdict. When the classifier itself fails on the input (an
    exception inside it: a bug, never a property of the message), the verdict says
    so instead of hiding it: ``failed`` holds the exception on one line,
    ``extra["traceback"]`` the formatted traceback, ``error`` the exception, and the
    reason is ``"classifier failed: <exception type>"``. The receiving side keeps such a
    message for review and counts nothing (:func:`bounce_tracker.core.events.store_for_review`).
    """
    try:
        return _classify(raw)
    except Exception as exc:  # the verdict carries it: never swallowed
        return failed_classification(exc)


#: At most this much of a traceback is kept (its end: the innermost frames and the
#: exception). A RecursionError's traceback is collapsed by the traceback module already.
MAX_TRACEBACK_CHARS = 16_000
#: At most this much of the exception's own text goes into ``failed``.
MAX_FAILED_CHARS = 200


def failed_classification(exc: Exception) -> Classification:
    """The verdict on a message the classifier raised ``exc`` on (see :func:`classify_message`)."""
    import traceback  # only on failure: classify_message stays cheap to import

    try:
        text = str(exc)[: 4 * MAX_FAILED_CHARS]
    except Exception:  # an exception whose text itself fails: its type still says enough
        text = ""
    # One line of printable text: it goes into logs and the admin.
    text = "".join(c if c.isprintable() else "\ufffd" for c in " ".join(text.split()))
    text = text[:MAX_FAILED_CHARS]
    name = type(exc).__name__
    formatted = "".join(traceback.format_exception(exc))
    if len(formatted) > MAX_TRACEBACK_CHARS:
        formatted = "…" + formatted[-MAX_TRACEBACK_CHARS:]
    return Classification(
        kind=BounceKind.NOT_BOUNCE,
        status=None,
        diagnostic="",
        reason=f"classifier failed: {name}",
        extra={"traceback": formatted},
        failed=f"{name}: {text}" if text else name,
        error=exc,
    )


def classify_reply(
    text: str, *, status: str | None = None, recipient: str | None = None, source: str = ""
) -> Classification:
    """Classify one failure reported as text rather than as a message.

    For an SMTP server's reply at send time (``"550 5.1.1 <a@example.org>: User
    unknown"``) or an ESP's description of a bounce: the same rules as a DSN's
    Diagnostic-Code (:func:`bounce_tracker.classify.diagnosis.failure_kind`), so 5.1.1 is hard
    and a 4xx reply soft. ``status`` is an enhanced status code known from elsewhere;
    ``source`` goes into the reason (e.g. ``"smtp"``).
    """
    text = text[: diagnosis.MAX_DECISION_CHARS]
    status = diagnosis.normalize_status(status) or diagnosis.best_status(
        diagnosis.enhanced_codes(text)
    )
    kind, rule = diagnosis.failure_kind(status, text)
    diagnostic = clip(text)
    return with_inferred_status(
        Classification(
            kind=kind,
            status=status,
            diagnostic=diagnostic,
            recipients=(RecipientResult(recipient, status, kind, diagnostic=diagnostic),),
            reason=f"{source}:{rule}" if source else rule,
        )
    )
