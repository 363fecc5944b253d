"""Unit tests of the classifier: the hard/soft decision, the report parsers, the
message-level verdicts, and its behaviour on hostile input.

Every message here is a small one written for this file; the corpus of realistic
bounces lives in ``tests/fixtures/bounces`` (see ``test_classify_fixtures.py``).
"""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounce_tracker.classify import Classification, classify_message
from bounce_tracker.classify import classifier as classify_module
from bounce_tracker.classify.diagnosis import (
    basic_codes,
    enhanced_codes,
    failure_kind,
    normalize_status,
)
from bounce_tracker.classify.dsn import (
    MAX_RECIPIENT_RECORDS,
    field_address,
    parse_report_fields,
    strip_type,
)
from bounce_tracker.classify.mime import decode_header_value
from bounce_tracker.core.kinds import BounceKind

HARD, SOFT = BounceKind.HARD, BounceKind.SOFT
VERP = "bounces+k3q9v0c2m4x8z1w7b5n6t0r2ya@bounces.example.com"
ORIGINAL = f"""Return-Path: <{VERP}>
From: Example Shop <news@shop.example>
To: {{rcpt}}
Subject: Spring offers
Message-ID: <offer-42@shop.example>
Content-Type: text/plain; charset=utf-8

Our spring catalogue is here. If your mailbox is full, sorry!
"""


def _dsn(
    *records: str, text: str = "The mail system could not deliver your message.", **kw
) -> bytes:
    """A multipart/report DSN with the given per-recipient blocks."""
    subject = kw.get("subject", "Undelivered Mail Returned to Sender")
    sender = kw.get("sender", "MAILER-DAEMON@mx.example.net (Mail Delivery System)")
    rcpt = kw.get("rcpt", "alice@example.org")
    blocks = "\n".join(records)
    return f"""Return-Path: <>
From: {sender}
To: {VERP}
Subject: {subject}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain; charset=us-ascii

{text}

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 4XYZ

{blocks}
--BOUNDARY
Content-Type: message/rfc822

{ORIGINAL.format(rcpt=rcpt)}
--BOUNDARY--
""".encode()


def _record(rcpt: str, action: str, status: str, diagnostic: str = "") -> str:
    lines = [f"Final-Recipient: rfc822; {rcpt}", f"Action: {action}", f"Status: {status}"]
    if diagnostic:
        lines.append(f"Diagnostic-Code: smtp; {diagnostic}")
    return "\n".join(lines) + "\n"


def _plain(
    body: str, *, subject: str, sender: str = "MAILER-DAEMON@mx.example.net", **headers: str
) -> bytes:
    extra = "".join(f"{name.replace('_', '-')}: {value}\n" for name, value in headers.items())
    return (
        f"From: {sender}\nTo: {VERP}\nSubject: {subject}\n{extra}"
        f"Content-Type: text/plain; charset=utf-8\n\n{body}"
    ).encode()


# --- the hard/soft decision ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (
            "5.1.1",
            "550 5.1.1 <a@b.example>: Recipient address rejected: User unknown in local"
            " recipient table",
        ),
        ("5.1.1", "550-5.1.1 The email account that you tried to reach does not exist."),
        ("5.0.0", "550 5.0.0 <a@b.example>... User unknown"),
        (None, "Sorry, no mailbox here by that name. (#5.1.1)"),
        (None, "550 Requested action not taken: mailbox unavailable"),
        ("5.5.0", "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)"),
        (
            "5.1.10",
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        ),
        ("5.4.1", "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)"),
        ("5.0.0", "554 delivery error: dd This user doesn't have a example.com account"),
        (
            "5.0.0",
            "Host or domain name not found. Name service error for name=nx.example type=A:"
            " Host not found",
        ),
        ("5.1.10", "556 5.1.10 Domain nullmx.example does not accept mail (nullMX)"),
        (None, "Unrouteable address"),
        (None, "Sorry, I couldn't find any host named nohost.example. (#5.1.2)"),
        ("5.1.6", "550 5.1.6 recipient no longer on server"),
        (None, "551 User not local; please try <a@new.example>"),
        ("5.2.1", "550 5.2.1 This account has been closed permanently"),
        ("5.7.1", "550 5.7.1 No such user!"),
        ("5.0.0", "550 Benutzer unbekannt"),
        ("5.0.0", "User a (a@b.example) not listed in Domino Directory"),
        ("5.1.1", "550 5.1.1 Not our customer"),
        # Issue 17's convention: disabled without a word that it is temporary is hard
        # (these two were soft before it).
        ("5.2.1", "550 5.2.1 The email account that you tried to reach is disabled."),
        (
            "5.0.0",
            "554 dd Sorry your message cannot be delivered. This mailbox is disabled (554.30).",
        ),
    ],
)
def test_failure_kind_says_hard_when_the_address_is_dead(status, text):
    kind, rule = failure_kind(status, text)
    assert kind == HARD, rule


@pytest.mark.parametrize(
    ("status", "text"),
    [
        ("5.2.2", "552-5.2.2 The email account that you tried to reach is over quota."),
        ("5.1.1", "550 5.1.1 <a@b.example>: Recipient address rejected: Mailbox full"),
        (None, "The users mailfolder is over the allowed quota (size). (#5.2.2)"),
        (
            "5.2.1",
            "550 5.2.1 The email account that you tried to reach is temporarily disabled.",
        ),
        ("5.2.1", "550 5.2.1 The email account that you tried to reach is suspended."),
        (
            "5.7.1",
            "550-5.7.1 Our system has detected that this message is likely unsolicited mail.",
        ),
        (
            "5.7.1",
            "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        ),
        ("5.7.1", "554 5.7.1 <a@b.example>: Relay access denied"),
        (
            "5.7.26",
            "550-5.7.26 Unauthenticated email is not accepted due to the domain's DMARC policy",
        ),
        ("5.3.4", "552 5.3.4 Error: message file too big"),
        ("4.7.0", "421 4.7.0 [TSS04] Messages temporarily deferred due to user complaints"),
        ("5.4.6", "mail for example.org loops back to myself"),
        ("5.4.14", "554 5.4.14 Hop count exceeded - possible mail loop"),
        ("4.4.1", "connect to mx.example.org[192.0.2.7]:25: Connection timed out"),
        (
            "5.1.8",
            "553 5.1.8 <s@shop.example>... Domain of sender address s@shop.example does not exist",
        ),
        (None, "550 5.7.1 <x>: Helo command rejected: Host not found"),
        (
            "4.4.3",
            "Host or domain name not found. Name service error for name=x.example type=MX:"
            " Host not found, try again",
        ),
        (
            "4.1.1",
            "450 4.1.1 <a@b.example>: Recipient address rejected: User unknown in local"
            " recipient table",
        ),
        ("5.0.0", "550 5.0.0 Service unavailable"),
        (None, "550 Administrative prohibition"),
        (None, "550"),
        (None, ""),
    ],
)
def test_failure_kind_says_soft_for_every_other_failure(status, text):
    kind, rule = failure_kind(status, text)
    assert kind == SOFT, rule


def test_failure_kind_lets_text_win_over_a_contradicting_status():
    assert failure_kind("5.1.1", "550 5.1.1 user is over quota")[0] == SOFT
    assert failure_kind("5.7.1", "550 5.7.1 <a@b.example>: no such user here")[0] == HARD


def test_failure_kind_falls_back_to_the_status_code():
    assert failure_kind("5.1.1", "550 rejected") == (HARD, "status:5.1.1")
    assert failure_kind("5.1.2", "")[0] == HARD
    assert failure_kind("5.3.0", "")[0] == SOFT
    assert failure_kind("4.1.1", "")[0] == SOFT


def test_failure_kind_ignores_words_inside_addresses_and_urls():
    text = "550 5.1.1 <spam-blocked@example.org>: user unknown, see https://example.net/spam/policy"
    assert failure_kind("5.1.1", text)[0] == HARD


def test_a_4xx_reply_about_an_unknown_user_is_temporary_unless_a_5xx_follows():
    assert failure_kind("4.4.7", "450 4.1.1 user unknown")[0] == SOFT
    assert failure_kind("4.4.7", "550 5.1.1 user unknown")[0] == HARD


def test_enhanced_codes_skip_ip_addresses_versions_and_dates():
    assert enhanced_codes("host 10.5.1.1 said 550 5.1.1 no; exim 4.96.2; on 2.10.2024") == ["5.1.1"]
    assert enhanced_codes("#5.1.10 and 5.7.708.") == ["5.1.10", "5.7.708"]
    assert normalize_status("5.1.1 (bad destination mailbox)") == "5.1.1"
    assert normalize_status("failed") is None


def test_basic_codes_are_read_where_replies_are_quoted():
    assert basic_codes("host mx said: 550 no such user") == [550]
    assert basic_codes("<<< 452 4.2.2 Over quota") == [452]
    assert basic_codes("we retried 550 times") == []


# --- report field parsing ------------------------------------------------------------


def test_parse_report_fields_reads_blocks_case_insensitively_with_folding():
    report = parse_report_fields(
        "reporting-MTA: dns; mx.example.net\n\n"
        "Final-Recipient: RFC822; a@example.org\nACTION: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <a@example.org>:\n    Recipient address rejected\n\n"
        "Final-Recipient: rfc822; b@example.org\nAction: delayed\nStatus: 4.4.1\n"
    )
    assert report.per_message == {"reporting-mta": "dns; mx.example.net"}
    assert [r["final-recipient"] for r in report.recipients] == [
        "RFC822; a@example.org",
        "rfc822; b@example.org",
    ]
    assert report.recipients[0]["diagnostic-code"] == (
        "smtp; 550 5.1.1 <a@example.org>: Recipient address rejected"
    )


def test_parse_report_fields_splits_recipients_that_lack_a_blank_line():
    report = parse_report_fields(
        "Final-Recipient: rfc822; a@example.org\nAction: failed\n"
        "Final-Recipient: rfc822; b@example.org\nAction: failed\n"
    )
    assert len(report.recipients) == 2


def test_strip_type_and_field_address():
    assert strip_type("smtp; 550 5.1.1 x; y") == "550 5.1.1 x; y"
    assert strip_type("no type here; really") == "no type here; really"
    assert field_address("rfc822; <A@Example.org>") == "A@Example.org"
    assert field_address("rfc822;") is None


def test_decode_header_value_handles_encoded_words_and_raw_bytes():
    assert decode_header_value("=?utf-8?q?R=C3=A9ponse_automatique?= : test") == (
        "Réponse automatique : test"
    )
    assert decode_header_value("=?iso-8859-1?b?VW56dXN0ZWxsYmFy?=") == "Unzustellbar"
    assert decode_header_value("=?x-nonsense?q?abc?=") == "abc"


# --- standard DSNs -------------------------------------------------------------------


def test_dsn_user_unknown_is_hard_with_status_recipient_and_metadata():
    raw = _dsn(
        _record(
            "alice@example.org", "failed", "5.1.1", "550 5.1.1 <alice@example.org>: User unknown"
        )
    )
    result = classify_message(raw)
    assert result.kind == HARD
    assert result.status == "5.1.1"
    assert result.reporting_mta == "mx.example.net"
    assert result.original_message_id == "<offer-42@shop.example>"
    assert result.reason.startswith("dsn:")
    (recipient,) = result.recipients
    assert (recipient.address, recipient.kind, recipient.action) == (
        "alice@example.org",
        HARD,
        "failed",
    )
    assert recipient.diagnostic == "550 5.1.1 <alice@example.org>: User unknown"


def test_dsn_with_one_hard_recipient_is_hard_and_reports_that_recipients_status():
    raw = _dsn(
        _record("full@example.org", "failed", "5.2.2", "552 5.2.2 Mailbox full"),
        _record("gone@example.org", "failed", "5.1.1", "550 5.1.1 User unknown"),
    )
    result = classify_message(raw)
    assert result.kind == HARD
    assert result.status == "5.1.1"
    assert [r.kind for r in result.recipients] == [SOFT, HARD]


def test_dsn_never_names_the_verp_address_as_a_recipient():
    raw = _dsn(
        _record(VERP, "failed", "5.1.1", "550 5.1.1 user unknown"),
        _record("alice@example.org", "failed", "5.1.1", "550 5.1.1 user unknown"),
    )
    result = classify_message(raw)
    assert [r.address for r in result.recipients] == ["alice@example.org"]


def test_dsn_takes_the_specific_code_from_the_diagnostic_when_status_is_generic():
    raw = _dsn(
        _record("a@example.org", "failed", "5.0.0", "550 5.1.1 <a@example.org>... User unknown")
    )
    result = classify_message(raw)
    assert (result.kind, result.status) == (HARD, "5.1.1")


def test_dsn_failed_after_queue_expiry_with_a_4xx_status_is_soft_not_delayed():
    raw = _dsn(
        _record("a@example.org", "failed", "4.4.1", "connect to mx.example.org: Connection refused")
    )
    assert classify_message(raw).kind == SOFT


def test_dsn_delay_and_success_actions():
    delayed = classify_message(
        _dsn(_record("a@example.org", "delayed", "4.4.1"), subject="Delayed Mail")
    )
    assert delayed.kind == BounceKind.DELAYED
    for action in ("delivered", "relayed", "expanded"):
        result = classify_message(
            _dsn(_record("a@example.org", action, "2.0.0"), subject="Success")
        )
        assert result.kind == BounceKind.DELIVERED, action


def test_dsn_without_action_infers_it_from_the_status_class():
    record = "Final-Recipient: rfc822; a@example.org\nStatus: 5.1.1\n"
    assert classify_message(_dsn(record)).kind == HARD


def test_dsn_with_only_a_generic_status_listens_to_the_human_readable_part():
    text = (
        "Delivery has failed to these recipients or groups:\n\n"
        "a@example.org\nThe recipient's mailbox is full."
    )
    raw = _dsn(_record("a@example.org", "failed", "5.0.0"), text=text)
    result = classify_message(raw)
    assert result.kind == SOFT
    assert "report text" in result.reason


def test_a_dsn_is_a_bounce_even_though_it_carries_auto_submitted():
    raw = _dsn(_record("a@example.org", "failed", "5.1.1", "550 5.1.1 unknown user"))
    assert b"Auto-Submitted: auto-replied" in raw
    assert classify_message(raw).kind == HARD


def test_newsletter_text_inside_the_returned_message_does_not_decide():
    # The original says "mailbox is full"; the report itself only has a 5.1.1.
    raw = _dsn(
        _record("alice@example.org", "failed", "5.1.1"), text="Your message could not be delivered."
    )
    assert classify_message(raw).kind == HARD


# --- ARF complaints ------------------------------------------------------------------


def _arf(feedback_type: str | None) -> bytes:
    kind_line = f"Feedback-Type: {feedback_type}\n" if feedback_type else ""
    return f"""From: feedback@isp.example
To: {VERP}
Subject: Abuse report
MIME-Version: 1.0
Content-Type: multipart/report; report-type="feedback-report"; boundary="F"

--F
Content-Type: text/plain

This is an email abuse report.
--F
Content-Type: message/feedback-report

{kind_line}User-Agent: SomeFBL/1.0
Version: 1
Original-Rcpt-To: carol@example.org

--F
Content-Type: message/rfc822

{ORIGINAL.format(rcpt="carol@example.org")}
--F--
""".encode()


@pytest.mark.parametrize("feedback_type", ["abuse", "fraud", "virus", "other", None])
def test_arf_report_is_a_complaint_naming_the_recipient(feedback_type):
    result = classify_message(_arf(feedback_type))
    assert result.kind == BounceKind.COMPLAINT
    assert [r.address for r in result.recipients] == ["carol@example.org"]
    assert result.original_message_id == "<offer-42@shop.example>"
    assert result.status is None


def test_arf_not_spam_is_not_a_complaint():
    assert classify_message(_arf("not-spam")).kind == BounceKind.NOT_BOUNCE


# --- bounces without a DSN -----------------------------------------------------------


def test_qmail_bounce_names_the_recipient_and_never_the_verp_address():
    body = f"""Hi. This is the qmail-send program at mail.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<dave@example.org>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Return-Path: <{VERP}>
To: dave@example.org
Message-ID: <qm-1@shop.example>
Subject: Your mailbox is full of offers

Hello
"""
    result = classify_message(_plain(body, subject="failure notice"))
    assert result.kind == HARD
    assert result.status == "5.1.1"
    assert [r.address for r in result.recipients] == ["dave@example.org"]
    assert result.reporting_mta == "mail.example.net"
    assert result.original_message_id == "<qm-1@shop.example>"


def test_exim_bounce_with_two_recipients_gets_one_verdict_each():
    body = """This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  erin@example.org
    host mx.example.org [192.0.2.5]
    SMTP error from remote mail server after RCPT TO:<erin@example.org>:
    550 5.1.1 <erin@example.org>: Recipient address rejected: User unknown
  frank@example.org
    host mx.example.org [192.0.2.5]
    SMTP error from remote mail server after RCPT TO:<frank@example.org>:
    452 4.2.2 <frank@example.org>: Mailbox is full
"""
    raw = _plain(
        body,
        subject="Mail delivery failed: returning message to sender",
        X_Failed_Recipients="erin@example.org, frank@example.org",
    )
    result = classify_message(raw)
    assert result.kind == HARD
    by_address = {r.address: r for r in result.recipients}
    assert by_address["erin@example.org"].kind == HARD
    assert by_address["frank@example.org"].kind == SOFT
    assert by_address["frank@example.org"].status == "4.2.2"


def test_sendmail_bounce_without_dsn_ignores_our_side_of_the_transcript():
    body = """The original message was received at Mon, 3 Mar 2025 10:00:00 GMT

   ----- The following addresses had permanent fatal errors -----
<gina@example.org>
    (reason: 550 5.1.1 <gina@example.org>... User unknown)

   ----- Transcript of session follows -----
>>> MAIL From:<bounces+x@bounces.example.com> SIZE=900
<<< 250 2.1.0 <bounces+x@bounces.example.com>... Sender ok
>>> RCPT To:<gina@example.org>
<<< 550 5.1.1 <gina@example.org>... User unknown
"""
    result = classify_message(_plain(body, subject="Returned mail: see transcript for details"))
    assert result.kind == HARD
    assert [r.address for r in result.recipients] == ["gina@example.org"]


def test_exchange_text_ndr_and_domino_report():
    exchange = """Delivery has failed to these recipients or groups:

hank@example.org
The e-mail address you entered couldn't be found.

Diagnostic information for administrators:
#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##
"""
    result = classify_message(
        _plain(exchange, subject="Undeliverable: Spring offers", sender="postmaster@example.org")
    )
    assert (result.kind, result.status) == (HARD, "5.1.1")
    domino = """Your message

  Subject: Spring offers

was not delivered to:

  ivy@example.org

because:

  User ivy (ivy@example.org) not listed in Domino Directory
"""
    result = classify_message(_plain(domino, subject="DELIVERY FAILURE: User ivy not listed"))
    assert result.kind == HARD
    assert [r.address for r in result.recipients] == ["ivy@example.org"]


def test_text_delay_warnings_are_delayed():
    exim = """This message was created automatically by mail delivery software.
A message that you sent has not yet been delivered to one or more of its
recipients after more than 24 hours on the queue on mx.example.net.

  jack@example.org
    Delay reason: SMTP error from remote mail server after RCPT TO:<jack@example.org>:
    451 4.7.1 Greylisting in action, please come back later

No action is required on your part. Delivery attempts will continue for
some time, and this warning may be repeated at intervals if the message
remains undelivered. Eventually the mail delivery software will give up,
and when that happens, the message will be returned to you.
"""
    result = classify_message(_plain(exim, subject="Warning: message 1abc-000 delayed 24 hours"))
    assert result.kind == BounceKind.DELAYED
    sendmail = """    **********************************************
    **      THIS IS A WARNING MESSAGE ONLY      **
    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **
    **********************************************

The original message was received at Mon, 3 Mar 2025 10:00:00 GMT
<kate@example.org>... Deferred: Connection timed out with mx.example.org.
"""
    subject = "Warning: could not send message for past 4 hours"
    assert classify_message(_plain(sendmail, subject=subject)).kind == BounceKind.DELAYED


def test_text_bounce_falls_back_to_the_originals_recipient():
    body = """   ----- Transcript of session follows -----
550 lena... User unknown

   ----- Unsent message follows -----
Return-Path: <bounces+abc@bounces.example.com>
To: lena@example.org
Subject: hello

body
"""
    result = classify_message(_plain(body, subject="Returned mail: User unknown"))
    assert result.kind == HARD
    assert [r.address for r in result.recipients] == ["lena@example.org"]


def test_postmaster_and_bounce_addresses_are_never_recipients():
    body = f"""Your message could not be delivered to mike@example.org.
550 5.1.1 user unknown. Contact postmaster@example.org or MAILER-DAEMON@example.org.
Return path was {VERP}; also sentto-mike=example.org@bounces.example.com.
"""
    result = classify_message(_plain(body, subject="Undeliverable mail"))
    assert [r.address for r in result.recipients] == ["mike@example.org"]


def test_forwarded_text_bounce_is_found_inside_the_attachment():
    inner = _plain(
        "Sorry, we were unable to deliver your message to the following address.\n\n"
        "<nina@example.org>:\n550 5.1.1 recipient does not exist\n",
        subject="Failure Notice",
    ).decode()
    raw = f"""From: helpdesk@example.net
To: {VERP}
Subject: Fwd: Failure Notice
Content-Type: multipart/mixed; boundary="W"

--W
Content-Type: text/plain

FYI, see attached.
--W
Content-Type: message/rfc822

{inner}
--W--
""".encode()
    result = classify_message(raw)
    assert result.kind == HARD
    assert [r.address for r in result.recipients] == ["nina@example.org"]


# --- auto-replies and everything else ------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "headers"),
    [
        ("Re: Spring offers", {"Auto_Submitted": "auto-replied (vacation)"}),
        ("Thanks for your mail", {"X_Autoreply": "yes"}),
        ("Automatic reply: Spring offers", {}),
        ("Abwesenheitsnotiz: Spring offers", {}),
        ("Out of Office: Spring offers", {"Precedence": "auto_reply"}),
        ("On holiday", {"X_Auto_Response_Suppress": "All"}),
        ("Please verify your email address", {"Precedence": "junk"}),
    ],
)
def test_auto_replies(subject, headers):
    raw = _plain(
        "I'm away until Monday. No longer checking this inbox daily.",
        subject=subject,
        sender="olga@example.org",
        **headers,
    )
    result = classify_message(raw)
    assert result.kind == BounceKind.AUTO_REPLY, result.reason


def test_template_auto_reply_without_headers_is_recognised_by_its_wording():
    body = "Hello,\n\nI am out of the office until 12 March with limited access to email.\n"
    raw = _plain(body, subject="Spring offers", sender="Amy <amy@example.org>")
    assert classify_message(raw).kind == BounceKind.AUTO_REPLY
    # A person answering is not an auto-reply, even when away.
    body = "I'm out of the office right now, but please call me tomorrow about the order.\n"
    raw = _plain(body, subject="RE: Spring offers", sender="Ben <ben@example.org>")
    assert classify_message(raw).kind == BounceKind.NOT_BOUNCE


def test_leavers_and_helpdesk_acknowledgements_are_auto_replies_by_their_wording():
    body = "Please note I have left Example Corp. Please contact info@example.org instead.\n"
    raw = _plain(body, subject="I have left the company", sender="Pat <pat@example.org>")
    assert classify_message(raw).kind == BounceKind.AUTO_REPLY
    body = "Thank you for contacting us. Your ticket #12345 has been created.\n"
    raw = _plain(body, subject="Re: Spring offers", sender="Help <help@example.org>")
    assert classify_message(raw).kind == BounceKind.AUTO_REPLY


def test_a_person_forwarding_a_bounce_notice_is_not_a_bounce():
    body = "See below, my colleague's address changed to nia2@example.org.\n"
    raw = _plain(body, subject="Fwd: Undeliverable: Spring offers", sender="Nia <nia@example.org>")
    assert classify_message(raw).kind == BounceKind.NOT_BOUNCE


_FORWARDED_NDR = """From: Microsoft Outlook <postmaster@corp.example.org>
Sent: Monday, November 17, 2025 9:13 AM
To: news@shop.example
Subject: Undeliverable: Spring offers

Delivery has failed to these recipients or groups:

xavi@corp.example.org
The email address you entered couldn't be found.

Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'
"""


@pytest.mark.parametrize(
    ("subject", "block"),
    [
        ("FW: Undeliverable: Spring offers", "-----Original Message-----"),
        ("Fwd: Undeliverable: Spring offers", "---------- Forwarded message ---------"),
        ("Spring offers bounced", "Begin forwarded message:"),
    ],
)
def test_a_forward_whose_body_is_a_bounce_is_classified_by_that_bounce(subject, block):
    body = f"Please take this one off the list.\n\n{block}\n{_FORWARDED_NDR}"
    result = classify_message(_plain(body, subject=subject, sender="Dana <dana@shop.example>"))
    assert result.kind == BounceKind.HARD
    assert result.reason.startswith("forwarded inline")
    # The forwarded block's own To: (our sender) is never a recipient.
    assert [r.address for r in result.recipients] == ["xavi@corp.example.org"]


def test_a_reply_carrying_a_bounce_in_its_quoted_original_is_not_a_bounce():
    body = f"Why do I keep getting these?\n\n-----Original Message-----\n{_FORWARDED_NDR}"
    raw = _plain(body, subject="RE: Undeliverable: Spring offers", sender="dana@shop.example")
    assert classify_message(raw).kind == BounceKind.NOT_BOUNCE


def test_a_forward_of_a_message_that_is_no_bounce_is_not_a_bounce():
    body = (
        "FYI\n\n-----Original Message-----\nFrom: Bob <bob@example.org>\nSubject: meeting\n\n"
        "The room could not be found last time; user unknown at the desk.\n"
    )
    raw = _plain(body, subject="FW: meeting", sender="Dana <dana@shop.example>")
    assert classify_message(raw).kind == BounceKind.NOT_BOUNCE


def test_a_delay_warning_without_failure_words_is_delayed_not_auto_reply():
    body = (
        "Your message has not yet been delivered. The mail system will keep trying\n"
        "to deliver it for 3 more days. You do not need to resend your message.\n\n"
        "Recipient address: sam@vms.example.edu\n"
    )
    raw = _plain(
        body,
        subject="Delivery warning",
        sender="postmaster@vms.example.edu",
        Auto_Submitted="auto-generated",
    )
    result = classify_message(raw)
    assert result.kind == BounceKind.DELAYED
    assert [r.address for r in result.recipients] == ["sam@vms.example.edu"]


def test_a_sieve_notification_alone_is_not_an_auto_reply():
    raw = _plain(
        "Notification of new message.\n",
        subject="New mail",
        sender="owner@example.org",
        Auto_Submitted="auto-notified; owner-email=owner@example.org",
    )
    assert classify_message(raw).kind == BounceKind.NOT_BOUNCE


def test_human_reply_quoting_bounce_words_is_not_a_bounce():
    body = (
        "Hi,\n\nplease stop. My old address said 'user unknown' last year.\n\n"
        "> Our spring catalogue\n"
    )
    raw = _plain(body, subject="Re: Spring offers", sender="Paul <paul@example.org>")
    result = classify_message(raw)
    assert result.kind == BounceKind.NOT_BOUNCE


def test_read_receipts_and_plain_mail_are_not_bounces():
    mdn = f"""From: quinn@example.org
To: {VERP}
Subject: Read: Spring offers
Content-Type: multipart/report; report-type=disposition-notification; boundary="M"

--M
Content-Type: text/plain

Your message was read.
--M
Content-Type: message/disposition-notification

Final-Recipient: rfc822; quinn@example.org
Disposition: manual-action/MDN-sent-manually; displayed
--M--
""".encode()
    assert classify_message(mdn).kind == BounceKind.NOT_BOUNCE
    assert classify_message(b"").kind == BounceKind.NOT_BOUNCE


# --- never raises, bounded work --------------------------------------------------------

VALID_DSN = _dsn(
    _record("alice@example.org", "failed", "5.1.1", "550 5.1.1 <alice@example.org>: User unknown"),
    _record("bob@example.org", "delayed", "4.4.1", "connect to mx: Connection refused"),
)


def _assert_verdict(result: Classification) -> None:
    assert isinstance(result, Classification)
    assert isinstance(result.kind, BounceKind)
    # The catch-all is a safety net, not a code path: no input may reach it.
    assert not result.failed, result.extra.get("traceback")
    assert len(result.diagnostic) <= 1000
    assert len(result.recipients) <= MAX_RECIPIENT_RECORDS


def _mutate(raw: bytes, seed: int, operations: list[str]) -> bytes:
    rng = random.Random(seed)
    data = bytearray(raw)
    for operation in operations:
        if operation == "flip" and data:
            for _ in range(rng.randint(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif operation == "truncate" and data:
            del data[rng.randrange(len(data)) :]
        elif operation == "duplicate_headers":
            head, sep, body = bytes(data).partition(b"\n\n")
            data = bytearray(head + b"\n" + head + sep + body)
        elif operation == "nest":
            depth = rng.randint(1, 40)
            wrapper = b"Content-Type: message/rfc822\n\n" * depth
            data = bytearray(b"From: x@example.org\n" + wrapper + bytes(data))
        elif operation == "drop_lines":
            lines = bytes(data).split(b"\n")
            keep = [line for line in lines if rng.random() > 0.1]
            data = bytearray(b"\n".join(keep))
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_never_raise(raw):
    _assert_verdict(classify_message(raw))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**32),
    st.lists(
        st.sampled_from(["flip", "truncate", "duplicate_headers", "nest", "drop_lines"]),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_dsns_never_raise(seed, operations):
    _assert_verdict(classify_message(_mutate(VALID_DSN, seed, operations)))


def test_internal_errors_become_a_failed_verdict_not_a_silent_not_bounce(monkeypatch):
    def explode(raw: bytes) -> Classification:
        raise KeyError("boom")

    monkeypatch.setattr(classify_module, "_classify", explode)
    result = classify_message(VALID_DSN)
    assert (result.kind, result.reason) == (BounceKind.NOT_BOUNCE, "classifier failed: KeyError")
    assert result.failed == "KeyError: 'boom'"
    assert isinstance(result.error, KeyError)
    assert "explode" in result.extra["traceback"]


def _timed(raw: bytes) -> tuple[Classification, float]:
    start = time.perf_counter()
    result = classify_message(raw)
    return result, time.perf_counter() - start


def test_twenty_levels_of_nested_messages_return_quickly():
    raw = b"From: x@example.org\nSubject: nest\n"
    for level in range(20):
        raw += f"Content-Type: message/rfc822\n\nFrom: level{level}@example.org\n".encode()
    raw += b"\nbody\n"
    result, elapsed = _timed(raw)
    _assert_verdict(result)
    assert elapsed < 0.5


def test_thousands_of_nested_containers_do_not_exhaust_the_stack():
    raw = b"From: x@example.org\n" + b"Content-Type: message/rfc822\n\n" * 5000 + b"body\n"
    result, elapsed = _timed(raw)
    _assert_verdict(result)
    assert elapsed < 1


def test_ten_thousand_recipient_blocks_are_capped_and_fast():
    records = [
        _record(f"user{i}@example.org", "failed", "5.1.1", "550 5.1.1 user unknown")
        for i in range(10_000)
    ]
    result, elapsed = _timed(_dsn(*records))
    assert elapsed < 2
    assert result.kind == HARD
    assert len(result.recipients) == MAX_RECIPIENT_RECORDS
    assert result.extra == {"recipients_truncated": "true"}


def test_a_one_megabyte_header_line_is_harmless():
    raw = b"From: MAILER-DAEMON@example.net\nSubject: " + b"x" * 1_000_000 + b"\n\nhello\n"
    result, elapsed = _timed(raw)
    _assert_verdict(result)
    assert elapsed < 1
    quadratic = b'Content-Type: multipart/mixed; boundary="' + b";" * 1_000_000 + b"\n\nx\n"
    result, elapsed = _timed(quadratic)
    _assert_verdict(result)
    assert elapsed < 1


def test_html_without_closing_tags_is_linear():
    raw = (
        b"From: MAILER-DAEMON@example.net\nSubject: Undeliverable\nContent-Type: text/html\n\n"
        + b"<script>" * 200_000
    )
    result, elapsed = _timed(raw)
    _assert_verdict(result)
    assert elapsed < 1


def test_broken_mime_boundary_still_reads_the_report():
    raw = VALID_DSN.replace(b"--BOUNDARY--", b"").replace(
        b"--BOUNDARY\nContent-Type: message/rfc822", b"--BOUNDAR"
    )
    result = classify_message(raw)
    assert result.kind == HARD


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain; charset=x-unknown",
        "text/plain; charset=utf-7",
        "text/plain; charset=unknown-8bit",
        "text/plain; charset=zlib",
        "text/plain; charset=punycode",
        "text/plain; charset*=''",
        'text/plain; charset="',
    ],
)
def test_unknown_or_odd_charsets_are_decoded_leniently(content_type):
    raw = (
        f"From: MAILER-DAEMON@example.net\nSubject: Undeliverable\n"
        f"Content-Type: {content_type}\n\n".encode()
        + b"\xff\xfe+ADw- <rose@example.org>: 550 5.1.1 user unknown\n"
    )
    result = classify_message(raw)
    _assert_verdict(result)
    assert result.kind == HARD


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("base64", b"!!!not*base64@@@\nPDxAQD4+=====\n"),
        ("base64", b"U29ycnksIG5vIG1haWxib3ggaGVyZSBieSB0aGF0IG5hbWUuICgjNS4xLjEp"),
        ("quoted-printable", b"Sorry, no mailbox =XX=4 here =\n by that name. (#5.1.1)=\n"),
        ("x-uuencode", b"begin 644 x\n#86)C\n`\nend\n"),
    ],
)
def test_bad_transfer_encodings_never_raise(encoding, body):
    raw = (
        f"From: MAILER-DAEMON@example.net\nSubject: failure notice\n"
        f"Content-Transfer-Encoding: {encoding}\n\n"
    ).encode() + body
    _assert_verdict(classify_message(raw))


def test_classifier_imports_nothing_from_django():
    code = (
        "import sys, bounce_tracker.classify; "
        "print(sorted(m for m in sys.modules if m == 'email.policy' or m.startswith('django')))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    assert output.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("status", "text", "kind"),
    [
        ("5.7.1", "550 5.7.1 SPF record does not exist for example.com", BounceKind.SOFT),
        (
            "5.7.26",
            "550 5.7.26 Unauthenticated email is not accepted due to DMARC policy",
            BounceKind.SOFT,
        ),
        ("5.0.0", 'unrouteable mail domain "example.invalid"', BounceKind.HARD),
    ],
)
def test_sender_authentication_and_unroutable_domains(status, text, kind):
    assert failure_kind(status, text)[0] is kind
