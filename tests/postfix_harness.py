"""A private, loopback-only Postfix instance for end-to-end tests, and a TCP proxy.

The instance lives in a short world-readable directory under /tmp (Postfix needs
0755 parents and socket paths under 108 bytes), listens on an unprivileged
127.0.0.1 port, uses no DNS, logs to a file and has its own queue. Its pipe service
is the one ``bounce_postfix_config`` renders; with ``PipeOptions(lmtp=...)`` the
bounce domain goes to the LMTP receiver instead (``bounce_postfix_config --lmtp``).
Facts behind the settings are in ``shared/postfix-test-instance.md`` of the project's
steering notes.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bounce_tracker.core.settings import TrackerSettings
from bounce_tracker.ops.postfix import (
    PipeOptions,
    backdate_config,
    instance_main_cf,
    instance_master_cf,
    render,
)

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
POSTSUPER = "/usr/sbin/postsuper"
ROOT = Path(__file__).resolve().parent.parent

# Added to (or replacing) the library's private-instance main.cf
# (bounce_tracker.ops.postfix.instance_main_cf): an SMTP listener on 127.0.0.1 for
# the tests, no DNS, and every route but the test's own disabled.
_E2E_MAIN_CF = {
    "myhostname": "mx.postfix-e2e.test",
    "mydomain": "postfix-e2e.test",
    "myorigin": "$myhostname",
    "local_recipient_maps": "",
    "inet_interfaces": "127.0.0.1",
    "inet_protocols": "ipv4",
    "mynetworks": "127.0.0.0/8",
    "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
    "smtpd_peername_lookup": "no",
    "smtp_dns_support_level": "disabled",
    "smtp_host_lookup": "native",
    "lmtp_host_lookup": "native",
    "biff": "no",
    "smtputf8_enable": "no",
    "append_dot_mydomain": "no",
    "default_transport": "error:5.7.1 default route disabled in test instance",
    "relay_transport": "$default_transport",
    "local_transport": "error:5.1.1 local delivery disabled in test instance",
}

PROFILES = {
    # Retries every second, a delay warning at the first deferral, expiry after 2 s.
    "fast": {
        "queue_run_delay": "1s",
        "minimal_backoff_time": "1s",
        "maximal_backoff_time": "1s",
        "delay_warning_time": "1s",
        "maximal_queue_lifetime": "2s",
        "bounce_queue_lifetime": "2s",
    },
    # Deferred mail stays put until the test flushes the queue.
    "hold": {
        "queue_run_delay": "1h",
        "minimal_backoff_time": "1h",
        "maximal_backoff_time": "1h",
        "delay_warning_time": "0",
        "maximal_queue_lifetime": "1d",
        "bounce_queue_lifetime": "1d",
    },
}

# Beside the library's private-instance services (instance_master_cf): the SMTP
# listener (first, from the port) and what smtpd, the LMTP client and the queue
# tools use.
_E2E_SERVICES = (
    "verify    unix  -  -  n  -   1  verify",
    "flush     unix  n  -  n  1000? 0 flush",
    "proxymap  unix  -  -  n  -   -  proxymap",
    "relay     unix  -  -  n  -   -  smtp",
    "lmtp      unix  -  -  n  -   -  lmtp",
    "showq     unix  n  -  n  -   -  showq",
    "retry     unix  -  -  n  -   -  error",
    "discard   unix  -  -  n  -   -  discard",
    "anvil     unix  -  -  n  -   1  anvil",
    "scache    unix  -  -  n  -   1  scache",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``condition`` until it is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _nobody_can_import(python: str, pythonpath: str) -> bool:
    probe = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            python,
            "-c",
            "import django, MySQLdb; django.setup(); import bounce_tracker.receiving.receive",
        ],
        env={
            "PYTHONPATH": pythonpath,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    return probe.returncode == 0


@contextlib.contextmanager
def readable_installation() -> Iterator[tuple[str, str]]:
    """(interpreter, PYTHONPATH) that the unprivileged pipe user can read.

    The checkout itself when its path is readable by everyone; otherwise (e.g. a
    clone under /root, mode 0700) a copy of the virtualenv and the project in /tmp.
    """
    if _nobody_can_import(sys.executable, str(ROOT)):
        yield sys.executable, str(ROOT)
        return
    copy = Path(tempfile.mkdtemp(prefix="btpf-app-", dir="/tmp"))
    try:
        copy.chmod(0o755)
        shutil.copytree(sys.prefix, copy / "venv", symlinks=True)
        # The templates are in bounce_tracker/ (the top-level postfix_templates is a
        # symlink to them, for administrators; an sdist has none).
        for part in ("bounce_tracker", "tests", "example_project"):
            shutil.copytree(ROOT / part, copy / "app" / part, symlinks=True)
        python = str(copy / "venv" / "bin" / Path(sys.executable).name)
        assert _nobody_can_import(python, str(copy / "app")), "copied installation unusable"
        yield python, str(copy / "app")
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def installation_launcher(pipe: PipeOptions) -> str:
    """The launcher of the installation the pipe imports the app from (its PYTHONPATH).

    With a copy of the installation (:func:`readable_installation`), the checkout's
    own launcher may be unreadable to the pipe user: the copy's is used instead.
    """
    pythonpath = pipe.environment.get("PYTHONPATH")
    if pythonpath:
        launcher = Path(pythonpath) / "bounce_tracker" / "ops" / "pipe_launcher.py"
        if launcher.exists():
            return str(launcher)
    return pipe.launcher


class PostfixInstance:
    """One private Postfix: start, reconfigure, inspect the queue and the log, stop."""

    def __init__(
        self, pipe: PipeOptions, tracker_settings: TrackerSettings, routes: dict[str, str]
    ) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pfx-", dir="/tmp"))
        self.base.chmod(0o755)
        self.etc = self.base / "etc"
        self.smtp_port = free_port()
        self.pipe = self._instance_pipe(pipe)
        self.tracker_settings = tracker_settings
        self.routes = routes
        self.profile = "fast"

    # -- configuration -------------------------------------------------------------

    def _instance_pipe(self, pipe: PipeOptions) -> PipeOptions:
        """``pipe`` with this instance's transport map and the installation's launcher."""
        return PipeOptions(
            **{
                **pipe.__dict__,
                "map_type": "texthash",
                "transport_path": str(self.etc / "transport"),
                "launcher": installation_launcher(pipe),
            }
        )

    def _write_config(self, profile: str) -> None:
        self.etc.mkdir(mode=0o755, exist_ok=True)
        (self.base / "spool").mkdir(mode=0o755, exist_ok=True)
        rendered = render(self.pipe, self.tracker_settings)
        main_cf = instance_main_cf(self.base, {**_E2E_MAIN_CF, **PROFILES[profile]})
        (self.etc / "main.cf").write_text(main_cf + rendered["main.cf"])
        smtpd = f"127.0.0.1:{self.smtp_port} inet n - n - - smtpd"
        master_cf = instance_master_cf([smtpd, *_E2E_SERVICES])
        (self.etc / "master.cf").write_text(master_cf + rendered["master.cf"])
        routes = "".join(f"{domain}    {nexthop}\n" for domain, nexthop in self.routes.items())
        (self.etc / "transport").write_text(rendered["transport"] + routes)
        backdate_config(self.etc)

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [POSTFIX, "-c", str(self.etc), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)} failed; log:\n{self.log()[-3000:]}")
        return result

    def start(self, profile: str = "fast") -> None:
        self.profile = profile
        self._write_config(profile)
        self._postfix("check")
        self._postfix("start")
        wait_until(
            lambda: self._postfix("status", check=False).returncode == 0, 10, "postfix to start"
        )
        wait_until(self._smtpd_listening, 10, "smtpd to listen")

    def _smtpd_listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1):
                return True
        except OSError:
            return False

    def set_profile(self, profile: str) -> None:
        for name, value in PROFILES[profile].items():
            subprocess.run(
                ["postconf", "-c", str(self.etc), "-e", f"{name} = {value}"],
                check=True,
                capture_output=True,
                timeout=30,
            )
        backdate_config(self.etc)
        self.profile = profile
        self._postfix("reload")

    def set_pipe(self, pipe: PipeOptions) -> None:
        """Render the pipe service from ``pipe`` into master.cf and restart Postfix.

        A stop and a start, not a reload: the queue stays, and no pipe process started
        with the old command can deliver anything afterwards.
        """
        instance_pipe = self._instance_pipe(pipe)
        if instance_pipe == self.pipe:
            return
        self.pipe = instance_pipe
        self._postfix("stop")
        self.start(self.profile)

    def stop(self) -> None:
        try:
            self._postfix("stop", check=False)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    # -- the queue and the log -----------------------------------------------------

    def queue(self) -> list[dict[str, object]]:
        result = subprocess.run(
            [POSTQUEUE, "-c", str(self.etc), "-j"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def flush(self) -> None:
        subprocess.run(
            [POSTQUEUE, "-c", str(self.etc), "-f"], check=True, timeout=30, capture_output=True
        )

    def empty_queue(self) -> None:
        subprocess.run(
            [POSTSUPER, "-c", str(self.etc), "-d", "ALL"],
            check=False,
            timeout=30,
            capture_output=True,
        )

    def log(self) -> str:
        path = self.base / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_lines(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        return [line for line in self.log().splitlines() if regex.search(line)]

    def wait_for_log(self, pattern: str, timeout: float = 20, count: int = 1) -> list[str]:
        try:
            wait_until(
                lambda: len(self.log_lines(pattern)) >= count,
                timeout,
                f"{count} log line(s) matching {pattern!r}",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the log ends:\n{self.log()[-4000:]}") from None
        return self.log_lines(pattern)


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; ``down()`` makes connections fail.

    Plays a database that becomes unreachable and comes back, without touching the
    real server other tests use.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()

    def up(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            # close() alone leaves a thread blocked in accept() listening on Linux;
            # shutdown() wakes it, so new connections are refused from now on.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # Either side closing ends both directions; the other pump then stops on
            # its closed socket.
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
