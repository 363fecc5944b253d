"""The install the docs give works, and the example site's settings reach the Postfix pipe.

The example site's install lines live in one file, ``docs/example-site-install.sh``:
docs/quickstart.rst includes it and README.md shows the same lines (checked here).
The long test runs them, as written, in a copy of the checkout with a fresh
virtualenv from the system interpreter (only the one line that names the database
is replaced by the test's own). The short tests check that every in-place install
the docs show brings the ``example`` extra, that ``make demo``'s virtualenv has it,
and that an ``ENV_FILE`` brings the database to the rendered pipe without writing
it into ``master.cf``.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from django.db import connection

from tests.test_packaging import BASE_PYTHON, NOT_COPIED, ROOT, run, sqlite_pass_only

INSTALL_SCRIPT = ROOT / "docs" / "example-site-install.sh"
EXAMPLE = ROOT / "example_project"
# Where the docs show commands: README.md and every page of docs/.
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst"))]
DOC_FILES += [*sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs").glob("*.sh"))]
# `pip install -e ".[extras]"` (or `-e .`): the checkout installed in place, which is
# where example_project/ is, so the example site's extra must come with it.
IN_PLACE_INSTALL_RE = re.compile(r"pip install\b[^\n]*?-e\s+[\"']?\.(?:\[(?P<extras>[^\]]*)\])?")
DATABASE_LINE_RE = re.compile(r"^export DATABASE_URL=.*$", re.MULTILINE)
# What the test's own runs must not inherit: the suite's settings, virtualenv and database.
NOT_INHERITED = {
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",
    "ENV_FILE",
}
DSN = (
    "From: MAILER-DAEMON@mx.example.net\n"
    "To: bounces+nosuchtoken@bounces.example.com\n"
    "Subject: Undelivered Mail Returned to Sender\n"
    "\n"
    "<nobody@example.org>: host mx.example.org said: 550 5.1.1 No such user\n"
)


def clean_environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    return env | extra


def pyproject_extras() -> dict[str, list[str]]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        extras: dict[str, list[str]] = tomllib.load(file)["project"]["optional-dependencies"]
    return extras


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def shell_output(code: str, *, env: dict[str, str]) -> str:
    """The last line ``manage.py shell -c CODE`` printed (Django 5.2 first lists its imports)."""
    result = manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


# -- The docs' install lines ------------------------------------------------------------


def test_readme_shows_the_lines_the_quickstart_includes_and_the_test_runs():
    script = INSTALL_SCRIPT.read_text(encoding="utf-8")
    assert f"```sh\n{script}```" in (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = (ROOT / "docs" / "quickstart.rst").read_text(encoding="utf-8")
    assert ".. literalinclude:: example-site-install.sh" in quickstart
    assert len(DATABASE_LINE_RE.findall(script)) == 1


def test_every_in_place_install_in_the_docs_brings_the_example_extra():
    installs = [
        (path.relative_to(ROOT).as_posix(), match)
        for path in DOC_FILES
        for match in IN_PLACE_INSTALL_RE.finditer(path.read_text(encoding="utf-8"))
    ]
    assert installs, "no documented in-place install found: is the pattern stale?"
    for where, match in installs:
        extras = {extra.strip() for extra in (match["extras"] or "").split(",")}
        assert "example" in extras, f"{where}: {match[0]!r} lacks the example extra"


def test_make_demo_venv_has_everything_the_example_extra_brings():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^EXTRAS\s*:?=\s*(\S+)\s*$", makefile, re.MULTILINE)
    assert match, "EXTRAS not found in the Makefile"
    extras = pyproject_extras()
    installed = {
        requirement_name(requirement)
        for name in match[1].split(",")
        for requirement in extras[name]
    }
    needed = {requirement_name(requirement) for requirement in extras["example"]}
    assert needed == {"django-environ"}
    assert needed <= installed


# -- ENV_FILE: how secrets reach the pipe -----------------------------------------------

# The example site runs on SQLite files of its own here, whatever the suite's database.
once_per_run = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="the example site on SQLite: once, in the SQLite pass"
)


@once_per_run
def test_example_settings_read_env_file_and_the_environment_wins(tmp_path):
    env_file = tmp_path / "site.env"
    env_file.write_text(
        f"DATABASE_URL=sqlite:///{tmp_path / 'from-file.sqlite3'}\n"
        "BOUNCE_TRACKER_SOFT_BOUNCE_LIMIT=2\n"
    )
    code = (
        "from django.conf import settings; "
        "print(settings.DATABASES['default']['NAME'], "
        "settings.BOUNCE_TRACKER.get('SOFT_BOUNCE_LIMIT'))"
    )
    from_file = shell_output(code, env=clean_environment(ENV_FILE=str(env_file)))
    assert from_file == f"{tmp_path / 'from-file.sqlite3'} 2"

    overridden = clean_environment(
        ENV_FILE=str(env_file), DATABASE_URL=f"sqlite:///{tmp_path / 'from-env.sqlite3'}"
    )
    assert shell_output(code, env=overridden) == f"{tmp_path / 'from-env.sqlite3'} 2"


@once_per_run
def test_example_settings_stop_naming_an_env_file_they_cant_read(tmp_path):
    missing = tmp_path / "missing.env"
    result = manage("check", env=clean_environment(ENV_FILE=str(missing)))
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == (
        f"django.core.exceptions.ImproperlyConfigured: ENV_FILE={missing} can't be read: "
        "No such file or directory (the user running this must be able to read it)"
    )


def rendered_pipe_argv(config: str) -> list[str]:
    """The master.cf pipe service's argv, as pipe(8) will run it for one bounce."""
    line = next(line for line in config.splitlines() if "argv=" in line)
    words = line.split("argv=", 1)[1].split()
    assert not any(word.startswith("{") for word in words), "the test can't unquote {…}"
    values = {"${sender}": "", "${recipient}": "bounces+nosuchtoken@bounces.example.com"}
    return [values.get(word, word.replace("$$", "$")) for word in words]


@once_per_run
def test_the_rendered_pipe_reaches_the_database_named_in_env_file_without_writing_it(tmp_path):
    database = tmp_path / "pipe.sqlite3"
    database_url = f"sqlite:///{database}"
    env_file = tmp_path / "site.env"
    env_file.write_text(f"DATABASE_URL={database_url}\n")
    site_env = clean_environment(ENV_FILE=str(env_file))
    migrated = manage("migrate", "--noinput", env=site_env)
    assert migrated.returncode == 0, migrated.stderr

    rendered = manage("bounce_postfix_config", "--env", "ENV_FILE", env=site_env)
    assert rendered.returncode == 0, rendered.stderr
    assert f"ENV_FILE={env_file}" in rendered.stdout
    assert database_url not in rendered.stdout

    # What pipe(8) gives the command: PATH and export_environment's LANG, nothing else.
    delivered = subprocess.run(
        rendered_pipe_argv(rendered.stdout),
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        input=DSN,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd="/",
    )
    assert (delivered.returncode, delivered.stdout, delivered.stderr) == (0, "", "")
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute(
            "SELECT COUNT(*) FROM bounce_tracker_unmatchedmessage"
        ).fetchone()
    assert count == 1


# -- The docs' lines, run as written in a fresh virtualenv -------------------------------


@pytest.mark.long
@sqlite_pass_only
def test_the_documented_install_runs_the_example_site_in_a_fresh_venv(tmp_path):
    tree = tmp_path / "django-bounce-tracker"
    shutil.copytree(ROOT, tree, ignore=NOT_COPIED, symlinks=True)
    assert not (tree / ".venv").exists()
    database = tmp_path / "site.sqlite3"
    database_url = f"sqlite:///{database}"
    # The one line that names the reader's database names the test's.
    script = DATABASE_LINE_RE.sub(
        f"export DATABASE_URL={database_url}", INSTALL_SCRIPT.read_text(encoding="utf-8")
    )
    # `python3` is the system interpreter `make` builds virtualenvs from.
    env = clean_environment(PATH=f"{Path(BASE_PYTHON).parent}:{os.environ['PATH']}")
    result = run(["bash", "-euo", "pipefail", "-c", script], cwd=tree, env=env, timeout=900)

    venv_python = tree / ".venv" / "bin" / "python"
    argv_line = next(line for line in result.stdout.splitlines() if "argv=" in line)
    assert f"DATABASE_URL={database_url}" in argv_line
    assert "DJANGO_SETTINGS_MODULE=example_project.settings" in argv_line
    assert str(venv_python) in argv_line
    assert argv_line.endswith("handle_bounce -- ${sender} ${recipient}")
    assert "user=www-data" in argv_line
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"bounce_tracker_emailaddresstracker", "bounce_tracker_bounceevent"} <= tables

    # The documented extras, and only they: the database driver is there, the
    # development tools (which also bring django-environ) are not.
    probe = run(
        [
            venv_python,
            "-c",
            "import importlib.util, environ, MySQLdb; "
            "print(importlib.util.find_spec('pytest') is None)",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert probe.stdout.strip() == "True"
