"""``bounce_postfix_config --check`` proves the pipe works as Postfix will run it.

The check runs ``handle_bounce --probe`` as the pipe's user (``nobody``) with the
rendered interpreter, launcher, manage.py and environment. These tests use the
example site, as the docs do: its settings read ``DATABASE_URL`` and fall back to a
SQLite file next to manage.py, which ``nobody`` can't write. The database here is a
migrated SQLite file that ``nobody`` owns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bounce_tracker.ops.pipe_check import check_pipe
from bounce_tracker.ops.postfix import PipeOptions
from tests.postfix_harness import readable_installation

pytestmark = pytest.mark.postfix

SETTINGS = "example_project.settings"


@pytest.fixture(scope="module")
def installation():
    """(python, app directory) that nobody can use, and a database nobody can write."""
    assert os.geteuid() == 0, "--check runs the probe as the pipe user: it needs root"
    with readable_installation() as (python, app):
        base = Path(tempfile.mkdtemp(prefix="bt-check-", dir="/tmp"))
        try:
            base.chmod(0o755)
            (base / "db").mkdir()
            url = f"sqlite:///{base / 'db' / 'bounces.sqlite3'}"
            manage(python, app, "migrate", "-v0", env={"DATABASE_URL": url})
            shutil.chown(base / "db", "nobody", "nogroup")
            shutil.chown(base / "db" / "bounces.sqlite3", "nobody", "nogroup")
            yield python, app, url, base
        finally:
            shutil.rmtree(base, ignore_errors=True)


def manage(python, app, *args, env):
    """``manage.py ARGS`` of the example site, as root, with ``env`` and nothing else."""
    return subprocess.run(
        [python, str(Path(app) / "example_project" / "manage.py"), *args],
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": SETTINGS, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=args[0] == "migrate",
    )


def pipe(installation, **overrides) -> PipeOptions:
    python, app, url, _ = installation
    return PipeOptions(
        **{
            "python": python,
            "manage_py": str(Path(app) / "example_project" / "manage.py"),
            "launcher": str(Path(app) / "bounce_tracker" / "ops" / "pipe_launcher.py"),
            "environment": {"DJANGO_SETTINGS_MODULE": SETTINGS, "DATABASE_URL": url},
            **overrides,
        }
    )


def test_a_good_configuration_passes_postfix_check_and_the_probe_as_nobody(installation):
    python, app, url, _ = installation
    result = manage(
        python, app, "bounce_postfix_config", "--check", "--env", "DATABASE_URL",
        env={"DATABASE_URL": url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "postfix check: OK" in result.stderr
    assert (
        f"pipe probe as nobody: OK (handle_bounce --probe can record bounces into sqlite "
        f"{url.removeprefix('sqlite:///')})"
    ) in result.stderr
    assert f"DATABASE_URL={url} " in result.stdout


def test_without_database_url_in_the_pipe_environment_the_check_says_to_add_it(installation):
    python, app, url, _ = installation
    result = manage(python, app, "bounce_postfix_config", "--check", env={"DATABASE_URL": url})
    assert result.returncode == 1
    demo = Path(app) / "example_project" / "demo.sqlite3"
    assert (
        "CommandError: pipe probe as nobody: DATABASE_URL is not in the pipe's environment: "
        f"add --env DATABASE_URL (the pipe would use the database sqlite {demo}, not sqlite "
        f"{url.removeprefix('sqlite:///')} as here)\n"
    ) in result.stderr
    assert "postfix check: OK" in result.stderr  # the Postfix part still passes


def test_a_settings_module_that_does_not_exist_fails(installation):
    options = pipe(
        installation,
        environment={**pipe(installation).environment, "DJANGO_SETTINGS_MODULE": "no_such.site"},
    )
    result = check_pipe(options)
    assert not result.ok
    assert result.problems == (
        "DJANGO_SETTINGS_MODULE=no_such.site can't be imported as the pipe runs it "
        "(ModuleNotFoundError: No module named 'no_such' (manage.py exited with status 1; "
        "Postfix will retry)): check the name, or add its directory with --env PYTHONPATH=DIR",
    )


def test_an_interpreter_under_a_closed_directory_fails_naming_the_directory(installation):
    closed = Path(tempfile.mkdtemp(prefix="bt-closed-", dir="/tmp"))  # 0700, root's
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(closed / "venv")],
            check=True,
            timeout=120,
        )
        python = str(closed / "venv" / "bin" / "python")
        result = check_pipe(pipe(installation, python=python))
    finally:
        shutil.rmtree(closed)
    assert not result.ok
    assert result.problems == (
        f"the pipe runs as nobody, who can't run the interpreter {python} ({closed} is "
        "closed to nobody: mode 0700, owner root): install the site's virtualenv where it "
        "can (not under a home directory closed to others), or choose --python or --user",
    )


def test_a_database_nobody_cannot_write_fails(installation):
    _, _, url, base = installation
    copy = base / "readonly.sqlite3"
    shutil.copy(url.removeprefix("sqlite:///"), copy)  # root's, 0644
    options = pipe(
        installation,
        environment={**pipe(installation).environment, "DATABASE_URL": f"sqlite:///{copy}"},
    )
    result = check_pipe(options, expect_database=f"sqlite {copy}")
    assert not result.ok
    [problem] = result.problems
    assert problem.startswith("nobody can't write to the app's tables (bounce_tracker_")
    assert "attempt to write a readonly database" in problem


def test_a_database_without_the_apps_tables_fails_with_migrate(installation):
    _, _, _, base = installation
    empty = base / "db" / "empty.sqlite3"
    options = pipe(
        installation,
        environment={**pipe(installation).environment, "DATABASE_URL": f"sqlite:///{empty}"},
    )
    try:
        result = check_pipe(options)
    finally:
        empty.unlink(missing_ok=True)  # sqlite creates the file
    assert not result.ok
    [problem] = result.problems
    assert problem.startswith("a table of the app is missing or out of date (bounce_tracker_")
    assert "OperationalError: no such table: bounce_tracker_" in problem
    assert problem.endswith("): run manage.py migrate")


def test_the_lmtp_configuration_is_checked_by_postfix_only(installation):
    python, app, url, _ = installation
    result = manage(
        python, app, "bounce_postfix_config", "--lmtp", "--check", env={"DATABASE_URL": url}
    )
    assert result.returncode == 0, result.stderr
    assert "postfix check: OK" in result.stderr
    assert "pipe probe" not in result.stderr


def test_a_url_with_a_password_is_named_with_a_warning_about_master_cf(installation):
    options = pipe(installation, environment={"DJANGO_SETTINGS_MODULE": SETTINGS})
    result = check_pipe(
        options,
        expect_database="mysql bounces on db.example:3306",
        here_environment={"DATABASE_URL": "mysql://bounces:s3cret@db.example:3306/bounces"},
    )
    assert not result.ok
    [problem] = result.problems
    assert problem.startswith(
        "DATABASE_URL is not in the pipe's environment: add --env DATABASE_URL (master.cf is "
        "world-readable: put the password in a file the settings read) (the pipe would use "
        "the database sqlite "
    )
    assert "s3cret" not in problem


def test_a_probe_that_hangs_is_stopped_with_the_site_it_started(installation):
    _, app, _, base = installation
    module = f"bt_sleepy_{os.getpid()}"
    (base / f"{module}.py").write_text("import time\ntime.sleep(120)\n")
    options = pipe(
        installation,
        environment={"DJANGO_SETTINGS_MODULE": module, "PYTHONPATH": f"{app}:{base}"},
    )
    result = check_pipe(options, timeout=3)
    assert result.problems == (
        "the pipe's probe did not finish in 3 s: a database that doesn't answer, or "
        "settings that wait for something",
    )
    still_running = [
        proc
        for proc in Path("/proc").iterdir()
        if proc.name.isdigit() and module.encode() in _read(proc / "environ")
    ]
    assert still_running == []


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # gone, or not ours to read
        return b""
