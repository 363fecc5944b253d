"""What to do when a service a test needs is missing from this machine.

Postfix, Dovecot, Chromium, django-anymail and a private MariaDB are not there on
every developer's machine, so a test that needs one is skipped, with the reason and
how to install it. CI sets ``BOUNCE_TRACKER_REQUIRE_SERVICES=1`` (``.ci/run``): then
the same test fails instead, naming what is missing, so that a run can't go green
with part of the suite silently left out.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def services_required() -> bool:
    """Whether this run must fail, not skip, when a service is missing.

    Read on every call, so that a test can set the variable with ``monkeypatch``.
    """
    return os.environ.get("BOUNCE_TRACKER_REQUIRE_SERVICES") == "1"


def missing_service(problem: str) -> NoReturn:
    """Skip the current test (or module) because of ``problem``; fail it when services are required.

    ``problem`` says what is missing and how to get it, e.g. "/usr/sbin/postfix is
    missing (apt-get install postfix)". Works in a test, a fixture, a
    ``pytest_runtest_setup`` hook and at module level (where the failure is a
    collection error, which fails the run too).
    """
    if services_required():
        pytest.fail(f"BOUNCE_TRACKER_REQUIRE_SERVICES=1 but {problem}", pytrace=False)
    pytest.skip(problem, allow_module_level=True)
