"""A DSN larger than the bytes the receiver keeps, through a real Postfix ``lmtp:``.

Issue 18: the receiver announced ``SIZE 5242880`` (the bytes it keeps), so Postfix's
LMTP client refused a 6 MB bounce itself — ``dsn=5.3.4, status=bounced (message size
… exceeds size limit …)`` — and, the sender being ``<>``, removed it: no notice,
nothing stored. The receiver reads any size and keeps the first ``MAX_MESSAGE_BYTES``,
so ``receive_bounces`` started with no options announces ``SIZE`` with no number
(RFC 1870: no fixed maximum). Postfix's LMTP client then sets no limit of its own
(it still declares ``SIZE=`` at MAIL, which is accepted), and the bounce is recorded.
"""

from __future__ import annotations

import re
import signal
import smtplib
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from bounce_tracker.core.settings import get_settings
from bounce_tracker.models import BounceEvent, EmailAddressTracker
from bounce_tracker.ops.postfix import PipeOptions
from tests import messages
from tests.postfix_harness import PostfixInstance, wait_until
from tests.test_receive_bounces import VERP, start_command

pytestmark = [pytest.mark.postfix, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
BOUNCE_DOMAIN = "bounces.example.com"


def test_a_6_mb_dsn_through_postfix_lmtp_is_recorded_not_bounced():
    tracker = EmailAddressTracker.objects.create(
        email="dead@example.org", encoded_from="bounces+abc"
    )
    receiver, port = start_command()  # no options: what an operator starts
    instance = None
    try:
        with override_settings(BOUNCE_TRACKER={"BOUNCE_DOMAIN": BOUNCE_DOMAIN}):
            tracker_settings = get_settings()
        instance = PostfixInstance(
            PipeOptions(
                python=sys.executable,
                manage_py=str(ROOT / "example_project" / "manage.py"),
                lmtp=f"inet:127.0.0.1:{port}",
            ),
            tracker_settings,
            routes={},
        )
        instance.start("hold")
        # An NDR with a large original attached: the report first, then ~6 MB.
        padding = (b"x" * 76 + b"\r\n") * (6_000_000 // 78)
        raw = messages.dsn().replace(b"\n", b"\r\n") + b"\r\n" + padding
        assert len(raw) > 6_000_000
        with smtplib.SMTP("127.0.0.1", instance.smtp_port, timeout=60) as client:
            client.sendmail("", [VERP], raw)
        to = re.escape(f"to=<{VERP}>")
        [line] = instance.wait_for_log(rf"postfix/lmtp\[.*{to}.*status=(sent|bounced|deferred)", 60)
        assert "status=sent" in line, line
        assert "recorded" in line, line
        wait_until(BounceEvent.objects.exists, 30, "the bounce to be stored")
        event = BounceEvent.objects.get()
        assert event.kind == "hard"
        assert event.raw_truncated
        tracker.refresh_from_db()
        assert tracker.bounce_count == 1
        assert not instance.log_lines(r"status=bounced|exceeds size limit")
    finally:
        if instance is not None:
            instance.stop()
        receiver.send_signal(signal.SIGTERM)
        _, err = receiver.communicate(timeout=60)
    assert receiver.returncode == 0, err.decode()[-3000:]
    assert b" truncated " in err  # the receiver's log line says what it kept
