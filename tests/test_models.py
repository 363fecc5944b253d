import pytest
from django.db import IntegrityError, connection, transaction

from bounce_tracker.models import EmailAddressTracker, SuppressionReason

pytestmark = pytest.mark.django_db


def make(email, encoded_from):
    return EmailAddressTracker.objects.create(email=email, encoded_from=encoded_from)


def test_email_is_unique_in_any_letter_case():
    make("Alice@Example.com", "bounces+one")
    with pytest.raises(IntegrityError), transaction.atomic():
        make("ALICE@example.COM", "bounces+two")


def test_email_is_unique_case_insensitively_even_for_bulk_inserts():
    EmailAddressTracker.objects.bulk_create(
        [EmailAddressTracker(email="bob@example.com", encoded_from="bounces+b1")]
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        EmailAddressTracker.objects.bulk_create(
            [EmailAddressTracker(email="BOB@EXAMPLE.COM", encoded_from="bounces+b2")]
        )


def test_encoded_from_is_unique_in_any_letter_case():
    make("a@example.com", "bounces+abc")
    with pytest.raises(IntegrityError), transaction.atomic():
        make("b@example.com", "Bounces+ABC")


def test_lookups_by_email_and_local_part_ignore_case():
    tracker = make("Carol@Example.com", "Sentto-Carol=Example.com")
    assert EmailAddressTracker.objects.for_email("CAROL@example.com").get() == tracker
    assert EmailAddressTracker.objects.get(email="CAROL@EXAMPLE.COM") == tracker
    assert EmailAddressTracker.objects.for_local_part("sentto-carol=example.com").get() == tracker


def test_addresses_differing_only_in_accents_are_different_rows():
    # MariaDB's default *_ci collations treat these as equal; the column is binary there.
    make("jose@example.com", "bounces+j1")
    make("josé@example.com", "bounces+j2")
    assert EmailAddressTracker.objects.count() == 2
    assert EmailAddressTracker.objects.for_email("josé@example.com").get().encoded_from == (
        "bounces+j2"
    )


def test_timestamps_default_to_never_and_counters_to_zero():
    tracker = make("new@example.com", "bounces+new")
    assert tracker.first_email is tracker.last_email is tracker.last_bounce is None
    assert tracker.msg_count == tracker.bounce_count == 0
    assert not tracker.is_suppressed


def test_suppress_and_unsuppress_record_why_and_since_when():
    tracker = make("dead@example.com", "bounces+dead")
    tracker.suppress(SuppressionReason.HARD_BOUNCE, "5.1.1 user unknown")
    tracker.refresh_from_db()
    assert tracker.is_suppressed
    assert tracker.suppressed_at is not None
    assert tracker.get_suppressed_reason_display() == "hard bounce"
    assert list(EmailAddressTracker.objects.suppressed()) == [tracker]
    tracker.unsuppress()
    tracker.refresh_from_db()
    assert not tracker.is_suppressed
    assert tracker.suppressed_at is None


def test_the_lookup_columns_are_indexed():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(
            cursor, EmailAddressTracker._meta.db_table
        )
    indexed = {tuple(c["columns"]) for c in constraints.values() if c["index"] or c["unique"]}
    assert ("email",) in indexed
    assert ("encoded_from",) in indexed
    assert ("last_bounce",) in indexed
    assert ("suppressed_reason", "ignore_bounces") in indexed


@pytest.mark.mysql
def test_on_mariadb_the_address_columns_use_a_binary_collation():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, collation_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = %s "
            "AND column_name IN ('email', 'encoded_from')",
            [EmailAddressTracker._meta.db_table],
        )
        collations = dict(cursor.fetchall())
    assert collations == {"email": "utf8mb4_bin", "encoded_from": "utf8mb4_bin"}
