"""Refusals at send time: recipients the wrapped backend refused, recorded as bounces.

When the server (or an ESP's API) refuses a copy while
:class:`~bounce_tracker.backend.BounceTrackingBackend` sends it, no bounce message
will ever come back for it: the refusal *is* the bounce. This module turns what the
wrapped backend reported into a :class:`Refusal` and records it with
:func:`bounce_tracker.core.events.record_event`, so it has the same tracker updates,
policy effects and signals as a bounce received by the pipe:

- ``smtplib.SMTPRecipientsRefused`` (a 4xx/5xx reply to ``RCPT TO``) and
  ``smtplib.SMTPDataError`` (a 4xx/5xx reply at ``DATA``; a copy has one recipient,
  so that is the recipient's refusal) are classified from the reply by
  :func:`bounce_tracker.classify.classify_reply`, the rules for a DSN's
  Diagnostic-Code: ``550 5.1.1`` is hard, a ``4xx`` reply soft.
- A django-anymail backend's ``message.anymail_status`` naming the recipient
  ``"invalid"`` (hard) or ``"rejected"`` (soft), whether anymail raised
  ``AnymailRecipientsRefused`` or not (``IGNORE_RECIPIENT_STATUS``).

``smtplib.SMTPSenderRefused`` is about our own envelope sender, never the
recipient's address: it is not a refusal here (the backend logs it). A ``421``
reply means the server is closing the connection, whoever the recipient: it is a
refusal for the exception contract, but not recorded against the address.
"""

from __future__ import annotations

import importlib
import json
import logging
import smtplib
import uuid
from dataclasses import dataclass, replace
from typing import Any

from django.core.mail import EmailMessage

from bounce_tracker.classify import Classification, RecipientResult, classify_reply
from bounce_tracker.core.events import Outcome, ReceiveResult, record_event
from bounce_tracker.core.kinds import BounceKind
from bounce_tracker.core.settings import TrackerSettings
from bounce_tracker.models import EmailAddressTracker, EventSource

logger = logging.getLogger("bounce_tracker")

#: Where a copy was refused.
RCPT, DATA, ESP = "rcpt", "data", "esp"

#: anymail recipient statuses that are refusals of the address, and their kinds.
#: "invalid": the ESP says the address can't be an address (hard). "rejected": the
#: ESP won't send to it, usually because of its own suppression list (an earlier
#: bounce, complaint or unsubscribe) or a policy; the address may be fine, so it
#: counts toward the soft threshold instead of suppressing at once.
ESP_STATUS_KINDS = {"invalid": BounceKind.HARD, "rejected": BounceKind.SOFT}

#: SMTP reply codes that say nothing about the recipient's address.
NOT_THE_RECIPIENT = frozenset({421})

_TRACKER_FIELDS = [
    "last_bounce",
    "last_bounce2",
    "last_bounce3",
    "first_bounce",
    "bounce_count",
    "suppressed_reason",
    "suppressed_at",
    "suppressed_detail",
    "last_event_kind",
]


@dataclass(frozen=True)
class Refusal:
    """One copy's recipient refused by the server or the ESP, at send time."""

    #: The recipient's address (normalized), as it is recorded.
    address: str
    #: The recipient as the caller wrote it (named in the exception raised).
    recipient: str
    #: :data:`RCPT`, :data:`DATA` or :data:`ESP`.
    stage: str
    #: The SMTP reply code (None for an ESP status).
    code: int | None
    #: The SMTP reply text, or the ESP status in words.
    text: str
    #: What is kept as the event's raw message: the reply, or the ESP status as JSON.
    raw: bytes
    classification: Classification
    #: What the wrapped backend raised, or None (an ESP status without an exception).
    error: Exception | None = None

    @property
    def recordable(self) -> bool:
        """Whether it says something about the recipient's address (not a 421)."""
        return self.code not in NOT_THE_RECIPIENT


def reply_text(message: bytes | str) -> str:
    """An SMTP reply's text as ``str`` (``smtplib`` gives bytes)."""
    if isinstance(message, bytes):
        return message.decode("utf-8", "replace")
    return str(message)


def smtp_refusal(
    address: str,
    stage: str,
    code: int,
    message: bytes | str,
    *,
    recipient: str = "",
    error: Exception | None = None,
) -> Refusal:
    """The refusal of ``address`` by an SMTP reply ``code message`` at ``stage``."""
    text = reply_text(message)
    reply = f"{code} {text}"
    return Refusal(
        address=address,
        recipient=recipient or address,
        stage=stage,
        code=code,
        text=text,
        raw=reply.encode("utf-8", "replace"),
        classification=classify_reply(reply, recipient=address, source=f"smtp-{stage}"),
        error=error,
    )


def esp_refusal(
    address: str,
    status: str,
    *,
    recipient: str = "",
    esp_name: str = "",
    message_id: object = None,
    error: Exception | None = None,
) -> Refusal:
    """The refusal of ``address`` by an ESP's recipient status (see :data:`ESP_STATUS_KINDS`)."""
    kind = ESP_STATUS_KINDS[status]
    esp = esp_name or "the ESP"
    text = f"{esp} reported the recipient {status}"
    if error is not None and str(error):
        text += f": {str(error).splitlines()[0][:300]}"
    raw = json.dumps(
        {"esp": esp_name, "recipient": address, "status": status, "message_id": str(message_id)},
        sort_keys=True,
    ).encode()
    classification = Classification(
        kind=kind,
        status=None,
        diagnostic=text,
        recipients=(RecipientResult(address, None, kind, diagnostic=text),),
        reporting_mta=esp_name,
        reason=f"esp:{status}",
    )
    return Refusal(address, recipient or address, ESP, None, text, raw, classification, error)


def _anymail_refused_class() -> type[Exception] | None:
    try:
        exceptions = importlib.import_module("anymail.exceptions")
    except ImportError:
        return None
    refused: type[Exception] = exceptions.AnymailRecipientsRefused
    return refused


def backend_esp_name(backend: object) -> str:
    """An anymail backend's ``esp_name`` ("" for any other backend)."""
    try:
        name = getattr(backend, "esp_name", "")
    except NotImplementedError:  # anymail's base class without a concrete ESP
        return ""
    return name if isinstance(name, str) else ""


def anymail_refusal(
    copy: EmailMessage,
    address: str,
    *,
    recipient: str = "",
    esp_name: str = "",
    error: Exception | None = None,
) -> Refusal | None:
    """The refusal an anymail backend reported in ``copy.anymail_status``, if any.

    A copy has one recipient, so any recipient status ``"invalid"`` or ``"rejected"``
    in it is that recipient's.
    """
    status_info: Any = getattr(copy, "anymail_status", None)
    recipients = getattr(status_info, "recipients", None)
    if not isinstance(recipients, dict):
        return None
    for recipient_status in recipients.values():
        status = getattr(recipient_status, "status", None)
        if status in ESP_STATUS_KINDS:
            return esp_refusal(
                address,
                status,
                recipient=recipient,
                esp_name=esp_name or backend_esp_name(getattr(error, "backend", None)),
                message_id=getattr(recipient_status, "message_id", None),
                error=error,
            )
    return None


def refusal_from_error(
    error: Exception, copy: EmailMessage, address: str, *, recipient: str = ""
) -> Refusal | None:
    """The refusal ``error`` (raised sending ``copy`` to ``address``) reports, or None.

    None for anything that is not the recipient's refusal, including
    ``SMTPSenderRefused``.
    """
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        for code, message in error.recipients.values():  # one copy, one recipient
            return smtp_refusal(address, RCPT, code, message, recipient=recipient, error=error)
        return None
    if isinstance(error, smtplib.SMTPDataError):
        return smtp_refusal(
            address, DATA, error.smtp_code, error.smtp_error, recipient=recipient, error=error
        )
    anymail_refused = _anymail_refused_class()
    if anymail_refused is not None and isinstance(error, anymail_refused):
        return anymail_refusal(copy, address, recipient=recipient, error=error) or esp_refusal(
            address, "rejected", recipient=recipient, error=error
        )
    return None


def refusal_error(refusals: list[Refusal]) -> Exception:
    """What to raise when every allowed recipient of a message was refused.

    With a refusal at RCPT among them: ``SMTPRecipientsRefused`` naming every
    recipient refused by SMTP (as ``smtplib`` raises for one multi-recipient
    message). Otherwise (all at DATA, or all by the ESP): what the wrapped backend
    raised for the last one, so a one-recipient message raises exactly what the
    wrapped backend raised.
    """
    if any(refusal.stage == RCPT for refusal in refusals):
        refused: dict[str, tuple[int, bytes]] = {}
        for refusal in refusals:
            if isinstance(refusal.error, smtplib.SMTPRecipientsRefused):
                refused.update(refusal.error.recipients)
            elif refusal.code is not None:
                refused[refusal.recipient] = (refusal.code, refusal.text.encode("utf-8", "replace"))
        return smtplib.SMTPRecipientsRefused(refused)
    last = refusals[-1].error
    return last if last is not None else smtplib.SMTPRecipientsRefused({})


def record_refusal(
    tracker: EmailAddressTracker,
    refusal: Refusal,
    *,
    envelope_sender: str,
    message_id: str = "",
    reporting_mta: str = "",
    tracker_settings: TrackerSettings | None = None,
) -> ReceiveResult | None:
    """Record ``refusal`` as a bounce event of ``tracker``; never raises.

    Every refusal is one event: it is something we saw happen once, not a report that
    can arrive twice, so its fingerprint is unique to this attempt. The same copy
    sent again by the caller and refused again is another failed delivery and counts
    again. Afterwards ``tracker`` is refreshed, so the policy sees the new bounce for
    the rest of the batch. Returns None when nothing was recorded (a 421, an unsaved
    tracker, a database error: logged).
    """
    if not refusal.recordable:
        logger.warning(
            "The server closed the connection while sending to %s (%s %s): "
            "not recorded against the address.",
            tracker.email,
            refusal.code,
            refusal.text,
        )
        return None
    if tracker.pk is None:
        logger.warning(
            "%s refused at send time (%s %s) but not recorded: the tracking database "
            "is unavailable.",
            tracker.email,
            refusal.code or refusal.stage,
            refusal.text,
        )
        return None
    classification = refusal.classification
    classification = replace(
        classification,
        reporting_mta=classification.reporting_mta or reporting_mta,
        original_message_id=message_id or None,
    )
    fingerprint = f"send-refusal:{refusal.stage}:{message_id}:{tracker.email}:{uuid.uuid4().hex}"
    try:
        result = record_event(
            tracker,
            classification,
            source=EventSource.SMTP,
            event_fingerprint=fingerprint,
            raw=refusal.raw,
            envelope_sender=envelope_sender,
            envelope_recipient=tracker.email,
            tracker_settings=tracker_settings,
        )
        if result.outcome == Outcome.RECORDED:
            tracker.refresh_from_db(fields=_TRACKER_FIELDS)
    except Exception:
        logger.exception(
            "%s was refused at send time (%s) but the refusal could not be recorded.",
            tracker.email,
            refusal.text,
        )
        return None
    logger.info(
        "%s refused at %s: %s (%s)",
        tracker.email,
        refusal.stage.upper(),
        refusal.text,
        classification.kind,
        extra={
            "email": tracker.email,
            "kind": str(classification.kind),
            "status": classification.status,
            "stage": refusal.stage,
        },
    )
    return result


__all__ = [
    "DATA",
    "ESP",
    "ESP_STATUS_KINDS",
    "RCPT",
    "Refusal",
    "anymail_refusal",
    "backend_esp_name",
    "esp_refusal",
    "record_refusal",
    "refusal_error",
    "refusal_from_error",
    "reply_text",
    "smtp_refusal",
]
