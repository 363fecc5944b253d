"""A status inferred from the wording when a report gives none or only x.0.0.

The verdict keeps ``status`` for what the report said (that is what is recorded);
``inferred_status`` holds what its words clearly mean. ``inspect_bounce --json``
and the admin's event page show it, marked as inferred.
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from bounce_tracker.classify import classify_message, classify_reply
from bounce_tracker.classify.inferred import infer_status
from bounce_tracker.core.kinds import BounceKind
from bounce_tracker.models import BounceEvent, EmailAddressTracker
from tests.messages import dsn

HARD, SOFT, DELAYED = BounceKind.HARD, BounceKind.SOFT, BounceKind.DELAYED


@pytest.mark.parametrize(
    ("status", "text", "kind", "expected"),
    [
        (None, "550 User unknown", HARD, "5.1.1"),
        ("5.0.0", "No such user here", HARD, "5.1.1"),
        (None, "Host or domain name not found", HARD, "5.1.2"),
        ("5.0.0", "552 Mailbox full", SOFT, "5.2.2"),
        ("4.0.0", "user is over quota", DELAYED, "4.2.2"),
        (None, "452 mailbox is full, retry later", SOFT, "4.2.2"),
        (None, "mailbox full", DELAYED, "4.2.2"),
        (None, "552 Message too large", SOFT, "5.3.4"),
        ("5.0.0", "Message rejected as spam", SOFT, "5.7.1"),
        (None, "554 rejected due to policy", SOFT, "5.7.1"),
        ("4.0.0", "temporarily refused: sender is on a block list", DELAYED, "4.7.1"),
        # No row of the table: the convention's deciding rule names the status.
        (None, "Diagnostic: unrecognized O/R name", HARD, "5.1.1"),
        ("5.0.0", "550 Benutzer unbekannt", HARD, "5.1.1"),
        (None, "550 Mailbox temporarily disabled", SOFT, "5.2.1"),
        (None, "554 Mail loop detected", SOFT, "5.4.6"),
        (None, "550 user has left the company", HARD, "5.2.1"),
    ],
)
def test_clear_wording_gives_a_status_of_the_reports_class(status, text, kind, expected):
    assert infer_status(status, text, kind) == expected


@pytest.mark.parametrize(
    ("status", "text", "kind"),
    [
        # The report's own status is specific: nothing to infer.
        ("5.1.1", "User unknown", HARD),
        ("5.7.1", "mailbox full", SOFT),
        # No clear wording.
        (None, "550 Requested action not taken", HARD),
        ("5.0.0", "delivery failed", SOFT),
        (None, "", SOFT),
        # Two readings at once: not clear.
        (None, "user unknown or mailbox full", SOFT),
        (None, "LMOREAU (user or domain does not exist)", HARD),
        (None, "554 spam message rejected: user unknown", SOFT),
        # The words disagree with the verdict (a policy refusal naming the recipient).
        ("5.0.0", "Recipient rejected: user unknown in relay recipient table", SOFT),
        ("5.0.0", "mailbox full", HARD),
        # Not a failure or delay.
        (None, "user unknown", BounceKind.AUTO_REPLY),
        (None, "spam", BounceKind.COMPLAINT),
        (None, "user unknown", BounceKind.NOT_BOUNCE),
    ],
)
def test_unclear_or_contradicted_wording_infers_nothing(status, text, kind):
    assert infer_status(status, text, kind) is None


def test_a_dsn_with_a_generic_status_keeps_it_and_carries_the_inferred_one():
    result = classify_message(
        dsn(status="5.0.0", diagnostic="smtp; 550 <dead@example.org>: No such user")
    )
    assert (result.kind, result.status) == (HARD, "5.0.0")
    assert (result.inferred_status, result.status_inferred) == ("5.1.1", True)
    assert [(r.status, r.inferred_status) for r in result.recipients] == [("5.0.0", "5.1.1")]


def test_a_dsn_with_a_specific_status_infers_nothing():
    result = classify_message(dsn())
    assert result.status == "5.1.1"
    assert (result.inferred_status, result.status_inferred) == (None, False)
    assert result.recipients[0].inferred_status is None


def test_a_text_bounce_without_any_status_gets_one():
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\nTo: bounces+abc@bounces.example.com\n"
        b"Subject: Returned mail: see transcript for details\n\n"
        b"   ----- The following addresses had permanent fatal errors -----\n"
        b"<dead@example.org>\n\n"
        b"   ----- Transcript of session follows -----\n"
        b"... while talking to mx.example.org.:\n"
        b">>> RCPT To:<dead@example.org>\n"
        b"<<< 550 <dead@example.org>... User unknown\n"
    )
    result = classify_message(raw)
    assert result.kind == HARD
    assert result.status is None
    assert result.inferred_status == "5.1.1"


def test_classify_reply_infers_too():
    result = classify_reply("452 Mailbox full, try again later")
    assert (result.kind, result.status, result.inferred_status) == (SOFT, None, "4.2.2")
    assert result.recipients[0].inferred_status == "4.2.2"
    assert classify_reply("550 5.1.1 User unknown").inferred_status is None


def test_inspect_bounce_json_shows_it(tmp_path):
    path = tmp_path / "generic.eml"
    path.write_bytes(dsn(status="5.0.0", diagnostic="smtp; 552 Mailbox full"))
    out = StringIO()
    call_command("inspect_bounce", "--json", str(path), stdout=out)
    report = json.loads(out.getvalue())
    assert (report["status"], report["inferred_status"], report["status_inferred"]) == (
        "5.0.0",
        "5.2.2",
        True,
    )
    recipient = report["recipients"][0]
    assert (recipient["inferred_status"], recipient["status_inferred"]) == ("5.2.2", True)
    out = StringIO()
    call_command("inspect_bounce", str(path), stdout=out)
    assert f"{path}: soft 5.0.0 (inferred 5.2.2)" in out.getvalue()


@pytest.mark.django_db
def test_the_admin_event_page_shows_the_inferred_status_beside_the_recorded_one(
    django_user_model,
):
    user = django_user_model.objects.create_user("support", is_staff=True)
    user.groups.add(Group.objects.get(name="Bounce support"))
    client = Client()
    client.force_login(user)
    tracker = EmailAddressTracker.objects.create(email="dead@example.org", encoded_from="dead")

    def page(n: int, **fields: object) -> str:
        event = BounceEvent.objects.create(
            tracker=tracker,
            counted=True,
            envelope_recipient="dead@bounces.example.com",
            fingerprint=f"fp-{n}",
            raw_message=b"x",
            raw_size=1,
            **fields,
        )
        url = reverse("admin:bounce_tracker_bounceevent_change", args=[event.pk])
        response = client.get(url)
        assert response.status_code == 200
        return response.content.decode()

    generic = page(1, kind="hard", status="5.0.0", diagnostic="550 No such user")
    assert "5.1.1 (inferred)" in generic
    specific = page(2, kind="hard", status="5.1.1", diagnostic="550 5.1.1 No such user")
    assert "(inferred)" not in specific
    unclear = page(3, kind="soft", status="", diagnostic="550 Requested action not taken")
    assert "(inferred)" not in unclear
    # The recorded column keeps what the report said.
    assert BounceEvent.objects.get(fingerprint="fp-1").status == "5.0.0"
