"""tests.settings plus a site logging configuration on the root logger only.

As a site that sends every log record to Sentry or to JSON logs has it: one handler
on the root logger, nothing for ``bounce_tracker``. The handler writes to the file
named by ``BOUNCE_TRACKER_TEST_SITE_LOG``, so the daemons' logging tests can tell
the site's lines from the daemons' own stderr.
"""

import os

from tests.settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"site": {"format": "site-root %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "site": {
            "class": "logging.FileHandler",
            "filename": os.environ["BOUNCE_TRACKER_TEST_SITE_LOG"],
            "formatter": "site",
        }
    },
    "root": {"handlers": ["site"], "level": "INFO"},
}
