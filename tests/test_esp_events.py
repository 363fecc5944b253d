"""ESP events through django-anymail's real tracking webhook views.

Every test posts a payload written here in the ESP's own format (Amazon SES through
SNS, Mailgun's signed JSON webhooks, Postmark's webhooks) to the view anymail
serves, with the basic auth (and for Mailgun the HMAC signature) anymail checks, and
looks at what the tracker recorded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings

from bounce_tracker.core.kinds import BounceKind
from bounce_tracker.core.signals import address_suppressed, bounce_recorded
from bounce_tracker.models import (
    BounceEvent,
    EmailAddressTracker,
    EventSource,
    SuppressionReason,
    UnmatchedMessage,
)
from bounce_tracker.receiving.esp import (
    classify_tracking_event,
    event_fingerprint,
    record_tracking_event,
)

# Skipped without django-anymail, failed under BOUNCE_TRACKER_REQUIRE_SERVICES=1.
pytestmark = pytest.mark.usefixtures("anymail_installed")

REPO_ROOT = Path(__file__).resolve().parent.parent
ADDRESS = "reader@example.org"
OTHER = "second@example.net"


def auth(secret: str | None = None) -> dict[str, str]:
    secret = secret or settings.ANYMAIL["WEBHOOK_SECRET"]
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


@pytest.fixture
def tracker(db):
    return EmailAddressTracker.objects.create(email=ADDRESS, encoded_from="bounces+espreader")


@pytest.fixture
def second(db):
    return EmailAddressTracker.objects.create(email=OTHER, encoded_from="bounces+espsecond")


@pytest.fixture
def signals():
    """The bounce_recorded and address_suppressed signals received, as (name, kind)."""
    received: list[tuple[str, str]] = []

    def on_recorded(sender, tracker, event, **kwargs):
        received.append(("recorded", event.kind))

    def on_suppressed(sender, tracker, event, **kwargs):
        received.append(("suppressed", event.kind))

    bounce_recorded.connect(on_recorded)
    address_suppressed.connect(on_suppressed)
    yield received
    bounce_recorded.disconnect(on_recorded)
    address_suppressed.disconnect(on_suppressed)


@pytest.fixture
def post(client, django_capture_on_commit_callbacks):
    """post(url, body, **extra): POST and run the on-commit callbacks (the signals)."""

    def do_post(url, body, content_type="application/json", **extra):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, data=body, content_type=content_type, **extra)

    return do_post


def refreshed(tracker: EmailAddressTracker) -> EmailAddressTracker:
    tracker.refresh_from_db()
    return tracker


def only_event(tracker: EmailAddressTracker) -> BounceEvent:
    events = list(BounceEvent.objects.filter(tracker=tracker))
    assert len(events) == 1, events
    return events[0]


# --- Amazon SES (SNS notifications) ------------------------------------------------

SES_URL = "/anymail/amazon_ses/tracking/"
SES_TOPIC = "arn:aws:sns:eu-west-1:210987654321:outbound-mail-events"


def ses_mail(*recipients: str) -> dict:
    return {
        "timestamp": "2025-03-04T09:15:01.120Z",
        "source": "News <news@shop.example.com>",
        "sourceArn": "arn:aws:ses:eu-west-1:210987654321:identity/shop.example.com",
        "sendingAccountId": "210987654321",
        "messageId": "0102018f2b4c7d1e-6a1e2f3b-1c2d-4e5f-8a9b-0c1d2e3f4a5b-000000",
        "destination": list(recipients),
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": "News <news@shop.example.com>"},
            {"name": "To", "value": ", ".join(recipients)},
            {"name": "Subject", "value": "Your March offers"},
        ],
        "commonHeaders": {"from": ["news@shop.example.com"], "subject": "Your March offers"},
        "tags": {"ses:configuration-set": ["newsletter"]},
    }


def ses_post(post, ses_event: dict, *, message_id: str | None = None, **extra):
    """Wrap an SES event in an SNS Notification and post it as SNS does."""
    message_id = message_id or str(uuid.uuid4())
    notification = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": SES_TOPIC,
        "Message": json.dumps(ses_event),
        "Timestamp": "2025-03-04T09:15:03.512Z",
        "SignatureVersion": "1",
        "Signature": "c2lnbmF0dXJlLW5vdC12ZXJpZmllZC1ieS1hbnltYWls",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }
    headers = {
        "HTTP_X_AMZ_SNS_MESSAGE_TYPE": "Notification",
        "HTTP_X_AMZ_SNS_MESSAGE_ID": message_id,
        "HTTP_X_AMZ_SNS_TOPIC_ARN": SES_TOPIC,
        **auth(),
        **extra,
    }
    return post(
        SES_URL, json.dumps(notification), content_type="text/plain; charset=UTF-8", **headers
    )


def ses_bounce(bounce_type: str, subtype: str, recipients: list[dict]) -> dict:
    return {
        "eventType": "Bounce",
        "bounce": {
            "feedbackId": "0102018f2b4c8a00-bounce-000000",
            "bounceType": bounce_type,
            "bounceSubType": subtype,
            "bouncedRecipients": recipients,
            "timestamp": "2025-03-04T09:15:02.900Z",
            "reportingMTA": "dsn; e242-9.smtp-out.eu-west-1.amazonses.com",
            "remoteMtaIp": "198.51.100.25",
        },
        "mail": ses_mail(*(r["emailAddress"] for r in recipients)),
    }


def test_ses_permanent_bounce_is_hard_counts_suppresses_and_signals(tracker, post, signals):
    event = ses_bounce(
        "Permanent",
        "General",
        [
            {
                "emailAddress": "Reader@Example.org",
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 <reader@example.org>: Recipient unknown",
            }
        ],
    )
    response = ses_post(post, event)
    assert response.status_code == 200

    recorded = only_event(tracker)
    assert (recorded.kind, recorded.counted, recorded.source) == ("hard", True, EventSource.ESP)
    assert recorded.status == "5.1.1"
    assert "Recipient unknown" in recorded.diagnostic
    assert recorded.reporting_mta == "Amazon SES (e242-9.smtp-out.eu-west-1.amazonses.com)"
    assert recorded.classifier_reason.startswith("esp:amazon_ses:ses:Permanent/General")
    assert recorded.original_message_id == event["mail"]["messageId"]
    raw = json.loads(bytes(recorded.raw_message))
    assert raw["esp_name"] == "Amazon SES"
    assert raw["esp_event"]["bounce"]["bounceType"] == "Permanent"
    tracker = refreshed(tracker)
    assert tracker.bounce_count == 1
    assert tracker.last_bounce is not None
    assert tracker.suppressed_reason == SuppressionReason.HARD_BOUNCE
    assert tracker.is_suppressed
    assert signals == [("recorded", "hard"), ("suppressed", "hard")]


def test_ses_transient_bounce_is_soft_and_counted_but_not_suppressing(tracker, post, signals):
    event = ses_bounce(
        "Transient",
        "MailboxFull",
        [
            {
                "emailAddress": ADDRESS,
                "action": "failed",
                "status": "5.2.2",
                "diagnosticCode": "smtp; 552 5.2.2 Mailbox full",
            }
        ],
    )
    assert ses_post(post, event).status_code == 200
    recorded = only_event(tracker)
    assert (recorded.kind, recorded.counted) == ("soft", True)
    tracker = refreshed(tracker)
    assert (tracker.bounce_count, tracker.suppressed_reason) == (1, "")
    assert signals == [("recorded", "soft")]


def test_ses_permanent_spam_block_is_soft_the_address_is_fine(tracker, post):
    # SES calls every refusal it won't retry "Permanent"; this one is a blocklist hit.
    event = ses_bounce(
        "Permanent",
        "General",
        [
            {
                "emailAddress": ADDRESS,
                "action": "failed",
                "status": "5.7.1",
                "diagnosticCode": "smtp; 550 5.7.1 Service unavailable; client host "
                "[203.0.113.9] blocked using zen.spamhaus.org",
            }
        ],
    )
    ses_post(post, event)
    assert only_event(tracker).kind == "soft"
    assert not refreshed(tracker).is_suppressed


def test_ses_suppression_list_bounce_is_hard_without_a_diagnostic(tracker, post):
    event = ses_bounce("Permanent", "OnAccountSuppressionList", [{"emailAddress": ADDRESS}])
    ses_post(post, event)
    recorded = only_event(tracker)
    assert recorded.kind == "hard"
    assert recorded.diagnostic == "Permanent: OnAccountSuppressionList"


def test_ses_one_notification_for_two_recipients_records_both(tracker, second, post):
    recipients = [
        {"emailAddress": address, "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 unknown"}
        for address in (ADDRESS, OTHER)
    ]
    ses_post(post, ses_bounce("Permanent", "NoEmail", recipients))
    assert only_event(tracker).kind == "hard"
    assert only_event(second).kind == "hard"


def test_ses_same_notification_twice_counts_once(tracker, post, signals):
    event = ses_bounce(
        "Transient",
        "General",
        [{"emailAddress": ADDRESS, "diagnosticCode": "smtp; 451 4.3.0 Mail server busy"}],
    )
    message_id = str(uuid.uuid4())
    assert ses_post(post, event, message_id=message_id).status_code == 200
    assert ses_post(post, event, message_id=message_id).status_code == 200
    only_event(tracker)
    assert refreshed(tracker).bounce_count == 1
    assert signals == [("recorded", "soft")]


def ses_complaint(feedback_type: str | None) -> dict:
    complaint = {
        "feedbackId": "0102018f2b4d0000-complaint-000000",
        "complainedRecipients": [{"emailAddress": ADDRESS}],
        "timestamp": "2025-03-05T18:02:44.000Z",
        "userAgent": "Yahoo!-Mail-Feedback/2.0",
        "arrivalDate": "2025-03-05T17:59:12.000Z",
    }
    if feedback_type is not None:
        complaint["complaintFeedbackType"] = feedback_type
    return {"eventType": "Complaint", "complaint": complaint, "mail": ses_mail(ADDRESS)}


def test_ses_complaint_suppresses_without_counting(tracker, post, signals):
    ses_post(post, ses_complaint("abuse"))
    recorded = only_event(tracker)
    assert (recorded.kind, recorded.counted) == ("complaint", False)
    assert recorded.diagnostic == "Feedback-Type: abuse"
    tracker = refreshed(tracker)
    assert tracker.suppressed_reason == SuppressionReason.COMPLAINT
    assert tracker.bounce_count == 0
    assert signals == [("recorded", "complaint"), ("suppressed", "complaint")]


def test_ses_complaint_without_feedback_type_is_a_complaint(tracker, post):
    ses_post(post, ses_complaint(None))
    assert only_event(tracker).kind == "complaint"
    assert refreshed(tracker).is_suppressed


def test_ses_not_spam_feedback_never_suppresses(tracker, post, signals):
    ses_post(post, ses_complaint("not-spam"))
    recorded = only_event(tracker)
    assert (recorded.kind, recorded.counted) == ("not_bounce", False)
    tracker = refreshed(tracker)
    assert (tracker.suppressed_reason, tracker.bounce_count) == ("", 0)
    assert signals == [("recorded", "not_bounce")]


def test_ses_delivery_is_recorded_not_counted(tracker, post):
    event = {
        "eventType": "Delivery",
        "delivery": {
            "timestamp": "2025-03-04T09:15:02.410Z",
            "processingTimeMillis": 1290,
            "recipients": [ADDRESS],
            "smtpResponse": "250 2.0.0 OK 1709543702 q7si123 - gsmtp",
            "reportingMTA": "e242-9.smtp-out.eu-west-1.amazonses.com",
            "remoteMtaIp": "198.51.100.25",
        },
        "mail": ses_mail(ADDRESS),
    }
    ses_post(post, event)
    recorded = only_event(tracker)
    assert (recorded.kind, recorded.counted) == ("delivered", False)
    assert recorded.diagnostic.startswith("250 2.0.0 OK")
    tracker = refreshed(tracker)
    assert (tracker.bounce_count, tracker.last_event_kind) == (0, "delivered")


def test_ses_delivery_delay_is_delayed_for_the_delayed_recipient_only(tracker, second, post):
    # anymail calls DeliveryDelay "unknown" and reports it for every destination.
    event = {
        "eventType": "DeliveryDelay",
        "deliveryDelay": {
            "timestamp": "2025-03-04T10:20:00.000Z",
            "delayType": "TransientCommunicationFailure",
            "expirationTime": "2025-03-05T09:15:01.000Z",
            "delayedRecipients": [
                {
                    "emailAddress": ADDRESS,
                    "status": "4.4.7",
                    "diagnosticCode": "smtp; 421 4.4.7 Connection timed out",
                }
            ],
            "reportingMTA": "e242-9.smtp-out.eu-west-1.amazonses.com",
        },
        "mail": ses_mail(ADDRESS, OTHER),
    }
    ses_post(post, event)
    recorded = only_event(tracker)
    assert (recorded.kind, recorded.counted, recorded.status) == ("delayed", False, "4.4.7")
    assert not BounceEvent.objects.filter(tracker=second).exists()
    assert refreshed(tracker).bounce_count == 0


def test_ses_open_and_send_events_are_ignored(tracker, post):
    for event_type in ("Send", "Open"):
        event = {"eventType": event_type, event_type.lower(): {}, "mail": ses_mail(ADDRESS)}
        assert ses_post(post, event).status_code == 200
    assert not BounceEvent.objects.exists()


def test_ses_wrong_or_missing_basic_auth_is_refused_and_records_nothing(tracker, post):
    event = ses_bounce("Permanent", "NoEmail", [{"emailAddress": ADDRESS}])
    assert ses_post(post, event, **auth("esp-webhook:guessed")).status_code == 400
    assert ses_post(post, event, HTTP_AUTHORIZATION="").status_code == 401
    assert not BounceEvent.objects.exists()
    assert refreshed(tracker).bounce_count == 0


# --- Mailgun (signed JSON webhooks) ------------------------------------------------

MAILGUN_URL = "/anymail/mailgun/tracking/"


def mailgun_post(post, event_data: dict, *, token: str | None = None, key: str | None = None):
    key = key or settings.ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"]
    token = token or uuid.uuid4().hex + uuid.uuid4().hex[:18]
    timestamp = "1741180000"
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    body = {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    }
    return post(MAILGUN_URL, json.dumps(body), **auth())


def mailgun_event(event: str, **fields) -> dict:
    return {
        "id": uuid.uuid4().hex[:22],
        "timestamp": 1741180000.412,
        "log-level": "error" if event == "failed" else "info",
        "event": event,
        "recipient": ADDRESS,
        "recipient-domain": "example.org",
        "message": {
            "headers": {
                "to": ADDRESS,
                "message-id": "20250305121320.1.8C2D@mg.shop.example.com",
                "from": "news@mg.shop.example.com",
                "subject": "Your March offers",
            },
            "attachments": [],
            "size": 4211,
        },
        "tags": ["newsletter"],
        "user-variables": {},
        **fields,
    }


def test_mailgun_permanent_failure_is_hard(tracker, post, signals):
    event = mailgun_event(
        "failed",
        severity="permanent",
        reason="bounce",
        **{
            "delivery-status": {
                "attempt-no": 1,
                "code": 550,
                "message": "5.1.1 The email account that you tried to reach does not exist.",
                "description": "",
                "mx-host": "mx.example.org",
            }
        },
    )
    assert mailgun_post(post, event).status_code == 200
    recorded = only_event(tracker)
    assert (recorded.kind, recorded.counted, recorded.status) == ("hard", True, "5.1.1")
    assert recorded.original_message_id == "<20250305121320.1.8C2D@mg.shop.example.com>"
    assert refreshed(tracker).suppressed_reason == SuppressionReason.HARD_BOUNCE
    assert signals == [("recorded", "hard"), ("suppressed", "hard")]


def test_mailgun_temporary_failure_is_a_delay(tracker, post):
    event = mailgun_event(
        "failed",
        severity="temporary",
        reason="generic",
        **{
            "delivery-status": {
                "attempt-no": 1,
                "code": 421,
                "message": "4.7.0 Try again later, closing connection.",
                "retry-seconds": 600,
            }
        },
    )
    mailgun_post(post, event)
    recorded = only_event(tracker)
    assert (recorded.kind, recorded.counted) == ("delayed", False)
    assert refreshed(tracker).bounce_count == 0


def test_mailgun_dropped_for_a_previous_bounce_is_hard(tracker, post):
    event = mailgun_event(
        "failed",
        severity="permanent",
        reason="suppress-bounce",
        **{
            "delivery-status": {
                "code": 605,
                "message": "",
                "description": "Not delivering to previously bounced address",
            }
        },
    )
    mailgun_post(post, event)
    assert only_event(tracker).kind == "hard"


def test_mailgun_complaint_suppresses(tracker, post):
    mailgun_post(post, mailgun_event("complained"))
    recorded = only_event(tracker)
    assert (recorded.kind, recorded.counted) == ("complaint", False)
    assert refreshed(tracker).suppressed_reason == SuppressionReason.COMPLAINT


def test_mailgun_delivered(tracker, post):
    event = mailgun_event(
        "delivered",
        **{"delivery-status": {"code": 250, "message": "OK", "description": "", "tls": True}},
    )
    mailgun_post(post, event)
    assert only_event(tracker).kind == "delivered"
    assert refreshed(tracker).bounce_count == 0


def test_mailgun_unsubscribe_is_recorded_but_neither_counted_nor_suppressing(tracker, post):
    mailgun_post(post, mailgun_event("unsubscribed"))
    recorded = only_event(tracker)
    assert (recorded.kind, recorded.counted) == ("not_bounce", False)
    tracker = refreshed(tracker)
    assert (tracker.bounce_count, tracker.suppressed_reason) == (0, "")


def test_mailgun_same_webhook_twice_counts_once(tracker, post):
    event = mailgun_event(
        "failed",
        severity="permanent",
        reason="bounce",
        **{"delivery-status": {"code": 552, "message": "5.2.2 mailbox full"}},
    )
    token = "f3c1b5a4e2d94c7ab0e6d1f2a3b4c5d6e7f8a9b0c1d2e3f4a5"
    mailgun_post(post, event, token=token)
    mailgun_post(post, event, token=token)
    assert only_event(tracker).kind == "soft"  # "permanent", but a full mailbox
    assert refreshed(tracker).bounce_count == 1


def test_mailgun_wrong_signature_is_refused_and_records_nothing(tracker, post):
    event = mailgun_event("complained")
    assert mailgun_post(post, event, key="not-the-signing-key").status_code == 400
    assert not BounceEvent.objects.exists()
    assert not refreshed(tracker).is_suppressed


# --- Postmark ----------------------------------------------------------------------

POSTMARK_URL = "/anymail/postmark/tracking/"


def postmark_post(post, payload: dict, **extra):
    return post(POSTMARK_URL, json.dumps(payload), **{**auth(), **extra})


def postmark_bounce(bounce_type: str, type_code: int, details: str, **fields) -> dict:
    return {
        "RecordType": "Bounce",
        "MessageStream": "broadcast",
        "ID": 3719297970 + type_code,
        "Type": bounce_type,
        "TypeCode": type_code,
        "Name": bounce_type,
        "Tag": "newsletter",
        "MessageID": "9c1e2f4a-5b6d-4e7f-8a9b-1c2d3e4f5a6b",
        "Metadata": {},
        "ServerID": 41230,
        "Description": "The server was unable to deliver your message.",
        "Details": details,
        "Email": ADDRESS,
        "From": "news@shop.example.com",
        "BouncedAt": "2025-03-06T11:02:13.0000000-05:00",
        "DumpAvailable": True,
        "Inactive": bounce_type == "HardBounce",
        "CanActivate": True,
        "Subject": "Your March offers",
        "Content": "",
        **fields,
    }


def test_postmark_hard_bounce(tracker, post, signals):
    payload = postmark_bounce("HardBounce", 1, "smtp;550 5.1.1 No such user here")
    assert postmark_post(post, payload).status_code == 200
    recorded = only_event(tracker)
    assert (recorded.kind, recorded.counted, recorded.status) == ("hard", True, "5.1.1")
    assert refreshed(tracker).suppressed_reason == SuppressionReason.HARD_BOUNCE
    assert signals == [("recorded", "hard"), ("suppressed", "hard")]


def test_postmark_soft_bounce(tracker, post):
    payload = postmark_bounce("SoftBounce", 4096, "smtp;452 4.2.2 Over quota")
    postmark_post(post, payload)
    recorded = only_event(tracker)
    assert (recorded.kind, recorded.counted) == ("soft", True)
    tracker = refreshed(tracker)
    assert (tracker.bounce_count, tracker.suppressed_reason) == (1, "")


def test_postmark_spam_complaint_suppresses(tracker, post):
    payload = postmark_bounce(
        "SpamComplaint", 512, "", RecordType="SpamComplaint", Description="Marked as spam."
    )
    postmark_post(post, payload)
    recorded = only_event(tracker)
    assert (recorded.kind, recorded.counted) == ("complaint", False)
    assert refreshed(tracker).suppressed_reason == SuppressionReason.COMPLAINT


def test_postmark_spam_notification_is_a_spam_block_not_a_complaint(tracker, post):
    # anymail calls it "complained"; it is the receiving server's spam filter.
    payload = postmark_bounce("SpamNotification", 2048, "smtp;550 5.7.1 Message rejected as spam")
    postmark_post(post, payload)
    assert only_event(tracker).kind == "soft"
    assert not refreshed(tracker).is_suppressed


def test_postmark_delivery_without_an_event_id_is_recorded_once(tracker, post):
    payload = {
        "RecordType": "Delivery",
        "ServerID": 41230,
        "MessageStream": "broadcast",
        "MessageID": "9c1e2f4a-5b6d-4e7f-8a9b-1c2d3e4f5a6b",
        "Recipient": ADDRESS,
        "Tag": "newsletter",
        "DeliveredAt": "2025-03-06T11:02:09.0000000-05:00",
        "Details": "smtp;250 2.0.0 OK",
        "Metadata": {},
    }
    postmark_post(post, payload)
    postmark_post(post, payload)
    assert only_event(tracker).kind == "delivered"


def test_postmark_subscription_change_after_a_hard_bounce_is_not_counted_again(tracker, post):
    postmark_post(post, postmark_bounce("HardBounce", 1, "smtp;550 5.1.1 No such user"))
    change = {
        "RecordType": "SubscriptionChange",
        "MessageID": "9c1e2f4a-5b6d-4e7f-8a9b-1c2d3e4f5a6b",
        "ServerID": 41230,
        "MessageStream": "broadcast",
        "ChangedAt": "2025-03-06T11:02:14.0000000-05:00",
        "Recipient": ADDRESS,
        "Origin": "Recipient",
        "SuppressSending": True,
        "SuppressionReason": "HardBounce",
        "Tag": "newsletter",
        "Metadata": {},
    }
    postmark_post(post, change)
    kinds = sorted(BounceEvent.objects.values_list("kind", flat=True))
    assert kinds == ["hard", "not_bounce"]
    assert refreshed(tracker).bounce_count == 1


def test_postmark_wrong_basic_auth_is_refused_and_records_nothing(tracker, post):
    payload = postmark_bounce("HardBounce", 1, "smtp;550 5.1.1 No such user here")
    assert postmark_post(post, payload, **auth("postmark:wrong")).status_code == 400
    assert not BounceEvent.objects.exists()


# --- untracked addresses -----------------------------------------------------------


def test_a_failure_for_an_untracked_address_is_kept_once_as_unmatched(db, post):
    event = ses_bounce(
        "Permanent",
        "General",
        [{"emailAddress": "stranger@example.com", "diagnosticCode": "smtp; 550 5.1.1 unknown"}],
    )
    message_id = str(uuid.uuid4())
    ses_post(post, event, message_id=message_id)
    ses_post(post, event, message_id=message_id)
    unmatched = UnmatchedMessage.objects.get()
    assert unmatched.reason.startswith("ESP event for an untracked address")
    assert (unmatched.kind, unmatched.source) == ("hard", EventSource.ESP)
    assert unmatched.envelope_recipient == "stranger@example.com"
    assert not EmailAddressTracker.objects.exists()
    assert not BounceEvent.objects.exists()


def test_a_delivery_for_an_untracked_address_is_not_stored(db, post):
    payload = {
        "RecordType": "Delivery",
        "MessageID": "0f0e0d0c-0b0a-4909-8807-060504030201",
        "Recipient": "stranger@example.com",
        "DeliveredAt": "2025-03-06T11:02:09Z",
        "Details": "smtp;250 OK",
    }
    assert postmark_post(post, payload).status_code == 200
    assert not UnmatchedMessage.objects.exists()


# --- the mapping and the receiver, without a webhook --------------------------------


def fake_event(event_type: str, **fields) -> SimpleNamespace:
    values = {
        "event_type": event_type,
        "timestamp": None,
        "event_id": None,
        "esp_event": {},
        "message_id": None,
        "recipient": ADDRESS,
        "reject_reason": None,
        "description": None,
        "mta_response": None,
    }
    values.update(fields)
    return SimpleNamespace(**values)


@pytest.mark.parametrize(
    ("reject_reason", "kind"),
    [
        ("invalid", "hard"),
        ("bounced", "hard"),
        ("spam", "complaint"),
        ("unsubscribed", "not_bounce"),
        ("blocked", "soft"),
        ("timed_out", "soft"),
        ("other", "soft"),
        (None, "soft"),
    ],
)
def test_rejections_by_reason(reject_reason, kind):
    event = fake_event("rejected", reject_reason=reject_reason)
    assert classify_tracking_event(event, "SomeESP").kind == kind


def test_a_bounce_without_the_esps_bit_is_classified_from_its_text():
    hard = fake_event("bounced", mta_response="550 5.1.1 <reader@example.org>: user unknown")
    soft = fake_event("bounced", mta_response="552 5.2.2 mailbox full")
    assert classify_tracking_event(hard, "SparkPost").kind == BounceKind.HARD
    assert classify_tracking_event(soft, "SparkPost").kind == BounceKind.SOFT
    assert classify_tracking_event(fake_event("bounced"), "SparkPost").kind == BounceKind.SOFT


def test_a_not_spam_correction_from_any_esp_never_suppresses():
    sparkpost = fake_event("complained", esp_event={"fbtype": "not-spam"})
    described = fake_event("complained", description="not-spam")
    for event in (sparkpost, described):
        assert classify_tracking_event(event, "SparkPost").kind == BounceKind.NOT_BOUNCE
    abuse = fake_event("complained", description="The user marked it as spam")
    assert classify_tracking_event(abuse, "SparkPost").kind == BounceKind.COMPLAINT


@pytest.mark.parametrize(
    "event_type", ["queued", "sent", "opened", "clicked", "subscribed", "failed", "unknown"]
)
def test_other_event_types_are_ignored(event_type):
    assert classify_tracking_event(fake_event(event_type), "Postmark") is None


def test_an_event_without_a_recipient_is_ignored():
    assert classify_tracking_event(fake_event("bounced", recipient=None), "Mailgun") is None


def test_fingerprint_without_an_event_id_uses_message_recipient_type_and_time():
    event = fake_event("delivered", message_id="<m1@x>", recipient="Reader@Example.org")
    assert event_fingerprint(event, "Postmark") == (
        "esp:Postmark:-:<m1@x>:reader@example.org:delivered:"
    )
    with_id = fake_event("bounced", event_id="abc")
    assert event_fingerprint(with_id, "Postmark") == "esp:Postmark:abc:reader@example.org"


def test_an_invalid_recipient_address_does_not_fail_the_webhook(db):
    event = fake_event("delivered", recipient="not an address", event_id="1")
    assert record_tracking_event(None, event, "Mailgun") is None


def test_the_receiver_is_connected_to_anymails_tracking_signal():
    from anymail import signals as anymail_signals

    assert record_tracking_event in [
        receiver() for _, receiver, *_ in anymail_signals.tracking.receivers
    ]


def test_the_app_starts_and_checks_without_anymail():
    script = (
        "import sys; sys.modules['anymail'] = None\n"
        "import django; django.setup()\n"
        "from django.core.management import call_command; call_command('check')\n"
        "assert 'bounce_tracker.receiving.esp' not in sys.modules, 'esp imported at startup'\n"
        "import bounce_tracker.receiving.esp\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
