import re

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounce_tracker.core.settings import get_settings
from bounce_tracker.core.verp import (
    address_token,
    encode_local_part,
    local_part_of,
    parse_readable,
    readable_code,
    return_path,
)
from bounce_tracker.models import EmailAddressTracker
from bounce_tracker.sending.tracking import ensure_trackers

TOKEN_RE = re.compile(r"^bounces\+[a-z2-7]{26}$")

# Local parts as real senders write them, including odd but valid ones.
local_parts = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,64}\Z"),
    st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=40),
)
domains = st.one_of(
    st.from_regex(r"\A[a-z0-9]{1,20}\.(com|org|de|co\.uk)\Z"),
    st.sampled_from(["bücher.de", "例え.jp", "xn--bcher-kva.de", "ümlaut-ß.example"]),
    st.from_regex(r"\A([a-z]{50}\.){3}[a-z]{2,10}\Z"),  # long domains
)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains).filter(
    lambda address: len(address.encode()) <= 200
)


def readable_settings():
    return get_settings({"VERP_FORMAT": "readable", "VERP_PREFIX": "sentto", "VERP_DELIMITER": "-"})


def test_token_local_part_is_prefix_delimiter_and_26_lowercase_base32_characters():
    local_part = encode_local_part("Alice@Example.com", get_settings())
    assert TOKEN_RE.match(local_part)


def test_token_is_stable_and_ignores_letter_case():
    first = address_token("alice@example.com", None)
    assert address_token("ALICE@EXAMPLE.COM", None) == first
    assert address_token("alice@example.com", None) == first


def test_token_depends_on_the_secret_so_it_cannot_be_guessed():
    assert address_token("alice@example.com", b"one-secret-0123456789") != address_token(
        "alice@example.com", b"two-secret-0123456789"
    )
    with override_settings(SECRET_KEY="another-secret-key-for-this-test-only-0123456789"):
        other_key = address_token("alice@example.com", None)
    assert other_key != address_token("alice@example.com", None)


def test_readable_form_matches_the_original_recipe():
    assert encode_local_part("brian@example.com", readable_settings()) == "sentto-brian=example.com"


def test_readable_form_falls_back_to_the_token_when_too_long_or_not_ascii():
    tracker_settings = readable_settings()
    long_address = "a" * 60 + "@example.com"
    assert encode_local_part(long_address, tracker_settings) == "sentto-" + address_token(
        long_address, None
    )
    assert readable_code("jürgen@example.com") is None
    assert encode_local_part("jürgen@example.com", tracker_settings).startswith("sentto-")
    assert "=" not in encode_local_part("jürgen@example.com", tracker_settings)


def test_parse_readable_names_the_address_of_a_readable_local_part():
    tracker_settings = readable_settings()
    assert parse_readable("sentto-brian=example.com", tracker_settings) == "brian@example.com"
    assert parse_readable("SENTTO-Brian=Example.com", tracker_settings) == "brian@example.com"
    assert parse_readable("bounces+abc", tracker_settings) is None
    assert parse_readable("sentto-nodomain", tracker_settings) is None


def test_return_path_and_local_part_of_round_trip_in_any_case():
    tracker_settings = get_settings()
    path = return_path("bounces+abc123", tracker_settings)
    assert path == "bounces+abc123@bounces.example.com"
    assert local_part_of(path.upper()) == "bounces+abc123"
    assert local_part_of("<Bounces+ABC123@bounces.example.com>") == "bounces+abc123"


@given(addresses)
def test_any_address_encodes_within_64_octets_in_both_forms(address):
    for tracker_settings in (get_settings(), readable_settings()):
        local_part = encode_local_part(address, tracker_settings)
        assert len(local_part.encode()) <= 64
        assert local_part == local_part.lower()
        assert local_part.isascii()


@pytest.mark.django_db
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(address=addresses, form=st.sampled_from(["token", "readable"]))
def test_any_address_round_trips_through_the_tracker_table(address, form):
    tracker_settings = get_settings({"VERP_FORMAT": form})
    from bounce_tracker.core.addresses import normalize_email

    tracker = ensure_trackers([normalize_email(address)], tracker_settings)[
        normalize_email(address)
    ]
    bounce_recipient = return_path(tracker.encoded_from, tracker_settings).upper()
    found = EmailAddressTracker.objects.for_local_part(local_part_of(bounce_recipient)).get()
    assert found.pk == tracker.pk
    assert found.email == normalize_email(address)


@pytest.mark.django_db
def test_legacy_encoded_from_values_keep_matching_in_any_case():
    EmailAddressTracker.objects.create(
        email="brian@example.com", encoded_from="Sentto-Brian=Example.com"
    )
    found = EmailAddressTracker.objects.for_local_part("SENTTO-BRIAN=EXAMPLE.COM").get()
    assert found.email == "brian@example.com"
