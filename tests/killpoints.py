"""Pause points for the SIGKILL tests, installed only by ``tests.fault_settings``.

With ``BOUNCE_TRACKER_TEST_PAUSE_AT`` set, a bounce handler stops at that point,
writes the file named by ``BOUNCE_TRACKER_TEST_PAUSE_FILE`` and sleeps, so the test
can kill it there with SIGKILL:

- ``before_commit``: the tracker row is updated and the event inserted, inside the
  transaction, not yet committed (``post_save`` of the event runs inside it);
- ``after_commit``: the transaction has committed (``bounce_recorded`` is sent on
  commit), the process has not exited yet.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from django.apps import AppConfig

PAUSE_SECONDS = 300


def _pause(**kwargs: Any) -> None:
    Path(os.environ["BOUNCE_TRACKER_TEST_PAUSE_FILE"]).write_text(str(os.getpid()))
    time.sleep(PAUSE_SECONDS)


class KillPointsConfig(AppConfig):
    name = "tests.killpoints"
    label = "killpoints"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from bounce_tracker.core.signals import bounce_recorded
        from bounce_tracker.models import BounceEvent

        pause_at = os.environ.get("BOUNCE_TRACKER_TEST_PAUSE_AT")
        if pause_at == "before_commit":
            post_save.connect(_pause, sender=BounceEvent, weak=False)
        elif pause_at == "after_commit":
            bounce_recorded.connect(_pause, weak=False)
        elif pause_at:
            raise ValueError(f"unknown BOUNCE_TRACKER_TEST_PAUSE_AT {pause_at!r}")
