"""The Postfix pipe's launcher: runs ``manage.py handle_bounce``, answers Postfix 0 or 75.

The master.cf service that ``bounce_postfix_config`` renders runs::

    PYTHON -I -S .../bounce_tracker/ops/pipe_launcher.py [NAME=VALUE…] /abs/manage.py \\
        handle_bounce -- ${sender} ${recipient}

It starts ``PYTHON /abs/manage.py handle_bounce …`` as a child process with the
``NAME=VALUE`` variables added to its environment and the message on the same
standard input (the child reads it directly: nothing is copied), and exits with

- 0 when the child exited 0 (the bounce was recorded, a duplicate or stored), quietly;
- 75 (EX_TEMPFAIL: Postfix keeps the bounce and delivers it again later) for
  anything else: the child exited 75 (its own one-line reason is passed on), exited
  with any other status, was killed by a signal, could not be started, manage.py is
  unreadable, or the launcher itself failed. Then it writes one line to stderr that
  names the cause first, e.g. ``ModuleNotFoundError: No module named 'site_settings'
  (manage.py exited with status 1; Postfix will retry)``, under 200 characters.

Why a launcher: ``manage.py`` dies in ``django.setup()``, before ``handle_bounce`` can
catch anything, when the site can't start (a settings module that doesn't exist or
doesn't compile, a missing dependency, an unknown database ENGINE). Its status 1 makes
Postfix bounce the bounce, which is then discarded as a double bounce: the bounce is
lost, and its ~2,000-character log line of traceback is cut before the line naming the
cause. Redelivering after a 75 is always safe: a message recorded before a failure is
recognised by its fingerprint and counted once.

Standard library only, and nothing of Django or of this app (it is run as a script,
not imported as part of the package), so it runs when the site is broken. ``-I``
keeps PYTHON* variables and the script's directory out of its own ``sys.path``; ``-S``
skips ``site`` (and any broken ``.pth`` file) for the launcher; the child gets the
environment and the interpreter's normal start-up.
"""

from __future__ import annotations

import os
import sys

EX_OK = 0
EX_TEMPFAIL = 75
#: The longest line the launcher writes. Postfix logs about 2,000 characters of a
#: command's output in one line with its own prefix; the cause must be near the start.
MAX_LINE = 199
#: How much of the child's output is kept: the end of a traceback, with its header.
TAIL_BYTES = 16 * 1024
_CHUNK = 64 * 1024
_TRACEBACK = "Traceback (most recent call last):"


def main(argv: list[str]) -> int:
    """Run the command in ``argv`` (``[NAME=VALUE…] MANAGE_PY ARGS…``); return 0 or 75."""
    try:
        return _launch(argv)
    except BaseException as exc:  # whatever happens here, Postfix must see 0 or 75
        _drain_stdin()
        _say(_line(_describe(exc), "in the pipe launcher; Postfix will retry"))
        return EX_TEMPFAIL


def split_arguments(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """The leading ``NAME=VALUE`` words as a dict, and the command that follows them.

    The command starts with manage.py's absolute path, which can't look like an
    assignment (a name is a Python identifier).
    """
    environment: dict[str, str] = {}
    index = 0
    while index < len(argv):
        name, sep, value = argv[index].partition("=")
        if not (sep and name.isidentifier()):
            break
        environment[name] = value
        index += 1
    return environment, argv[index:]


def _launch(argv: list[str]) -> int:
    environment, command = split_arguments(argv)
    if not command:
        _drain_stdin()
        _say("usage: pipe_launcher.py [NAME=VALUE…] MANAGE_PY ARGS… (nothing to run)")
        return EX_TEMPFAIL
    manage_py = command[0]
    try:
        # Opened here so the line names the file and the reason (Python itself would
        # say "can't open file" after its own start-up).
        with open(manage_py, "rb"):
            pass
    except OSError as exc:
        _drain_stdin()
        _say(_line(_describe(exc), "can't read manage.py; Postfix will retry"))
        return EX_TEMPFAIL
    if not sys.executable:
        raise RuntimeError("sys.executable is empty: can't tell which interpreter runs manage.py")

    read_end, write_end = os.pipe()
    try:
        try:
            pid = os.posix_spawn(
                sys.executable,
                [sys.executable, *command],
                {**os.environ, **environment},
                # stdout and stderr into our pipe; stdin stays the message from Postfix.
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, write_end, 1),
                    (os.POSIX_SPAWN_DUP2, write_end, 2),
                ],
            )
        finally:
            os.close(write_end)
        tail = _read_tail(read_end)
    finally:
        os.close(read_end)
    _, wait_status = os.waitpid(pid, 0)
    return _outcome(os.waitstatus_to_exitcode(wait_status), tail)


def _outcome(code: int, tail: bytes) -> int:
    """0 for 0; for anything else 75, with the one line that says why."""
    if code == EX_OK:
        return EX_OK  # quiet on success: the child's output, if any, is dropped
    _drain_stdin()
    output = tail.decode("utf-8", "replace")
    if code == EX_TEMPFAIL:
        # handle_bounce's own reason ("bounce not recorded, Postfix will retry: …").
        last = _last_line(output)
        _say(_clean(last)[:MAX_LINE] if last else _line("handle_bounce exited 75", "no reason"))
    elif code < 0:
        _say(_line(f"killed by signal {_signal_name(-code)}", _did_not_finish()))
    else:
        cause = cause_from_output(output)
        context = f"manage.py exited with status {code}; Postfix will retry"
        _say(_line(cause, context) if cause else _line(context, "no output"))
    return EX_TEMPFAIL


def cause_from_output(output: str) -> str:
    """The line of ``output`` that names the cause of a failure, or "".

    After a Python traceback, the exception line (``Type: message``, its message's
    further lines joined to it; the exception's module path left out); otherwise the
    last non-empty line, such as Django's ``CommandError: …`` or Python's ``can't
    open file …``.
    """
    cause = _clean(_last_line(output))
    start = output.rfind(_TRACEBACK)
    if start >= 0:
        lines = output[start + len(_TRACEBACK) :].splitlines()
        for index, line in enumerate(lines):
            if line.strip() and not line[:1].isspace():
                cause = _clean(" ".join(lines[index:]))
                break
    # "django.core.exceptions.ImproperlyConfigured: …" → "ImproperlyConfigured: …":
    # the module path would take a fifth of the line.
    name, sep, message = cause.partition(": ")
    if sep and "." in name and all(part.isidentifier() for part in name.split(".")):
        cause = name.rpartition(".")[2] + sep + message
    return cause


def _did_not_finish() -> str:
    return "manage.py handle_bounce did not finish; Postfix will retry"


def _signal_name(number: int) -> str:
    import signal  # only when a child was killed: start-up stays as small as it can

    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _read_tail(fd: int) -> bytes:
    """Read ``fd`` to its end, keeping only the last :data:`TAIL_BYTES`."""
    tail = bytearray()
    while chunk := os.read(fd, _CHUNK):
        tail += chunk
        if len(tail) > TAIL_BYTES:
            del tail[:-TAIL_BYTES]
    return bytes(tail)


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line
    return ""


def _clean(text: str) -> str:
    """One line: control characters and runs of whitespace become single spaces."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _describe(exc: BaseException) -> str:
    reason = str(exc)
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def _line(cause: str, context: str) -> str:
    """``cause (context)``, the cause cut so that the whole stays within MAX_LINE."""
    cause, suffix = _clean(cause), f" ({context})"
    room = MAX_LINE - len(suffix)
    if len(cause) > room:
        cause = cause[: room - 1].rstrip() + "…"
    return cause + suffix


def _say(line: str) -> None:
    # pipe(8) takes a leading enhanced status code ("5.1.1 …") over the exit status:
    # a line starting like one could turn the 75 into a bounce. None does.
    head = line.split(" ", 1)[0].split(".")
    if len(head) == 3 and all(part.isdigit() for part in head):
        line = f"output: {line}"[:MAX_LINE]
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except BaseException:  # stderr may be gone; the exit status still counts
        pass


def _drain_stdin() -> None:
    # Postfix may still be writing the message: read it to the end, so that the exit
    # status, not a broken pipe, decides what happens to it. Not from a terminal.
    try:
        if os.isatty(0):
            return
        while os.read(0, _CHUNK):
            pass
    except BaseException:  # no stdin, or already at its end
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
