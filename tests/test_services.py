"""A missing service skips its tests, and fails them under BOUNCE_TRACKER_REQUIRE_SERVICES=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import missing_service

ROOT = Path(__file__).resolve().parent.parent

# Runs pytest with Postfix and django-anymail made to look missing.
_WITHOUT_POSTFIX_AND_ANYMAIL = """\
import sys
import pytest
sys.modules["anymail"] = None  # "import anymail..." raises ImportError
import tests.postfix_harness
tests.postfix_harness.POSTFIX = "/nonexistent/postfix"
sys.exit(pytest.main(sys.argv[1:]))
"""
_TESTS = [
    "tests/test_postfix_config.py::test_postfix_check_passes_on_the_lmtp_configuration",
    "tests/test_send_refusals.py::test_failed_and_queued_statuses_are_not_refusals",
]


def test_a_missing_service_skips_by_default(monkeypatch):
    monkeypatch.delenv("BOUNCE_TRACKER_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^x is missing$"):
        missing_service("x is missing")


def test_a_missing_service_fails_when_services_are_required(monkeypatch):
    monkeypatch.setenv("BOUNCE_TRACKER_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match=r"REQUIRE_SERVICES=1 but x is missing$"):
        missing_service("x is missing")


def run_without_postfix_and_anymail(require: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "TEST_DATABASE_NAME", "PYTEST_ADDOPTS")
    }
    env["BOUNCE_TRACKER_REQUIRE_SERVICES"] = require
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_POSTFIX_AND_ANYMAIL, "-p", "no:cacheprovider", *_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("require", "returncode", "summary", "prefix"),
    [
        ("0", 0, "2 skipped", ""),
        ("1", 1, "2 errors", "BOUNCE_TRACKER_REQUIRE_SERVICES=1 but "),
    ],
)
def test_without_postfix_and_anymail_their_tests_skip_or_fail_when_required(
    require, returncode, summary, prefix
):
    result = run_without_postfix_and_anymail(require)
    assert result.returncode == returncode, result.stdout + result.stderr
    assert summary in result.stdout
    assert f"{prefix}/nonexistent/postfix is missing" in result.stdout
    assert f"{prefix}django-anymail can't be imported" in result.stdout
