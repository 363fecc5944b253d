"""The Postfix configuration for this installation, rendered from ``postfix_templates/``.

The templates are package data (``bounce_tracker/postfix_templates/``), read with
:mod:`importlib.resources`, so a checkout and an installed wheel render the same files.

Three parts: lines for ``main.cf``, the pipe service for ``master.cf`` and the
transport map entry. :func:`render` fills in this installation's absolute paths and
settings; :func:`check` writes them into a throwaway Postfix configuration directory
and runs ``postfix check`` on it.

The pipe's command (:func:`pipe_command`) is the interpreter running the launcher
(:mod:`bounce_tracker.ops.pipe_launcher`, standard library only), which runs
``manage.py handle_bounce`` and turns every failure, also one before Django has
started, into exit 75, so that Postfix keeps the bounce instead of losing it.
:func:`bounce_tracker.ops.pipe_check.check_pipe` runs that command's probe as the
pipe's user.

How the environment reaches the command: Postfix runs pipe commands with an almost
empty environment. The launcher's ``NAME=VALUE…`` arguments set the variables for
``manage.py``, so each installation's variables stay with its own service
(``export_environment`` in ``main.cf`` would hand them to every Postfix delivery
agent). ``master.cf`` is world-readable: pass names of non-secret variables (the
settings module, an env file path) and let the settings read secrets from a
protected file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from bounce_tracker.core.settings import TrackerSettings

TEMPLATE_FILES = ("main.cf", "master.cf", "transport")
#: With ``--lmtp``: the same parts, from these templates.
LMTP_TEMPLATE_FILES = {
    "main.cf": "lmtp_main.cf",
    "master.cf": "lmtp_master.cf",
    "transport": "lmtp_transport",
}
DEFAULT_LMTP = "127.0.0.1:10025"
_LMTP_RE = re.compile(r"^(?:inet:(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}|unix:/[^\s$]+)$")
_PLACEHOLDER_RE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_SERVICE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}(?::[a-z_][a-z0-9_.-]{0,31})?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Postfix refuses these as pipe users (root privileges, the mail system owner).
_FORBIDDEN_USERS = {"root", "postfix"}
POSTFIX = "/usr/sbin/postfix"
#: Interpreter options for the launcher: ``-I`` keeps PYTHON* variables and the
#: launcher's directory out of its ``sys.path``, ``-S`` skips ``site`` (and broken
#: ``.pth`` files). ``manage.py`` itself starts normally.
LAUNCHER_FLAGS = ("-I", "-S")


def default_launcher() -> str:
    """The absolute path of this installation's :mod:`~bounce_tracker.ops.pipe_launcher`."""
    return str(Path(__file__).resolve().with_name("pipe_launcher.py"))


class PostfixConfigError(ValueError):
    """An option that would make a broken or unsafe Postfix configuration."""


@dataclass(frozen=True)
class PipeOptions:
    """What varies between installations, with the defaults the command uses."""

    python: str
    manage_py: str
    service: str = "bouncehandler"
    user: str = "nobody"
    maxproc: int = 10
    environment: dict[str, str] = field(default_factory=dict)
    map_type: str = "hash"
    transport_path: str = "/etc/postfix/transport"
    #: Deliver through the LMTP receiver instead of the pipe: ``inet:HOST:PORT`` or
    #: ``unix:/path`` (see :func:`lmtp_nexthop`).
    lmtp: str | None = None
    #: The launcher script the interpreter runs (default: this installation's).
    launcher: str = field(default_factory=default_launcher)

    def validate(self) -> None:
        """Raise :class:`PostfixConfigError` for an option Postfix refuses or that is unsafe."""
        if not _SERVICE_RE.match(self.service):
            raise PostfixConfigError(
                f"Service name {self.service!r}: use lower-case letters, digits, '-' and '_'."
            )
        if not _USER_RE.match(self.user) or self.user.split(":")[0] in _FORBIDDEN_USERS:
            raise PostfixConfigError(
                f"Pipe user {self.user!r}: use an unprivileged account (not root or postfix) "
                "that can read the interpreter, the project and its settings."
            )
        if not 1 <= self.maxproc <= 1000:
            raise PostfixConfigError(f"Process limit {self.maxproc}: use 1 to 1000.")
        for path, what in (
            (self.python, "Python interpreter"),
            (self.launcher, "launcher"),
            (self.manage_py, "manage.py"),
        ):
            if not os.path.isabs(path):
                raise PostfixConfigError(f"The {what} path {path!r} must be absolute.")
        for name in self.environment:
            if not _ENV_NAME_RE.match(name):
                raise PostfixConfigError(f"Environment variable name {name!r} is not valid.")
        if self.map_type not in ("hash", "texthash", "lmdb", "cdb"):
            raise PostfixConfigError(
                f"Map type {self.map_type!r}: use hash, texthash, lmdb or cdb."
            )
        if self.lmtp is not None and not _LMTP_RE.match(self.lmtp):
            raise PostfixConfigError(
                f"LMTP address {self.lmtp!r}: use HOST:PORT, inet:HOST:PORT or unix:/path."
            )


def lmtp_nexthop(address: str | None) -> str:
    """``inet:HOST:PORT`` or ``unix:/path`` from what ``--lmtp`` accepts.

    ``HOST:PORT``, ``[IPV6]:PORT`` and ``inet:…`` are TCP; ``unix:/path`` or an
    absolute path is a Unix socket; nothing means :data:`DEFAULT_LMTP`.
    """
    address = (address or DEFAULT_LMTP).strip()
    if address.startswith(("inet:", "unix:")):
        return address
    if address.startswith("/"):
        return f"unix:{address}"
    return f"inet:{address}"


def _lmtp_listen(nexthop: str) -> str:
    """The receive_bounces arguments that listen where ``nexthop`` points."""
    if nexthop.startswith("unix:"):
        return f"--unix {nexthop[len('unix:') :]}"
    return nexthop[len("inet:") :]


def _argv_word(word: str) -> str:
    """One argv element for master.cf: ``$`` doubled, braces around whitespace."""
    word = word.replace("$", "$$")
    if re.search(r"\s", word) or word.startswith("{"):
        if "{" in word or "}" in word:
            raise PostfixConfigError(f"Can't quote {word!r} for master.cf (braces and spaces).")
        return "{" + word + "}"
    return word


def pipe_command(options: PipeOptions) -> list[str]:
    """The pipe's command up to manage.py: ``python -I -S launcher NAME=VALUE… manage.py``.

    ``handle_bounce -- ${sender} ${recipient}`` follows in master.cf; the check's
    probe runs the same words followed by ``handle_bounce --probe``.
    """
    return [
        options.python,
        *LAUNCHER_FLAGS,
        options.launcher,
        *(f"{name}={value}" for name, value in options.environment.items()),
        options.manage_py,
    ]


def pipe_argv(options: PipeOptions) -> str:
    """:func:`pipe_command` written for master.cf (``handle_bounce …`` follows)."""
    return " ".join(_argv_word(word) for word in pipe_command(options))


def _template(name: str) -> str:
    return (resources.files("bounce_tracker.postfix_templates") / name).read_text("utf-8")


def render(options: PipeOptions, tracker_settings: TrackerSettings) -> dict[str, str]:
    """Each configuration file's rendered part, by file name (pipe or LMTP)."""
    options.validate()
    values = {
        "bounce_domain": tracker_settings.bounce_domain,
        "delimiter": tracker_settings.verp_delimiter,
        "service": options.service,
        "user": options.user,
        "maxproc": str(options.maxproc),
        "argv": pipe_argv(options),
        "map_type": options.map_type,
        "transport_path": options.transport_path,
        "lmtp": options.lmtp or "",
        "lmtp_listen": _lmtp_listen(options.lmtp) if options.lmtp else "",
    }

    def substitute(match: re.Match[str]) -> str:
        return values[match.group(1)]

    files = LMTP_TEMPLATE_FILES if options.lmtp else {name: name for name in TEMPLATE_FILES}
    return {
        name: _PLACEHOLDER_RE.sub(substitute, _template(template))
        for name, template in files.items()
    }


def render_text(options: PipeOptions, tracker_settings: TrackerSettings) -> str:
    """All parts, in the order an administrator applies them."""
    parts = render(options, tracker_settings)
    return "\n".join(parts[name] for name in ("main.cf", "master.cf", "transport"))


# A private Postfix instance: the configuration ``check`` runs ``postfix check`` on
# (nothing of it is part of the rendered output; it only gives the rendered lines a
# home), and the base of the test suite's end-to-end instance.

#: The main.cf settings of a private instance in a directory (``{base}``): its own
#: queue, data directory and log, loopback only, nothing delivered locally.
_INSTANCE_MAIN_CF = {
    "compatibility_level": "3.6",
    "queue_directory": "{base}/spool",
    "data_directory": "{base}/data",
    "mail_owner": "postfix",
    "setgid_group": "postdrop",
    "maillog_file": "{base}/maillog",
    "maillog_file_prefixes": "{base}",
    "inet_interfaces": "loopback-only",
    "mydestination": "",
    "alias_maps": "",
    "alias_database": "",
}
#: The master.cf services an instance needs to queue, bounce and deliver mail.
_INSTANCE_SERVICES = (
    "pickup    unix  n  -  n  60  1  pickup",
    "cleanup   unix  n  -  n  -   0  cleanup",
    "qmgr      unix  n  -  n  300 1  qmgr",
    "rewrite   unix  -  -  n  -   -  trivial-rewrite",
    "bounce    unix  -  -  n  -   0  bounce",
    "defer     unix  -  -  n  -   0  bounce",
    "trace     unix  -  -  n  -   0  bounce",
    "smtp      unix  -  -  n  -   -  smtp",
    "error     unix  -  -  n  -   -  error",
    "postlog   unix-dgram n - n -  1  postlogd",
)


def instance_main_cf(base: Path | str, settings: Mapping[str, str] | None = None) -> str:
    """The main.cf of a private Postfix instance living in ``base``.

    The smallest one ``postfix check`` accepts, its paths under ``base``;
    ``settings`` are added to it, or replace its own (each name appears once).
    """
    values = {name: value.format(base=base) for name, value in _INSTANCE_MAIN_CF.items()}
    values.update(settings or {})
    return "".join(f"{name} = {value}".rstrip() + "\n" for name, value in values.items())


def instance_master_cf(services: Iterable[str] = ()) -> str:
    """The master.cf of a private Postfix instance: the services it needs, then ``services``."""
    return "".join(f"{line}\n" for line in (*_INSTANCE_SERVICES, *services))


def backdate_config(config_directory: Path) -> None:
    """Date the files in ``config_directory`` a minute back.

    Postfix programs wait until main.cf is a second old before they use it; a
    freshly written one would cost that pause on every start, reload and check.
    """
    past = time.time() - 60
    for path in config_directory.iterdir():
        os.utime(path, (past, past))


@dataclass(frozen=True)
class CheckResult:
    """What ``postfix check`` said: ``ok`` and its output (warnings and errors)."""

    ok: bool
    output: str


def check(options: PipeOptions, tracker_settings: TrackerSettings) -> CheckResult:
    """Write the rendered parts into a temporary config directory; run ``postfix check``."""
    if not os.path.exists(POSTFIX):
        return CheckResult(False, f"{POSTFIX} not found: install Postfix to check the config.")
    if os.geteuid() != 0:
        return CheckResult(False, "postfix check must run as root (Postfix reserves it).")
    parts = render(options, tracker_settings)
    base = Path(tempfile.mkdtemp(prefix="btpf-", dir="/tmp"))
    try:
        base.chmod(0o755)
        (base / "spool").mkdir(mode=0o755)
        etc = base / "etc"
        etc.mkdir(mode=0o755)
        transport = etc / "transport"
        transport.write_text(parts["transport"])
        check_options = PipeOptions(
            **{**options.__dict__, "map_type": "texthash", "transport_path": str(transport)}
        )
        checked = render(check_options, tracker_settings)
        (etc / "main.cf").write_text(instance_main_cf(base) + checked["main.cf"])
        (etc / "master.cf").write_text(instance_master_cf() + checked["master.cf"])
        backdate_config(etc)
        result = subprocess.run(
            [POSTFIX, "-c", str(etc), "check"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        log = (base / "maillog").read_text() if (base / "maillog").exists() else ""
        problems = [line for line in log.splitlines() if "warning:" in line or "fatal:" in line]
        output = "\n".join([result.stdout.strip(), result.stderr.strip(), *problems]).strip()
        return CheckResult(result.returncode == 0 and not problems, output)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def default_manage_py() -> str | None:
    """The absolute path of manage.py when the command runs as ``python manage.py …``."""
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) == "manage.py":
        return os.path.abspath(script)
    return None
