"""Each room validates only the settings it reads: a bad key stops its own room, no other.

A bad ``MAILBOX_URL`` (read only by the poller) must not stop ``send_mail()`` (password
resets) nor make the pipe exit 75 for every bounce; a bad ``BACKEND`` (read only by
sending) must not stop the pipe nor the LMTP receiver. Each room's own bad key still
stops that room, with its check ID, and ``manage.py check`` reports them all.
The commands run as processes, the way Postfix and cron run them.
"""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

from bounce_tracker.checks import check_settings
from bounce_tracker.models import EmailAddressTracker
from tests import messages
from tests.settings import BOUNCE_TRACKER
from tests.test_handle_bounce import database_url
from tests.test_receive_bounces import start_command, transaction

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
VERP = "bounces+abc@bounces.example.com"
BAD_MAILBOX = {"MAILBOX_URL": "ftp://host"}
BAD_BACKEND = {"BACKEND": "no.such.module.EmailBackend"}
BAD_MAX_MESSAGE_BYTES = {"MAX_MESSAGE_BYTES": 10}


def child_env(bad_keys: dict[str, object]) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings_from_env",
        "DATABASE_URL": database_url(),
        "BOUNCE_TRACKER_JSON": json.dumps(bad_keys),
    }


def handle_bounce(bad_keys: dict[str, object], *python_flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "django", "handle_bounce", "--", "", VERP],
        input=messages.dsn(),
        capture_output=True,
        env=child_env(bad_keys),
        timeout=120,
        check=False,
    )


def lmtp_reply(bad_keys: dict[str, object]) -> int:
    """Start ``receive_bounces`` under ``bad_keys``, deliver one DSN, return the LMTP code."""
    process, port = start_command(
        settings_module="tests.settings_from_env",
        env={"BOUNCE_TRACKER_JSON": json.dumps(bad_keys)},
    )
    try:
        client = smtplib.LMTP("127.0.0.1", port, timeout=30)
        client.ehlo("client.test")
        [(code, _)] = transaction(client, [VERP], messages.dsn())
        client.quit()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    return code


def send_one() -> int:
    return mail.send_mail("Hello", "Body", "shop@example.com", ["ann@example.org"])


@pytest.fixture
def tracker():
    return EmailAddressTracker.objects.create(email="dead@example.org", encoded_from="bounces+abc")


def bounces_recorded(tracker: EmailAddressTracker) -> int:
    tracker.refresh_from_db()
    return tracker.bounce_count


# --- a bad MAILBOX_URL: only the poller stops -------------------------------------------


def test_a_bad_mailbox_url_leaves_send_mail_working():
    with override_settings(BOUNCE_TRACKER={**BOUNCE_TRACKER, **BAD_MAILBOX}):
        assert send_one() == 1
    [copy] = mail.outbox
    assert copy.from_email.endswith("@bounces.example.com")  # the VERP return path


def test_a_bad_mailbox_url_leaves_the_pipe_working(tracker):
    result = handle_bounce(BAD_MAILBOX)
    assert (result.returncode, result.stderr) == (0, b"")
    assert bounces_recorded(tracker) == 1


def test_a_bad_mailbox_url_leaves_the_receiver_working(tracker):
    assert lmtp_reply(BAD_MAILBOX) == 250
    assert bounces_recorded(tracker) == 1


def test_a_bad_mailbox_url_stops_the_poller_with_its_check_id():
    with (
        override_settings(BOUNCE_TRACKER={**BOUNCE_TRACKER, **BAD_MAILBOX}),
        pytest.raises(ImproperlyConfigured, match=r"MAILBOX_URL.*bounce_tracker\.E016"),
    ):
        call_command("poll_bounce_mailbox")


# --- a bad BACKEND: only sending stops ----------------------------------------------------


def test_a_bad_backend_leaves_the_pipe_working(tracker):
    result = handle_bounce(BAD_BACKEND)
    assert (result.returncode, result.stderr) == (0, b"")
    assert bounces_recorded(tracker) == 1


def test_a_bad_backend_leaves_the_receiver_working(tracker):
    assert lmtp_reply(BAD_BACKEND) == 250
    assert bounces_recorded(tracker) == 1


def test_a_bad_backend_stops_sending_with_its_check_id():
    with (
        override_settings(BOUNCE_TRACKER={**BOUNCE_TRACKER, **BAD_BACKEND}),
        pytest.raises(ImproperlyConfigured, match=r"BACKEND.*bounce_tracker\.E004"),
    ):
        send_one()
    assert mail.outbox == []


# --- a bad MAX_MESSAGE_BYTES: the pipe defers, sending goes on -----------------------------


def test_a_bad_max_message_bytes_makes_the_pipe_defer_with_its_check_id(tracker):
    result = handle_bounce(BAD_MAX_MESSAGE_BYTES)
    assert result.returncode == 75
    assert b"bounce_tracker.E012" in result.stderr
    assert bounces_recorded(tracker) == 0


def test_a_bad_max_message_bytes_leaves_send_mail_working():
    with override_settings(BOUNCE_TRACKER={**BOUNCE_TRACKER, **BAD_MAX_MESSAGE_BYTES}):
        assert send_one() == 1


# --- the checks still see everything -------------------------------------------------------


def test_the_system_checks_report_every_rooms_bad_key_with_its_id():
    bad = {
        **BOUNCE_TRACKER,
        **BAD_MAILBOX,
        **BAD_BACKEND,
        **BAD_MAX_MESSAGE_BYTES,
        "SEND_WHEN_DATABASE_DOWN": "maybe",
        "SOFT_BOUNCE_LIMIT": 7,
    }
    with override_settings(BOUNCE_TRACKER=bad):
        ids = sorted(message.id for message in check_settings())
    assert ids == [
        "bounce_tracker.E004",
        "bounce_tracker.E007",
        "bounce_tracker.E012",
        "bounce_tracker.E015",
        "bounce_tracker.E016",
    ]


def test_the_pipe_imports_nothing_of_the_sending_side(tracker):
    result = handle_bounce({}, "-X", "importtime")
    assert result.returncode == 0, result.stderr.decode()
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.decode().splitlines()
        if line.startswith("import time:")
    }
    assert "bounce_tracker.receiving.receive" in imported  # the log shows the pipe's imports
    assert sorted(name for name in imported if name.startswith("bounce_tracker.sending")) == []
    assert "bounce_tracker.backend" not in imported
    assert bounces_recorded(tracker) == 1


# --- the operations commands read only the shared keys -------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("prune_bounce_events", "--older-than", "30", "--dry-run"),
        ("bounce_postfix_config", "--manage-py", str(ROOT / "example_project" / "manage.py")),
    ],
    ids=lambda argv: argv[0],
)
def test_a_bad_backend_or_mailbox_url_leaves_the_operations_commands_working(command):
    # As a process: manage.py runs the system checks first unless the command opts out.
    result = subprocess.run(
        [sys.executable, "-m", "django", *command],
        capture_output=True,
        env=child_env({**BAD_BACKEND, **BAD_MAILBOX}),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
