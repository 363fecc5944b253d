"""The pipe or the resident receiver? CPU and memory at 1, 10 and 100 bounces per second.

Offers the same load of distinct DSNs to both, one after the other, in the example
site (``example_project/manage.py`` with ``benchsite.settings``):

pipe
    ``manage.py handle_bounce`` started for each bounce at its time, at most 10 at
    once (Postfix's default process limit for pipe); a bounce that finds 10 running
    waits, as in Postfix's queue;
receiver
    ``manage.py receive_bounces 127.0.0.1:PORT``, started once with its defaults
    (workers = usable CPUs), the bounces delivered over LMTP by up to 10 client
    connections kept open (as Postfix's LMTP client caches connections).

For each load it prints the bounces per second reached, the CPU seconds spent by
the pipe's processes or the receiver's processes (and by the database server, which
does the same work for both), the CPU per bounce, memory (the pipe: peak processes
at once x a process's peak RSS; the receiver: the sum of its processes' RSS and
PSS, which counts pages shared by forked workers once) and the median latency from
a bounce's time to its recording. The receiver's own start-up and idle CPU are
shown apart. Run from the repository root::

    .venv/bin/python benchmarks/pipe_vs_receiver.py
    .venv/bin/python benchmarks/pipe_vs_receiver.py --seconds 30

It prints a table and always exits 0: it measures, it does not judge.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import secrets
import signal
import smtplib
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
from queue import Queue

from pipe import (
    EXAMPLE_MANAGE_PY,
    PIPE_PATH,
    REPO_ROOT,
    SITE_SETTINGS,
    Seed,
    database_config,
    remove_rows,
    seed_addresses,
    setup_django,
    write_project,
)
from send_overhead import create_database, database_description

DEFAULT_DATABASE_URL = "mysql://root:@127.0.0.1:3306/bounce_tracker_bench"
IN_FLIGHT = 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# --- /proc --------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` (and of their waited-for children)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / CLOCK_TICKS


def memory_kb(pids: Sequence[int]) -> tuple[int, int]:
    """(RSS, PSS) summed over ``pids``, in KiB."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


def mysqld_pids() -> list[int]:
    """The database server on port 3306 (other servers may come and go meanwhile)."""
    result = subprocess.run(
        ["ss", "-Hltnp", "sport = :3306"], capture_output=True, text=True, check=False
    )
    pids = {
        int(part[4:]) for part in result.stdout.replace(",", " ").split() if part.startswith("pid=")
    }
    return sorted(pids)


# --- The load ----------------------------------------------------------------------


@dataclass
class Outcome:
    mode: str
    rate: float
    bounces: int
    seconds: float = 0.0
    cpu: float = 0.0
    db_cpu: float = 0.0
    memory: str = ""
    latencies: list[float] = field(default_factory=list)
    failures: int = 0


class Load:
    """Distinct DSNs for the seeded addresses, one after the other."""

    def __init__(self, seed: Seed) -> None:
        self.seed = seed
        self.next = 0
        self.lock = threading.Lock()

    def message(self) -> tuple[str, bytes]:
        from tests.messages import dsn

        with self.lock:
            n = self.next % self.seed.count
            self.next += 1
            number = self.next
        raw = dsn(
            recipient=self.seed.email(n),
            return_path=self.seed.verp_address(n),
            message_id=f"<pvr-{self.seed.run_token}-{number}@mx.example.net>",
        )
        return self.seed.verp_address(n), raw


def schedule(
    rate: float, count: int, send: Callable[[], bool], workers: int
) -> tuple[float, list[float], int]:
    """Hand bounce i to ``send`` at start + i/rate (later when all workers are busy)."""
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    start = time.perf_counter()

    def one(due: float) -> None:
        nonlocal failures
        ok = send()
        with lock:
            latencies.append(time.perf_counter() - due)
            failures += not ok

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, due)
    return time.perf_counter() - start, latencies, failures


def run_pipe(load: Load, env: dict[str, str], rate: float, count: int) -> Outcome:
    running = 0
    peak = 0
    lock = threading.Lock()

    def send() -> bool:
        nonlocal running, peak
        address, raw = load.message()
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            completed = subprocess.run(
                [sys.executable, str(EXAMPLE_MANAGE_PY), "handle_bounce", "--", "", address],
                input=raw,
                capture_output=True,
                env=env,
                timeout=300,
                check=False,
            )
        finally:
            with lock:
                running -= 1
        return completed.returncode == 0

    db = mysqld_pids()
    db_before = cpu_seconds(db)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, latencies, failures = schedule(rate, count, send, IN_FLIGHT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome = Outcome("pipe", rate, count, seconds, latencies=latencies, failures=failures)
    outcome.cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    outcome.db_cpu = cpu_seconds(db) - db_before
    rss_mb = after.ru_maxrss / 1024
    outcome.memory = f"{peak} x {rss_mb:.0f} MB RSS = {peak * rss_mb:.0f} MB"
    return outcome


@dataclass
class Receiver:
    process: subprocess.Popen[bytes]
    port: int

    def pids(self) -> list[int]:
        return [self.process.pid, *children_of(self.process.pid)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_receiver(env: dict[str, str], log: Path) -> tuple[Receiver, float]:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE_MANAGE_PY), "receive_bounces", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    while time.perf_counter() - started < 120:
        try:
            with smtplib.LMTP("127.0.0.1", port, timeout=30) as client:
                client.ehlo_or_helo_if_needed = lambda: None  # type: ignore[method-assign]
                client.docmd("LHLO", "bench.example")
            break
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"receive_bounces exited: see {log}") from None
            time.sleep(0.1)
    return Receiver(process, port), time.perf_counter() - started


def run_receiver(receiver: Receiver, load: Load, rate: float, count: int) -> Outcome:
    clients: Queue[smtplib.LMTP] = Queue()
    for _ in range(IN_FLIGHT):
        client = smtplib.LMTP("127.0.0.1", receiver.port, timeout=120)
        client.ehlo("bench.example")
        clients.put(client)
    peak = [0, 0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            rss, pss = memory_kb(receiver.pids())
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)

    def send() -> bool:
        address, raw = load.message()
        client = clients.get()
        try:
            refused = client.sendmail("", [address], raw)
            return not refused
        except smtplib.SMTPException:
            return False
        finally:
            clients.put(client)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    db = mysqld_pids()
    db_before, before = cpu_seconds(db), cpu_seconds(receiver.pids())
    seconds, latencies, failures = schedule(rate, count, send, IN_FLIGHT)
    outcome = Outcome("receiver", rate, count, seconds, latencies=latencies, failures=failures)
    outcome.cpu = cpu_seconds(receiver.pids()) - before
    outcome.db_cpu = cpu_seconds(db) - db_before
    stop.set()
    sampler.join()
    rss, pss = memory_kb(receiver.pids())
    rss, pss = max(rss, peak[0]), max(pss, peak[1])
    outcome.memory = (
        f"{len(receiver.pids())} procs, RSS {rss / 1024:.0f} MB, PSS {pss / 1024:.0f} MB"
    )
    while not clients.empty():
        with contextlib.suppress(smtplib.SMTPException):
            clients.get().quit()
    return outcome


def format_table(outcomes: Sequence[Outcome]) -> str:
    header = (
        "load/s",
        "mode",
        "bounces",
        "reached/s",
        "CPU s",
        "CPU ms/bounce",
        "DB CPU s",
        "latency ms",
        "failed",
        "memory",
    )
    rows = [header]
    for o in outcomes:
        rows.append(
            (
                f"{o.rate:g}",
                o.mode,
                str(o.bounces),
                f"{o.bounces / o.seconds:.1f}",
                f"{o.cpu:.2f}",
                f"{o.cpu / o.bounces * 1000:.1f}",
                f"{o.db_cpu:.2f}",
                f"{statistics.median(o.latencies) * 1000:.0f}",
                str(o.failures),
                o.memory,
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--rates", default="1,10,100", help="offered loads, bounces per second (default: 1,10,100)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="how long each load is offered (default: 10; at most --max-bounces bounces)",
    )
    parser.add_argument("--max-bounces", type=int, default=300, help="per load (default: 300)")
    parser.add_argument("--addresses", type=int, default=1000)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rates = [float(rate) for rate in args.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="bounce-pvr-bench-") as tmp:
        workdir = Path(tmp)
        url, config = database_config(args.database_url, workdir)
        create_database(config)
        write_project(workdir)
        setup_django(workdir, url)

        import django
        from django.db import connection

        print(
            f"pipe or receiver, offered load: Python {platform.python_version()}, "
            f"Django {django.get_version()}, {database_description()}, {os.cpu_count()} CPUs, "
            f"the example site ({SITE_SETTINGS})",
            flush=True,
        )
        seed = Seed(run_token=secrets.token_hex(3), count=args.addresses)
        env = {
            "PATH": PIPE_PATH,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(workdir)]),
            "DJANGO_SETTINGS_MODULE": SITE_SETTINGS,
            "DATABASE_URL": url,
        }
        outcomes: list[Outcome] = []
        load = Load(seed)
        try:
            seed_addresses(seed)
            connection.close()
            receiver, startup = start_receiver(env, workdir / "receiver.log")
            try:
                startup_cpu = cpu_seconds(receiver.pids())
                time.sleep(2)
                idle_before = cpu_seconds(receiver.pids())
                time.sleep(5)
                idle = (cpu_seconds(receiver.pids()) - idle_before) / 5
                idle_processes = len(receiver.pids())
                idle_rss, idle_pss = memory_kb(receiver.pids())
                for rate in rates:
                    count = max(1, min(args.max_bounces, round(rate * args.seconds)))
                    outcomes.append(run_pipe(load, env, rate, count))
                    print(format_table(outcomes[-1:]).splitlines()[-1], flush=True)
                    outcomes.append(run_receiver(receiver, load, rate, count))
                    print(format_table(outcomes[-1:]).splitlines()[-1], flush=True)
            finally:
                receiver.process.send_signal(signal.SIGTERM)
                receiver.process.wait(timeout=60)
            from bounce_tracker.models import BounceEvent

            local_parts = [seed.local_part(n) for n in range(seed.count)]
            recorded = BounceEvent.objects.filter(tracker__encoded_from__in=local_parts).count()
        finally:
            remove_rows(seed, [seed.verp_address(n) for n in range(seed.count)])
    print()
    print(
        f"each load offered for up to {args.seconds:g} s (at most {args.max_bounces} bounces); "
        f"at most {IN_FLIGHT} pipe processes or LMTP connections at once"
    )
    print(
        "CPU s: the pipe's processes or the receiver's processes; DB CPU s: the database "
        "server meanwhile; latency: from a bounce's due time to its recording (queueing "
        "included)"
    )
    print()
    print(format_table(outcomes))
    print()
    print(
        f"receiver started with its defaults in {startup:.1f} s ({startup_cpu:.2f} CPU s, "
        f"{idle_processes} processes); idle: {idle * 1000:.1f} ms CPU per "
        f"second, RSS {idle_rss / 1024:.0f} MB, PSS {idle_pss / 1024:.0f} MB"
    )
    sent = sum(o.bounces - o.failures for o in outcomes)
    print(f"events recorded: {recorded} of {sent} bounces accepted (should be equal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
