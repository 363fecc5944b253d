"""Bounces per second through the resident LMTP receiver, beside the pipe and the floor.

Three ways of recording bounces on the same database, measured in interleaved rounds
(every round runs each variant once, in an order that rotates from round to round,
so machine noise hits all of them):

receiver, N clients
    ``manage.py receive_bounces --workers W`` (started once, with the minimal
    project of ``benchmarks/pipe.py``); N LMTP clients at once, each on its own
    connection, delivering distinct DSNs (their own Message-ID, spread over the
    seeded rows) the way Postfix's lmtp client does: MAIL, RCPT and DATA pipelined,
    then the message. Every reply must be ``250 … recorded``. Measured at 1 and 10
    clients by default.
original recipe, 10 in parallel
    the minimal pipe script of ``benchmarks/pipe.py`` (read stdin, one UPDATE through
    MySQLdb, exit), a new process per bounce, 10 running at once like Postfix's pipe
    process limit;
database floor
    the same single UPDATE over persistent connections from 10 threads, committed one
    by one: what the database itself can take.

bounces/s is each variant's bounces divided by its wall time in the round (median
over rounds); the ratios are medians of the per-round ratios. Goal from issue 8: the
receiver at 10 clients at least 6x the original recipe.

Run from the repository root::

    .venv/bin/python benchmarks/receiver.py
    .venv/bin/python benchmarks/receiver.py --workers 2 --threads 10 --rounds 7
    .venv/bin/python benchmarks/receiver.py --database-url postgres://postgres@127.0.0.1:5432/bounce_tracker_bench

It prints a table and always exits 0: it measures, it does not judge.
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
                message_id=f"<receiver-bench-{self.seed.run_token}-{self.clients}-{number}@mx>",
            )
            payloads.append((self.seed.verp_address(row), stuffed_message(raw)))
        shares = [payloads[n :: self.clients] for n in range(self.clients)]
        connections = [LmtpClient(self.port) for _ in range(self.clients)]
        start = threading.Barrier(self.clients + 1)

        def client(index: int) -> None:
            start.wait()
            for recipient, stuffed in shares[index]:
                reply = connections[index].deliver(recipient, stuffed)
                if b"recorded" not in reply and len(self.problems) < 3:
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
    seed: Seed
    workdir: Path
    env: dict[str, str]
    pool: ThreadPoolExecutor
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
                [sys.executable, RECIPE_SCRIPT, "--", "MAILER-DAEMON", self.seed.verp_address(row)],
                input=raw.replace(b"\r\n", b"\n"),
                capture_output=True,
                env=self.env,
                cwd=self.workdir,
                timeout=300,
                check=False,
            )
            if result.returncode and len(self.problems) < 3:
                self.problems.append(result.stderr.decode(errors="replace")[-300:])

        started = time.perf_counter()
        list(self.pool.map(one, rows))
        return time.perf_counter() - started


@dataclass
class FloorRun:
    seed: Seed
    vendor: str
    config: dict[str, Any]
    table: str
    connections: list[Any] = field(default_factory=list)

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
        placeholder = "?" if self.vendor == "sqlite" else "%s"
        now = "CURRENT_TIMESTAMP" if self.vendor == "sqlite" else "NOW()"
        statement = (
            f"UPDATE {self.table} SET bounce_count = bounce_count + 1, last_bounce3 = "
            f"last_bounce2, last_bounce2 = last_bounce, last_bounce = {now} "
            f"WHERE encoded_from = {placeholder}"
        )
        shares = [rows[n::FLOOR_THREADS] for n in range(FLOOR_THREADS)]

        def work(index: int) -> None:
            db = self.connections[index]
            cursor = db.cursor()
            for row in shares[index]:
                cursor.execute(statement, (self.seed.local_part(row),))
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


def format_table(variants: Sequence[Variant], recipe: Variant, floor: Variant) -> str:
    header = ("variant", "bounces/round", "bounces/s", "min", "max", "x recipe", "x floor")
    rows = [header]
    for variant in variants:
        rows.append(
            (
                variant.name,
                str(variant.bounces_per_round),
                f"{statistics.median(variant.rates):,.0f}",
                f"{min(variant.rates):,.0f}",
                f"{max(variant.rates):,.0f}",
                f"{ratio(variant, recipe):.2f}",
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
        description="Bounces per second through receive_bounces (LMTP) beside the "
        "process-per-bounce recipe and the database floor, side by side."
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default: 5)")
    parser.add_argument(
        "--workers", type=int, default=4, help="receive_bounces --workers (default: 4)"
    )
    parser.add_argument(
        "--threads", type=int, default=3, help="receive_bounces --threads (default: 3)"
    )
    parser.add_argument(
        "--clients", default="1,10", help="concurrent LMTP clients to measure (default: 1,10)"
    )
    parser.add_argument(
        "--messages", type=int, default=400, help="receiver bounces per round (default: 400)"
    )
    parser.add_argument(
        "--recipe-bounces",
        type=int,
        default=60,
        help="recipe processes per round, 10 at a time (default: 60)",
    )
    parser.add_argument(
        "--floor-updates", type=int, default=4000, help="floor UPDATEs per round (default: 4000)"
    )
    parser.add_argument("--addresses", type=int, default=1000, help="seeded rows (default: 1000)")
    args = parser.parse_args(argv)
    args.client_counts = [int(n) for n in args.clients.split(",") if n.strip()]
    return args


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

        table = EmailAddressTracker._meta.db_table
        vendor = connection.vendor
        write_recipe(workdir, vendor, config, table)
        print(
            f"receive_bounces (LMTP) beside the pipe: Python {platform.python_version()}, "
            f"Django {django.get_version()}, {database_description()}, {os.cpu_count()} CPUs",
            flush=True,
        )
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
        port = free_port()
        log_path = workdir / "receive_bounces.log"
        with open(log_path, "wb") as log:
            receiver = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "django",
                    "receive_bounces",
                    f"127.0.0.1:{port}",
                    "--workers",
                    str(args.workers),
                    "--threads",
                    str(args.threads),
                ],
                env=env,
                cwd=workdir,
                stdout=log,
                stderr=log,
            )
        floor = FloorRun(seed, vendor, config, table)
        receiver_runs = []
        recipe_pool = ThreadPoolExecutor(max_workers=RECIPE_PARALLEL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if receiver.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(log_path.read_text()) from None
                    time.sleep(0.1)
            floor.connect()
            recipe = RecipeRun(seed, workdir, env, recipe_pool)
            variants = []
            for clients in args.client_counts:
                run = ReceiverRun(seed, port, clients)
                receiver_runs.append(run)
                variants.append(
                    Variant(
                        f"receiver, {clients} client{'s' if clients > 1 else ''}",
                        args.messages,
                        run,
                    )
                )
            recipe_variant = Variant(
                f"original recipe ({RECIPE_DRIVERS[vendor]}), {RECIPE_PARALLEL} parallel",
                args.recipe_bounces,
                recipe,
            )
            floor_variant = Variant(
                f"database floor, {FLOOR_THREADS} threads", args.floor_updates, floor
            )
            variants += [recipe_variant, floor_variant]
            measure(variants, args.rounds, seed)
        finally:
            floor.close()
            recipe_pool.shutdown()
            receiver.send_signal(signal.SIGTERM)
            receiver.wait(timeout=120)
        receiver_exit = receiver.returncode
        log_lines = log_path.read_text(errors="replace").splitlines()

        local_parts = [seed.local_part(n) for n in range(seed.count)]
        counted = sum(
            EmailAddressTracker.objects.filter(encoded_from__in=local_parts).values_list(
                "bounce_count", flat=True
            )
        )
        events = BounceEvent.objects.filter(tracker__encoded_from__in=local_parts).count()
        expected_events = sum(v.bounces for v in variants if v.name.startswith("receiver"))
        expected_count = sum(v.bounces for v in variants)
        cleanup = remove_rows(seed, [seed.verp_address(n) for n in range(seed.count)])

    print(
        f"{args.rounds} rounds after 1 warm-up round, variants in rotating order; "
        f"receive_bounces --workers {args.workers} --threads {args.threads}"
    )
    print(
        "bounces/s: the round's bounces / its wall time (median, min, max over rounds); "
        "x recipe, x floor: median of the per-round ratios"
    )
    print()
    print(format_table(variants, recipe_variant, floor_variant))
    print()
    for variant in variants[: len(args.client_counts)]:
        print(
            f"{variant.name}: {ratio(variant, recipe_variant):.1f}x the original recipe, "
            f"{ratio(variant, floor_variant) * 100:.1f}% of the database floor"
        )
    status = "OK" if (counted, events) == (expected_count, expected_events) else "WARNING"
    print(
        f"{status}: bounce_count total {counted} (expected {expected_count}), "
        f"BounceEvent rows {events} (expected {expected_events} from the receiver)"
    )
    info_lines = sum(" lmtp from=<" in line for line in log_lines)
    print(f"receive_bounces logged {info_lines} message lines; exit status {receiver_exit}")
    for run in receiver_runs:
        for problem in run.problems:
            print(f"WARNING: receiver, {run.clients} clients: {problem}")
    for problem in recipe.problems:
        print(f"WARNING: recipe: {problem}")
    print(f"removed this run's rows in {cleanup:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
