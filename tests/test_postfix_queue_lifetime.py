"""Which Postfix setting limits how long a bounce waits for the database: bounce_queue_lifetime.

DSNs come with a null envelope sender (``MAIL FROM:<>``), and Postfix's queue
manager gives up on null-sender mail after ``bounce_queue_lifetime``, not
``maximal_queue_lifetime`` (docs/reliability.md, "What is not promised"). Shown on
a private Postfix whose pipe is the rendered ``handle_bounce`` with an unreachable
database, so that every delivery exits 75: with ``maximal_queue_lifetime`` at one
day and ``bounce_queue_lifetime`` at 3 seconds, the DSN expires at its first retry
after 3 seconds while a reply with a real sender stays queued. The test retries
with ``postqueue -f`` (the "hold" profile: no retries of Postfix's own).
"""

from __future__ import annotations

import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from bounce_tracker.core.settings import get_settings
from bounce_tracker.ops.postfix import PipeOptions, backdate_config
from tests.postfix_harness import PostfixInstance, readable_installation, wait_until
from tests.services import missing_service
from tests.test_packaging import sqlite_pass_only

# Postfix's behaviour, shown once per run (it needs no database server).
pytestmark = [pytest.mark.postfix, pytest.mark.long, sqlite_pass_only]

BOUNCE_DOMAIN = "bounces.example.com"
# Nothing listens on port 1: every delivery fails to connect and exits 75.
UNREACHABLE_DATABASE = "mysql://root:@127.0.0.1:1/bounce_tracker"
# Beside the "hold" profile's maximal_queue_lifetime of 1 day: null-sender mail
# expires after 3 s.
BOUNCE_QUEUE_LIFETIME = 3
DSN = (
    "From: MAILER-DAEMON@mx.remote.example\n"
    "To: bounces+dsnwaiting@bounces.example.com\n"
    "Subject: Undelivered Mail Returned to Sender\n"
    "\n"
    "<gone@remote.example>: host mx.remote.example said: 550 5.1.1 No such user\n"
)
REPLY = (
    "From: Someone <someone@remote.example>\n"
    "To: bounces+replywaiting@bounces.example.com\n"
    "Subject: Re: Newsletter\n"
    "\n"
    "Please take me off the list.\n"
)


@pytest.fixture(scope="module")
def postfix() -> Iterator[PostfixInstance]:
    if not Path("/usr/sbin/postfix").exists():
        missing_service("/usr/sbin/postfix is missing (apt-get install postfix)")
    with readable_installation() as (python, pythonpath):
        pipe = PipeOptions(
            python=python,
            manage_py=str(Path(pythonpath) / "example_project" / "manage.py"),
            user="nobody",
            environment={
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "PYTHONPATH": pythonpath,
                "DATABASE_URL": UNREACHABLE_DATABASE,
            },
        )
        with override_settings(BOUNCE_TRACKER={"BOUNCE_DOMAIN": BOUNCE_DOMAIN}):
            tracker_settings = get_settings()
        instance = PostfixInstance(pipe, tracker_settings, routes={})
        instance.start("hold")
        try:
            subprocess.run(
                [
                    "postconf",
                    "-c",
                    str(instance.etc),
                    "-e",
                    f"bounce_queue_lifetime = {BOUNCE_QUEUE_LIFETIME}s",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            backdate_config(instance.etc)
            subprocess.run(
                ["/usr/sbin/postfix", "-c", str(instance.etc), "reload"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            yield instance
        finally:
            instance.stop()


def test_a_waiting_dsn_expires_after_bounce_queue_lifetime_not_maximal_queue_lifetime(postfix):
    assert "maximal_queue_lifetime = 1d" in (postfix.etc / "main.cf").read_text()
    dsn_deferred = r"to=<bounces\+dsnwaiting@.*status=deferred"
    reply_deferred = r"to=<bounces\+replywaiting@.*status=deferred"
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30) as smtp:
        smtp.sendmail("", ["bounces+dsnwaiting@bounces.example.com"], DSN)
        smtp.sendmail("someone@remote.example", ["bounces+replywaiting@bounces.example.com"], REPLY)
    sent = time.monotonic()
    # Both reach the pipe and are deferred (exit 75); younger than 3 s, nothing expires.
    postfix.wait_for_log(dsn_deferred, timeout=60)
    postfix.wait_for_log(reply_deferred, timeout=60)
    assert postfix.log_lines(r"status=expired") == []

    # Retried once both are older than bounce_queue_lifetime: the DSN (null sender)
    # expires and leaves the queue; the reply (a real sender) is deferred again.
    time.sleep(max(0.0, sent + BOUNCE_QUEUE_LIFETIME + 1 - time.monotonic()))
    postfix.flush()
    (expired,) = postfix.wait_for_log(r"status=expired", timeout=60)
    assert "from=<>, status=expired" in expired
    postfix.wait_for_log(reply_deferred, timeout=60, count=2)
    wait_until(lambda: len(postfix.queue()) == 1, 30, "the expired DSN to leave the queue")
    (waiting,) = postfix.queue()
    assert waiting["sender"] == "someone@remote.example"

    # And again: the reply waits for maximal_queue_lifetime.
    postfix.flush()
    postfix.wait_for_log(reply_deferred, timeout=60, count=3)
    assert len(postfix.log_lines(r"status=expired")) == 1
    assert len(postfix.queue()) == 1
