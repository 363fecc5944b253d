"""Amazon SES notifications delivered as mail (an SNS e-mail subscription).

SES publishes bounce, complaint and delivery notifications to an SNS topic; a topic
can deliver them by mail. With the ``email-json`` protocol the body is SNS's
envelope (``{"Type": "Notification", "Message": "<the notification as a JSON
string>", …}``); with ``email`` it is the notification JSON itself, followed by
SNS's unsubscribe footer. Either way the notification has ``notificationType``
(event publishing: ``eventType``) and the object it names:

- ``Bounce`` with ``bounce.bounceType`` ``Permanent`` is hard for the subtypes that
  name the address (:data:`SES_HARD_SUBTYPES`) and for ``General``, unless the
  recipient's ``diagnosticCode`` shows another cause (the same rule as the ESP
  webhook path, :mod:`bounce_tracker.receiving.esp`); ``UnsubscribedRecipient`` is
  not a bounce; ``Transient`` is soft; ``Undetermined`` is decided by the
  diagnostic's words, soft without one. Each ``bouncedRecipients`` entry is one
  recipient with its ``status`` and ``diagnosticCode``;
- ``Complaint`` is a complaint (``not-spam`` feedback is not), one recipient per
  ``complainedRecipients`` entry;
- ``Delivery`` is delivered (``delivery.recipients``); ``DeliveryDelay`` is delayed.

The message is recognised only when its body really is such JSON, with the object
its type names; a person's mail that mentions ``notificationType`` is left to the
other checks. The JSON read is the decoded text of one top-level part, so bounded
by :data:`~bounce_tracker.classify.limits.MAX_TEXT_CHARS`; nesting too deep for the
decoder is "not a notification".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bounce_tracker.classify.arf import NOT_COMPLAINT_FEEDBACK_TYPES, normalize_feedback_type
from bounce_tracker.classify.delivery_status import overall_kind
from bounce_tracker.classify.diagnosis import (
    best_status,
    enhanced_codes,
    failure_kind,
    is_generic_status,
    normalize_status,
)
from bounce_tracker.classify.dsn import MAX_RECIPIENT_RECORDS, strip_type
from bounce_tracker.classify.mime import part_text
from bounce_tracker.classify.patterns import lazy_re
from bounce_tracker.classify.report import Report
from bounce_tracker.classify.text import clip
from bounce_tracker.core.kinds import BounceKind, Classification, RecipientResult

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up cost)
if TYPE_CHECKING:
    from typing import Any

#: Permanent bounce subtypes that name the address itself (or SES's suppression
#: list, which holds addresses that hard-bounced before). The ESP webhook path
#: (:mod:`bounce_tracker.receiving.esp`) uses the same set; a test holds them equal.
SES_HARD_SUBTYPES = frozenset({"NoEmail", "Suppressed", "OnAccountSuppressionList"})

#: The notification types read, with the object each one carries.
_TYPE_OBJECTS = {
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Delivery": "delivery",
    "DeliveryDelay": "deliveryDelay",
}
# Cheap test before any JSON is decoded: one of the type keys, as a JSON key.
_TYPE_KEY_RE = lazy_re(r'"(?:notificationType|eventType|Type)"\s*:')
# Where the JSON may start: the first non-blank character of the body.
_JSON_START_RE = lazy_re(r"\A\s{0,200}\{")


def classify_ses_mail(report: Report) -> Classification | None:
    """The verdict on an SES notification delivered as mail, or None when it isn't one."""
    notification = _notification(report)
    if notification is None:
        return None
    kind_name = str(notification.get("notificationType") or notification.get("eventType"))
    body = notification[_TYPE_OBJECTS[kind_name]]
    mail = notification.get("mail")
    message_id = _message_id(mail) if isinstance(mail, Mapping) else None
    if kind_name == "Bounce":
        result = _bounce(body)
    elif kind_name == "Complaint":
        result = _complaint(body)
    elif kind_name == "Delivery":
        result = _delivery(body)
    else:
        result = _delay(body)
    kind, status, diagnostic, recipients, rule = result
    return Classification(
        kind=kind,
        status=status,
        diagnostic=diagnostic,
        recipients=tuple(recipients[:MAX_RECIPIENT_RECORDS]),
        reporting_mta=strip_type(_text(body.get("reportingMTA")))[:255],
        original_message_id=message_id,
        reason=f"ses-mail:{rule}",
        extra={"recipients_truncated": "true"} if len(recipients) > MAX_RECIPIENT_RECORDS else {},
    )


_Result = tuple[BounceKind, str | None, str, list[RecipientResult], str]


def _notification(report: Report) -> Mapping[str, Any] | None:
    """The SES notification a top-level text part holds, or None."""
    for part in report.parts:
        if part.enclosed or part.message.is_multipart():
            continue
        if part.content_type not in ("text/plain", "application/json"):
            continue
        text = part_text(part.message)
        if not _JSON_START_RE.match(text) or not _TYPE_KEY_RE.search(text):
            continue
        value = _decode(text)
        if isinstance(value, Mapping) and value.get("Type") == "Notification":
            message = value.get("Message")
            value = _decode(message) if isinstance(message, str) else None
        if isinstance(value, Mapping) and _is_notification(value):
            return value
    return None


def _decode(text: str) -> object:
    """The JSON value ``text`` starts with (SNS's footer may follow it), or None."""
    import json  # only for an SES notification: not at start-up

    try:
        value, _end = json.JSONDecoder().raw_decode(text.lstrip())
    except (ValueError, RecursionError):
        return None
    return value


def _is_notification(value: Mapping[str, Any]) -> bool:
    """Whether ``value`` has the structure of an SES notification of a type we read."""
    kind_name = value.get("notificationType") or value.get("eventType")
    if not isinstance(kind_name, str) or kind_name not in _TYPE_OBJECTS:
        return False
    body = value.get(_TYPE_OBJECTS[kind_name])
    if not isinstance(body, Mapping) or not isinstance(value.get("mail"), Mapping):
        return False
    if kind_name == "Bounce":
        return isinstance(body.get("bounceType"), str) and isinstance(
            body.get("bouncedRecipients"), list
        )
    if kind_name == "Complaint":
        return isinstance(body.get("complainedRecipients"), list)
    if kind_name == "Delivery":
        return isinstance(body.get("recipients"), list)
    return isinstance(body.get("delayedRecipients"), list)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _entries(value: object) -> list[Mapping[str, Any]]:
    # At most one more than kept: enough to know that some were dropped.
    items = value[: MAX_RECIPIENT_RECORDS + 1] if isinstance(value, list) else []
    return [item for item in items if isinstance(item, Mapping)]


def _address(entry: Mapping[str, Any]) -> str | None:
    address = _text(entry.get("emailAddress")).strip()
    # SES may give a display name: "Name <a@example.org>".
    match = re.search(r"<([^<>\s]{1,254})>", address)
    address = match.group(1) if match else address
    return address[:254] or None


def _bounce(body: Mapping[str, Any]) -> _Result:
    bounce_type = _text(body.get("bounceType"))
    subtype = _text(body.get("bounceSubType"))
    rule = f"{bounce_type}/{subtype}"
    recipients: list[RecipientResult] = []
    for entry in _entries(body.get("bouncedRecipients")):
        diagnostic = strip_type(_text(entry.get("diagnosticCode")))
        status = normalize_status(_text(entry.get("status"))) or best_status(
            enhanced_codes(diagnostic)
        )
        kind = _bounce_kind(bounce_type, subtype, status, diagnostic)
        recipients.append(
            RecipientResult(
                _address(entry),
                status,
                kind,
                action=_text(entry.get("action")) or "failed",
                diagnostic=clip(diagnostic),
                remote_mta=strip_type(_text(entry.get("remoteMtaIp")))[:255],
            )
        )
    if not recipients:
        kind = _bounce_kind(bounce_type, subtype, None, "")
        return kind, None, clip(rule), [], rule
    kind = overall_kind([r.kind for r in recipients if r.kind != BounceKind.NOT_BOUNCE])
    if all(r.kind == BounceKind.NOT_BOUNCE for r in recipients):
        kind = BounceKind.NOT_BOUNCE
    primary = next(r for r in recipients if r.kind == kind)
    return kind, primary.status, primary.diagnostic or clip(rule), recipients, rule


def _bounce_kind(bounce_type: str, subtype: str, status: str | None, text: str) -> BounceKind:
    """One bounced recipient's kind: SES's bounce type, refined by the diagnostic's words."""
    if bounce_type == "Transient":
        return BounceKind.SOFT
    if bounce_type == "Permanent":
        if subtype == "UnsubscribedRecipient":
            return BounceKind.NOT_BOUNCE
        if subtype in SES_HARD_SUBTYPES or not text:
            return BounceKind.HARD
        # "General": hard, unless the quoted reply shows another cause (a policy
        # refusal, a full mailbox, the sender's fault): the ESP webhook path's rule.
        kind, rule = failure_kind(status, text)
        return BounceKind.SOFT if _shows_other_cause(kind, rule, status) else BounceKind.HARD
    # Undetermined: SES couldn't tell; the diagnostic's words may.
    if text:
        return failure_kind(status, text)[0]
    return BounceKind.SOFT


def _shows_other_cause(kind: BounceKind, rule: str, status: str | None) -> bool:
    """Whether a soft verdict rests on a cause, not just on a 5xx code (as in esp.py)."""
    if kind is not BounceKind.SOFT:
        return False
    if rule.startswith(("text:", "temporary:", "code:4")) or rule.endswith(" sender"):
        return True
    if rule.startswith("status:") and status:
        return status[0] == "4" or not is_generic_status(status)
    return False


def _complaint(body: Mapping[str, Any]) -> _Result:
    feedback = normalize_feedback_type(_text(body.get("complaintFeedbackType")))
    not_spam = feedback in NOT_COMPLAINT_FEEDBACK_TYPES
    kind = BounceKind.NOT_BOUNCE if not_spam else BounceKind.COMPLAINT
    recipients = [
        RecipientResult(_address(entry), None, kind)
        for entry in _entries(body.get("complainedRecipients"))
    ]
    rule = f"Complaint/{feedback}" if feedback else "Complaint"
    return kind, None, clip(rule), recipients, rule


def _delivery(body: Mapping[str, Any]) -> _Result:
    response = _text(body.get("smtpResponse"))
    status = next((code for code in enhanced_codes(response) if code[0] == "2"), None)
    items = body.get("recipients")
    addresses = [a for a in (items if isinstance(items, list) else []) if isinstance(a, str)]
    recipients = [
        RecipientResult(a.strip()[:254] or None, status, BounceKind.DELIVERED, action="delivered")
        for a in addresses[: MAX_RECIPIENT_RECORDS + 1]
    ]
    return BounceKind.DELIVERED, status, clip(response), recipients, "Delivery"


def _delay(body: Mapping[str, Any]) -> _Result:
    delay_type = _text(body.get("delayType"))
    recipients: list[RecipientResult] = []
    for entry in _entries(body.get("delayedRecipients")):
        diagnostic = strip_type(_text(entry.get("diagnosticCode")))
        status = normalize_status(_text(entry.get("status")))
        recipients.append(
            RecipientResult(
                _address(entry),
                status,
                BounceKind.DELAYED,
                action="delayed",
                diagnostic=clip(diagnostic),
            )
        )
    status = recipients[0].status if recipients else None
    diagnostic = recipients[0].diagnostic if recipients else ""
    rule = f"DeliveryDelay/{delay_type}"
    return BounceKind.DELAYED, status, diagnostic or clip(rule), recipients, rule


def _message_id(mail: Mapping[str, Any]) -> str | None:
    """The original's Message-ID header (``mail.commonHeaders.messageId``), in angle brackets."""
    common = mail.get("commonHeaders")
    value = _text(common.get("messageId")) if isinstance(common, Mapping) else ""
    match = re.search(r"<[^<>\s]{1,250}>", value)
    return match.group(0) if match else None
