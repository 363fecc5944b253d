"""Run the pipe's probe the way Postfix will run the pipe: ``bounce_postfix_config --check``.

``postfix check`` proves that Postfix accepts the configuration, not that a bounce
can be recorded. :func:`check_pipe` runs the rendered command (:func:`pipe_command
<bounce_tracker.ops.postfix.pipe_command>`: the interpreter, the launcher, the
``NAME=VALUE`` environment and manage.py) followed by ``handle_bounce --probe``, as
the pipe's ``user=``, with the environment pipe(8) gives a command (``PATH`` only)
and in Postfix's queue directory. The probe (:mod:`bounce_tracker.receiving.probe`)
imports the settings, connects to the database, reads and writes nothing of it but
checks that the app's tables are there and writable, and leaves no trace.

Each problem comes back as one line that says what to change, e.g. "the pipe runs
as nobody, who can't run the interpreter /root/venv/bin/python (/root is closed to
nobody: mode 0700, owner root) …" or "DATABASE_URL is not in the pipe's environment:
add --env DATABASE_URL …". Needs root, to take the pipe user's identity.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import signal
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bounce_tracker.ops.postfix import PipeOptions, pipe_command

#: What pipe(8) puts in a command's environment (besides export_environment).
PIPE_PATH = "/usr/bin:/bin"
PROBE_TIMEOUT = 120
_TEST = "/usr/bin/test"
_POSTCONF = "/usr/sbin/postconf"
_EX_TEMPFAIL = 75
_PROBE_FAILED = re.compile(r"^probe failed: ([a-z-]+): (.*)$")
_NO_MODULE = re.compile(r"No module named '([^']+)'")
_PASSWORD_IN_URL = re.compile(r"://[^/@:]*:[^/@]+@")


@dataclass(frozen=True)
class PipeCheckResult:
    """``ok``, and one line per problem found (each with what to change)."""

    ok: bool
    problems: tuple[str, ...]
    summary: str


@dataclass(frozen=True)
class _User:
    name: str
    uid: int
    gid: int


def check_pipe(
    options: PipeOptions,
    *,
    expect_database: str | None = None,
    here_environment: Mapping[str, str] | None = None,
    timeout: float = PROBE_TIMEOUT,
) -> PipeCheckResult:
    """Run the pipe's probe as its user; report what would stop it recording bounces.

    ``expect_database`` (a :func:`~bounce_tracker.receiving.probe.database_label`):
    the database the pipe must use, normally the one of the process checking.
    ``here_environment`` (default: the environment this process started with) is
    compared with the pipe's to name a variable the pipe lacks.
    """
    options.validate()
    here = initial_environment() if here_environment is None else here_environment
    if os.geteuid() != 0:
        return _failed(
            f"run the check as root: it runs the pipe's probe as {options.user}, like Postfix"
        )
    try:
        user = _pipe_user(options.user)
    except LookupError as exc:
        return _failed(str(exc))
    problems = _unreachable_files(options, user)
    if problems:
        return PipeCheckResult(False, tuple(problems), "")
    command = [*pipe_command(options), "handle_bounce", "--probe"]
    if expect_database is not None:
        command += ["--expect-database", expect_database]
    try:
        returncode, output = _run_probe(command, user, timeout)
    except subprocess.TimeoutExpired:
        return _failed(
            f"the pipe's probe did not finish in {timeout:.0f} s: a database that doesn't "
            "answer, or settings that wait for something"
        )
    except OSError as exc:
        return _failed(
            f"the pipe runs as {user.name}, who can't start {options.python}: {exc}; "
            f"choose --python or --user"
        )
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if returncode == 0:  # the launcher is quiet on success: nothing to read
        into = f" into {expect_database}" if expect_database else ""
        return PipeCheckResult(True, (), f"handle_bounce --probe can record bounces{into}")
    last = lines[-1] if lines else "(no output)"
    if returncode != _EX_TEMPFAIL:
        return _failed(
            f"the launcher did not run as {user.name} (exit {returncode}: {last}): "
            "Postfix would bounce, and lose, every bounce; fix that first"
        )
    return _failed(_explain(last, options, user, expect_database, here))


def _run_probe(command: list[str], user: _User, timeout: float) -> tuple[int, str]:
    """Run ``command`` as pipe(8) would; its exit status and output (stdout, stderr).

    In a session of its own, so that a probe that doesn't finish in time is killed
    with the manage.py process the launcher started.
    """
    process = subprocess.Popen(
        command,
        env={"PATH": PIPE_PATH},
        cwd=_queue_directory(),
        user=user.uid,
        group=user.gid,
        extra_groups=[],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # all gone by themselves
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return process.returncode, (stdout + stderr).decode("utf-8", "replace")


def initial_environment() -> dict[str, str]:
    """The environment this process was started with, as the shell or unit gave it.

    Not ``os.environ``: settings may add to it (django-environ's ``read_env`` copies
    a file's variables into it), and a variable read from a file needn't be passed.
    """
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return dict(os.environ)
    pairs = (entry.decode("utf-8", "replace").partition("=") for entry in raw.split(b"\0"))
    return {name: value for name, sep, value in pairs if sep}


def _failed(problem: str) -> PipeCheckResult:
    return PipeCheckResult(False, (problem,), "")


def _pipe_user(spec: str) -> _User:
    """``user`` or ``user:group`` as pipe(8) takes it: the user's group unless one is named."""
    name, _, group = spec.partition(":")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise LookupError(
            f"the pipe user {name} doesn't exist on this machine: create it, or choose --user"
        ) from None
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise LookupError(f"the group {group} of --user {spec} doesn't exist") from None
    return _User(name, entry.pw_uid, gid)


def _unreachable_files(options: PipeOptions, user: _User) -> list[str]:
    """One line for each of the interpreter, launcher and manage.py the user can't use."""
    problems = []
    for flag, path, what, fix in (
        (
            "-x",
            options.python,
            "run the interpreter",
            "install the site's virtualenv where it can (not under a home directory "
            "closed to others), or choose --python or --user",
        ),
        (
            "-r",
            options.launcher,
            "read the launcher",
            "Postfix would bounce, and lose, every bounce: install the app where it can",
        ),
        (
            "-r",
            options.manage_py,
            "read",
            "make the project readable to it, or choose --user",
        ),
    ):
        if not _user_can(user, flag, path):
            problems.append(
                f"the pipe runs as {user.name}, who can't {what} {path}"
                f"{_closed_directory(path, user)}: {fix}"
            )
    return problems


def _user_can(user: _User, flag: str, path: str) -> bool:
    """Whether ``test FLAG PATH`` succeeds as the user (access(2): modes, ACLs, mounts)."""
    result = subprocess.run(
        [_TEST, flag, path],
        env={"PATH": PIPE_PATH},
        user=user.uid,
        group=user.gid,
        extra_groups=[],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


def _closed_directory(path: str, user: _User) -> str:
    """`` (DIR is closed to USER: mode 0700, owner root)`` for the first such parent, or ""."""
    for parent in reversed(PurePosixPath(path).parents):
        try:
            status = os.stat(parent)
        except OSError:
            return f" ({parent} doesn't exist)"
        if status.st_uid == user.uid:
            allowed = bool(status.st_mode & stat.S_IXUSR)
        elif status.st_gid == user.gid:
            allowed = bool(status.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(status.st_mode & stat.S_IXOTH)
        if not allowed:
            try:
                owner = pwd.getpwuid(status.st_uid).pw_name
            except KeyError:
                owner = str(status.st_uid)
            mode = stat.S_IMODE(status.st_mode)
            return f" ({parent} is closed to {user.name}: mode {mode:04o}, owner {owner})"
    return ""


def _queue_directory() -> str:
    """pipe(8) runs commands in Postfix's queue directory; "/" when that is unknown."""
    try:
        result = subprocess.run(
            [_POSTCONF, "-h", "queue_directory"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return "/"
    directory = result.stdout.strip()
    return directory if result.returncode == 0 and os.path.isdir(directory) else "/"


def _explain(
    line: str,
    options: PipeOptions,
    user: _User,
    expect_database: str | None,
    here: Mapping[str, str],
) -> str:
    """The probe's (or the launcher's) one line, turned into what to change."""
    passed = ", ".join(options.environment) or "nothing"
    failed = _PROBE_FAILED.match(line)
    if failed is None:
        return _explain_start_failure(line, options)
    step, reason = failed.groups()
    missing = _missing_database_variables(options, here)
    if step == "other-database":
        where = f"the pipe would use the database {reason}, not {expect_database} as here"
        if missing:
            return f"{missing} ({where})"
        return (
            f"{where}: pass the variables your settings choose the database by with "
            f"--env NAME (the pipe gets {passed})"
        )
    if step == "connect":
        if missing:
            return f"{missing} (the pipe can't connect to {reason})"
        return (
            f"the pipe can't connect to the database as {user.name}: {reason}; it gets "
            f"only the environment {passed}: pass what the settings need with --env NAME, "
            f"or let them read a file {user.name} can read"
        )
    if step == "tables":
        return f"a table of the app is missing or out of date ({reason}): run manage.py migrate"
    if step == "write":
        return (
            f"{user.name} can't write to the app's tables ({reason}): grant it, or for "
            f"SQLite make the file and its directory writable to {user.name}"
        )
    return f"the pipe's settings are not valid: {reason}"


def _missing_database_variables(options: PipeOptions, here: Mapping[str, str]) -> str:
    """ "DATABASE_URL is not in the pipe's environment: add --env DATABASE_URL", or ""."""
    names = sorted(
        name
        for name in here
        if name not in options.environment
        and ("DATABASE" in name or name.startswith(("DB_", "PG", "MYSQL")))
    )
    if not names:
        return ""
    verb = "is" if len(names) == 1 else "are"
    flags = " ".join(f"--env {name}" for name in names)
    hint = f"{', '.join(names)} {verb} not in the pipe's environment: add {flags}"
    if any(_PASSWORD_IN_URL.search(here[name]) for name in names):
        hint += " (master.cf is world-readable: put the password in a file the settings read)"
    return hint


def _explain_start_failure(line: str, options: PipeOptions) -> str:
    """The launcher's line when Django could not start (the settings, a module)."""
    settings_module = options.environment.get("DJANGO_SETTINGS_MODULE", "")
    missing = _NO_MODULE.search(line)
    if missing and settings_module:
        module = missing.group(1)
        if settings_module == module or settings_module.startswith(f"{module}."):
            return (
                f"DJANGO_SETTINGS_MODULE={settings_module} can't be imported as the pipe "
                f"runs it ({line}): check the name, or add its directory with "
                "--env PYTHONPATH=DIR"
            )
    if missing:
        return (
            f"the pipe's interpreter {options.python} can't import {missing.group(1)} "
            f"({line}): install it there, or choose --python"
        )
    return f"the site can't start as the pipe runs it: {line}"
