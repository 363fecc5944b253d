"""The pipe's launcher: whatever breaks, also before Django starts, Postfix sees 0 or 75.

Each case runs the command exactly as the rendered master.cf does
(``ops.postfix.pipe_command`` + ``handle_bounce -- SENDER RECIPIENT``), in a new
process, with pipe(8)'s bare environment and the message on stdin.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bounce_tracker.models import BounceEvent, EmailAddressTracker
from bounce_tracker.ops import pipe_launcher
from bounce_tracker.ops.postfix import PipeOptions, default_launcher, pipe_command
from tests import messages
from tests.postfix_harness import readable_installation
from tests.test_handle_bounce import VERP, database_url

ROOT = Path(__file__).resolve().parent.parent
MANAGE_PY = str(ROOT / "example_project" / "manage.py")
PIPE_ENV = {"PATH": "/usr/bin:/bin"}  # what pipe(8) gives a command

# Settings modules of sites that can't start, written into a directory on PYTHONPATH.
BROKEN_SETTINGS = {
    "bt_launcher_syntax": "DEBUG = (\n",
    "bt_launcher_engine": (
        "from tests.settings import *  # noqa: F403\n"
        'DATABASES = {"default": {"ENGINE": "django.db.backends.nosuch", "NAME": "x"}}\n'
    ),
    "bt_launcher_sigkill": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "bt_launcher_exit3": "raise SystemExit(3)\n",
    "bt_launcher_noisy": (
        "import sys\n"
        "for n in range(20000):\n"
        "    print('noise line', n, file=sys.stderr)\n"
        "import does_not_exist_after_noise\n"
    ),
}


@pytest.fixture(scope="module")
def settings_dir():
    directory = Path(tempfile.mkdtemp(prefix="bt-launcher-"))
    for name, source in BROKEN_SETTINGS.items():
        (directory / f"{name}.py").write_text(source)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def launch(
    environment: dict[str, str],
    stdin: bytes | object = b"",
    *,
    manage_py: str = MANAGE_PY,
    args: tuple[str, ...] = ("handle_bounce", "--", "MAILER-DAEMON", VERP),
    python: str = sys.executable,
    launcher: str | None = None,
    **run_options,
) -> subprocess.CompletedProcess:
    options = PipeOptions(
        python=python,
        manage_py=manage_py,
        environment=environment,
        launcher=launcher or default_launcher(),
    )
    stdin_args = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin}
    return subprocess.run(
        [*pipe_command(options), *args],
        env=PIPE_ENV,
        cwd="/",
        capture_output=True,
        timeout=120,
        check=False,
        **stdin_args,
        **run_options,
    )


def site(settings_module: str, *extra_path: Path, **more: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": settings_module,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *map(str, extra_path)]),
        **more,
    }


def one_line(result: subprocess.CompletedProcess) -> str:
    """The launcher's stderr: exactly one line, under 200 characters; stdout empty."""
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, result.stderr
    assert len(lines[0]) < 200, lines[0]
    return lines[0]


def test_the_launcher_imports_only_the_standard_library():
    tree = ast.parse(Path(default_launcher()).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported
    assert "signal" in imported  # the walk sees the lazy import inside a function


@pytest.mark.django_db(transaction=True)
def test_a_bounce_through_the_launcher_is_recorded_and_nothing_is_printed():
    tracker = EmailAddressTracker.objects.create(
        email="dead@example.org", encoded_from="bounces+abc"
    )
    result = launch(site("tests.settings", DATABASE_URL=database_url()), messages.dsn())
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    tracker.refresh_from_db()
    assert tracker.bounce_count == 1
    assert BounceEvent.objects.get().kind == "hard"


@pytest.mark.parametrize(
    ("settings_module", "cause"),
    [
        ("does_not_exist", "ModuleNotFoundError: No module named 'does_not_exist' "),
        ("bt_launcher_syntax", "SyntaxError: '(' was never closed "),
        (
            "bt_launcher_engine",
            "ImproperlyConfigured: 'django.db.backends.nosuch' isn't an available database",
        ),
        ("bt_launcher_sigkill", "killed by signal SIGKILL "),
        ("bt_launcher_exit3", "manage.py exited with status 3; Postfix will retry (no output)"),
        (
            "bt_launcher_noisy",
            "ModuleNotFoundError: No module named 'does_not_exist_after_noise' ",
        ),
    ],
)
def test_a_site_that_cannot_start_exits_75_with_one_line_naming_the_cause_first(
    settings_dir, settings_module, cause
):
    result = launch(site(settings_module, settings_dir), messages.dsn())
    assert result.returncode == 75
    line = one_line(result)
    assert line.startswith(cause), line
    assert line.endswith("Postfix will retry)") or line.endswith("(no output)")


def test_an_unreachable_database_exits_75_with_the_commands_own_line():
    closed = "postgres://postgres@127.0.0.1:9/nothing"
    result = launch(site("tests.settings", DATABASE_URL=closed), messages.dsn())
    assert result.returncode == 75
    line = one_line(result)
    assert line.startswith("bounce not recorded, Postfix will retry: OperationalError:"), line
    assert "127.0.0.1" in line


def test_a_missing_manage_py_exits_75_naming_the_file():
    result = launch(site("tests.settings"), messages.dsn(), manage_py="/nonexistent/manage.py")
    assert result.returncode == 75
    assert one_line(result).startswith(
        "FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/manage.py'"
    )


def test_a_manage_py_the_pipe_user_cannot_read_exits_75_naming_the_file():
    with readable_installation() as (python, pythonpath):
        project = Path(tempfile.mkdtemp(prefix="bt-unreadable-", dir="/tmp"))
        try:
            project.chmod(0o755)
            manage_py = project / "manage.py"
            shutil.copy(MANAGE_PY, manage_py)
            manage_py.chmod(0o600)  # root's: nobody can't read it
            run_as = {"user": "nobody", "group": "nogroup", "extra_groups": []}
            if os.geteuid() != 0:
                manage_py.chmod(0o000)
                run_as = {}
            result = launch(
                site("tests.settings"),
                messages.dsn(),
                manage_py=str(manage_py),
                python=python,
                launcher=str(Path(pythonpath) / "bounce_tracker" / "ops" / "pipe_launcher.py"),
                **run_as,
            )
        finally:
            shutil.rmtree(project)
    assert result.returncode == 75
    assert one_line(result).startswith(
        f"PermissionError: [Errno 13] Permission denied: '{manage_py}' (can't read manage.py"
    )


def test_a_large_message_for_a_broken_site_is_drained_in_bounded_memory(tmp_path):
    big = tmp_path / "big.eml"
    with big.open("wb") as out:
        out.write(messages.dsn())
        out.truncate(64 * 1024 * 1024)
    peak_file = tmp_path / "peak"
    # The launcher run as __main__ under a wrapper that writes its peak RSS at exit.
    wrapper = (
        "import atexit, runpy, sys\n"
        "def peak():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        f"            open({str(peak_file)!r}, 'w').write(line.split()[1])\n"
        "atexit.register(peak)\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    options = PipeOptions(
        python=sys.executable, manage_py=MANAGE_PY, environment=site("does_not_exist")
    )
    command = pipe_command(options)
    launcher_at = command.index(options.launcher)
    command[launcher_at:launcher_at] = ["-c", wrapper]
    with big.open("rb") as stdin:
        result = subprocess.run(
            [*command, "handle_bounce", "--", "MAILER-DAEMON", VERP],
            stdin=stdin,
            env=PIPE_ENV,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert stdin.tell() == 64 * 1024 * 1024  # read to its end: no broken pipe for Postfix
    assert result.returncode == 75
    assert one_line(result).startswith("ModuleNotFoundError: No module named 'does_not_exist'")
    assert int(peak_file.read_text()) < 24 * 1024, "launcher peak RSS (KiB)"


# --- The launcher's parts, in this process ------------------------------------------


@pytest.fixture
def quiet_stdin(monkeypatch):
    # In this process stdin is pytest's: never read it to its end.
    monkeypatch.setattr(pipe_launcher, "_drain_stdin", lambda: None)


def test_its_own_failure_is_75_with_one_line(quiet_stdin, monkeypatch, capsys):
    def broken_pipe():
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(pipe_launcher.os, "pipe", broken_pipe)
    assert pipe_launcher.main([MANAGE_PY, "handle_bounce"]) == 75
    assert capsys.readouterr().err == (
        "OSError: [Errno 24] Too many open files (in the pipe launcher; Postfix will retry)\n"
    )


def test_nothing_to_run_is_75(quiet_stdin, capsys):
    assert pipe_launcher.main(["A=1"]) == 75
    assert capsys.readouterr().err.startswith("usage: pipe_launcher.py")


def test_the_exit_status_of_the_command_maps_to_0_or_75(quiet_stdin, capsys):
    assert pipe_launcher._outcome(0, b"a warning\n") == 0
    assert capsys.readouterr().err == ""
    for code in (1, 2, 64, 67, 69, 70, 76, 78, 126, 127, 255, -9, -15):
        assert pipe_launcher._outcome(code, b"") == 75
    assert pipe_launcher._outcome(75, b"noise\nbounce not recorded: why\n\n") == 75
    assert capsys.readouterr().err.splitlines()[-1] == "bounce not recorded: why"


def test_the_environment_words_end_at_manage_py():
    assert pipe_launcher.split_arguments(
        ["A=1", "B_2=x=y", "EMPTY=", "/srv/manage.py", "C=3", "handle_bounce"]
    ) == ({"A": "1", "B_2": "x=y", "EMPTY": ""}, ["/srv/manage.py", "C=3", "handle_bounce"])
    assert pipe_launcher.split_arguments(["/srv/a=b/manage.py"]) == ({}, ["/srv/a=b/manage.py"])


@pytest.mark.parametrize(
    ("output", "cause"),
    [
        (
            'Traceback (most recent call last):\n  File "x", line 1\n    import y\n'
            "ModuleNotFoundError: No module named 'y'\n",
            "ModuleNotFoundError: No module named 'y'",
        ),
        (  # chained: the last traceback's exception
            "Traceback (most recent call last):\n  File \"a\"\nKeyError: 'k'\n\n"
            "During handling of the above exception, another exception occurred:\n\n"
            'Traceback (most recent call last):\n  File "b"\n'
            "django.core.exceptions.ImproperlyConfigured: Set the\nSECRET_KEY variable\n",
            "ImproperlyConfigured: Set the SECRET_KEY variable",
        ),
        (
            "CommandError: Unknown command: 'handle_bounc'\n",
            "CommandError: Unknown command: 'handle_bounc'",
        ),
        (
            "python: can't open file '/x/manage.py': [Errno 13] Permission denied\n\n",
            "python: can't open file '/x/manage.py': [Errno 13] Permission denied",
        ),
        ("", ""),
        ("\x1b[31mRed\ttabbed\x00\n", "[31mRed tabbed"),
    ],
)
def test_the_cause_is_the_exception_line_of_the_last_traceback(output, cause):
    assert pipe_launcher.cause_from_output(output) == cause


def test_a_long_cause_is_cut_so_that_the_context_stays():
    line = pipe_launcher._line("E: " + "x" * 500, "manage.py exited with status 1")
    assert len(line) == pipe_launcher.MAX_LINE
    assert line.startswith("E: xxx")
    assert line.endswith("x… (manage.py exited with status 1)")


def test_a_line_that_starts_like_a_status_code_is_never_taken_for_one(quiet_stdin, capsys):
    # "5.1.1 …" at the start of the output would make Postfix bounce instead of defer.
    assert pipe_launcher._outcome(1, b"5.1.1 no such user\n") == 75
    assert pipe_launcher._outcome(75, b"2.0.0 ok\n") == 75
    assert capsys.readouterr().err.splitlines() == [
        "output: 5.1.1 no such user (manage.py exited with status 1; Postfix will retry)",
        "output: 2.0.0 ok",
    ]
