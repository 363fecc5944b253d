"""``handle_bounce`` ends its process with ``os._exit``: nothing said or logged is lost.

Run as a real process, as Postfix runs it: the exit status is 0 or 75 on every path,
the event is recorded, stdout and stderr are complete, a site's buffered log handlers
are flushed and its ``atexit`` functions run, while the interpreter's teardown (here:
an object's ``__del__`` at module clean-up) is skipped. And the pipe's start imports
nothing of the sending side, the admin or the mailbox reader.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bounce_tracker.management.commands.handle_bounce import Command
from bounce_tracker.models import BounceEvent, EmailAddressTracker
from tests import messages
from tests.test_handle_bounce import ROOT, VERP, database_url

pytestmark = pytest.mark.django_db(transaction=True)

#: Modules the pipe never uses: importing one at its start is a regression.
NOT_FOR_THE_PIPE = (
    "bounce_tracker.sending",
    "bounce_tracker.backend",
    "bounce_tracker.admin",
    "bounce_tracker.receiving.mailbox",
    "imaplib",
    "poplib",
    "mailbox",
)

SITE_SETTINGS = '''\
"""tests.settings plus what a site may have: a buffered log handler, an atexit function."""

import atexit
import logging
import logging.handlers
import os

from bounce_tracker.core.signals import bounce_recorded
from tests.settings import *  # noqa: F403

_log = logging.getLogger("pipe_exit_site")


def configure_logging(config):
    """LOGGING_CONFIG: after Django's own logging set-up (which closes earlier handlers)."""
    # Buffered: written to the file only when flushed or closed (logging's shutdown).
    buffer = logging.handlers.MemoryHandler(
        capacity=10_000,
        flushLevel=logging.CRITICAL,
        target=logging.FileHandler(os.environ["PIPE_EXIT_LOG"]),
    )
    _log.addHandler(buffer)
    _log.setLevel(logging.INFO)
    _log.propagate = False
    _log.info("logging configured")


LOGGING_CONFIG = "pipe_exit_site.configure_logging"
LOGGING = {"version": 1}


def _recorded(sender, tracker, event, **kwargs):
    _log.info("recorded %s for %s", event.kind, tracker.encoded_from)


bounce_recorded.connect(_recorded, weak=False, dispatch_uid="pipe_exit_site")


def _at_exit():
    with open(os.environ["PIPE_EXIT_MARKS"], "a") as marks:
        marks.write("atexit\\n")


atexit.register(_at_exit)


class _Teardown:
    """Its __del__ runs when the interpreter clears this module at teardown."""

    def __init__(self):
        self.path = os.environ["PIPE_EXIT_MARKS"]

    def __del__(self, _open=open):  # the module's globals may be gone by then
        with _open(self.path, "a") as marks:
            marks.write("teardown\\n")


_teardown = _Teardown()
'''

PIPE_ONLY_SETTINGS = '''\
"""tests.settings with only bounce_tracker installed: the pipe's own imports."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = ["bounce_tracker"]
'''


@pytest.fixture
def tracker():
    return EmailAddressTracker.objects.create(email="dead@example.org", encoded_from="bounces+abc")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "pipe_exit_site.py").write_text(SITE_SETTINGS)
    (tmp_path / "pipe_only_settings.py").write_text(PIPE_ONLY_SETTINGS)
    return tmp_path


def run(
    site: Path,
    *args: str,
    stdin: bytes = b"",
    settings: str = "pipe_exit_site",
    url: str | None = None,
    python: tuple[str, ...] = (),
    command: str = "handle_bounce",
) -> subprocess.CompletedProcess[bytes]:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{ROOT}:{site}",
        "DJANGO_SETTINGS_MODULE": settings,
        "DATABASE_URL": url or database_url(),
        "PIPE_EXIT_LOG": str(site / "site.log"),
        "PIPE_EXIT_MARKS": str(site / "marks"),
    }
    return subprocess.run(
        [sys.executable, *python, "-m", "django", command, *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


def marks(site: Path) -> list[str]:
    path = site / "marks"
    return path.read_text().split() if path.exists() else []


def site_log(site: Path) -> list[str]:
    path = site / "site.log"
    return path.read_text().splitlines() if path.exists() else []


def test_recorded_exit_0_quiet_logs_flushed_atexit_run_teardown_skipped(site, tracker):
    result = run(site, "--", "MAILER-DAEMON", VERP, stdin=messages.dsn())
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    tracker.refresh_from_db()
    assert tracker.bounce_count == 1
    assert BounceEvent.objects.filter(tracker=tracker).count() == 1
    assert site_log(site) == ["logging configured", "recorded hard for bounces+abc"]
    assert marks(site) == ["atexit"]  # no "teardown": the process ended with os._exit


def test_the_marker_shows_teardown_in_an_ordinary_command(site):
    # The control for the test above: the same settings, a command that exits normally.
    result = run(site, "--version", command="check")
    assert result.returncode == 0, result.stderr.decode()
    assert marks(site) == ["atexit", "teardown"]


def test_database_down_exit_75_one_complete_line_logs_flushed(site, tracker):
    url = f"sqlite:///{site / 'no-such-directory' / 'db.sqlite3'}"
    result = run(site, "--", "MAILER-DAEMON", VERP, stdin=messages.dsn(), url=url)
    assert result.returncode == 75
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines(keepends=True)
    assert len(lines) == 1, lines
    assert lines[0].startswith("bounce not recorded, Postfix will retry: OperationalError")
    assert lines[0].endswith("\n")
    assert site_log(site) == ["logging configured"]
    assert marks(site) == ["atexit"]
    tracker.refresh_from_db()
    assert tracker.bounce_count == 0


def test_bad_arguments_exit_75_with_the_reason(site):
    result = run(site, "--no-such-option", stdin=messages.dsn())
    assert result.returncode == 75
    assert result.stderr.decode().startswith("bounce not recorded, Postfix will retry: bad ")
    assert result.stderr.endswith(b"\n")
    assert marks(site) == ["atexit"]


def test_probe_and_help_exit_0_with_their_output_flushed(site, tracker):
    probe = run(site, "--probe")
    assert probe.returncode == 0, probe.stderr.decode()
    assert probe.stdout.decode().startswith("the pipe can record bounces in ")
    assert probe.stdout.endswith(b"\n")
    usage = run(site, "--help")
    assert usage.returncode == 0
    assert b"--probe" in usage.stdout
    assert marks(site) == ["atexit", "atexit"]


def test_in_process_run_from_argv_still_raises_system_exit(tracker):
    # Not the process's own command line: the caller's process goes on.
    with pytest.raises(SystemExit) as exited:
        Command().run_from_argv(["manage.py", "handle_bounce", "--probe"])
    assert exited.value.code == 0


def imported_modules(result: subprocess.CompletedProcess[bytes]) -> set[str]:
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.decode().splitlines()
        if line.startswith("import time:")
    }


def unwanted(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(
        name for name in modules if any(name == p or name.startswith(p + ".") for p in prefixes)
    )


def test_the_pipe_imports_no_sending_admin_or_mailbox_code(site, tracker):
    result = run(
        site,
        "--",
        "MAILER-DAEMON",
        VERP,
        stdin=messages.dsn(),
        settings="pipe_only_settings",
        python=("-X", "importtime"),
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    modules = imported_modules(result)
    assert "bounce_tracker.receiving.receive" in modules  # the log shows the pipe's imports
    assert unwanted(modules, NOT_FOR_THE_PIPE) == []
    tracker.refresh_from_db()
    assert tracker.bounce_count == 1


def test_with_the_admin_installed_only_the_admins_autodiscovery_adds_admin_code(site, tracker):
    # django.contrib.admin imports every app's admin module in django.setup(), for any
    # command; the pipe itself adds neither the sending side nor the mailbox reader.
    result = run(
        site,
        "--",
        "MAILER-DAEMON",
        VERP,
        stdin=messages.dsn(),
        settings="tests.settings",
        python=("-X", "importtime"),
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    modules = imported_modules(result)
    assert unwanted(modules, tuple(p for p in NOT_FOR_THE_PIPE if "admin" not in p)) == []
