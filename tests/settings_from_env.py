"""tests.settings with ``BOUNCE_TRACKER`` keys taken from the environment.

For tests that run a command as a process under a misconfigured site:
``BOUNCE_TRACKER_JSON='{"MAILBOX_URL": "ftp://host"}'`` adds (or replaces) those keys.
"""

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import BOUNCE_TRACKER

BOUNCE_TRACKER = {**BOUNCE_TRACKER, **json.loads(os.environ.get("BOUNCE_TRACKER_JSON", "{}"))}
