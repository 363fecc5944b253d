"""tests.settings with a classifier bug injected: reading any DSN raises KeyError.

For running ``handle_bounce`` in its own process on a message the classifier fails
on (tests/test_classifier_failure.py); the patch is made here because the child
process runs nothing of the test's own.
"""

from bounce_tracker.classify import classifier as _classifier
from tests.settings import *  # noqa: F403


def _broken_classify_dsn(report: object) -> None:
    raise KeyError("injected classifier bug")


_classifier.classify_dsn = _broken_classify_dsn  # type: ignore[assignment]
