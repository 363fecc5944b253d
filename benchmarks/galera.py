"""Bounces per second on a three-node Galera cluster beside a single server; conflicts.

Starts, on this machine, a private single MariaDB server and a private three-node
Galera cluster (``tests/mariadb_harness.py``, ``tests/galera_harness.py``: root,
mariadbd, galera-4 and rsync needed), seeds the same tracker rows in both, and
measures in interleaved rounds (the order rotates from round to round, so machine
noise hits every variant):

single server, 1 receiver
    one ``receive_bounces`` on the single server;
cluster, 1 receiver
    one ``receive_bounces`` on node 1 (every write certified and applied on all three);
cluster, 2 receivers
    two ``receive_bounces``, on node 1 and node 2 (two MX hosts), each DSN to one of
    them chosen at random, as remote MTAs choose among equal MX records;
cluster, 2 receivers, wsrep_sync_wait=1
    the same with causal reads (every read waits until the node has applied every
    write the cluster committed before it: see docs/performance.md);
cluster, 2 receivers, every DSN to both
    the worst case of two MX hosts: each DSN delivered to both at once (one records
    it, the other finds a duplicate), counted once in bounces/s.

Each variant gets the same number of LMTP clients in all (``--clients``, split over its
receivers), delivering distinct DSNs (their own Message-ID) for the next rows of the
seeded ones: with the default 1,000 addresses a round's 400 DSNs are for 400
different addresses, as after one mailing; ``--addresses 20`` gives each address 20
bounces per round, a hot spot where the two nodes write the same rows. A 451 is
delivered again on the same connection after 50 ms, as Postfix would (later).

Per variant: bounces/s (median over rounds), and per 1,000 bounces the certification
conflicts (``wsrep_local_cert_failures`` plus ``wsrep_local_bf_aborts`` over the
nodes: transactions aborted with error 1213), the ones retried inside the receiver
(``Deadlock on attempt`` log lines) and the 451s.

All of it shares this machine's cores: the three nodes, the receivers and the
clients. The cluster figures are a floor for a real deployment, where each node has
its own machine.

Run from the repository root, as root::

    .venv/bin/python benchmarks/galera.py
    .venv/bin/python benchmarks/galera.py --rounds 7 --addresses 20

It prints a table and always exits 0: it measures, it does not judge.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from receiver import LmtpClient, stuffed_message

from tests.galera_harness import GaleraCluster, galera_cluster, galera_problem
from tests.mariadb_harness import PrivateMariaDB, django_environment, private_mariadb
from tests.messages import dsn
from tests.postfix_harness import free_port, wait_until

TRACKERS = "bounce_tracker_emailaddresstracker"
EVENTS = "bounce_tracker_bounceevent"
BOUNCE_DOMAIN = "bounces.example.com"
RETRY_DELAY = 0.05
#: Every read of the session waits until the node has applied what the cluster committed.
SYNC_WAIT_QUERY = "?init_command=SET%20SESSION%20wsrep_sync_wait%3D1"
SEED_SCRIPT = """
import os
import django
django.setup()
from bounce_tracker.models import EmailAddressTracker
EmailAddressTracker.objects.bulk_create(
    [EmailAddressTracker(email=f"g{n}@bench.example", encoded_from=f"bounces+gbench{n:06d}")
     for n in range(int(os.environ["ADDRESSES"]))],
    batch_size=1000,
)
"""


def verp_address(row: int) -> str:
    return f"bounces+gbench{row:06d}@{BOUNCE_DOMAIN}"


def seed(server: PrivateMariaDB, addresses: int) -> None:
    subprocess.run(
        [sys.executable, "-c", SEED_SCRIPT],
        env=django_environment(server.url(), ADDRESSES=str(addresses)),
        check=True,
        timeout=300,
    )


# --- Receivers and clients ------------------------------------------------------------


@dataclass
class Receiver:
    """``receive_bounces`` on one server, logging to a file."""

    server: PrivateMariaDB
    workers: int
    threads: int
    log: Path
    url_query: str = ""  # e.g. an init_command for every connection
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.port = free_port()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "django",
                    "receive_bounces",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    str(self.workers),
                    "--threads",
                    str(self.threads),
                ],
                env=django_environment(self.server.url() + self.url_query),
                stdout=log,
                stderr=log,
            )

        def listening() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemExit(self.log.read_text())
            with contextlib.suppress(OSError):
                LmtpClient(self.port).close()
                return True
            return False

        wait_until(listening, 60, "receive_bounces to listen")

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)

    def count(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text)


@dataclass
class Tally:
    """What one variant's deliveries met, summed over its rounds."""

    tempfails: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_tempfail(self) -> None:
        with self.lock:
            self.tempfails += 1


def deliver_until_accepted(
    client: LmtpClient, recipient: str, stuffed: bytes, tally: Tally
) -> None:
    while True:
        try:
            client.deliver(recipient, stuffed)
            return
        except RuntimeError as exc:  # LmtpClient: any reply but 250
            if "451" not in str(exc):
                raise
            tally.add_tempfail()
            time.sleep(RETRY_DELAY)


def run_clients(jobs: list[list[tuple[int, str, bytes]]], tally: Tally) -> float:
    """Each list of (port, recipient, message) on its own client thread; the wall time.

    Each thread keeps one connection per port, like Postfix's connection cache.
    """
    start = threading.Barrier(len(jobs) + 1)
    errors: list[BaseException] = []

    def client(share: list[tuple[int, str, bytes]]) -> None:
        clients: dict[int, LmtpClient] = {}
        try:
            for port in {port for port, _, _ in share}:
                clients[port] = LmtpClient(port)
            start.wait()
            for port, recipient, stuffed in share:
                deliver_until_accepted(clients[port], recipient, stuffed, tally)
        except BaseException as exc:
            errors.append(exc)
            start.abort()
        finally:
            for connection in clients.values():
                connection.close()

    threads = [threading.Thread(target=client, args=(share,)) for share in jobs]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


# --- Variants and rounds -------------------------------------------------------------


@dataclass
class Variant:
    name: str
    receivers: list[Receiver]
    cluster: GaleraCluster | None
    every_dsn_to_all: bool = False
    rates: list[float] = field(default_factory=list)
    bounces: int = 0
    conflicts: int = 0
    retried: int = 0
    tally: Tally = field(default_factory=Tally)

    def retries_logged(self) -> int:
        # Receivers serve several variants: each variant counts its rounds' lines.
        return sum(receiver.count("Deadlock on attempt") for receiver in self.receivers)

    def run(self, rows: list[int], clients: int, round_token: str) -> None:
        messages = [
            (
                verp_address(row),
                stuffed_message(
                    dsn(
                        recipient=f"g{row}@bench.example",
                        return_path=verp_address(row),
                        message_id=f"<galera-bench-{round_token}-{n}@mx>",
                    )
                ),
            )
            for n, row in enumerate(rows)
        ]
        ports = [receiver.port for receiver in self.receivers]
        per_host = max(1, clients // len(ports))
        if self.every_dsn_to_all:
            # Each DSN's copies on different client threads, at the same position.
            jobs = [
                [(port, *message) for message in messages[n::per_host]]
                for port in ports
                for n in range(per_host)
            ]
        else:
            # Each DSN to one host chosen at random, as the remote MTAs pick among
            # equal MX records: any address's bounces may reach either host.
            chooser = random.Random(round_token)
            by_host: dict[int, list[tuple[str, bytes]]] = {port: [] for port in ports}
            for message in messages:
                by_host[chooser.choice(ports)].append(message)
            jobs = [
                [(port, *message) for message in by_host[port][n::per_host]]
                for port in ports
                for n in range(per_host)
            ]
        conflicts, retried = self.cluster.conflicts() if self.cluster else 0, self.retries_logged()
        elapsed = run_clients(jobs, self.tally)
        self.conflicts += (self.cluster.conflicts() if self.cluster else 0) - conflicts
        self.retried += self.retries_logged() - retried
        self.rates.append(len(messages) / elapsed)
        self.bounces += len(messages)


def measure(
    variants: Sequence[Variant], rounds: int, messages: int, addresses: int, clients: int
) -> None:
    """One warm-up round (not recorded), then ``rounds`` rounds in rotating order."""
    next_row = 0
    for number in range(-1, rounds):
        shift = number % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            rows = [(next_row + n) % addresses for n in range(messages)]
            next_row += messages
            rates_before = len(variant.rates)
            variant.run(rows, clients, f"{number + 1}.{variants.index(variant)}")
            if number < 0:  # the warm-up: keep its rows counted, drop its rate
                del variant.rates[rates_before:]
            print(".", end="", flush=True)
    print()


def per_thousand(count: int, bounces: int) -> str:
    return f"{count * 1000 / bounces:.1f}" if bounces else "-"


def format_table(variants: Sequence[Variant], baseline: Variant) -> str:
    header = ("variant", "bounces/s", "min", "max", "x single", "conflicts", "retried", "451s")
    rows = [header]
    for variant in variants:
        ratio = statistics.median(v / b for v, b in zip(variant.rates, baseline.rates, strict=True))
        rows.append(
            (
                variant.name,
                f"{statistics.median(variant.rates):,.0f}",
                f"{min(variant.rates):,.0f}",
                f"{max(variant.rates):,.0f}",
                f"{ratio:.2f}",
                per_thousand(variant.conflicts, variant.bounces),
                per_thousand(variant.retried, variant.bounces),
                per_thousand(variant.tally.tempfails, variant.bounces),
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


def totals(server: PrivateMariaDB) -> tuple[int, int]:
    """(events, sum of bounce_count) on ``server``."""
    [(events,)] = server.query(f"SELECT COUNT(*) FROM {EVENTS}")
    [(counted,)] = server.query(f"SELECT COALESCE(SUM(bounce_count), 0) FROM {TRACKERS}")
    return int(events), int(counted)


@contextlib.contextmanager
def running(receivers: list[Receiver]) -> Iterator[list[int]]:
    """Start ``receivers``; on leaving, stop them; yields the list their exit statuses fill."""
    statuses: list[int] = []
    try:
        for receiver in receivers:
            receiver.start()
        yield statuses
    finally:
        for receiver in receivers:
            if receiver.process is not None:
                statuses.append(receiver.stop())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Bounces per second and conflicts on a three-node Galera cluster "
        "beside a single server, side by side."
    )
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default: 5)")
    parser.add_argument(
        "--messages", type=int, default=400, help="distinct DSNs per round (default: 400)"
    )
    parser.add_argument(
        "--clients", type=int, default=10, help="LMTP clients per variant (default: 10)"
    )
    parser.add_argument(
        "--addresses",
        type=int,
        default=1000,
        help="seeded rows the DSNs are spread over (default: 1000; fewer: more conflicts)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="receive_bounces --workers (default: 2)"
    )
    parser.add_argument(
        "--threads", type=int, default=5, help="receive_bounces --threads (default: 5)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problem = galera_problem()
    if problem:
        print(f"can't run: {problem}")
        return 0
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="galera-bench-") as tmp,
        private_mariadb() as single,
        galera_cluster() as cluster,
    ):
        setup = time.perf_counter() - started
        for server in (single, cluster.nodes[0]):
            seed(server, args.addresses)
        [(version,)] = single.query("SELECT VERSION()")
        print(
            f"receive_bounces on a 3-node Galera cluster beside a single server: Python "
            f"{platform.python_version()}, {version}, galera "
            f"{cluster.nodes[0].status()['wsrep_provider_version']}, {os.cpu_count()} CPUs"
        )
        print(
            f"servers started and migrated in {setup:.0f} s; {args.addresses:,} tracker rows "
            f"seeded in each",
            flush=True,
        )

        def receiver(server: PrivateMariaDB, name: str, url_query: str = "") -> Receiver:
            log = Path(tmp) / f"{name}.log"
            return Receiver(server, args.workers, args.threads, log, url_query)

        on_single = receiver(single, "single")
        on_node1 = receiver(cluster.nodes[0], "node1")
        on_node2 = receiver(cluster.nodes[1], "node2")
        causal1 = receiver(cluster.nodes[0], "node1-sync-wait", SYNC_WAIT_QUERY)
        causal2 = receiver(cluster.nodes[1], "node2-sync-wait", SYNC_WAIT_QUERY)
        variants = [
            Variant("single server, 1 receiver", [on_single], None),
            Variant("cluster, 1 receiver", [on_node1], cluster),
            Variant("cluster, 2 receivers", [on_node1, on_node2], cluster),
        ]
        variants.append(
            Variant("cluster, 2 receivers, wsrep_sync_wait=1", [causal1, causal2], cluster)
        )
        both = Variant("cluster, 2 receivers, every DSN to both", [on_node1, on_node2], cluster)
        both.every_dsn_to_all = True
        variants.append(both)
        with running([on_single, on_node1, on_node2, causal1, causal2]) as statuses:
            measure(variants, args.rounds, args.messages, args.addresses, args.clients)
        cluster.wait_for_all_synced()
        single_totals = totals(single)
        node_totals = [totals(node) for node in cluster.nodes]

    print(
        f"{args.rounds} rounds after 1 warm-up round, variants in rotating order; "
        f"{args.messages} DSNs per round over {args.addresses:,} addresses, {args.clients} "
        f"LMTP clients per variant; receive_bounces --workers {args.workers} --threads "
        f"{args.threads}"
    )
    print(
        "bounces/s: distinct DSNs / wall time (median, min, max over rounds); x single: median "
        "of the per-round ratios; conflicts, retried, 451s: per 1,000 bounces"
    )
    print()
    print(format_table(variants, variants[0]))
    print()
    single_expected = variants[0].bounces
    cluster_expected = sum(v.bounces for v in variants[1:])
    status = (
        "OK"
        if single_totals == (single_expected, single_expected)
        and all(t == (cluster_expected, cluster_expected) for t in node_totals)
        else "WARNING"
    )
    print(
        f"{status}: single server {single_totals[0]} events, bounce_count total "
        f"{single_totals[1]} (expected {single_expected}); each node "
        + ", ".join(f"{events} / {counted}" for events, counted in node_totals)
        + f" (expected {cluster_expected})"
    )
    print(f"receive_bounces exit statuses: {statuses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
