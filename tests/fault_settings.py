"""tests.settings plus the pause points of ``tests.killpoints`` (SIGKILL tests only)."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.killpoints.KillPointsConfig"]
