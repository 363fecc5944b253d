"""Bounces per second through the resident LMTP receiver, beside the pipe and the floor.

Ways of recording bounces on the same database, measured in interleaved rounds
(every round runs each variant once, in an order that rotates from round to round,
so machine noise hits all of them):

receiver
    ``manage.py receive_bounces`` (started once per configuration, with the minimal
    project of ``benchmarks/pipe.py``): by default with no options at all (one worker
    per CPU it may use, its default threads); ``--receivers`` adds configurations,
    each its own process on its own port. N LMTP clients at once, each on its own
    connection, deliver distinct DSNs (their own Message-ID, spread over the seeded
    rows) the way Postfix's lmtp client does: MAIL, RCPT and DATA pipelined, then the
    message. Every reply must be ``250 … recorded``. 10 clients by default.
PHP pipe script, 10 in flight (MariaDB/MySQL only)
    the original recipe's own script, ``benchmarks/php/bounce.php`` run by
    ``php-cli``: read stdin, one UPDATE keyed on the envelope recipient through
    mysqli, exit 0 (or 75). A new process per bounce, 10 running at once like
    Postfix's pipe process limit. The baseline of the ratios. Needs ``php-cli`` and
    ``php-mysql`` (``make bench-deps``, or ``apt-get install -y php-cli php-mysql``);
    without them it is left out and the ratios are against the Python script.
Python pipe script, 10 in flight
    the same in Python (``benchmarks/pipe.py``'s minimal script through MySQLdb).
database floor
    what the receiver's transaction costs the database alone: per bounce the same
    locking read, UPDATE and INSERT of a ~2 KB event, committed, issued from 10
    threads over persistent connections with the bare driver (mysqlclient).

bounces/s is each variant's bounces divided by its wall time in the round (median
over rounds); the ratios are medians of the per-round ratios. Goal from issue 18:
``receive_bounces`` with no options at least 5x the PHP pipe script.

Run from the repository root::

    .venv/bin/python benchmarks/receiver.py
    .venv/bin/python benchmarks/receiver.py --receivers "--workers 1;--workers 2 --threads 4"
    .venv/bin/python benchmarks/receiver.py --database-url postgres://postgres@127.0.0.1:5432/bounce_tracker_bench

It prints a table and always exits 0: it measures, it does not judge. At the end it
checks the counts: every bounce recorded exactly once.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipe import (
    DEFAULT_DATABASE_URL,
    PIPE_PATH,
    RECIPE_DRIVERS,
    RECIPE_SCRIPT,
    REPO_ROOT,
    SETTINGS_MODULE,
    Seed,
    create_database,
    database_config,
    database_description,
    recipe_params,
    remove_rows,
    seed_addresses,
    setup_django,
    write_project,
    write_recipe,
)

FLOOR_THREADS = 10
RECIPE_PARALLEL = 10
PHP_SCRIPT = Path(__file__).resolve().parent / "php" / "bounce.php"
PHP_HELP = (
    "php-cli with mysqli is not installed, so the PHP pipe script is left out: "
    "run `make bench-deps` (as root: apt-get install -y php-cli php-mysql)"
)


def php_available() -> bool:
    """True when ``php`` runs and has mysqli."""
    try:
        result = subprocess.run(
            ["php", "-r", "exit(class_exists('mysqli') ? 0 : 1);"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@dataclass
class Variant:
    name: str
    bounces_per_round: int
    run: Callable[[list[int]], float]  # this round's rows -> seconds taken
    rates: list[float] = field(default_factory=list)
    bounces: int = 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- The receiver and its clients ---------------------------------------------------


class LmtpClient:
    """A minimal LMTP client that pipelines like Postfix's: one connection, many mails."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stream = self.sock.makefile("rb")
        self._expect(b"220")
        self.sock.sendall(b"LHLO bench.client\r\n")
        while not self.stream.readline().startswith(b"250 "):
            pass

    def _expect(self, code: bytes) -> bytes:
        line = self.stream.readline()
        if not line.startswith(code):
            raise RuntimeError(f"expected {code!r}, got {line!r}")
        return line

    def deliver(self, recipient: str, stuffed: bytes) -> bytes:
        self.sock.sendall(b"MAIL FROM:<>\r\nRCPT TO:<" + recipient.encode() + b">\r\nDATA\r\n")
        self._expect(b"250")
        self._expect(b"250")
        self._expect(b"354")
        self.sock.sendall(stuffed)
        return self._expect(b"250")

    def close(self) -> None:
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.stream.readline()
        finally:
            self.stream.close()
            self.sock.close()


def stuffed_message(raw: bytes) -> bytes:
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    body = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    return body + b".\r\n"


@dataclass
class ReceiverRun:
    seed: Seed
    port: int
    clients: int
    name: str  # in the Message-IDs: distinct messages for every run
    problems: list[str] = field(default_factory=list)
    _messages: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, rows: list[int]) -> float:
        from tests.messages import dsn

        payloads = []
        for row in rows:
            with self._lock:
                self._messages += 1
                number = self._messages
            raw = dsn(
                recipient=self.seed.email(row),
                return_path=self.seed.verp_address(row),
                message_id=f"<receiver-bench-{self.seed.run_token}-{self.name}-{number}@mx>",
            )
            payloads.append((self.seed.verp_address(row), stuffed_message(raw)))
        shares = [payloads[n :: self.clients] for n in range(self.clients)]
        connections = [LmtpClient(self.port) for _ in range(self.clients)]
        start = threading.Barrier(self.clients + 1)

        def client(index: int) -> None:
            start.wait()
            for recipient, stuffed in shares[index]:
                reply = connections[index].deliver(recipient, stuffed)
                # "recorded (hard)", not "duplicate, recorded before"
                if b"> recorded (" not in reply and len(self.problems) < 3:
                    self.problems.append(reply.decode(errors="replace").strip())

        threads = [threading.Thread(target=client, args=(n,)) for n in range(self.clients)]
        for thread in threads:
            thread.start()
        # Measured from the moment the barrier releases every client (connected and
        # greeted, like Postfix's cached LMTP connections) until the last reply.
        start.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        for connection in connections:
            connection.close()
        return elapsed


# --- The recipe and the floor -------------------------------------------------------


@dataclass
class RecipeRun:
    """A pipe script, a new process per bounce, ``RECIPE_PARALLEL`` at a time."""

    seed: Seed
    workdir: Path
    env: dict[str, str]
    pool: ThreadPoolExecutor
    command: list[str]
    problems: list[str] = field(default_factory=list)

    def __call__(self, rows: list[int]) -> float:
        from tests.messages import dsn

        raws = {
            row: dsn(recipient=self.seed.email(row), return_path=self.seed.verp_address(row))
            for row in rows
        }

        def one(row: int) -> None:
            raw = raws[row]
            result = subprocess.run(
                [*self.command, "MAILER-DAEMON", self.seed.verp_address(row)],
                input=raw.replace(b"\r\n", b"\n"),
                capture_output=True,
                env=self.env,
                cwd=self.workdir,
                timeout=300,
                check=False,
            )
            if result.returncode and len(self.problems) < 3:
                self.problems.append(
                    f"exit {result.returncode}: "
                    + (result.stderr or result.stdout).decode(errors="replace")[-300:]
                )

        started = time.perf_counter()
        list(self.pool.map(one, rows))
        return time.perf_counter() - started


@dataclass
class FloorRun:
    """The receiver's transaction through the bare driver: lock, UPDATE, INSERT, COMMIT."""

    seed: Seed
    vendor: str
    config: dict[str, Any]
    table: str
    event_table: str
    connections: list[Any] = field(default_factory=list)
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def connect(self) -> None:
        for _ in range(FLOOR_THREADS):
            if self.vendor == "mysql":
                import MySQLdb

                self.connections.append(MySQLdb.connect(**recipe_params("mysql", self.config)))
            elif self.vendor == "postgresql":
                import psycopg

                self.connections.append(psycopg.connect(**recipe_params("postgresql", self.config)))
            else:
                import sqlite3

                self.connections.append(
                    sqlite3.connect(self.config["NAME"], timeout=30, check_same_thread=False)
                )

    def __call__(self, rows: list[int]) -> float:
        from tests.messages import dsn

        mark = "?" if self.vendor == "sqlite" else "%s"
        now = "CURRENT_TIMESTAMP" if self.vendor == "sqlite" else "NOW()"
        lock = f"SELECT id FROM {self.table} WHERE encoded_from = {mark}" + (
            "" if self.vendor == "sqlite" else " FOR UPDATE"
        )
        update = (
            f"UPDATE {self.table} SET last_event_kind = 'hard', bounce_count = bounce_count + 1, "
            f"last_bounce3 = last_bounce2, last_bounce2 = last_bounce, last_bounce = {now} "
            f"WHERE id = {mark}"
        )
        columns = (
            "tracker_id, kind, counted, reporting_mta, original_message_id, classifier_reason, "
            "envelope_sender, envelope_recipient, status, diagnostic, recipient, source, "
            "received_at, fingerprint, raw_message, raw_size, raw_truncated"
        )
        insert = (
            f"INSERT INTO {self.event_table} ({columns}) VALUES "
            f"({', '.join([mark] * 12)}, {now}, {mark}, {mark}, {mark}, {mark})"
        )
        raw = dsn()
        with self._lock:
            first = self._counter
            self._counter += len(rows)
        token = f"{self.seed.run_token}-{first}"
        shares = [list(enumerate(rows))[n::FLOOR_THREADS] for n in range(FLOOR_THREADS)]

        def work(index: int) -> None:
            db = self.connections[index]
            cursor = db.cursor()
            for number, row in shares[index]:
                cursor.execute(lock, (self.seed.local_part(row),))
                (tracker_id,) = cursor.fetchone()
                cursor.execute(update, (tracker_id,))
                cursor.execute(
                    insert,
                    (
                        tracker_id,
                        "hard",
                        True,
                        "mx.example.net",
                        "<floor@example.com>",
                        "dsn",
                        "",
                        self.seed.verp_address(row),
                        "5.1.1",
                        "smtp; 550 5.1.1 User unknown",
                        self.seed.email(row),
                        "lmtp",
                        f"floor-{token}-{number}",
                        raw,
                        len(raw),
                        False,
                    ),
                )
                db.commit()
            cursor.close()

        threads = [threading.Thread(target=work, args=(n,)) for n in range(FLOOR_THREADS)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started

    def close(self) -> None:
        for db in self.connections:
            db.close()


# --- Where one message's time goes -----------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` and its waited-for children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (a receiver's forked workers)."""
    children = []
    for path in Path("/proc").glob(f"{pid}/task/*/children"):
        children += [int(child) for child in path.read_text().split()]
    return [pid, *children]


def database_pids() -> list[int]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in ("mariadbd", "mysqld", "postgres"):
                pids.append(int(comm.parent.name))
        except OSError:
            continue
    return pids


def in_process_breakdown(seed: Seed, rows: list[int]) -> dict[str, float]:
    """CPU seconds per message of each step, run here one message at a time."""
    from django.db import connection

    from bounce_tracker.classify import classify_message
    from bounce_tracker.models import EventSource
    from bounce_tracker.receiving.lmtp.service import NormalizingBuilder
    from bounce_tracker.receiving.receive import receive_message
    from bounce_tracker.receiving.settings import get_receiving_settings
    from tests.messages import dsn

    settings = get_receiving_settings()
    totals = {"build": 0.0, "classify": 0.0, "record": 0.0}
    for row in rows:
        raw = dsn(
            recipient=seed.email(row),
            return_path=seed.verp_address(row),
            message_id=f"<receiver-profile-{seed.run_token}-{row}@mx>",
        )
        lines = [line + b"\r\n" for line in raw.split(b"\n")[:-1]]
        started = time.process_time()
        builder = NormalizingBuilder(settings.max_message_bytes)
        for line in lines:
            builder.write(line)
        message = builder.builder.finish()
        built = time.process_time()
        classification = classify_message(message.data)
        classified = time.process_time()
        receive_message(
            message,
            "",
            seed.verp_address(row),
            source=EventSource.LMTP,
            tracker_settings=settings,
            classification=classification,
        )
        recorded = time.process_time()
        totals["build"] += built - started
        totals["classify"] += classified - built
        totals["record"] += recorded - classified
    connection.close()
    return {step: seconds / len(rows) for step, seconds in totals.items()}


def profile(seed: Seed, env: dict[str, str], workdir: Path, messages: int) -> tuple[list[str], int]:
    """Where one message's CPU goes, receiver and database: table lines, bounces recorded."""
    log_path = workdir / "receive_bounces-profile.log"
    receiver, port = start_receiver("--workers 1", env, workdir, log_path)
    run = ReceiverRun(seed, port, 10, "profile")
    try:
        run(list(range(min(200, seed.count))))  # warm up
        rows = [n % seed.count for n in range(messages)]
        pids = process_tree(receiver.pid)
        databases = database_pids()
        before = sum(cpu_seconds(pid) for pid in pids)
        db_before = sum(cpu_seconds(pid) for pid in databases)
        client_before = time.process_time()
        elapsed = run(rows)
        client = time.process_time() - client_before
        receiver_cpu = sum(cpu_seconds(pid) for pid in pids) - before
        database_cpu = sum(cpu_seconds(pid) for pid in databases) - db_before
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=120)
    steps = in_process_breakdown(seed, [n % seed.count for n in range(min(messages, 500))])
    per = {
        "receiver process, all of it": receiver_cpu / messages,
        "  read and keep the DATA lines (MessageBuilder)": steps["build"],
        "  classify": steps["classify"],
        "  record: lock, UPDATE, INSERT, COMMIT (Python side)": steps["record"],
        "  the rest: LMTP protocol, thread hand-off, replies, log line": receiver_cpu / messages
        - sum(steps.values()),
        "database server": database_cpu / messages,
        "benchmark clients": client / messages,
    }
    lines = [
        f"Where the CPU of one message goes: receive_bounces --workers 1 (default threads), "
        f"{messages} messages from 10 clients in {elapsed:.1f} s ({messages / elapsed:,.0f}/s);",
        "the steps measured one message at a time in this process; ms of CPU per message:",
        "",
    ]
    width = max(len(name) for name in per)
    total = per["receiver process, all of it"] + per["database server"] + per["benchmark clients"]
    for name, seconds in per.items():
        lines.append(f"{name.ljust(width)}  {seconds * 1000:6.3f} ms")
    cpus = len(os.sched_getaffinity(0))
    name = f"all three (on {cpus} CPUs: at most {cpus / total:,.0f} messages/s)"
    lines.append(f"{name.ljust(width)}  {total * 1000:6.3f} ms")
    warm_up = min(200, seed.count)
    return lines, warm_up + messages + min(messages, 500)


# --- Rounds and output ----------------------------------------------------------------


def measure(variants: Sequence[Variant], rounds: int, seed: Seed) -> None:
    """One warm-up round, then ``rounds`` rounds in rotating order."""
    next_row = 0
    for number in range(-1, rounds):
        shift = number % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            rows = [(next_row + n) % seed.count for n in range(variant.bounces_per_round)]
            next_row += variant.bounces_per_round
            elapsed = variant.run(rows)
            variant.bounces += len(rows)
            if number >= 0:
                variant.rates.append(len(rows) / elapsed)
            print(".", end="", flush=True)
    print()


def ratio(numerator: Variant, denominator: Variant) -> float:
    return statistics.median(n / d for n, d in zip(numerator.rates, denominator.rates, strict=True))


def format_table(variants: Sequence[Variant], baseline: Variant, floor: Variant) -> str:
    header = ("variant", "bounces/round", "bounces/s", "min", "max", "x baseline", "x floor")
    rows = [header]
    for variant in variants:
        rows.append(
            (
                variant.name,
                str(variant.bounces_per_round),
                f"{statistics.median(variant.rates):,.0f}",
                f"{min(variant.rates):,.0f}",
                f"{max(variant.rates):,.0f}",
                f"{ratio(variant, baseline):.2f}",
                f"{ratio(variant, floor):.3f}",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Bounces per second through receive_bounces (LMTP) beside the PHP and "
        "Python pipe scripts and the database floor, side by side."
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default: 5)")
    parser.add_argument(
        "--receivers",
        default="",
        help="receive_bounces configurations to measure, separated by ';', e.g. "
        "'--workers 1;--workers 2 --threads 4'; an empty one is the defaults "
        "(default: only the defaults)",
    )
    parser.add_argument(
        "--no-defaults",
        action="store_true",
        help="leave out receive_bounces with no options",
    )
    parser.add_argument(
        "--clients", default="10", help="concurrent LMTP clients to measure (default: 10)"
    )
    parser.add_argument(
        "--messages", type=int, default=600, help="receiver bounces per round (default: 600)"
    )
    parser.add_argument(
        "--recipe-bounces",
        type=int,
        default=100,
        help="pipe script processes per round, 10 at a time (default: 100)",
    )
    parser.add_argument(
        "--floor-bounces",
        type=int,
        default=2000,
        help="floor transactions per round (default: 2000)",
    )
    parser.add_argument("--addresses", type=int, default=1000, help="seeded rows (default: 1000)")
    parser.add_argument(
        "--profile",
        type=int,
        default=2000,
        metavar="N",
        help="after the rounds, where one message's CPU goes, over N messages (default: "
        "2000; 0 leaves it out)",
    )
    args = parser.parse_args(argv)
    args.client_counts = [int(n) for n in args.clients.split(",") if n.strip()]
    configs = [config.strip() for config in args.receivers.split(";") if config.strip()]
    args.configs = ([] if args.no_defaults else [""]) + configs
    return args


def start_receiver(
    config: str, env: dict[str, str], workdir: Path, log_path: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    with open(log_path, "wb") as log:
        receiver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django",
                "receive_bounces",
                f"127.0.0.1:{port}",
                *config.split(),
            ],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=log,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return receiver, port
        except OSError:
            if receiver.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(log_path.read_text()) from None
            time.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bounce-receiver-bench-") as tmp:
        workdir = Path(tmp)
        url, config = database_config(args.database_url, workdir)
        create_database(config)
        write_project(workdir)
        setup_django(workdir, url)

        import django
        from django.db import connection

        from bounce_tracker.models import BounceEvent, EmailAddressTracker
        from bounce_tracker.receiving.lmtp.service import DEFAULT_THREADS, default_workers

        table = EmailAddressTracker._meta.db_table
        vendor = connection.vendor
        write_recipe(workdir, vendor, config, table)
        print(
            f"receive_bounces (LMTP) beside the pipe: Python {platform.python_version()}, "
            f"Django {django.get_version()}, {database_description()}, {os.cpu_count()} CPUs "
            f"({default_workers()} usable: receive_bounces' default --workers; "
            f"default --threads {DEFAULT_THREADS})",
            flush=True,
        )
        php = vendor == "mysql" and php_available()
        if vendor == "mysql" and not php:
            print(f"NOTE: {PHP_HELP}", flush=True)
        seed = Seed(run_token=secrets.token_hex(3), count=args.addresses)
        seconds = seed_addresses(seed)
        print(f"seeded {seed.count:,} tracker rows in {seconds:.2f} s", flush=True)
        connection.close()

        env = {
            "PATH": PIPE_PATH,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(workdir)]),
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "DATABASE_URL": url,
        }
        php_env = {"PATH": PIPE_PATH}
        if php:
            params = recipe_params("mysql", config)
            php_env.update(
                BOUNCE_DB_HOST=str(params.get("host", "127.0.0.1")),
                BOUNCE_DB_PORT=str(params.get("port", 3306)),
                BOUNCE_DB_USER=str(params.get("user", "root")),
                BOUNCE_DB_PASSWORD=str(params.get("password", "")),
                BOUNCE_DB_NAME=str(params["db"]),
                BOUNCE_DB_TABLE=table,
            )
        receivers: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        floor = FloorRun(seed, vendor, config, table, BounceEvent._meta.db_table)
        receiver_runs: list[tuple[str, ReceiverRun]] = []
        recipe_pool = ThreadPoolExecutor(max_workers=RECIPE_PARALLEL)
        recipes: list[tuple[str, RecipeRun]] = []
        php_variant: Variant | None = None
        try:
            variants = []
            for number, options in enumerate(args.configs):
                log_path = workdir / f"receive_bounces-{number}.log"
                receiver, port = start_receiver(options, env, workdir, log_path)
                receivers.append((options, receiver, log_path))
                label = f"receive_bounces {options}" if options else "receive_bounces (no options)"
                for clients in args.client_counts:
                    run = ReceiverRun(seed, port, clients, f"{number}-{clients}")
                    receiver_runs.append((label, run))
                    name = f"{label}, {clients} client{'s' if clients > 1 else ''}"
                    variants.append(Variant(name, args.messages, run))
            floor.connect()
            if php:
                run_php = RecipeRun(
                    seed, workdir, php_env, recipe_pool, ["php", "-f", str(PHP_SCRIPT), "--"]
                )
                recipes.append(("PHP", run_php))
                php_variant = Variant(
                    f"PHP pipe script (mysqli), {RECIPE_PARALLEL} in flight",
                    args.recipe_bounces,
                    run_php,
                )
                variants.append(php_variant)
            run_python = RecipeRun(
                seed, workdir, env, recipe_pool, [sys.executable, RECIPE_SCRIPT, "--"]
            )
            recipes.append(("Python", run_python))
            python_variant = Variant(
                f"Python pipe script ({RECIPE_DRIVERS[vendor]}), {RECIPE_PARALLEL} in flight",
                args.recipe_bounces,
                run_python,
            )
            variants.append(python_variant)
            floor_variant = Variant(
                f"database floor (lock+UPDATE+INSERT), {FLOOR_THREADS} threads",
                args.floor_bounces,
                floor,
            )
            variants.append(floor_variant)
            measure(variants, args.rounds, seed)
            profile_lines: list[str] = []
            profiled = 0
            if args.profile:
                profile_lines, profiled = profile(seed, env, workdir, args.profile)
        finally:
            floor.close()
            recipe_pool.shutdown()
            for _, receiver, _ in receivers:
                receiver.send_signal(signal.SIGTERM)
            for _, receiver, _ in receivers:
                receiver.wait(timeout=120)

        local_parts = [seed.local_part(n) for n in range(seed.count)]
        counted = sum(
            EmailAddressTracker.objects.filter(encoded_from__in=local_parts).values_list(
                "bounce_count", flat=True
            )
        )
        events = BounceEvent.objects.filter(tracker__encoded_from__in=local_parts).count()
        receiver_bounces = sum(v.bounces for v in variants if v.name.startswith("receive_bounces"))
        expected_events = receiver_bounces + floor_variant.bounces + profiled
        expected_count = sum(v.bounces for v in variants) + profiled
        cleanup = remove_rows(seed, [seed.verp_address(n) for n in range(seed.count)])

        baseline = php_variant or python_variant
        print(
            f"{args.rounds} rounds after 1 warm-up round, variants in rotating order; "
            f"x baseline: against the {'PHP' if php else 'Python'} pipe script"
        )
        print(
            "bounces/s: the round's bounces / its wall time (median, min, max over rounds); "
            "x baseline, x floor: median of the per-round ratios"
        )
        print()
        print(format_table(variants, baseline, floor_variant))
        print()
        for variant in variants:
            if variant.name.startswith("receive_bounces"):
                print(
                    f"{variant.name}: {ratio(variant, baseline):.1f}x the "
                    f"{'PHP' if php else 'Python'} pipe script, "
                    f"{ratio(variant, floor_variant) * 100:.0f}% of the database floor"
                )
        status = "OK" if (counted, events) == (expected_count, expected_events) else "WARNING"
        print(
            f"{status}: bounce_count total {counted} (expected {expected_count}), "
            f"BounceEvent rows {events} (expected {expected_events}: the receivers' "
            f"{receiver_bounces}, the floor's {floor_variant.bounces}, the profile's {profiled})"
        )
        for options, receiver, log_path in receivers:
            log_lines = log_path.read_text(errors="replace").splitlines()
            info_lines = sum(" lmtp from=<" in line for line in log_lines)
            print(
                f"receive_bounces {options or '(no options)'}: logged {info_lines} message "
                f"lines; exit status {receiver.returncode}"
            )
        for label, run in receiver_runs:
            for problem in run.problems:
                print(f"WARNING: {label}, {run.clients} clients: {problem}")
        for label, recipe in recipes:
            for problem in recipe.problems:
                print(f"WARNING: {label} pipe script: {problem}")
        if vendor == "mysql" and not php:
            print(f"NOTE: {PHP_HELP}")
        if profile_lines:
            print()
            print("\n".join(profile_lines))
            print()
        print(f"removed this run's rows in {cleanup:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
