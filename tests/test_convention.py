"""Issue 17's hard/soft convention (:mod:`bounce_tracker.classify.convention`), tested.

Every example quoted in the issue, the hard cases, the soft ones and a counter-example
for every hard rule (a policy or sender-side message that uses the same words), each
run twice: as an SMTP reply at send time (``classify_reply``) and inside a full DSN
built here (``Status`` + ``Diagnostic-Code``, through ``classify_message``). Then the
order of precedence itself. The examples are written from the issue's text, RFC 3463,
RFC 5321, RFC 7505 and vendors' published reply texts.
"""

from __future__ import annotations

import re

import pytest

from bounce_tracker.classify import classify_message
from bounce_tracker.classify.classifier import classify_reply
from bounce_tracker.classify.convention import (
    DEAD_ADDRESS,
    GENERIC_DEAD,
    MAILBOX_STATE,
    POLICY,
    SENDER_SIDE,
    TIERS,
    WEAK_DEAD,
    decide,
)
from bounce_tracker.classify.diagnosis import failure_kind, normalize_text
from bounce_tracker.core.kinds import BounceKind

HARD, SOFT = BounceKind.HARD, BounceKind.SOFT
VERP = "bounces+k3q9v0c2m4x8z1w7b5n6t0r2ya@bounces.example.com"
RCPT = "alice@example.org"


def _dsn(status: str, diagnostic: str) -> bytes:
    """A Postfix-style multipart/report DSN failing RCPT with ``status`` and ``diagnostic``."""
    return f"""Return-Path: <>
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {VERP}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain; charset=us-ascii

The mail system could not deliver your message.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {RCPT}
Action: failed
Status: {status}
Diagnostic-Code: smtp; {diagnostic}

--B
Content-Type: text/rfc822-headers

From: news@shop.example
To: {RCPT}
Subject: Spring offers

--B--
""".encode()


# (text, the Status a DSN would carry, expected kind). The text is what the SMTP
# server replied; a DSN carries it as Diagnostic-Code.
ISSUE_EXAMPLES = [
    # The three the issue says come out hard today.
    ("554 5.7.1 <alice@example.org>: Recipient address rejected: Access denied", "5.7.1", SOFT),
    ("550 5.7.1 We no longer accept mail from this network", "5.7.1", SOFT),
    (
        "454 4.7.0 TLS is required, but the server certificate could not be found",
        "4.7.0",
        SOFT,
    ),
    (
        "550 5.7.1 Delivery not authorized: client certificate could not be found",
        "5.7.1",
        SOFT,
    ),
]

HARD_EXAMPLES = [
    # (rule expected to decide, text, DSN status)
    (
        "user unknown",
        "550 5.1.1 <alice@example.org>: Recipient address rejected: User unknown in local"
        " recipient table",
        "5.1.1",
    ),
    ("no such user", "550 5.1.1 <alice@example.org>... No such user here", "5.1.1"),
    ("unknown user", "550 5.1.1 Invalid recipient <alice@example.org>", "5.1.1"),
    ("user unknown", "550 5.1.1 Requested action not taken: mailbox not found", "5.1.1"),
    ("user unknown", "550 5.7.1 The user does not exist", "5.7.1"),
    (
        "domain not found",
        "Host or domain name not found. Name service error for name=nx.example type=A:"
        " Host not found",
        "5.1.2",
    ),
    (
        "domain accepts no mail",
        "556 5.1.10 <alice@nullmx.example>: Recipient address rejected: Domain nullmx.example"
        " does not accept mail (nullMX)",
        "5.1.10",
    ),
    ("moved", "550 5.1.6 Recipient address has moved", "5.1.6"),
    ("moved", "551 User not local; please try <alice@new.example>", "5.1.6"),
    ("closed", "550 5.2.1 This account has been closed", "5.2.1"),
    ("closed", "550 x@example.org... User account expired", "5.0.0"),
    ("closed", "550 user has left the company", "5.0.0"),
    ("closed", "This address no longer accepts mail. (#5.2.1)", "5.2.1"),
    ("no such user", "550 User has no mailbox", "5.0.0"),
    ("unknown user", "550 The recipient is not a valid T-Mobile subscriber", "5.0.0"),
    ("unknown user", "550 Not our Customer", "5.0.0"),
    (
        "user unknown",
        "550 5.1.1 <alice@example.org>: Recipient address rejected: undeliverable address:"
        ' unknown user: "alice"',
        "5.1.1",
    ),
    ("closed", "550 5.1.1 The mailbox has been discontinued", "5.1.1"),
    ("disabled", "550 5.2.1 The email account that you tried to reach is disabled.", "5.2.1"),
    ("disabled", "554 5.2.1 This mailbox is deactivated", "5.2.1"),
    ("disabled", "550 5.2.1 The account has been disabled due to inactivity", "5.2.1"),
    ("disabled", "550 5.2.1 Account disabled for good", "5.2.1"),
    ("disabled", "550 5.0.0 The user's account has been deactivated", "5.0.0"),
    (
        "recipient not found",
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "5.1.10",
    ),
    (
        "access denied (directory-based edge blocking)",
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
        "5.4.1",
    ),
    ("not listed", "User alice not listed in Domino Directory", "5.1.1"),
    (
        "domain not found",
        "The domain nx.example couldn't be found. Check for typos or unnecessary spaces and try"
        " again. DNS Error: DNS type 'mx' lookup of nx.example responded with code NXDOMAIN",
        "5.0.0",
    ),
    ("unrecognized O/R name", "X.400: unable-to-transfer, unrecognised-OR-name", "5.0.0"),
    ("unrecognized O/R name", "Unable to transfer; diagnostic: Unrecognized O/R name", "5.0.0"),
    # Vendors' wording (fixtures name the documentation each comes from).
    ("user unknown", "550 User <nosuch> unknown", "5.0.0"),
    ("disabled", "Mailaddress is administrativly disabled. (#5.2.1)", "5.2.1"),
    ("disabled", "554 30 Sorry, This mailbox is disabled", "5.0.0"),
    ("no such user", "Sorry, no mailbox here by that name. vpopmail (#5.1.1)", "5.1.1"),
    (
        "domain not found",
        "No mail servers appear to exists for the recipients address.",
        "5.0.0",
    ),
    (
        "user unknown",
        "The e-mail account does not exist at the organization this message was sent to.",
        "5.1.1",
    ),
    ("user unknown (translated)", "550 5.1.1 Benutzer unbekannt", "5.1.1"),
    ("domain not found (translated)", "550 5.1.2 Domain existiert nicht", "5.1.2"),
    ("not found", "550 5.1.1 <alice@example.org>: could not be found", "5.1.1"),
    # "...and try again" is advice to the sender, not a temporary failure.
    (
        "not found",
        "550 The address could not be found. Please check the spelling and try again.",
        "5.0.0",
    ),
    ("does not exist", "550 5.0.0 <alice@example.org>: does not exist", "5.0.0"),
    ("does not exist", "550 Existiert nicht", "5.0.0"),
    ("no longer", "550 5.1.1 <alice@example.org>: no longer here", "5.1.1"),
    ("does not accept mail", "556 5.1.10 This domain does not accept mail", "5.1.10"),
    (
        "mailbox unavailable",
        "550 5.5.0 Requested action not taken: mailbox unavailable",
        "5.5.0",
    ),
    ("recipient rejected", "550 5.1.1 <alice@example.org> recipient rejected", "5.1.1"),
]

SOFT_EXAMPLES = [
    ("552 5.2.2 <alice@example.org>: Mailbox full", "5.2.2"),
    ("552 5.2.2 The email account that you tried to reach is over quota.", "5.2.2"),
    ("550 5.1.1 <alice@example.org>: user unknown; mailbox full", "5.1.1"),
    ("550 5.2.1 This account has been suspended", "5.2.1"),
    ("550 5.2.1 The email account that you tried to reach is temporarily disabled.", "5.2.1"),
    ("550 5.2.1 Account disabled temporarily for maintenance", "5.2.1"),
    # Every 4xx, hard wording or not.
    (
        "450 4.1.1 <alice@example.org>: Recipient address rejected: User unknown in local"
        " recipient table",
        "4.1.1",
    ),
    ("450 4.1.2 <alice@example.org>: Recipient address rejected: Domain not found", "4.1.2"),
    ("421 4.7.0 Try again later, closing connection", "4.7.0"),
    ("452 4.2.2 Mailbox full", "4.2.2"),
    ("451 4.3.0 Temporary lookup failure", "4.3.0"),
    # Policy refusals of every kind.
    (
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        "5.7.1",
    ),
    ("554 5.7.1 Rejected: listed by b.barracudacentral.org", "5.7.1"),
    ("550 5.7.1 Too many messages, rate limit exceeded", "5.7.1"),
    ("550 5.7.1 Message rejected due to poor sender reputation", "5.7.1"),
    ("550 5.7.23 SPF validation failed", "5.7.23"),
    ("550 5.7.26 This message does not pass DKIM or DMARC authentication", "5.7.26"),
    (
        "553 5.1.8 <s@shop.example>: Sender address rejected: Domain not found",
        "5.1.8",
    ),
    ("550 5.7.1 Sender address is invalid", "5.7.1"),
    ("554 5.6.0 Message content rejected", "5.6.0"),
    ("552 5.3.4 Message size exceeds fixed limit", "5.3.4"),
    ("530 5.7.0 Must issue a STARTTLS command first", "5.7.0"),
    # DNS trouble that is not a clean NXDOMAIN.
    (
        "Host or domain name not found. Name service error for name=x.example type=MX:"
        " Malformed name server reply",
        "5.4.4",
    ),
    (
        "Host or domain name not found. Name service error for name=x.example type=MX:"
        " Host not found, try again",
        "4.4.3",
    ),
    ("DNS lookup failed for x.example: SERVFAIL", "5.4.4"),
    ("connect to mx.example.org[192.0.2.7]:25: Connection timed out", "4.4.1"),
    ("554 5.4.6 Mail loop detected", "5.4.6"),
    ("554 5.3.0 Internal server error", "5.3.0"),
    # A 5.7.x status never makes hard by itself.
    ("550 5.7.1 Message refused", "5.7.1"),
    ("554 5.7.0", "5.7.0"),
]

# A counter-example for every hard rule: (rule whose words are used, the words, text,
# DSN status). Each is soft although the words appear in it.
COUNTER_EXAMPLES = [
    (
        "user unknown",
        "user unknown",
        "553 5.1.8 <s@shop.example>: Sender address rejected: User unknown in local"
        " recipient table",
        "5.1.8",
    ),
    (
        "unknown user",
        "unknown users",
        "550 5.7.1 Mail from unknown users of your network is refused",
        "5.7.1",
    ),
    ("no such user", "no such user", "553 5.1.7 Sender verify failed: no such user", "5.1.7"),
    (
        "does not exist",
        "does not exist",
        "550 5.1.0 Sender <news@shop.example> does not exist",
        "5.1.0",
    ),
    (
        "recipient not found",
        "recipientnotfound",
        "451 4.4.0 RESOLVER.ADR.RecipientNotFound; directory lookup failed, try again later",
        "4.4.0",
    ),
    (
        "access denied (directory-based edge blocking)",
        "recipient address rejected: access denied",
        "554 5.7.1 <alice@example.org>: Recipient address rejected: Access denied",
        "5.7.1",
    ),
    (
        "not listed",
        "not listed in our directory",
        "550 5.7.1 Your IP is not listed in our directory of permitted hosts",
        "5.7.1",
    ),
    (
        "unrecognized O/R name",
        "unrecognized o/r name",
        "451 4.4.0 X.400 directory unavailable, unrecognized O/R name not checked, try again",
        "4.4.0",
    ),
    ("moved", "mailbox has moved", "451 4.2.0 Mailbox has moved, try again later", "4.2.0"),
    (
        "recipient rejected",
        "recipient rejected",
        "550 5.7.1 Recipient rejected: message refused by the recipient's content filter",
        "5.7.1",
    ),
    (
        "mailbox unavailable",
        "mailbox unavailable",
        "550-Requested action not taken: mailbox unavailable 550 invalid DNS MX or A/AAAA"
        " resource record",
        "5.0.0",
    ),
    (
        "disabled",
        "is disabled",
        "550 5.7.1 Delivery to this mailbox from external senders is disabled by administrator"
        " policy",
        "5.7.1",
    ),
    (
        "disabled",
        "account is disabled",
        "550 message sending for this account is disabled",
        "5.0.0",
    ),
    (
        "domain not found",
        "domain lookup failed",
        "554 5.4.4 [internal] Domain Lookup Failed",
        "5.4.4",
    ),
    (
        "domain accepts no mail",
        "accepts no mail",
        "554 5.7.1 This server accepts no mail from dynamic IP ranges",
        "5.7.1",
    ),
    (
        "unknown user",
        "unknown recipients",
        "451 VS1-IP Excessive unknown recipients - possible Open Relay (#4.1.8)",
        "4.1.8",
    ),
    (
        "no such user",
        "no such user",
        "550 5.1.0 <news@shop.example>... No such user (in reply to MAIL FROM command)",
        "5.1.0",
    ),
    (
        "domain not found",
        "host or domain name not found",
        "Host or domain name not found. Name service error for name=example.net type=MX: Host"
        " not found, try again",
        "4.4.3",
    ),
    (
        "closed",
        "account has been closed",
        "550 5.7.1 Your account has been closed for sending",
        "5.7.1",
    ),
    (
        "closed",
        "account has expired",
        "550 5.7.1 Your account has expired, renew your subscription to send mail",
        "5.7.1",
    ),
    (
        "unknown user",
        "undeliverable address",
        "550 5.1.1 <alice@example.org>: Recipient address rejected: undeliverable address:"
        " connect to mx.example.org[192.0.2.1]:25: Connection refused",
        "5.1.1",
    ),
    (
        "unknown user",
        "not a valid subscriber",
        "550 5.7.1 Sender is not a valid subscriber of this relay",
        "5.7.1",
    ),
    (
        "closed",
        "address no longer accepts mail",
        "550 5.7.1 This address no longer accepts mail from your network",
        "5.7.1",
    ),
    (
        "no such user",
        "user has no mailbox",
        "452 4.2.0 User has no mailbox yet, it is being created, try again later",
        "4.2.0",
    ),
    (
        "disabled",
        "account is disabled",
        "550 5.7.1 Your account is disabled for outbound mail",
        "5.7.1",
    ),
    (
        "disabled",
        "disabled",
        "550 5.2.1 Mailbox temporarily disabled",
        "5.2.1",
    ),
    ("disabled", "account disabled", "550 5.7.1 Sender account disabled", "5.7.1"),
    (
        "disabled",
        "mailbox disabled",
        "550 5.2.1 Mailbox disabled for receiving external mail",
        "5.2.1",
    ),
    (
        "disabled",
        "address disabled",
        "554 5.7.1 Recipient address disabled by policy",
        "5.7.1",
    ),
    (
        "domain not found",
        "domain not found",
        "553 5.1.8 <s@shop.example>: Sender address rejected: Domain not found",
        "5.1.8",
    ),
    (
        "domain not found",
        "host or domain name not found",
        "Host or domain name not found. Name service error for name=x.example type=MX:"
        " Malformed name server reply",
        "5.4.4",
    ),
    (
        "domain accepts no mail",
        "null mx",
        "550 5.7.27 Sender address has null MX",
        "5.7.27",
    ),
    (
        "user unknown (translated)",
        "benutzer unbekannt",
        "550 5.7.1 Absender abgelehnt: Benutzer unbekannt",
        "5.7.1",
    ),
    (
        "does not exist",
        "existiert nicht",
        "550 5.7.1 Absender existiert nicht",
        "5.7.1",
    ),
    (
        "does not exist",
        "n'existe pas",
        "550 5.7.1 Le certificat n'existe pas",
        "5.7.1",
    ),
    (
        "domain not found (translated)",
        "домен не найден",
        "451 4.4.3 Домен не найден, попробуйте позже",
        "4.4.3",
    ),
    (
        "domain not found (translated)",
        "домен не найден",
        "550 5.4.4 Домен не найден: временная ошибка DNS",
        "5.4.4",
    ),
    (
        "not found",
        "could not be found",
        "550 5.7.1 Delivery not authorized: client certificate could not be found",
        "5.7.1",
    ),
    (
        "does not exist",
        "does not exist",
        "550 5.7.1 The reverse DNS record for your IP does not exist",
        "5.7.1",
    ),
    (
        "does not exist",
        "does not exist",
        "550 5.7.1 Requested DKIM key does not exist",
        "5.7.1",
    ),
    (
        "no longer",
        "no longer",
        "550 5.7.1 We no longer accept mail from this network",
        "5.7.1",
    ),
    (
        "does not accept mail",
        "does not accept mail",
        "550 5.7.1 This server does not accept mail from your network",
        "5.7.1",
    ),
]


# One example for every rule of the soft tiers (sender side, mailbox state, policy):
# (rule expected to decide, text, DSN status). The sender-side and mailbox-state ones
# also carry dead-address words, which their tier outranks.
SOFT_TIER_EXAMPLES = [
    (
        "sender rejected",
        "553 5.1.1 <s@shop.example>: Sender address rejected: User unknown",
        "5.1.1",
    ),
    ("sender invalid", "550 5.1.1 Unverified sender: no such user", "5.1.1"),
    ("mail from", "550 5.1.0 No such user (in reply to MAIL FROM command)", "5.1.0"),
    ("sender authentication", "550 5.7.26 Unauthenticated mail: SPF check failed", "5.7.26"),
    ("client host", "550 5.7.1 Client host rejected: cannot find your hostname", "5.7.1"),
    ("sending host", "550 5.7.1 We no longer accept mail from this network", "5.7.1"),
    ("mailbox full", "552 5.1.1 <alice@example.org>: user unknown or mailbox full", "5.1.1"),
    ("temporarily disabled", "550 5.2.1 Account temporarily disabled", "5.2.1"),
    ("mailbox suspended", "550 5.2.1 This mailbox has been suspended", "5.2.1"),
    ("suspended (translated)", "550 5.2.1 Аккаунт временно заблокирован", "5.2.1"),
    ("spam", "550 5.7.1 Spam detected", "5.7.1"),
    ("blocked", "554 5.7.1 Blocked by local blocklist", "5.7.1"),
    ("reputation", "550 5.7.1 Low reputation score", "5.7.1"),
    ("policy (translated)", "550 5.7.1 Письмо отклонено как спам", "5.7.1"),
    ("policy", "550 5.7.1 Delivery not authorized, message refused by policy", "5.7.1"),
    ("authentication", "530 5.7.0 Authentication required", "5.7.0"),
    ("content", "554 5.6.0 Message content rejected", "5.6.0"),
    ("too large", "552 5.3.4 Message size exceeds fixed limit", "5.3.4"),
    ("rate limited", "450 4.7.1 Too many messages, slow down", "4.7.1"),
    ("temporary", "451 4.3.0 Temporary local problem, try again later", "4.3.0"),
    ("tls", "530 5.7.0 Must issue a STARTTLS command first", "5.7.0"),
    ("network", "connect to mx.example.org[192.0.2.1]:25: Connection timed out", "4.4.1"),
    ("loop", "554 5.4.6 Mail loop detected", "5.4.6"),
    ("expired", "Message expired after 5 days in queue", "4.4.7"),
    ("relay denied", "554 5.7.1 <alice@example.org>: Relay access denied", "5.7.1"),
    ("system error", "554 5.3.0 Internal server error", "5.3.0"),
]


def _both(text: str, status: str) -> tuple[BounceKind, str, BounceKind, str]:
    reply = classify_reply(text, source="smtp")
    message = classify_message(_dsn(status, text))
    return reply.kind, reply.reason, message.kind, message.reason


# --- the examples, at send time and in a DSN -----------------------------------------


@pytest.mark.parametrize(("text", "status", "expected"), ISSUE_EXAMPLES)
def test_every_example_quoted_in_the_issue(text, status, expected):
    reply_kind, reply_reason, dsn_kind, dsn_reason = _both(text, status)
    assert reply_kind == expected, reply_reason
    assert dsn_kind == expected, dsn_reason


@pytest.mark.parametrize(("rule", "text", "status"), HARD_EXAMPLES)
def test_dead_addresses_are_hard(rule, text, status):
    reply_kind, reply_reason, dsn_kind, dsn_reason = _both(text, status)
    assert reply_kind == HARD, reply_reason
    assert dsn_kind == HARD, dsn_reason
    # The wording decided, by the rule named, not the status alone.
    assert failure_kind(status, text) == (HARD, f"text:{rule}")


@pytest.mark.parametrize(("text", "status"), SOFT_EXAMPLES)
def test_everything_else_is_soft(text, status):
    reply_kind, reply_reason, dsn_kind, dsn_reason = _both(text, status)
    assert reply_kind == SOFT, reply_reason
    assert dsn_kind == SOFT, dsn_reason


@pytest.mark.parametrize(("rule", "words", "text", "status"), COUNTER_EXAMPLES)
def test_counter_examples_use_a_hard_rules_words_and_are_soft(rule, words, text, status):
    assert words in text.lower()
    reply_kind, reply_reason, dsn_kind, dsn_reason = _both(text, status)
    assert reply_kind == SOFT, reply_reason
    assert dsn_kind == SOFT, dsn_reason


def test_every_hard_rule_has_an_example_and_a_counter_example():
    rules = {rule.name for tier in (DEAD_ADDRESS, GENERIC_DEAD, WEAK_DEAD) for rule in tier.rules}
    assert rules == {rule for rule, _, _ in HARD_EXAMPLES}
    assert rules == {rule for rule, _, _, _ in COUNTER_EXAMPLES}


def test_counter_examples_match_the_hard_rules_pattern_where_the_words_are_its_own():
    """Most counter-examples trip the very pattern of the rule they counter."""
    by_name = {
        rule.name: rule for tier in (DEAD_ADDRESS, GENERIC_DEAD, WEAK_DEAD) for rule in tier.rules
    }
    tripped = {
        rule
        for rule, _, text, _ in COUNTER_EXAMPLES
        if re.search(by_name[rule].pattern, normalize_text(text))
    }
    # The edge-blocking rule needs 5.4.1 or an AS() code: its counter-example shares
    # only the words, which is the point.
    assert tripped == set(by_name) - {"access denied (directory-based edge blocking)"}


@pytest.mark.parametrize(("rule", "text", "status"), SOFT_TIER_EXAMPLES)
def test_each_soft_tier_rule_is_soft_at_send_time_and_in_a_dsn(rule, text, status):
    reply_kind, reply_reason, dsn_kind, dsn_reason = _both(text, status)
    assert reply_kind == SOFT, reply_reason
    assert dsn_kind == SOFT, dsn_reason
    assert failure_kind(status, text) == (SOFT, f"text:{rule}")


def test_every_soft_tier_rule_has_an_example():
    rules = {rule.name for tier in (SENDER_SIDE, MAILBOX_STATE, POLICY) for rule in tier.rules}
    assert rules == {rule for rule, _, _ in SOFT_TIER_EXAMPLES}


# --- the order of precedence ---------------------------------------------------------


def test_tiers_are_in_the_stated_order_with_a_reason_for_every_rule():
    assert [tier.name for tier in TIERS] == [
        "sender side",
        "mailbox state",
        "dead address",
        "policy and other failures",
        "generic phrases",
        "weak recipient wording",
    ]
    assert [tier.verdict for tier in TIERS] == [
        "soft",
        "soft",
        "hard",
        "soft",
        "status decides",
        "status decides",
    ]
    for tier in TIERS:
        for rule in tier.rules:
            assert rule.reason
            assert rule.name
            re.compile(rule.pattern)


def test_sender_side_beats_dead_address_wording():
    text = "550 5.1.1 <s@shop.example>: Sender address rejected: User unknown"
    assert failure_kind("5.1.1", text) == (SOFT, "text:sender rejected")
    assert failure_kind("5.1.8", "550 5.1.1 user unknown") == (SOFT, "status:5.1.8 sender")


def test_mailbox_state_beats_dead_address_wording():
    assert failure_kind("5.1.1", "550 5.1.1 user unknown: mailbox full")[0] == SOFT
    assert failure_kind("5.2.1", "account temporarily disabled, user unknown")[0] == SOFT


def test_dead_address_wording_beats_a_policy_status_and_policy_words():
    assert failure_kind("5.7.1", "550 5.7.1 No such user") == (HARD, "text:no such user")
    text = "550 5.1.1 User unknown; your message was also filtered by policy"
    assert failure_kind("5.1.1", text) == (HARD, "text:user unknown")


def test_policy_wording_beats_generic_phrases():
    text = "554 5.1.1 TLS certificate could not be found"
    assert failure_kind("5.1.1", text) == (SOFT, "text:tls")
    assert failure_kind(None, "the server certificate could not be found") == (SOFT, "text:tls")
    assert failure_kind(None, "we no longer relay for you: relay access denied")[0] == SOFT
    assert failure_kind(None, "access denied, no longer accepted")[0] == SOFT


def test_generic_phrases_follow_the_status():
    assert failure_kind("5.7.1", "550 5.7.1 does not exist") == (
        SOFT,
        "status:5.7.1 text:does not exist",
    )
    assert failure_kind("5.0.0", "550 5.0.0 does not exist") == (HARD, "text:does not exist")
    assert failure_kind(None, "does not exist") == (HARD, "text:does not exist")
    assert failure_kind("4.0.0", "450 4.0.0 does not exist") == (SOFT, "status:4.0.0")


def test_a_57x_status_never_makes_hard_by_itself():
    for detail in range(0, 30):
        status = f"5.7.{detail}"
        assert failure_kind(status, "")[0] == SOFT
        assert failure_kind(status, f"550 {status} Message rejected")[0] == SOFT
        assert failure_kind(status, f"550 {status} mailbox unavailable")[0] == SOFT


def test_the_status_decides_when_the_wording_says_nothing():
    assert failure_kind("5.1.1", "550 5.1.1 Requested action not taken") == (HARD, "status:5.1.1")
    assert failure_kind("5.2.2", "552 5.2.2 sorry") == (SOFT, "status:5.2.2")
    assert failure_kind(None, "551 sorry") == (HARD, "code:551")
    assert failure_kind(None, "550 sorry") == (SOFT, "code:550")


def test_a_4xx_is_soft_whatever_the_wording():
    assert failure_kind("4.1.1", "450 4.1.1 No such user") == (SOFT, "temporary:no such user")
    # ...unless a permanent code follows (a queue expired on a 5xx).
    assert failure_kind("4.1.1", "450 4.1.1 then 550 5.1.1 no such user")[0] == HARD


def test_decide_is_what_failure_kind_applies():
    text = "550 5.1.1 <alice@example.org>: no such user"
    assert decide("5.1.1", [550], normalize_text(text)) == failure_kind("5.1.1", text)
