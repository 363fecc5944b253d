"""Header injection on the sending side: refused before anything is sent or counted.

Every field that becomes a header or an envelope address — to, cc, bcc (bare, with a
display name, as a ``(name, address)`` tuple), from_email, reply_to, the subject,
extra header names and values, and extra headers that override From/To/Cc/Reply-To —
gets every kind of line break: CRLF, bare CR, bare LF, CRLF + space or tab (a
folded continuation), and the characters Python's ``str.splitlines`` also breaks at
(VT, FF, FS, GS, RS, NEL, U+2028, U+2029).

CR and LF are refused by Django itself (``BadHeaderError``, a ``ValueError``) only
when the message is rendered, i.e. while sending, after the tracker rows exist. The
others are worse: Django 4.2 and 5.2 don't look for them, and Python's email
package (compat32 folding, which splits with ``splitlines``) turns a vertical tab or
form feed in an address into a real line break in the To/Cc/From header — so
``to=['"x<VT>Reply-To :evil@attacker.example,"@example.com', 'victim@example.com']``
put a ``Reply-To`` line into the headers of the victim's copy too (Django's
``EmailValidator`` rejects that address, but nothing makes callers validate).
Python refuses some of these (``HeaderParseError``: "appears to contain an embedded
header") but not a header name followed by a space before its colon.

``BounceTrackingBackend`` refuses all of them up front with
:class:`~bounce_tracker.core.addresses.InvalidMessageError` (a ``ValueError``), for the
whole batch: nothing reaches the inner backend (``mail.outbox``), no tracker row is
created, no counter moves — also with ``fail_silently=True``, as Django's SMTP
backend raises ``BadHeaderError`` whatever ``fail_silently`` says.

An RFC 2047 encoded word that decodes to CRLF (``=?utf-8?q?a=0D=0AB?=``) is plain
ASCII text on the wire, not a line break: it is sent, and the rendered message has
exactly the headers it should.
"""

from __future__ import annotations

from email import message_from_bytes

import pytest
from django.core import mail
from django.core.mail import BadHeaderError, EmailMessage, get_connection

from bounce_tracker.core.addresses import InvalidAddressError, InvalidMessageError
from bounce_tracker.core.settings import get_settings
from bounce_tracker.core.verp import return_path
from bounce_tracker.models import EmailAddressTracker
from bounce_tracker.sending.tracking import ensure_trackers

pytestmark = pytest.mark.django_db

BREAKS = {
    "CRLF": "\r\n",
    "CR": "\r",
    "LF": "\n",
    "CRLF-space": "\r\n ",
    "CRLF-tab": "\r\n\t",
    "VT": "\x0b",
    "FF": "\x0c",
    "FS": "\x1c",
    "GS": "\x1d",
    "RS": "\x1e",
    "NEL": "\x85",
    "U+2028": "\u2028",
    "U+2029": "\u2029",
}
INJECTED = "Bcc: evil@attacker.example"


def fields(brk: str) -> dict[str, dict]:
    """EmailMessage keyword arguments carrying ``brk``, one field at a time."""
    return {
        "to bare": {"to": [f"a{brk}b@example.com"]},
        "to quoted local part": {"to": [f'"x{brk}Reply-To :evil@attacker.example,"@example.com']},
        "to display name": {"to": [f"Ann{brk}{INJECTED} <ann@example.com>"]},
        "to after address": {"to": [f"ann@example.com{brk}{INJECTED}"]},
        "to tuple name": {"to": [(f"Ann{brk}{INJECTED}", "ann@example.com")]},
        "cc": {"cc": [f"c{brk}d@example.com"]},
        "cc display name": {"cc": [f"Cy{brk}{INJECTED} <cy@example.com>"]},
        "bcc": {"bcc": [f"c{brk}d@example.com"]},
        "from bare": {"from_email": f"news{brk}x@example.com"},
        "from display name": {"from_email": f"News{brk}{INJECTED} <news@example.com>"},
        "reply_to": {"reply_to": [f"r{brk}s@example.com"]},
        "reply_to display name": {"reply_to": [f"R{brk}{INJECTED} <r@example.com>"]},
        "subject": {"subject": f"Hello{brk}{INJECTED}"},
        "header value": {"headers": {"X-Campaign": f"spring{brk}{INJECTED}"}},
        "header name": {"headers": {f"X-Campaign{brk}Bcc": "evil@attacker.example"}},
        "From header": {"headers": {"From": f"News{brk}{INJECTED} <news@example.com>"}},
        "To header": {"headers": {"To": f"ann@example.com{brk}{INJECTED}"}},
        "Cc header": {"headers": {"Cc": f"cy@example.com{brk}{INJECTED}"}},
        "Reply-To header": {"headers": {"Reply-To": f"r@example.com{brk}{INJECTED}"}},
    }


CASES = [
    pytest.param(brk, field, id=f"{name}-{field}")
    for name, brk in BREAKS.items()
    for field in fields("")
]


def message(**overrides) -> EmailMessage:
    params = {
        "subject": "S",
        "body": "B",
        "from_email": "news@example.com",
        "to": ["ann@example.com"],
        **overrides,
    }
    return EmailMessage(**params)


@pytest.mark.parametrize(("brk", "field"), CASES)
def test_a_line_break_anywhere_is_refused_before_anything_is_sent(brk, field):
    good = message(to=["first@example.com"])
    bad = message(**fields(brk)[field])
    with pytest.raises(ValueError) as caught:  # noqa: PT011 - the types are checked below
        get_connection().send_messages([good, bad])
    assert isinstance(caught.value, InvalidMessageError | BadHeaderError)
    assert "line break" in str(caught.value)
    assert mail.outbox == []
    assert not EmailAddressTracker.objects.exists()


@pytest.mark.parametrize("brk", list(BREAKS.values()), ids=list(BREAKS))
def test_refused_even_with_fail_silently_and_existing_rows_are_not_counted(brk):
    ensure_trackers(["ann@example.com"], get_settings())
    before = list(EmailAddressTracker.objects.values_list("email", "msg_count", "last_email"))
    connection = get_connection(fail_silently=True)
    with pytest.raises(ValueError, match="line break"):
        connection.send_messages([message(subject=f"Hi{brk}{INJECTED}")])
    with pytest.raises(ValueError, match="line break"):
        connection.send_messages([message(to=["ann@example.com", f"b{brk}c@example.com"])])
    assert mail.outbox == []
    after = list(EmailAddressTracker.objects.values_list("email", "msg_count", "last_email"))
    assert after == before


def test_send_mail_refuses_too():
    from django.core.mail import send_mail

    with pytest.raises(ValueError, match="line break"):
        send_mail("S", "B", "news@example.com", ["a\x0bReply-To :x@attacker.example@example.com"])
    assert mail.outbox == []
    assert not EmailAddressTracker.objects.exists()


def wire_headers(sent: EmailMessage) -> list[tuple[str, str]]:
    """The header lines of the rendered message: every line split at CR, LF or both."""
    raw = sent.message().as_bytes()
    head = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n\n", 1)[0]
    lines = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            continue  # a continuation of the previous header
        name, colon, value = line.partition(b":")
        assert colon, line  # every other line is "Name: value"
        assert b" " not in name, line
        lines.append((name.decode().lower(), value.decode().strip()))
    return lines


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "=?utf-8?q?Hi=0D=0ABcc:_evil@attacker.example?="},
        {"subject": "=?utf-8?b?SGkNCkJjYzogZXZpbEBhdHRhY2tlci5leGFtcGxl?="},
        {"from_email": "=?utf-8?q?News=0D=0ABcc:_evil@attacker.example?= <news@example.com>"},
        {"to": ["=?utf-8?q?Ann=0D=0ABcc:_evil@attacker.example?= <ann@example.com>"]},
        {"headers": {"X-Campaign": "=?utf-8?q?a=0D=0ABcc:_evil@attacker.example?="}},
    ],
    ids=["subject-q", "subject-b", "from", "to", "header"],
)
def test_an_encoded_word_that_decodes_to_crlf_is_text_not_a_header(overrides):
    assert get_connection().send_messages([message(**overrides)]) == 1
    [sent] = mail.outbox
    assert sent.recipients() == [overrides.get("to", ["ann@example.com"])[0]]
    names = [name for name, _ in wire_headers(sent)]
    assert "bcc" not in names
    assert sorted(set(names)) == sorted(
        {"content-type", "mime-version", "content-transfer-encoding", "subject", "from", "to",
         "date", "message-id"} | ({"x-campaign"} if "headers" in overrides else set())
    )  # fmt: skip
    parsed = message_from_bytes(sent.message().as_bytes())
    assert parsed["Bcc"] is None


def test_a_normal_message_renders_the_expected_headers_only():
    get_connection().send_messages(
        [message(cc=["cy@example.com"], bcc=["hidden@example.com"], reply_to=["r@example.com"])]
    )
    assert len(mail.outbox) == 3
    for sent in mail.outbox:
        names = {name for name, _ in wire_headers(sent)}
        assert "bcc" not in names
        assert {"to", "cc", "reply-to", "from"} <= names
        assert sent.from_email.startswith("bounces+")  # the envelope sender


@pytest.mark.parametrize("brk", list(BREAKS.values()), ids=list(BREAKS))
def test_the_verp_envelope_sender_never_carries_a_line_break(brk):
    # Tokens and readable local parts can't contain one; a stored value written from
    # outside (a bad legacy import) is refused instead of ending MAIL FROM early.
    tracker_settings = get_settings()
    with pytest.raises(InvalidAddressError, match="line break"):
        return_path(f"bounces+abc{brk}RCPT TO:<x@attacker.example>", tracker_settings)
    assert return_path("bounces+abc", tracker_settings) == "bounces+abc@bounces.example.com"


def test_generated_local_parts_are_plain_atext_for_any_address():
    from bounce_tracker.core.verp import encode_local_part

    for verp_format in ("token", "readable"):
        tracker_settings = get_settings({"VERP_FORMAT": verp_format})
        for address in (
            "ann@example.com",
            '"a b"@example.com',
            '"x\\"y"@example.com',
            "josé@example.com",
            "x" * 60 + "@example.com",
        ):
            local_part = encode_local_part(address, tracker_settings)
            assert local_part.isascii()
            assert all(33 <= ord(char) < 127 for char in local_part), local_part
