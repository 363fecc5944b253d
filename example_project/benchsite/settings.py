"""The example site's settings, plus the benchmark's app (its floor command)."""

from example_project.settings import *  # noqa: F403
from example_project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "benchsite"]
