"""ESP events through django-anymail: bounces, complaints and deliveries reported by webhook.

When the mail goes out through an ESP (Amazon SES, Mailgun, Postmark…) with
django-anymail, the ESP reports what happened to each message on a webhook, and
anymail turns every ESP's format into one ``tracking`` signal carrying an
``AnymailTrackingEvent``. :func:`record_tracking_event` receives that signal (the
app connects it in ``ready()`` when django-anymail is importable) and records the
event in the bounce history exactly like a DSN that reached the bounce address:
same kinds, same tracker updates, same policy effects and signals (see
:func:`bounce_tracker.core.events.record_event`).

This module never imports anymail: it reads the event's attributes and the ESP's
raw payload (``event.esp_event``), so the app works, and this module imports,
without the optional dependency. :func:`classify_tracking_event` is the mapping to
our kinds, a pure function; docs/esp.rst has it as a table.

A little over 500 lines: the three ESP-specific readers (SES, Mailgun, Postmark) are
small and read best beside the generic mapping they refine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bounce_tracker.classify import Classification, RecipientResult, classify_reply
from bounce_tracker.classify.arf import NOT_COMPLAINT_FEEDBACK_TYPES, normalize_feedback_type
from bounce_tracker.classify.diagnosis import is_generic_status
from bounce_tracker.core.addresses import InvalidAddressError
from bounce_tracker.core.events import ReceiveResult, record_event, storable_text
from bounce_tracker.core.kinds import BounceKind
from bounce_tracker.core.settings import TrackerSettings, get_settings
from bounce_tracker.models import EmailAddressTracker, EventSource
from bounce_tracker.receiving.receive import IncomingMessage, store_unmatched

logger = logging.getLogger("bounce_tracker")

#: anymail's ``esp_name`` of the ESPs whose own hard/soft bit is read.
AMAZON_SES = "Amazon SES"
MAILGUN = "Mailgun"
POSTMARK = "Postmark"

#: anymail event types that are recorded; every other type (queued, sent, opened,
#: clicked, subscribed, failed, inbound…) is ignored. ``unknown`` only for Amazon
#: SES's DeliveryDelay, which anymail doesn't name.
RECORDED_EVENT_TYPES = frozenset(
    {"bounced", "rejected", "complained", "deferred", "delivered", "unsubscribed", "autoresponded"}
)

#: Kinds an event for an address that isn't tracked is kept for (as unmatched mail):
#: the failures staff may want to see. Deliveries, delays and the rest for untracked
#: addresses (mail sent around the tracker) are only logged, so they can't flood the
#: capped unmatched store and push real unmatched bounces out.
UNMATCHED_KINDS = frozenset({BounceKind.HARD, BounceKind.SOFT, BounceKind.COMPLAINT})
UNMATCHED_REASON = "ESP event for an untracked address"

_DSN_TYPE_RE = re.compile(r"^\s*[\w-]+\s*;\s*")


@dataclass(frozen=True)
class _Verdict:
    kind: BounceKind
    #: Which rule decided, e.g. ``"ses:Permanent/NoEmail"`` or ``"reject:bounced"``.
    rule: str
    text: str = ""
    status: str | None = None
    reporting_mta: str = ""


def record_tracking_event(
    sender: object, event: Any, esp_name: str, **kwargs: object
) -> ReceiveResult | None:
    """Receiver for anymail's ``tracking`` signal: record the event exactly once.

    Returns what was done (``None`` for an ignored event). Exactly once per
    :func:`event_fingerprint`: an ESP that posts the same webhook again (after a
    timeout, say) records nothing more. Database errors propagate: anymail's view
    answers 500 and the ESP posts the event again later.
    """
    classification = classify_tracking_event(event, esp_name)
    if classification is None:
        return None
    recipient = str(event.recipient or "").strip()
    tracker_settings = get_settings()
    fingerprint = event_fingerprint(event, esp_name)
    raw = raw_payload(event, esp_name)
    tracker = _tracker_for(recipient)
    if tracker is None:
        return _untracked(
            event, esp_name, recipient, classification, fingerprint, raw, tracker_settings
        )
    return record_event(
        tracker,
        classification,
        source=EventSource.ESP,
        event_fingerprint=fingerprint,
        raw=raw,
        envelope_recipient=recipient,
        tracker_settings=tracker_settings,
    )


def _tracker_for(recipient: str) -> EmailAddressTracker | None:
    try:
        return EmailAddressTracker.objects.for_email(recipient).first()
    except InvalidAddressError:
        return None


def _untracked(
    event: Any,
    esp_name: str,
    recipient: str,
    classification: Classification,
    fingerprint: str,
    raw: bytes,
    tracker_settings: TrackerSettings,
) -> ReceiveResult | None:
    if classification.kind not in UNMATCHED_KINDS:
        logger.debug(
            "Ignored %s %s event for %r: the address is not tracked.",
            esp_name,
            event.event_type,
            recipient,
        )
        return None
    # The unmatched store's fingerprint is built from the recipient and the content
    # hash; the hash of the event's fingerprint makes it "once per ESP event" too.
    message = IncomingMessage(
        data=raw, size=len(raw), content_hash=hashlib.sha256(fingerprint.encode()).hexdigest()
    )
    return store_unmatched(
        message,
        "",
        recipient,
        classification,
        f"{UNMATCHED_REASON} ({esp_name} {event.event_type})",
        EventSource.ESP,
        tracker_settings,
    )


def event_fingerprint(event: Any, esp_name: str) -> str:
    """What makes two reports "the same ESP event" for one recipient.

    ``esp:<esp_name>:<event_id>:<recipient>`` when the ESP gives an event id (SES:
    the SNS notification's MessageId, Mailgun: the webhook signature's token,
    Postmark: the bounce ID). The recipient is part of it because one SES
    notification names several recipients under one id. Without an event id
    (Postmark deliveries, say): the message id, recipient, event type and timestamp,
    and a hash of the ESP's payload when the message id and the timestamp are both
    missing.
    """
    recipient = str(event.recipient or "").strip().lower()
    if event.event_id:
        return f"esp:{esp_name}:{event.event_id}:{recipient}"
    timestamp = event.timestamp.isoformat() if event.timestamp is not None else ""
    parts = [esp_name, "-", str(event.message_id or ""), recipient, str(event.event_type)]
    parts.append(timestamp)
    if not event.message_id and not timestamp:
        parts.append(hashlib.sha256(_esp_event_json(event.esp_event).encode()).hexdigest())
    return "esp:" + ":".join(parts)


def raw_payload(event: Any, esp_name: str) -> bytes:
    """What the event keeps as its raw message: anymail's fields and the ESP's payload
    as JSON (cut to ``RAW_MESSAGE_MAX_BYTES`` when stored)."""
    fields = {
        "esp_name": esp_name,
        "event_type": event.event_type,
        "event_id": event.event_id,
        "message_id": event.message_id,
        "recipient": event.recipient,
        "timestamp": event.timestamp.isoformat() if event.timestamp is not None else None,
        "reject_reason": event.reject_reason,
        "description": event.description,
        "mta_response": event.mta_response,
        "esp_event": _plain(event.esp_event),
    }
    return json.dumps(fields, default=str).encode()


def _esp_event_json(esp_event: Any) -> str:
    return json.dumps(_plain(esp_event), default=str)


def _plain(esp_event: Any) -> Any:
    """The ESP's payload as something JSON can hold."""
    if hasattr(esp_event, "lists"):  # a QueryDict (Mailgun's legacy form posts)
        return {key: values if len(values) > 1 else values[0] for key, values in esp_event.lists()}
    return esp_event


# --- the mapping -------------------------------------------------------------------


def classify_tracking_event(event: Any, esp_name: str) -> Classification | None:
    """Our kind for an ``AnymailTrackingEvent``, or None when it isn't recorded.

    See docs/esp.rst for the table. The ESP's own hard/soft bit decides where its
    payload has one (SES bounceType, Mailgun severity and reason, Postmark Type);
    otherwise the ESP's ``mta_response`` or ``description`` goes through
    :func:`~bounce_tracker.classify.classify_reply`. An ESP's "permanent" means it
    won't retry, not that the address is gone: when the reply it quotes shows
    another cause (a full mailbox, a spam block, a policy refusal), the bounce is soft.
    """
    event_type = str(event.event_type or "")
    recipient = str(event.recipient or "").strip()
    if not recipient:
        return None
    if event_type not in RECORDED_EVENT_TYPES and not _is_ses_delay(event, esp_name):
        return None
    verdict = _verdict(event, esp_name, event_type)
    if verdict is None:
        return None
    text = storable_text(verdict.text)
    base = classify_reply(text, status=verdict.status, recipient=recipient)
    diagnostic = base.diagnostic or _default_diagnostic(verdict.kind, esp_name)
    reporting = f"{esp_name} ({verdict.reporting_mta})" if verdict.reporting_mta else esp_name
    return Classification(
        kind=verdict.kind,
        status=base.status,
        diagnostic=diagnostic,
        recipients=(RecipientResult(recipient, base.status, verdict.kind, diagnostic=diagnostic),),
        reporting_mta=reporting,
        original_message_id=str(event.message_id) if event.message_id else None,
        reason=f"esp:{_slug(esp_name)}:{verdict.rule}",
    )


def _default_diagnostic(kind: BounceKind, esp_name: str) -> str:
    return f"{kind.label} reported by {esp_name}"


def _slug(esp_name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", esp_name.lower()).strip("_")


def _text(event: Any) -> str:
    return str(event.mta_response or event.description or "")


def _verdict(event: Any, esp_name: str, event_type: str) -> _Verdict | None:
    payload = event.esp_event if isinstance(event.esp_event, Mapping) else {}
    if esp_name == AMAZON_SES:
        return _ses_verdict(event, event_type, payload)
    if esp_name == MAILGUN:
        return _mailgun_verdict(event, event_type, payload)
    if esp_name == POSTMARK:
        return _postmark_verdict(event, event_type, payload)
    return _generic_verdict(event, event_type, payload)


def _generic_verdict(event: Any, event_type: str, payload: Mapping[str, Any]) -> _Verdict | None:
    """The mapping from anymail's normalized fields alone (any ESP)."""
    text = _text(event)
    if event_type == "bounced":
        if not text:
            return _Verdict(BounceKind.SOFT, "bounced:no diagnostic")
        return _classified(text, "bounced")
    if event_type == "rejected":
        return _rejected(event, text)
    if event_type == "complained":
        return _complaint(_feedback_type(payload, event.description), text)
    if event_type == "deferred":
        return _Verdict(BounceKind.DELAYED, "deferred", text)
    if event_type == "delivered":
        return _Verdict(BounceKind.DELIVERED, "delivered", text)
    if event_type == "unsubscribed":
        return _Verdict(BounceKind.NOT_BOUNCE, "unsubscribed", text or "unsubscribed")
    if event_type == "autoresponded":
        return _Verdict(BounceKind.AUTO_REPLY, "autoresponded", text)
    return None


def _classified(text: str, rule: str, status: str | None = None) -> _Verdict:
    """Hard or soft from the text alone, by the DSN classifier's rules."""
    result = classify_reply(text, status=status)
    return _Verdict(result.kind, f"{rule}:{result.reason}", text, status)


def _permanent(text: str, rule: str, status: str | None = None) -> _Verdict:
    """The ESP says permanent: hard, unless the reply it quotes shows another cause."""
    if text:
        result = classify_reply(text, status=status)
        if _shows_other_cause(result):
            return _Verdict(BounceKind.SOFT, f"{rule}:{result.reason}", text, status)
    return _Verdict(BounceKind.HARD, rule, text, status)


def _shows_other_cause(result: Classification) -> bool:
    """Whether the classifier found a soft cause in the text, not just a 5xx code."""
    if result.kind is not BounceKind.SOFT:
        return False
    rule = result.reason
    if rule.startswith(("text:", "temporary:", "code:4")) or rule.endswith(" sender"):
        return True
    if rule.startswith("status:") and result.status:
        return result.status[0] == "4" or not is_generic_status(result.status)
    return False


# anymail's RejectReason values → our kind. "spam": the ESP refuses because the
# recipient complained before; "unsubscribed": the ESP's own list management.
_REJECT_KINDS = {
    "invalid": BounceKind.HARD,
    "bounced": BounceKind.HARD,
    "spam": BounceKind.COMPLAINT,
    "unsubscribed": BounceKind.NOT_BOUNCE,
    "blocked": BounceKind.SOFT,
    "timed_out": BounceKind.SOFT,
}


def _rejected(event: Any, text: str) -> _Verdict:
    reason = str(event.reject_reason or "other")
    kind = _REJECT_KINDS.get(reason)
    if kind is not None:
        return _Verdict(kind, f"rejected:{reason}", text)
    if text:
        return _classified(text, f"rejected:{reason}")
    return _Verdict(BounceKind.SOFT, f"rejected:{reason}")


def _complaint(feedback_type: str, text: str) -> _Verdict:
    if feedback_type in NOT_COMPLAINT_FEEDBACK_TYPES:
        return _Verdict(
            BounceKind.NOT_BOUNCE, f"complained:{feedback_type}", f"Feedback-Type: {feedback_type}"
        )
    diagnostic = f"Feedback-Type: {feedback_type}" if feedback_type else text
    return _Verdict(BounceKind.COMPLAINT, f"complained:{feedback_type or 'spam'}", diagnostic)


def _feedback_type(payload: Mapping[str, Any], description: object) -> str:
    """The ARF Feedback-Type of a complaint, wherever the ESP puts it ("" if nowhere)."""
    explicit: list[object] = [
        _get(payload, "complaint", "complaintFeedbackType"),  # Amazon SES
        payload.get("fbtype"),  # SparkPost
        _get(payload, "msys", "message_event", "fbtype"),
        payload.get("feedback_type"),
    ]
    for value in explicit:
        if isinstance(value, str) and value.strip():
            return normalize_feedback_type(value)
    # anymail's description is free text for most ESPs: only a correction counts.
    if isinstance(description, str):
        feedback_type = normalize_feedback_type(description)
        if feedback_type in NOT_COMPLAINT_FEEDBACK_TYPES:
            return feedback_type
    return ""


def _get(payload: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(payload, Mapping):
            return None
        payload = payload.get(key)
    return payload


def _recipient_entry(entries: object, recipient: str) -> Mapping[str, Any] | None:
    """The entry for ``recipient`` in an SES list of ``{"emailAddress": …}`` objects."""
    if not isinstance(entries, list):
        return None
    wanted = recipient.strip().lower()
    for entry in entries:
        if isinstance(entry, Mapping) and str(entry.get("emailAddress", "")).lower() == wanted:
            return entry
    return None


def _mta(value: object) -> str:
    return _DSN_TYPE_RE.sub("", value)[:200] if isinstance(value, str) else ""


# --- Amazon SES --------------------------------------------------------------------

# Permanent bounce subtypes that name the address itself (or SES's suppression list,
# which holds addresses that hard-bounced before).
_SES_HARD_SUBTYPES = frozenset({"NoEmail", "Suppressed", "OnAccountSuppressionList"})


def _is_ses_delay(event: Any, esp_name: str) -> bool:
    payload = event.esp_event
    return (
        esp_name == AMAZON_SES
        and event.event_type == "unknown"
        and isinstance(payload, Mapping)
        and payload.get("eventType") == "DeliveryDelay"
    )


def _ses_verdict(event: Any, event_type: str, payload: Mapping[str, Any]) -> _Verdict | None:
    if _is_ses_delay(event, AMAZON_SES):
        # anymail reports SES's DeliveryDelay as "unknown", for every recipient of the
        # mail: only the ones SES lists as delayed are.
        delay = payload.get("deliveryDelay") or {}
        entry = _recipient_entry(delay.get("delayedRecipients"), event.recipient)
        if entry is None:
            return None
        return _Verdict(
            BounceKind.DELAYED,
            f"ses:DeliveryDelay/{delay.get('delayType', '')}",
            str(entry.get("diagnosticCode") or delay.get("delayType") or ""),
            entry.get("status"),
            _mta(delay.get("reportingMTA")),
        )
    if event_type == "bounced":
        bounce = payload.get("bounce") or {}
        entry = _recipient_entry(bounce.get("bouncedRecipients"), event.recipient) or {}
        bounce_type = str(bounce.get("bounceType", ""))
        subtype = str(bounce.get("bounceSubType", ""))
        rule = f"ses:{bounce_type}/{subtype}"
        status = entry.get("status")
        text = str(entry.get("diagnosticCode") or event.mta_response or "")
        mta = _mta(bounce.get("reportingMTA"))
        if bounce_type == "Transient":
            verdict = _Verdict(BounceKind.SOFT, rule, text, status)
        elif bounce_type == "Permanent" and subtype == "UnsubscribedRecipient":
            verdict = _Verdict(BounceKind.NOT_BOUNCE, rule, text or "unsubscribed", status)
        elif bounce_type == "Permanent" and subtype in _SES_HARD_SUBTYPES:
            verdict = _Verdict(BounceKind.HARD, rule, text, status)
        elif bounce_type == "Permanent":
            verdict = _permanent(text, rule, status)
        else:  # Undetermined: SES couldn't tell
            verdict = _classified(text or str(event.description or ""), rule, status)
        text = verdict.text or str(event.description or "")
        return _Verdict(verdict.kind, verdict.rule, text, verdict.status, mta)
    if event_type == "delivered":
        delivery = payload.get("delivery") or {}
        return _Verdict(
            BounceKind.DELIVERED,
            "ses:Delivery",
            _text(event),
            reporting_mta=_mta(delivery.get("reportingMTA")),
        )
    return _generic_verdict(event, event_type, payload)


# --- Mailgun -----------------------------------------------------------------------

# event-data.reason of a failure when Mailgun didn't even try: its suppression lists.
_MAILGUN_SUPPRESSED = {
    "suppress-bounce": BounceKind.HARD,
    "suppress-complaint": BounceKind.COMPLAINT,
    "suppress-unsubscribe": BounceKind.NOT_BOUNCE,
}


def _mailgun_verdict(event: Any, event_type: str, payload: Mapping[str, Any]) -> _Verdict | None:
    data = payload.get("event-data")
    if event_type != "bounced" or not isinstance(data, Mapping):
        return _generic_verdict(event, event_type, payload)  # legacy form posts too
    reason = str(data.get("reason") or "")
    severity = str(data.get("severity") or "")
    status_block = data.get("delivery-status")
    delivery_status: Mapping[str, Any] = status_block if isinstance(status_block, Mapping) else {}
    text = " ".join(
        str(value)
        for value in (delivery_status.get("message"), delivery_status.get("description"))
        if value
    )
    status = delivery_status.get("enhanced-code")
    status = status if isinstance(status, str) else None
    rule = f"mailgun:{severity or '-'}/{reason or '-'}"
    if reason in _MAILGUN_SUPPRESSED:
        return _Verdict(_MAILGUN_SUPPRESSED[reason], rule, text or reason, status)
    if reason == "old":  # expired after retrying: never about the address itself
        return _Verdict(BounceKind.SOFT, rule, text or "expired in the queue", status)
    if reason == "esp-block":
        return _Verdict(BounceKind.SOFT, rule, text or reason, status)
    if severity == "permanent":
        return _permanent(text, rule, status)
    if severity == "temporary":
        return _Verdict(BounceKind.SOFT, rule, text, status)
    return _classified(text, rule, status) if text else _Verdict(BounceKind.SOFT, rule)


# --- Postmark ----------------------------------------------------------------------

_POSTMARK_SOFT_TYPES = frozenset({"SoftBounce", "VirusNotification", "SpamNotification"})


def _postmark_verdict(event: Any, event_type: str, payload: Mapping[str, Any]) -> _Verdict | None:
    record_type = str(payload.get("RecordType", ""))
    bounce_type = str(payload.get("Type", ""))
    text = _text(event)
    if record_type == "SubscriptionChange":
        # Postmark restating that it stopped (or resumed) sending to the address after
        # a bounce, complaint or manual suppression it reported on its own webhook:
        # recorded, never counted twice.
        if not payload.get("SuppressSending", True):
            return None
        reason = str(payload.get("SuppressionReason", ""))
        return _Verdict(
            BounceKind.NOT_BOUNCE,
            f"postmark:SubscriptionChange/{reason}",
            f"{POSTMARK} suppressed sending ({reason or 'no reason given'})",
        )
    if record_type not in ("Bounce", "SpamComplaint"):
        return _generic_verdict(event, event_type, payload)
    rule = f"postmark:{bounce_type or record_type}"
    if bounce_type == "HardBounce":
        return _permanent(text, rule)
    if bounce_type in _POSTMARK_SOFT_TYPES:
        # SpamNotification: a spam filter refused or binned the mail (anymail calls it
        # "complained"); no person complained.
        return _Verdict(BounceKind.SOFT, rule, text)
    if bounce_type == "SpamComplaint" or record_type == "SpamComplaint":
        return _Verdict(BounceKind.COMPLAINT, rule, text)
    verdict = _generic_verdict(event, event_type, payload)
    if verdict is None:
        return None
    return _Verdict(verdict.kind, f"{rule}:{verdict.rule}", verdict.text, verdict.status)
