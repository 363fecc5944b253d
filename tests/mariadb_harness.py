"""A private MariaDB server for fault tests: its own data directory, port and process.

The fault tests stop, kill and restart the database under running handlers; they
can't do that to the shared server the rest of the suite uses. ``mariadb-install-db``
makes a fresh data directory in about two seconds and ``mariadbd`` starts on it in
under one, so each test module gets a server of its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import MySQLdb

from tests.postfix_harness import free_port, wait_until

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
ROOT = Path(__file__).resolve().parent.parent
DATABASE = "bounce_tracker"


def available() -> bool:
    return os.path.exists(MARIADBD) and os.path.exists(INSTALL_DB) and os.geteuid() == 0


class PrivateMariaDB:
    """One ``mariadbd`` on 127.0.0.1 with a throw-away data directory.

    :meth:`stop` shuts it down cleanly, :meth:`kill` sends SIGKILL (InnoDB then runs
    crash recovery at the next :meth:`start`), :meth:`start` starts it again on the
    same data.
    """

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="btdb-", dir="/tmp"))
        self.base.chmod(0o755)
        shutil.chown(self.base, "mysql", "mysql")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        subprocess.run(
            [
                INSTALL_DB,
                "--no-defaults",
                f"--datadir={self.base / 'data'}",
                "--user=mysql",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def url(self, database: str = DATABASE) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def server_arguments(self) -> list[str]:
        """``mariadbd``'s command line; a subclass adds its own options (Galera's)."""
        return [
            MARIADBD,
            "--no-defaults",
            f"--datadir={self.base / 'data'}",
            "--user=mysql",
            "--bind-address=127.0.0.1",
            f"--port={self.port}",
            f"--socket={self.base / 'mysqld.sock'}",
            f"--pid-file={self.base / 'mysqld.pid'}",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=64M",
            "--max-connections=300",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
        ]

    def start(self, *extra_arguments: str, timeout: float = 60) -> None:
        """Start ``mariadbd`` (with ``extra_arguments``) and wait until it takes connections."""
        assert not self.running, "already running"
        log = open(self.base / "server.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [*self.server_arguments(), *extra_arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self._accepts_connections, timeout, f"mariadbd on port {self.port}")

    def _accepts_connections(self) -> bool:
        if not self.running:
            raise RuntimeError(f"mariadbd exited; see {self.base / 'server.log'}")
        try:
            self.connect(database=None).close()
        except MySQLdb.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), waiting for the process to end."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown, uncommitted transactions lost."""
        self._end(signal.SIGKILL)

    def _end(self, how: signal.Signals) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(how)
        self.process.wait(timeout=60)

    def restart(self, *, crash: bool = False, down_for: float = 0) -> None:
        """Stop (or kill) the server, leave it down ``down_for`` seconds, start it again."""
        self.kill() if crash else self.stop()
        time.sleep(down_for)
        self.start()

    def connect(self, database: str | None = DATABASE, **options: Any) -> Any:
        """A driver connection (autocommit on) to the server, outside Django."""
        kwargs: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": "root",
            "connect_timeout": 5,
            "charset": "utf8mb4",
            **options,
        }
        if database:
            kwargs["database"] = database
        connection = MySQLdb.connect(**kwargs)
        connection.autocommit(True)
        return connection

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.connect()) as connection:
            cursor = connection.cursor()
            cursor.execute(sql, params or None)
            return list(cursor.fetchall())

    def create_schema(self) -> None:
        """Create the app's database and run ``migrate`` into it, as an operator would."""
        with contextlib.closing(self.connect(database=None)) as connection:
            connection.cursor().execute(
                f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v0"],
            env=django_environment(self.url()),
            check=True,
            capture_output=True,
            timeout=300,
        )

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)


def django_environment(url: str, **extra: str) -> dict[str, str]:
    """The environment of a Django process of the test project on database ``url``."""
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": url,
        **extra,
    }


@contextlib.contextmanager
def private_mariadb() -> Iterator[PrivateMariaDB]:
    server = PrivateMariaDB()
    try:
        server.start()
        server.create_schema()
        yield server
    finally:
        server.destroy()


def wait_for_blocked_query(server: PrivateMariaDB, prefix: str, timeout: float = 30) -> None:
    """Wait until a statement starting with ``prefix`` has run for a second, i.e. waits.

    Read from the process list: every statement there, whatever it waits for.
    """

    def blocked() -> bool:
        [(found,)] = server.query(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE COMMAND = 'Query' AND INFO LIKE %s AND TIME_MS > 1000",
            prefix.replace("%", r"\%").replace("_", r"\_") + "%",
        )
        return bool(found)

    wait_until(blocked, timeout, f"a statement starting {prefix!r} to wait")
