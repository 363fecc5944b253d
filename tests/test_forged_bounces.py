"""Forged bounces can't suppress real users, and can't fill the disk.

A forger knows (or guesses) a customer's address and can send our bounce domain a
perfectly well-formed hard-bounce DSN naming it. What decides whether anything
happens is only the VERP local part of the envelope recipient: the DSN's body
(Final-Recipient, To, the quoted original headers) never selects an address.

The token is 26 lower-case base32 characters, i.e. 26 * 5 = 130 bits of an
HMAC-SHA256 keyed with ``VERP_SECRET`` (or a key derived from ``SECRET_KEY``). A
forger who doesn't have the key guesses: each forged message hits *some* tracked
address with probability N / 2**130 for N tracked addresses. With a million
addresses and a billion forged messages that is 10**15 / 2**130 ≈ 7e-25;
and the token of one known address is no easier than any other (no partial credit:
a token one character off is as unmatched as a random one). Without the key the
token can't be computed, and a different key gives different tokens.

The readable form (``VERP_FORMAT = "readable"``, ``bounces+user=domain``) is
forgeable by anyone who knows the address; the docs say so, and a test here shows
it. When the readable form is off, a readable local part matches nothing.

Every unmatched message is stored, but only the newest ``UNMATCHED_MAX_MESSAGES``
are kept, so a flood is bounded in rows (and rows are bounded in size by
``RAW_MESSAGE_MAX_BYTES``).
"""

from __future__ import annotations

import io
import logging
import random
import re
import string
import threading
from pathlib import Path

import pytest
from django.db import connection

from bounce_tracker.core.events import prune_unmatched
from bounce_tracker.core.settings import TOKEN_LENGTH, get_settings
from bounce_tracker.core.verp import address_token, encode_local_part
from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage
from bounce_tracker.receiving.receive import Outcome, read_message, receive_message
from bounce_tracker.sending.tracking import ensure_trackers
from tests import messages

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOMAIN = "bounces.example.com"
VICTIM = "customer@example.org"
BYSTANDER = "someone.else@example.net"
BASE32 = string.ascii_lowercase + "234567"
TOKEN_RE = re.compile(rf"^[a-z2-7]{{{TOKEN_LENGTH}}}$")
TRACKER_FIELDS = [field.name for field in EmailAddressTracker._meta.concrete_fields]


def snapshot() -> dict[str, tuple]:
    return {
        row["email"]: tuple(row[name] for name in TRACKER_FIELDS)
        for row in EmailAddressTracker.objects.values(*TRACKER_FIELDS)
    }


def deliver(local_part: str, named: str = VICTIM, **dsn):
    """A well-formed hard-bounce DSN for ``named``, delivered to ``local_part@DOMAIN``."""
    recipient = f"{local_part}@{DOMAIN}"
    raw = messages.dsn(named, return_path=recipient, **dsn)
    return receive_message(read_message(io.BytesIO(raw), 10**6), "MAILER-DAEMON", recipient)


@pytest.fixture
def victims():
    trackers = ensure_trackers([VICTIM, BYSTANDER], get_settings())
    EmailAddressTracker.objects.update(msg_count=5)
    return trackers


def one_off_tokens(token: str) -> list[str]:
    """Every token that differs from ``token`` in exactly one character (26 * 31)."""
    return [
        token[:i] + char + token[i + 1 :]
        for i in range(len(token))
        for char in BASE32
        if char != token[i]
    ]


# --- 1. a wrong or guessed token suppresses nobody ----------------------------------------


def test_two_thousand_random_tokens_and_every_near_miss_suppress_nobody(victims):
    real = victims[VICTIM].encoded_from
    assert real.startswith("bounces+")
    token = real.removeprefix("bounces+")
    assert TOKEN_RE.match(token)
    rng = random.Random(20260503)
    guesses = {"".join(rng.choice(BASE32) for _ in range(TOKEN_LENGTH)) for _ in range(2000)}
    guesses |= set(one_off_tokens(token))
    guesses |= {token[:-1], token + "a", token[1:], "a" + token, token[::-1], ""}
    guesses.discard(token)
    local_parts = {f"bounces+{guess}" for guess in guesses}
    # The same token behind another prefix or delimiter, and the readable form, which
    # is not in use (VERP_FORMAT is "token"): none of them is the stored local part.
    local_parts |= {
        f"sentto+{token}",
        f"bounces-{token}",
        f"bounces+{token}+x",
        "bounces+customer=example.org",
        "bounces",
        "customer",
    }
    assert len(local_parts) >= 2000 + 26 * 31
    before = snapshot()

    outcomes = {deliver(local_part).outcome for local_part in sorted(local_parts)}

    assert outcomes == {Outcome.UNMATCHED}
    assert snapshot() == before  # no count, no date, no suppression mark changed
    assert BounceEvent.objects.count() == 0
    assert UnmatchedMessage.objects.count() == len(local_parts)
    assert not EmailAddressTracker.objects.get(email=VICTIM).is_suppressed
    readable = UnmatchedMessage.objects.get(envelope_recipient__startswith="bounces+customer=")
    assert readable.kind == "hard"  # classified as what it claims, stored, nothing more
    assert "customer@example.org" in readable.reason

    # Control: the very same DSN to the real return path does suppress.
    assert deliver(real).outcome == Outcome.RECORDED
    assert EmailAddressTracker.objects.get(email=VICTIM).is_suppressed


def test_the_real_token_in_other_letter_case_still_matches(victims):
    # Not a forgery: MTAs that change case must not break matching (DESIGN: lower-case).
    real = victims[VICTIM].encoded_from
    assert deliver(real.upper()).outcome == Outcome.RECORDED


# --- 2. only the token decides, never the body --------------------------------------------


def test_the_address_named_in_the_dsn_body_does_not_matter(victims):
    """A DSN to the bystander's return path naming the victim (Final-Recipient, To,
    the quoted headers) counts for the bystander only; the victim is untouched."""
    before = snapshot()
    result = deliver(victims[BYSTANDER].encoded_from, named=VICTIM)
    assert result.outcome == Outcome.RECORDED
    assert result.event.tracker.email == BYSTANDER
    after = snapshot()
    assert after[VICTIM] == before[VICTIM]
    assert EmailAddressTracker.objects.get(email=BYSTANDER).bounce_count == 1
    assert not EmailAddressTracker.objects.get(email=VICTIM).is_suppressed


def test_a_forged_dsn_naming_the_victim_is_unmatched_whatever_its_body_says(victims):
    before = snapshot()
    for named in (VICTIM, VICTIM.upper(), f"<{VICTIM}>"):
        assert deliver("bounces+" + "a" * TOKEN_LENGTH, named=named).outcome == Outcome.UNMATCHED
    assert snapshot() == before


# --- 3. the token needs the key ----------------------------------------------------------


def test_the_token_is_not_derivable_without_the_secret():
    secret_a, secret_b = b"first-secret-0123456789", b"second-secret-0123456789"
    token_a = address_token(VICTIM, secret_a)
    assert TOKEN_RE.match(token_a)
    assert address_token(VICTIM, secret_a) == token_a  # stable
    assert address_token(VICTIM.upper(), secret_a) == token_a  # case-folded first
    assert address_token(VICTIM, secret_b) != token_a
    assert address_token(VICTIM, None) != token_a  # the SECRET_KEY-derived key
    # And through the settings: another VERP_SECRET, another return path.
    local_a = encode_local_part(VICTIM, get_settings({"VERP_SECRET": secret_a.decode()}))
    local_b = encode_local_part(VICTIM, get_settings({"VERP_SECRET": secret_b.decode()}))
    assert local_a == f"bounces+{token_a}"
    assert local_b != local_a
    # Nothing of the address shows in the token.
    for part in ("customer", "example"):
        assert part not in token_a


def test_tokens_use_all_130_bits_so_a_guess_hits_with_probability_n_over_2_to_the_130():
    tokens = [address_token(f"user{n}@example.com", b"k" * 16) for n in range(2000)]
    assert len(set(tokens)) == len(tokens)
    assert len(BASE32) ** TOKEN_LENGTH == 2**130
    # Every position takes (nearly) every one of the 32 characters: no fixed part.
    for position in range(TOKEN_LENGTH):
        assert len({token[position] for token in tokens}) == 32


# --- 4. the readable form is guessable, and documented so ---------------------------------


def test_the_docs_say_the_readable_form_is_forgeable():
    for page in ("settings.rst", "sending.rst"):
        text = " ".join((DOCS / page).read_text(encoding="utf-8").split())
        assert re.search(r"readable.{0,400}forge", text, re.IGNORECASE | re.DOTALL), page
    sending = " ".join((DOCS / "sending.rst").read_text(encoding="utf-8").split())
    assert "unguessable without the key" in sending


def test_with_the_readable_form_on_anyone_who_knows_the_address_can_suppress_it(settings):
    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "VERP_FORMAT": "readable"}
    tracker = ensure_trackers([VICTIM], get_settings())[VICTIM]
    assert tracker.encoded_from == "bounces+customer=example.org"
    assert deliver("bounces+customer=example.org").outcome == Outcome.RECORDED
    assert EmailAddressTracker.objects.get(email=VICTIM).is_suppressed


# --- bounded unmatched storage ------------------------------------------------------------


def forge(count: int, start: int = 0) -> list[int]:
    """``count`` forged bounces to distinct unknown tokens; the stored rows' ids."""
    ids = []
    for n in range(start, start + count):
        result = deliver(f"bounces+forged{n:021d}")
        assert result.outcome == Outcome.UNMATCHED
        ids.append(result.unmatched.pk)
    return ids


def test_a_flood_of_forged_bounces_keeps_only_the_newest_cap(settings, caplog):
    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "UNMATCHED_MAX_MESSAGES": 50}
    with caplog.at_level(logging.WARNING, logger="bounce_tracker"):
        ids = forge(200)
    kept = sorted(UnmatchedMessage.objects.values_list("id", flat=True))
    assert kept == sorted(ids)[-50:]
    recipients = set(UnmatchedMessage.objects.values_list("envelope_recipient", flat=True))
    assert recipients == {f"bounces+forged{n:021d}@{DOMAIN}" for n in range(150, 200)}
    # One warning per prune (one row each time, once the cap was reached).
    prunes = [r for r in caplog.records if "UNMATCHED_MAX_MESSAGES" in r.getMessage()]
    assert len(prunes) == 150
    assert all(r.levelno == logging.WARNING for r in prunes)
    assert "deleted the 1 oldest" in prunes[0].getMessage()


def test_below_the_cap_nothing_is_deleted(settings):
    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "UNMATCHED_MAX_MESSAGES": 50}
    forge(50)
    assert UnmatchedMessage.objects.count() == 50
    assert prune_unmatched(50) == 0


def test_a_redelivered_unmatched_message_is_a_duplicate_and_prunes_nothing(settings):
    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "UNMATCHED_MAX_MESSAGES": 3}
    raw = messages.dsn(VICTIM, return_path=f"bounces+x@{DOMAIN}", message_id="<same@mx>")
    for expected in (Outcome.UNMATCHED, Outcome.DUPLICATE):
        result = receive_message(read_message(io.BytesIO(raw), 10**6), "", f"bounces+x@{DOMAIN}")
        assert result.outcome == expected
    assert UnmatchedMessage.objects.count() == 1


def test_a_lowered_cap_converges_in_bounded_batches(settings, caplog):
    forge(30)
    with caplog.at_level(logging.WARNING, logger="bounce_tracker"):
        assert prune_unmatched(5, batch=10) == 10
        assert prune_unmatched(5, batch=10) == 10
        assert prune_unmatched(5, batch=10) == 5
        assert prune_unmatched(5, batch=10) == 0
    assert UnmatchedMessage.objects.count() == 5
    assert len([r for r in caplog.records if "deleted the" in r.getMessage()]) == 3


def test_the_cap_ignores_gaps_in_the_ids(settings):
    # Attached (deleted) rows leave gaps: the cap counts rows, not the id range.
    ids = forge(20)
    UnmatchedMessage.objects.filter(id__in=ids[::2]).delete()
    assert prune_unmatched(10) == 0
    assert prune_unmatched(10, newest_pk=ids[-1]) == 0
    assert prune_unmatched(4, newest_pk=ids[-1]) == 6
    assert sorted(UnmatchedMessage.objects.values_list("id", flat=True)) == ids[1::2][-4:]


def test_matched_bounces_are_never_pruned(settings, victims):
    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "UNMATCHED_MAX_MESSAGES": 1}
    assert deliver(victims[VICTIM].encoded_from, status="4.2.2").outcome == Outcome.RECORDED
    forge(5)
    assert BounceEvent.objects.count() == 1
    assert UnmatchedMessage.objects.count() == 1


@pytest.mark.parametrize("value", [0, -1, "10000", 1.5, True, None])
def test_a_bad_cap_has_its_own_check_id(settings, value):
    from bounce_tracker.checks import check_settings

    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "UNMATCHED_MAX_MESSAGES": value}
    assert "bounce_tracker.E014" in [message.id for message in check_settings()]


def test_the_cap_defaults_to_ten_thousand():
    assert get_settings().unmatched_max_messages == 10_000


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor == "sqlite", reason="needs a database server")
def test_concurrent_forged_floods_never_fail_and_end_at_the_cap(settings):
    """8 handlers store 40 forged bounces each at once, cap 25: no store fails (no
    deadlock or lock error reaches the caller, which would mean exit 75), and the
    table ends at the cap once a last prune has run."""
    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "UNMATCHED_MAX_MESSAGES": 25}
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    stored: list[int] = []

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            stored.extend(forge(40, start=index * 1000))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a forging worker did not finish in 120 s"
    assert errors == []
    assert len(stored) == 320
    # Concurrent prunes each see their own snapshot, so a few extra rows may remain
    # until the next message; the next prune brings the table back to the cap.
    assert UnmatchedMessage.objects.count() <= 25 + 8
    prune_unmatched(25)
    kept = sorted(UnmatchedMessage.objects.values_list("id", flat=True))
    assert kept == sorted(stored)[-25:]
