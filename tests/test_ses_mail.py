"""Amazon SES notifications delivered as mail (SNS e-mail subscriptions).

The messages are written here from the format AWS documents for SES notifications
(``notificationType``, ``bounce.bounceType``/``bounceSubType``,
``bouncedRecipients``, ``complainedRecipients``, ``delivery.recipients``) and for
SNS's e-mail JSON envelope (``Type: Notification`` with the notification as the
``Message`` string); no sample was copied.
"""

from __future__ import annotations

import json

import pytest

from bounce_tracker.classify import classify_message
from bounce_tracker.classify.ses_mail import SES_HARD_SUBTYPES
from bounce_tracker.core.kinds import BounceKind

_MAIL = {
    "timestamp": "2026-11-30T09:15:02.000Z",
    "source": "news@shop.example",
    "sourceArn": "arn:aws:ses:eu-west-1:000000000000:identity/shop.example",
    "sendingAccountId": "000000000000",
    "messageId": "0102018c-aaaa-bbbb-cccc-000000000001-000000",
    "destination": ["gone@example.org", "busy@example.net"],
    "headersTruncated": False,
    "commonHeaders": {
        "from": ["Shop <news@shop.example>"],
        "to": ["gone@example.org"],
        "messageId": "<weekly-48@shop.example>",
        "subject": "This week's offers",
    },
}
_NO_SUCH_USER = "smtp; 550 5.1.1 <gone@example.org>: no such user"
_FOOTER = (
    "\n\n--\nIf you wish to stop receiving notifications from this topic, please click or "
    "visit the link below to unsubscribe:\nhttps://sns.eu-west-1.amazonaws.example/unsubscribe\n"
)


def _bounce(bounce_type: str, subtype: str, *recipients: dict[str, str]) -> dict[str, object]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": subtype,
            "bouncedRecipients": list(recipients),
            "timestamp": "2026-11-30T09:15:04.000Z",
            "feedbackId": "0102018c-feed-0001",
            "reportingMTA": "dsn; b12-34.smtp-out.eu-west-1.amazonses.example",
        },
        "mail": _MAIL,
    }


def _rcpt(address: str, status: str = "", code: str = "") -> dict[str, str]:
    entry = {"emailAddress": address, "action": "failed"}
    if status:
        entry["status"] = status
    if code:
        entry["diagnosticCode"] = code
    return entry


def _mail(body: str, subject: str = "AWS Notification Message") -> bytes:
    return (
        "From: AWS Notifications <no-reply@sns.amazonaws.example>\n"
        "To: bounces@shop.example\n"
        f"Subject: {subject}\n"
        "Message-ID: <sns-1@email.amazonses.example>\n"
        "Content-Type: text/plain; charset=UTF-8\n"
        "\n"
        f"{body}"
    ).encode()


def _plain(notification: dict[str, object]) -> bytes:
    """The ``email`` protocol: the notification JSON, then SNS's footer."""
    return _mail(json.dumps(notification, indent=2) + _FOOTER)


def _enveloped(notification: dict[str, object]) -> bytes:
    """The ``email-json`` protocol: SNS's envelope with the notification as a string."""
    envelope = {
        "Type": "Notification",
        "MessageId": "5b2c7d1e-0000-0000-0000-000000000001",
        "TopicArn": "arn:aws:sns:eu-west-1:000000000000:ses-events",
        "Message": json.dumps(notification),
        "Timestamp": "2026-11-30T09:15:05.000Z",
        "SignatureVersion": "1",
        "Signature": "c2lnbmF0dXJl",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.example/unsubscribe",
    }
    return _mail(json.dumps(envelope))


@pytest.mark.parametrize("wrap", [_plain, _enveloped])
@pytest.mark.parametrize(
    "subtype", ["General", "NoEmail", "Suppressed", "OnAccountSuppressionList"]
)
def test_permanent_bounce_is_hard_with_its_recipient_status_and_diagnostic(wrap, subtype):
    result = classify_message(
        wrap(
            _bounce(
                "Permanent",
                subtype,
                _rcpt("gone@example.org", "5.1.1", _NO_SUCH_USER),
            )
        )
    )
    assert result.kind == BounceKind.HARD, result.reason
    assert result.reason == f"ses-mail:Permanent/{subtype}"
    assert result.status == "5.1.1"
    assert result.diagnostic == "550 5.1.1 <gone@example.org>: no such user"
    assert [(r.address, r.kind, r.status) for r in result.recipients] == [
        ("gone@example.org", BounceKind.HARD, "5.1.1")
    ]
    assert result.reporting_mta == "b12-34.smtp-out.eu-west-1.amazonses.example"
    assert result.original_message_id == "<weekly-48@shop.example>"


def test_permanent_suppressed_without_diagnostic_is_hard():
    result = classify_message(_plain(_bounce("Permanent", "Suppressed", _rcpt("gone@example.org"))))
    assert (result.kind, result.recipients[0].address) == (BounceKind.HARD, "gone@example.org")


def test_permanent_general_whose_reply_names_a_policy_refusal_is_soft():
    code = "smtp; 554 5.7.1 Service unavailable; client host blocked using a block list"
    result = classify_message(
        _plain(_bounce("Permanent", "General", _rcpt("ok@example.org", "5.7.1", code)))
    )
    assert result.kind == BounceKind.SOFT, result.reason


@pytest.mark.parametrize("wrap", [_plain, _enveloped])
@pytest.mark.parametrize(
    ("bounce_type", "subtype"),
    [
        ("Transient", "General"),
        ("Transient", "MailboxFull"),
        ("Transient", "MessageTooLarge"),
        ("Undetermined", "Undetermined"),
    ],
)
def test_transient_and_undetermined_bounces_are_soft(wrap, bounce_type, subtype):
    result = classify_message(wrap(_bounce(bounce_type, subtype, _rcpt("busy@example.net"))))
    assert result.kind == BounceKind.SOFT, result.reason
    assert [r.address for r in result.recipients] == ["busy@example.net"]


def test_every_bounced_recipient_is_listed_and_the_worst_decides():
    result = classify_message(
        _plain(
            _bounce(
                "Permanent",
                "General",
                _rcpt("full@example.net", "5.2.2", "smtp; 552 5.2.2 mailbox full"),
                _rcpt("gone@example.org", "5.1.1", "smtp; 550 5.1.1 user unknown"),
            )
        )
    )
    kinds = {r.address: r.kind for r in result.recipients}
    assert kinds == {"full@example.net": BounceKind.SOFT, "gone@example.org": BounceKind.HARD}
    assert (result.kind, result.status) == (BounceKind.HARD, "5.1.1")


def test_permanent_general_with_a_policy_status_and_no_words_is_soft_as_by_webhook():
    entry = _rcpt("ok@example.org", "5.7.1", "smtp; 550 5.7.1 Message rejected")
    result = classify_message(_plain(_bounce("Permanent", "General", entry)))
    assert result.kind == BounceKind.SOFT, result.reason
    entry = _rcpt("gone@example.org", "5.0.0", "smtp; 550 5.0.0 Message rejected")
    assert classify_message(_plain(_bounce("Permanent", "General", entry))).kind == BounceKind.HARD


def test_unsubscribed_recipient_is_not_a_bounce():
    result = classify_message(
        _plain(_bounce("Permanent", "UnsubscribedRecipient", _rcpt("left@example.org")))
    )
    assert result.kind == BounceKind.NOT_BOUNCE


@pytest.mark.parametrize("wrap", [_plain, _enveloped])
def test_complaint(wrap):
    notification = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "angry@example.org"}],
            "complaintFeedbackType": "abuse",
            "timestamp": "2026-11-30T10:00:00.000Z",
            "feedbackId": "0102018c-feed-0002",
        },
        "mail": _MAIL,
    }
    result = classify_message(wrap(notification))
    assert result.kind == BounceKind.COMPLAINT
    assert [r.address for r in result.recipients] == ["angry@example.org"]
    notification["complaint"]["complaintFeedbackType"] = "not-spam"  # type: ignore[index]
    assert classify_message(wrap(notification)).kind == BounceKind.NOT_BOUNCE


@pytest.mark.parametrize("wrap", [_plain, _enveloped])
def test_delivery_and_event_publishing_delay(wrap):
    delivery = {
        "eventType": "Delivery",
        "delivery": {
            "timestamp": "2026-11-30T09:15:03.000Z",
            "recipients": ["fine@example.org"],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "b12-34.smtp-out.eu-west-1.amazonses.example",
        },
        "mail": _MAIL,
    }
    result = classify_message(wrap(delivery))
    assert (result.kind, result.status) == (BounceKind.DELIVERED, "2.6.0")
    assert [r.address for r in result.recipients] == ["fine@example.org"]
    delay = {
        "eventType": "DeliveryDelay",
        "deliveryDelay": {
            "delayType": "MailboxFull",
            "delayedRecipients": [
                {"emailAddress": "busy@example.net", "status": "4.2.2", "diagnosticCode": "452"}
            ],
        },
        "mail": _MAIL,
    }
    result = classify_message(wrap(delay))
    assert (result.kind, result.status) == (BounceKind.DELAYED, "4.2.2")


# --- what is not an SES notification stays as before ---------------------------------


def test_a_person_mentioning_notification_type_is_not_read_as_one():
    body = (
        'Hi, our SES hook gets {"notificationType": "Bounce"} for every mail, '
        "with bounceType Permanent. Any idea why?\n"
    )
    result = classify_message(_mail(body, subject="Question about SES"))
    assert result.kind == BounceKind.NOT_BOUNCE
    assert not result.reason.startswith("ses-mail")


@pytest.mark.parametrize(
    "notification",
    [
        {"notificationType": "Bounce", "bounce": {"bounceType": "Permanent"}, "mail": _MAIL},
        {"notificationType": "Bounce", "bounce": "Permanent", "mail": _MAIL},
        {
            "notificationType": "Bounce",
            "bounce": {"bounceType": "Permanent", "bouncedRecipients": []},
        },
        {"notificationType": "Open", "open": {}, "mail": _MAIL},
        {"notificationType": ["Bounce"], "mail": _MAIL},
        {"Type": "Notification", "Message": "not json"},
        {"Type": "Notification", "Message": {"notificationType": "Bounce"}},
    ],
)
def test_json_without_the_structure_is_not_read_as_a_notification(notification):
    result = classify_message(_mail(json.dumps(notification)))
    assert not result.reason.startswith("ses-mail"), result.reason
    assert not result.failed


@pytest.mark.parametrize(
    "body",
    [
        "{" * 200_000,
        '{"notificationType": ' + "[" * 100_000,
        '{"notificationType": "Bounce", "bounce": {"bounceType": "Permanent", '
        '"bouncedRecipients": [' + '{"emailAddress": 1},' * 50_000 + '{}]}, "mail": {}}',
        '{"notificationType": "Bounce"' + " " * 2_000_000 + "}",
    ],
)
def test_hostile_json_never_raises(body):
    result = classify_message(_mail(body))
    assert not result.failed, result.failed


def test_many_recipients_are_capped():
    from bounce_tracker.classify.dsn import MAX_RECIPIENT_RECORDS

    recipients = [_rcpt(f"u{i}@example.org", "5.1.1") for i in range(MAX_RECIPIENT_RECORDS + 5)]
    result = classify_message(_plain(_bounce("Permanent", "NoEmail", *recipients)))
    assert len(result.recipients) == MAX_RECIPIENT_RECORDS
    assert result.extra.get("recipients_truncated") == "true"


def test_the_hard_subtypes_are_the_esp_webhooks():
    from bounce_tracker.receiving import esp

    assert SES_HARD_SUBTYPES == esp._SES_HARD_SUBTYPES
