"""The counts of sending as written by hand-written SQL (issue 18) equal the ORM's.

``sending.tracking`` reads the tracker rows with a plain SELECT through ``raw()`` and
adds the copies with one UPDATE it writes out itself; these tests pin what the ORM
version did: every field loaded and converted as the ORM loads it, ``msg_count + n``,
``last_email`` moved, ``first_email`` set once, and nothing else of the row touched.
"""

from collections import Counter
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage, get_connection
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bounce_tracker.models import EmailAddressTracker, SuppressionReason
from bounce_tracker.sending.settings import get_sending_settings
from bounce_tracker.sending.tracking import ensure_trackers, record_sent

pytestmark = pytest.mark.django_db


def settings_():
    return get_sending_settings({"BOUNCE_DOMAIN": "bounces.example.com"})


def field_values(tracker):
    return {
        field.attname: getattr(tracker, field.attname)
        for field in EmailAddressTracker._meta.concrete_fields
    }


def test_rows_read_for_sending_equal_the_orms_rows_field_for_field():
    moment = timezone.now().replace(microsecond=123456) - timedelta(days=3)
    EmailAddressTracker.objects.create(
        email="full@example.com",
        encoded_from="bounces+full",
        ignore_bounces=True,
        msg_count=7,
        first_email=moment,
        last_email=moment + timedelta(hours=1),
        first_bounce=moment,
        last_bounce=moment + timedelta(hours=2),
        last_bounce2=moment + timedelta(hours=1),
        last_bounce3=moment,
        bounce_count=3,
        suppressed_reason=SuppressionReason.HARD_BOUNCE,
        suppressed_at=moment + timedelta(hours=2),
        suppressed_detail="550 5.1.1 no such user",
    )
    trackers = ensure_trackers(["full@example.com", "new@example.com"], settings_())

    for address in ("full@example.com", "new@example.com"):
        read = trackers[address]
        orm = EmailAddressTracker.objects.get(email=address)
        assert field_values(read) == field_values(orm)
        assert read.get_deferred_fields() == set()
        assert read._state.adding is False
        assert read._state.db == orm._state.db
    assert trackers["full@example.com"].first_email.tzinfo is not None


def test_record_sent_adds_copies_stamps_last_and_keeps_first_email():
    trackers = ensure_trackers(["a@example.com", "b@example.com", "c@example.com"], settings_())
    before = timezone.now()
    record_sent(trackers, Counter({"a@example.com": 1, "b@example.com": 2, "c@example.com": 0}))
    after = timezone.now()

    a, b, c = (EmailAddressTracker.objects.get(email=f"{n}@example.com") for n in "abc")
    assert (a.msg_count, b.msg_count, c.msg_count) == (1, 2, 0)
    assert before <= a.first_email == a.last_email <= after
    assert b.first_email == b.last_email == a.last_email  # one clock reading per batch
    assert c.first_email is None
    assert c.last_email is None

    record_sent(trackers, Counter({"a@example.com": 3}))
    again = EmailAddressTracker.objects.get(email="a@example.com")
    assert again.msg_count == 4
    assert again.first_email == a.first_email
    assert again.last_email >= a.last_email
    untouched = {"bounce_count", "suppressed_reason", "encoded_from", "ignore_bounces"}
    assert {name: getattr(again, name) for name in untouched} == {
        name: getattr(a, name) for name in untouched
    }


def test_a_message_naming_one_address_twice_counts_one_copy_and_two_messages_two():
    send = get_connection().send_messages
    assert send([EmailMessage("S", "B", "n@example.com", ["X@example.com"], cc=["x@example.com"])])
    assert EmailAddressTracker.objects.get(email="x@example.com").msg_count == 1
    messages = [EmailMessage(f"S{n}", "B", "n@example.com", ["x@example.com"]) for n in (1, 2)]
    assert send(messages) == 2
    assert EmailAddressTracker.objects.get(email="x@example.com").msg_count == 3


def test_a_steady_batch_is_one_select_without_order_by_and_one_update():
    addresses = [f"user{n}@example.com" for n in range(50)]
    send = get_connection().send_messages
    send([EmailMessage("Warm", "B", "n@example.com", bcc=addresses)])
    with CaptureQueriesContext(connection) as queries:
        send([EmailMessage("Steady", "B", "n@example.com", bcc=addresses)])
    statements = [query["sql"].lstrip().split()[0].upper() for query in queries]
    assert statements == ["SELECT", "UPDATE"]
    assert "ORDER BY" not in queries[0]["sql"].upper()
    assert set(
        EmailAddressTracker.objects.filter(email__in=addresses).values_list("msg_count", flat=True)
    ) == {2}
