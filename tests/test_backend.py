import logging
import re
import smtplib
from email import message_from_bytes
from typing import ClassVar

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection, send_mail
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bounce_tracker.core.addresses import InvalidAddressError, InvalidMessageError, parse_address
from bounce_tracker.core.signals import recipient_suppressed
from bounce_tracker.models import EmailAddressTracker, SuppressionReason
from bounce_tracker.policy import Verdict
from bounce_tracker.sending.backend import BounceTrackingBackend
from tests.smtp_sink import SmtpSink

pytestmark = pytest.mark.django_db

TOKEN_SENDER = r"^bounces\+[a-z2-7]{26}@bounces\.example\.com$"


def tracker(address):
    return EmailAddressTracker.objects.for_email(address).get()


def sent_to(address):
    return [m for m in mail.outbox if m.recipients() == [address]]


def test_each_recipient_gets_one_copy_with_its_own_verp_envelope_sender():
    count = send_mail("Hi", "Body", "news@example.com", ["a@example.com", "b@example.com"])

    assert count == 1
    assert len(mail.outbox) == 2
    senders = {m.recipients()[0]: m.from_email for m in mail.outbox}
    assert (
        senders["a@example.com"] == f"{tracker('a@example.com').encoded_from}@bounces.example.com"
    )
    assert (
        senders["b@example.com"] == f"{tracker('b@example.com').encoded_from}@bounces.example.com"
    )
    assert senders["a@example.com"] != senders["b@example.com"]
    for sender in senders.values():
        assert re.match(TOKEN_SENDER, sender)


def test_visible_headers_stay_as_written_and_bcc_appears_nowhere():
    message = EmailMultiAlternatives(
        "Newsletter",
        "text body",
        '"News Desk" <news@example.com>',
        to=['"Ålice" <alice@example.com>', "carol@example.com"],
        cc=["dave@example.com"],
        bcc=["eve@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Campaign": "42", "List-Unsubscribe": "<https://example.com/u>"},
    )
    message.attach_alternative("<p>html body</p>", "text/html")
    message.attach("report.txt", "attachment text", "text/plain")
    original = message_from_bytes(message.message().as_bytes())  # what Django alone would send
    message.send()

    assert sorted(parse_address(m.recipients()[0]) for m in mail.outbox) == [
        "alice@example.com",
        "carol@example.com",
        "dave@example.com",
        "eve@example.com",
    ]
    for copy in mail.outbox:
        rendered = message_from_bytes(copy.message().as_bytes())
        for header in ("From", "To", "Cc", "Reply-To", "Subject", "X-Campaign", "List-Unsubscribe"):
            assert rendered.get_all(header) == original.get_all(header), header
        assert "news@example.com" in rendered["From"]
        assert "alice@example.com" in rendered["To"]
        assert "carol@example.com" in rendered["To"]
        assert rendered["Cc"] == "dave@example.com"
        assert rendered["Bcc"] is None
        assert b"eve@example.com" not in copy.message().as_bytes()
        assert "bounces.example.com" not in str(rendered["From"])
        payloads = [part.get_content_type() for part in rendered.walk()]
        assert "text/html" in payloads
        assert any(part.get_filename() == "report.txt" for part in rendered.walk())


def test_a_message_with_only_bcc_recipients_gets_no_to_header():
    EmailMessage(
        "Hidden", "Body", "news@example.com", bcc=["x@example.com", "y@example.com"]
    ).send()

    assert len(mail.outbox) == 2
    for copy in mail.outbox:
        rendered = copy.message()
        assert rendered["To"] is None
        assert b"x@example.com" not in rendered.as_bytes()
        assert b"y@example.com" not in rendered.as_bytes()


def test_explicit_from_and_to_headers_are_kept():
    EmailMessage(
        "Hi",
        "Body",
        "envelope@example.com",
        to=["a@example.com"],
        headers={"From": "Display <shown@example.com>", "To": "Everyone <list@example.com>"},
    ).send()
    rendered = mail.outbox[0].message()
    assert rendered["From"] == "Display <shown@example.com>"
    assert rendered["To"] == "Everyone <list@example.com>"
    assert rendered.get_all("To") == ["Everyone <list@example.com>"]


def test_recipients_are_deduplicated_case_insensitively_across_to_cc_and_bcc():
    EmailMessage(
        "Hi",
        "Body",
        "news@example.com",
        to=["Alice@Example.com"],
        cc=["alice@example.com"],
        bcc=["ALICE@EXAMPLE.COM"],
    ).send()
    assert len(mail.outbox) == 1
    assert EmailAddressTracker.objects.count() == 1
    assert tracker("alice@example.com").msg_count == 1


def test_counters_count_accepted_copies_and_first_email_is_set_once():
    before = timezone.now()
    send_mail("One", "Body", "news@example.com", ["a@example.com"])
    first = tracker("a@example.com")
    send_mail("Two", "Body", "news@example.com", ["A@example.com"])
    second = tracker("a@example.com")

    assert second.msg_count == 2
    assert before <= first.first_email == second.first_email <= second.last_email
    assert second.last_email >= first.last_email


def test_one_batch_of_several_messages_counts_every_copy():
    connection_ = get_connection()
    messages = [
        EmailMessage(f"M{i}", "Body", "n@example.com", ["a@example.com", "b@example.com"])
        for i in range(3)
    ]
    assert connection_.send_messages(messages) == 3
    assert tracker("a@example.com").msg_count == 3
    assert tracker("b@example.com").msg_count == 3


def test_a_hard_bounced_address_is_not_sent_to_and_the_message_still_reaches_the_others():
    send_mail("Warm-up", "Body", "n@example.com", ["dead@example.com"])
    tracker("dead@example.com").suppress(SuppressionReason.HARD_BOUNCE, "5.1.1 user unknown")
    mail.outbox.clear()

    count = send_mail("Hi", "Body", "n@example.com", ["dead@example.com", "live@example.com"])

    assert count == 1
    assert [m.recipients() for m in mail.outbox] == [["live@example.com"]]
    assert tracker("dead@example.com").msg_count == 1


def test_a_message_whose_every_recipient_is_suppressed_counts_as_not_sent():
    EmailAddressTracker.objects.create(
        email="dead@example.com", encoded_from="bounces+dead", suppressed_reason="complaint"
    )
    assert send_mail("Hi", "Body", "n@example.com", ["dead@example.com"]) == 0
    assert mail.outbox == []


def test_ignore_bounces_sends_to_a_suppressed_address():
    EmailAddressTracker.objects.create(
        email="vip@example.com",
        encoded_from="bounces+vip",
        suppressed_reason="hard",
        ignore_bounces=True,
    )
    assert send_mail("Hi", "Body", "n@example.com", ["vip@example.com"]) == 1
    assert mail.outbox[0].from_email == "bounces+vip@bounces.example.com"


def test_suppressed_recipients_fire_the_signal_and_are_logged_not_printed(caplog, capsys):
    EmailAddressTracker.objects.create(
        email="dead@example.com",
        encoded_from="bounces+dead",
        suppressed_reason="hard",
        suppressed_detail="5.1.1",
    )
    received = []

    def receiver(sender, tracker, message, verdict, observe_only, **kwargs):
        received.append((tracker.email, message.subject, verdict.send, observe_only))

    recipient_suppressed.connect(receiver)
    try:
        with caplog.at_level(logging.INFO, logger="bounce_tracker"):
            send_mail("Subject", "Body", "n@example.com", ["dead@example.com"])
    finally:
        recipient_suppressed.disconnect(receiver)

    assert received == [("dead@example.com", "Subject", False, False)]
    assert any("Suppressed dead@example.com" in r.getMessage() for r in caplog.records)
    assert capsys.readouterr() == ("", "")


def test_a_failing_signal_receiver_never_breaks_sending(caplog):
    EmailAddressTracker.objects.create(
        email="dead@example.com", encoded_from="bounces+dead", suppressed_reason="hard"
    )

    def broken_receiver(**kwargs):
        raise RuntimeError("receiver bug")

    recipient_suppressed.connect(broken_receiver)
    try:
        count = send_mail("S", "B", "n@example.com", ["dead@example.com", "ok@example.com"])
    finally:
        recipient_suppressed.disconnect(broken_receiver)
    assert count == 1
    assert any("receiver" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_observe_only_sends_everything_but_reports_what_it_would_suppress(caplog):
    EmailAddressTracker.objects.create(
        email="dead@example.com", encoded_from="bounces+dead", suppressed_reason="hard"
    )
    received = []

    def receiver(**kwargs):
        received.append(kwargs)

    recipient_suppressed.connect(receiver)
    try:
        with (
            override_settings(
                BOUNCE_TRACKER={
                    "BOUNCE_DOMAIN": "bounces.example.com",
                    "BACKEND": "django.core.mail.backends.locmem.EmailBackend",
                    "OBSERVE_ONLY": True,
                }
            ),
            caplog.at_level(logging.INFO, logger="bounce_tracker"),
        ):
            assert send_mail("S", "B", "n@example.com", ["dead@example.com"]) == 1
    finally:
        recipient_suppressed.disconnect(receiver)
    assert len(mail.outbox) == 1
    assert received[0]["observe_only"] is True
    assert any("Would suppress" in r.getMessage() for r in caplog.records)
    assert tracker("dead@example.com").msg_count == 1


def never_to_example_org(tracker, message):
    if tracker.email.endswith("@example.org"):
        return Verdict.suppress("example.org is closed")
    return Verdict.allow()


def test_the_policy_is_swappable_by_dotted_path():
    with override_settings(
        BOUNCE_TRACKER={
            "BOUNCE_DOMAIN": "bounces.example.com",
            "BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "POLICY": "tests.test_backend.never_to_example_org",
        }
    ):
        send_mail("S", "B", "n@example.com", ["a@example.org", "b@example.com"])
    assert [m.recipients() for m in mail.outbox] == [["b@example.com"]]


@pytest.mark.parametrize(
    ("kwargs", "error", "problem"),
    [
        ({"to": ["a@example.com\r\nBcc: x@example.com"]}, InvalidAddressError, "line break"),
        ({"to": ["no-at-sign"]}, InvalidAddressError, "no '@domain'"),
        ({"to": ["x" * 250 + "@example.com"]}, InvalidAddressError, "254 octets"),
        ({"to": []}, InvalidMessageError, "no recipients"),
        (
            {"to": ["a@example.com"], "subject": "Hi\r\nBcc: x@example.com"},
            InvalidMessageError,
            "Subject",
        ),
        ({"to": ["a@example.com"], "headers": {"X-Evil": "a\nb"}}, InvalidMessageError, "X-Evil"),
        (
            {"to": ["a@example.com"], "from_email": "n@example.com\nBcc: x@example.com"},
            InvalidMessageError,
            "line break",
        ),
    ],
)
def test_bad_input_raises_a_clear_error_before_anything_is_sent(kwargs, error, problem):
    good = EmailMessage("Good", "Body", "n@example.com", ["first@example.com"])
    params = {"subject": "S", "body": "B", "from_email": "n@example.com", **kwargs}
    bad = EmailMessage(**params)
    with pytest.raises(error, match=problem):
        get_connection().send_messages([good, bad])
    assert mail.outbox == []
    assert not EmailAddressTracker.objects.exists()


def test_display_name_recipients_work():
    send_mail("S", "B", "n@example.com", ['"Smith, Ann" <Ann@Example.com>'])
    assert mail.outbox[0].recipients() == ['"Smith, Ann" <Ann@Example.com>']
    assert tracker("ann@example.com").msg_count == 1


def test_an_empty_list_of_messages_sends_nothing():
    assert get_connection().send_messages([]) == 0


class FlakyBackend(BaseEmailBackend):
    """Accepts the first two copies, refuses the third and raises on the fourth."""

    calls = 0

    def send_messages(self, email_messages):
        FlakyBackend.calls += 1
        if FlakyBackend.calls == 3:
            return 0
        if FlakyBackend.calls == 4:
            raise ConnectionError("relay went away")
        return len(email_messages)


@pytest.fixture
def flaky_backend():
    FlakyBackend.calls = 0
    return BounceTrackingBackend(backend="tests.test_backend.FlakyBackend")


def four_recipient_message():
    return EmailMessage(
        "S",
        "B",
        "n@example.com",
        ["a@example.com", "b@example.com", "c@example.com", "d@example.com"],
    )


def test_when_the_inner_backend_raises_the_accepted_copies_are_counted_then_it_re_raises(
    flaky_backend,
):
    with pytest.raises(ConnectionError):
        flaky_backend.send_messages([four_recipient_message()])
    counts = dict(EmailAddressTracker.objects.values_list("email", "msg_count"))
    assert counts == {
        "a@example.com": 1,
        "b@example.com": 1,
        "c@example.com": 0,
        "d@example.com": 0,
    }


def test_fail_silently_swallows_the_inner_error_and_returns_what_was_sent():
    FlakyBackend.calls = 0
    backend = BounceTrackingBackend(fail_silently=True, backend="tests.test_backend.FlakyBackend")
    assert backend.send_messages([four_recipient_message()]) == 1
    assert (backend.fail_silently, backend.inner.fail_silently) == (True, False)
    assert EmailAddressTracker.objects.get(email="b@example.com").msg_count == 1


def test_keyword_arguments_override_settings_and_the_rest_reach_the_inner_backend():
    backend = BounceTrackingBackend(
        bounce_domain="other.example.net",
        backend="django.core.mail.backends.smtp.EmailBackend",
        host="mail.example.net",
        port=2525,
        timeout=3,
    )
    assert backend.tracker_settings.bounce_domain == "other.example.net"
    assert backend.inner.host == "mail.example.net"
    assert backend.inner.port == 2525
    assert backend.inner.timeout == 3


def test_wrapping_itself_is_refused():
    with pytest.raises(ImproperlyConfigured, match=r"E005"):
        BounceTrackingBackend(backend="bounce_tracker.backend.BounceTrackingBackend")


def test_a_missing_bounce_domain_is_refused_when_the_backend_is_built():
    with override_settings(BOUNCE_TRACKER={}), pytest.raises(ImproperlyConfigured, match="E001"):
        get_connection()


def test_open_close_and_context_manager_delegate_to_the_inner_backend():
    class Recording(LocmemBackend):
        events: ClassVar[list[str]] = []

        def open(self):
            self.events.append("open")
            return True

        def close(self):
            self.events.append("close")

    backend = BounceTrackingBackend(backend="django.core.mail.backends.locmem.EmailBackend")
    backend.inner = Recording()
    with backend:
        pass
    assert Recording.events == ["open", "close"]


@pytest.mark.parametrize("recipients", [1, 100, 1000, 10_000])
def test_queries_per_batch_do_not_grow_with_the_number_of_known_recipients(recipients):
    addresses = [f"user{i}@example.com" for i in range(recipients)]
    backend = get_connection()
    backend.send_messages([EmailMessage("Warm", "B", "n@example.com", bcc=addresses)])
    message = EmailMessage("Steady", "B", "n@example.com", bcc=addresses)
    with CaptureQueriesContext(connection) as queries:
        assert backend.send_messages([message]) == 1
    # One SELECT of the tracker rows, one UPDATE of the counters.
    assert len(queries) == 2, [q["sql"][:80] for q in queries]
    assert len(mail.outbox) == 2 * recipients


@pytest.mark.parametrize("recipients", [1, 100, 1000])
def test_queries_for_new_recipients_are_bounded_by_the_database_insert_batch(recipients):
    addresses = [f"new{i}@example.com" for i in range(recipients)]
    with CaptureQueriesContext(connection) as queries:
        get_connection().send_messages([EmailMessage("S", "B", "n@example.com", bcc=addresses)])
    inserts = [q for q in queries if q["sql"].lstrip().upper().startswith("INSERT")]
    # SELECT, INSERT(s), SELECT of the new rows, UPDATE. SQLite caps a statement at 999
    # parameters, so it needs one INSERT per 71 rows; MariaDB and PostgreSQL need one.
    fields = [f for f in EmailAddressTracker._meta.concrete_fields if not f.primary_key]
    rows = [EmailAddressTracker(email=a) for a in addresses]
    batch = connection.ops.bulk_batch_size(fields, rows) or recipients
    assert len(inserts) == -(-recipients // batch)
    assert len(queries) == 3 + len(inserts)
    assert EmailAddressTracker.objects.filter(msg_count=1).count() == recipients


def test_over_real_smtp_the_envelope_has_the_verp_sender_and_one_recipient():
    with (
        SmtpSink() as sink,
        override_settings(
            BOUNCE_TRACKER={
                "BOUNCE_DOMAIN": "bounces.example.com",
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            },
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=sink.port,
        ),
    ):
        sink.state.reject.add("gone@example.com")
        count = EmailMessage(
            "Over SMTP",
            "Body",
            "News <news@example.com>",
            to=["a@example.com", "gone@example.com"],
            bcc=["hidden@example.com"],
        ).send()
    # gone@ was refused at RCPT, as it would be in one multi-recipient message: the
    # others still get theirs and the send succeeds.
    assert count == 1
    envelopes = {t.rcpt_to[0]: t for t in sink.state.transactions}
    assert sorted(envelopes) == ["a@example.com", "hidden@example.com"]
    for address, transaction in envelopes.items():
        assert transaction.mail_from == (f"{tracker(address).encoded_from}@bounces.example.com")
        assert transaction.rcpt_to == [address]
        assert b"From: News <news@example.com>" in transaction.data
        assert b"hidden@example.com" not in transaction.data
    assert tracker("gone@example.com").msg_count == 0
    assert tracker("a@example.com").msg_count == 1


def test_over_real_smtp_a_message_whose_every_recipient_is_refused_raises_like_smtplib():
    with (
        SmtpSink() as sink,
        override_settings(
            BOUNCE_TRACKER={
                "BOUNCE_DOMAIN": "bounces.example.com",
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            },
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=sink.port,
        ),
    ):
        sink.state.reject.update({"gone@example.com", "lost@example.com"})
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send_mail("S", "B", "n@example.com", ["gone@example.com", "lost@example.com"])
        assert sorted(refused.value.recipients) == ["gone@example.com", "lost@example.com"]
        assert send_mail("S", "B", "n@example.com", ["gone@example.com"], fail_silently=True) == 0
    assert sink.state.transactions == []


def test_all_copies_of_a_message_share_one_message_id_so_replies_thread():
    send_mail("S", "B", "n@example.com", ["a@example.com", "b@example.com", "c@example.com"])
    message_ids = {copy.message()["Message-ID"] for copy in mail.outbox}
    assert len(message_ids) == 1
    dates = {copy.message()["Date"] for copy in mail.outbox}
    assert len(dates) == 1
    send_mail("S", "B", "n@example.com", ["a@example.com"])
    assert mail.outbox[-1].message()["Message-ID"] not in message_ids


def test_a_message_id_given_by_the_caller_is_kept():
    EmailMessage(
        "S",
        "B",
        "n@example.com",
        ["a@example.com", "b@example.com"],
        headers={"Message-ID": "<campaign-7@example.com>"},
    ).send()
    assert [c.message().get_all("Message-ID") for c in mail.outbox] == [
        ["<campaign-7@example.com>"],
        ["<campaign-7@example.com>"],
    ]


def test_an_explicit_to_header_is_kept_even_with_only_bcc_recipients():
    EmailMessage(
        "S", "B", "n@example.com", bcc=["x@example.com"], headers={"To": "undisclosed-recipients:;"}
    ).send()
    assert mail.outbox[0].message().get_all("To") == ["undisclosed-recipients:;"]


def test_keyword_overrides_reach_the_default_policy(settings):
    settings.BOUNCE_TRACKER = {}
    backend = BounceTrackingBackend(
        bounce_domain="bounces.example.net",
        backend="django.core.mail.backends.locmem.EmailBackend",
        soft_bounce_limit=1,
    )
    now = timezone.now()
    EmailAddressTracker.objects.create(
        email="soft@example.com", encoded_from="bounces+soft", last_bounce=now
    )
    assert (
        backend.send_messages(
            [EmailMessage("S", "B", "n@example.com", ["soft@example.com", "ok@example.com"])]
        )
        == 1
    )
    assert [m.recipients() for m in mail.outbox] == [["ok@example.com"]]
    assert mail.outbox[0].from_email.endswith("@bounces.example.net")


def test_a_non_string_recipient_is_a_clear_error():
    with pytest.raises(InvalidAddressError, match="not a string"):
        get_connection().send_messages([EmailMessage("S", "B", "n@example.com", [["a@x.com"]])])
