import pytest
from hypothesis import given
from hypothesis import strategies as st

from bounce_tracker.core.addresses import (
    InvalidAddressError,
    InvalidMessageError,
    normalize_email,
    parse_address,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        ('"Alice Liddell" <alice@example.com>', "alice@example.com"),
        ("Alice <Alice@Example.COM>", "Alice@Example.COM"),
        (("Alice", "alice@example.com"), "alice@example.com"),
        ("  bob@example.com  ", "bob@example.com"),
    ],
)
def test_parse_address_accepts_plain_and_display_name_forms(value, expected):
    assert parse_address(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("alice@example.com\r\nBcc: victim@example.com", "line break"),
        ("alice@example.com\n", "line break"),
        ("no-at-sign.example.com", "no '@domain'"),
        ("alice@", "no '@domain'"),
        ("", "Empty"),
        ("   ", "Empty"),
        ("a@b.com, c@d.com", "not one mailbox"),
        ("x" * 250 + "@example.com", "longer than 254 octets"),
        ("nul\x00@example.com", "NUL"),
    ],
)
def test_parse_address_rejects_unsafe_addresses_naming_the_problem(value, problem):
    with pytest.raises(InvalidAddressError, match=problem):
        parse_address(value)


def test_invalid_address_error_is_an_invalid_message_error_and_a_value_error():
    assert issubclass(InvalidAddressError, InvalidMessageError)
    assert issubclass(InvalidAddressError, ValueError)


def test_normalize_email_folds_case_and_idn_domains():
    assert normalize_email("Bob@Bücher.DE") == "bob@xn--bcher-kva.de"
    assert normalize_email("bob@xn--bcher-kva.de") == "bob@xn--bcher-kva.de"
    assert normalize_email("MiXeD.Case+tag@Example.Org.") == "mixed.case+tag@example.org"


def test_normalize_email_rejects_an_address_that_grows_past_254_octets_in_ascii_form():
    long_idn = "ü" * 60 + "." + "ö" * 60 + ".de"
    local = "x" * (254 - len(long_idn) - 1)
    with pytest.raises(InvalidAddressError, match="254 octets"):
        normalize_email(f"{local}@{long_idn}")


@given(st.emails())
def test_normalize_email_is_idempotent_and_case_insensitive(address):
    normalized = normalize_email(address)
    assert normalize_email(normalized) == normalized
    assert normalize_email(address.upper()) == normalize_email(address.lower())
