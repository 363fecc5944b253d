"""A pipe-only settings module: the example site's settings with only the pipe's apps.

What a site can do for its Postfix pipe (``DJANGO_SETTINGS_MODULE`` set in the pipe's
environment, e.g. ``bounce_postfix_config --env DJANGO_SETTINGS_MODULE=…``): Django
then starts without admin, auth, sessions, messages and staticfiles. The cost: signal
receivers and ``ready()`` code of the apps left out don't run in the pipe (here none
listen to ``bounce_recorded`` or ``address_suppressed``; a site whose own app does
must keep that app).
"""

from example_project.settings import *  # noqa: F403

INSTALLED_APPS = ["bounce_tracker", "benchsite"]
