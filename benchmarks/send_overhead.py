"""How much slower sending gets with ``BounceTrackingBackend`` in front of the real backend.

Each round sends the same batch twice, side by side, so machine noise hits both:

baseline
    the per-recipient copies the tracker would hand its inner backend (built with
    :func:`bounce_tracker.backend.recipient_copy` and a fixed VERP return path), sent
    through the inner backend alone, one ``send_messages([copy])`` call per copy over
    one open connection -- exactly what the tracker does;
tracked
    the original batch through ``BounceTrackingBackend`` wrapping that inner backend.

The ratio therefore isolates what the tracker adds: validating the addresses, the
policy, finding or creating the tracker rows and counting the sends. Two cases:
"first send" (the addresses were never seen, so rows are created) and "steady" (the
rows exist). Inner backends: Django's locmem backend, and Django's SMTP backend
talking to a throwaway SMTP sink this script runs on 127.0.0.1.

Then a memory check (``--memory-batches N``, default 50; 0 skips it): N batches of
1,000 recipients through the tracking backend over locmem (the outbox emptied after
each batch), once with the same recipients every batch (steady state) and once with
1,000 new recipients per batch (rows created), reporting tracemalloc's current size
after batch 1, N/2 and N and the growth per batch between N/2 and N.

Run from the repository root::

    .venv/bin/python benchmarks/send_overhead.py
    .venv/bin/python benchmarks/send_overhead.py --database-url mysql://root:@127.0.0.1:3306/bounce_tracker_bench
    .venv/bin/python benchmarks/send_overhead.py --database-url postgres://postgres@127.0.0.1:5432/bounce_tracker_bench

It prints a table and always exits 0: it measures, it does not judge.
"""

from __future__ import annotations

import argparse
import gc
import platform
import secrets
import socketserver
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.core.mail import EmailMessage

REPO_ROOT = Path(__file__).resolve().parent.parent
BOUNCE_DOMAIN = "bounces.example.com"
# The shape of the envelope sender the tracker produces: <prefix>+<26-char token>@<domain>.
BASELINE_RETURN_PATH = f"bounces+{'a' * 26}@{BOUNCE_DOMAIN}"
TRACKING_BACKEND = "bounce_tracker.backend.BounceTrackingBackend"
INNER_BACKENDS = {
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
}
CASES = ("first send", "steady")
MEMORY_BATCH_SIZE = 1000
MEMORY_CASES = ("same recipients", "new recipients")
SHAPES = ("messages", "bcc")
# A typical plain-text newsletter body, about 2 KB.
BODY = "\n".join(
    f"Paragraph {n}: this month's news, offers and a link to https://www.example.com/n/{n}."
    for n in range(25)
)


# --- A throwaway SMTP server -----------------------------------------------------------

SINK_HOSTNAME = b"sink.localhost"
MAX_LINE = 65536


class SMTPSinkHandler(socketserver.StreamRequestHandler):
    """One SMTP session: accepts every message and throws it away (RFC 5321, minimal)."""

    disable_nagle_algorithm = True
    server: SMTPSink

    def reply(self, *lines: str) -> None:
        text = "".join(
            f"{line[:3]}{'-' if n < len(lines) - 1 else ' '}{line[4:]}\r\n"
            for n, line in enumerate(lines)
        )
        self.wfile.write(text.encode("ascii"))

    def handle(self) -> None:
        self.reply(f"220 {SINK_HOSTNAME.decode()} ESMTP benchmark sink")
        greeted = has_sender = has_recipient = False
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return
            verb = line.strip().split(b" ", 1)[0].upper()
            if verb == b"EHLO":
                greeted, has_sender, has_recipient = True, False, False
                self.reply(f"250 {SINK_HOSTNAME.decode()}", "250 8BITMIME")
            elif verb == b"HELO":
                greeted, has_sender, has_recipient = True, False, False
                self.reply(f"250 {SINK_HOSTNAME.decode()}")
            elif verb == b"MAIL":
                if not greeted:
                    self.reply("503 Say EHLO or HELO first")
                    continue
                has_sender, has_recipient = True, False
                self.reply("250 OK")
            elif verb == b"RCPT":
                if not has_sender:
                    self.reply("503 Need MAIL first")
                    continue
                has_recipient = True
                self.reply("250 OK")
            elif verb == b"DATA":
                if not has_recipient:
                    self.reply("503 Need RCPT first")
                    continue
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                if not self.discard_data():
                    return
                has_sender = has_recipient = False
                self.server.count_message()
                self.reply("250 OK discarded")
            elif verb == b"RSET":
                has_sender = has_recipient = False
                self.reply("250 OK")
            elif verb == b"NOOP":
                self.reply("250 OK")
            elif verb == b"QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Command not implemented")

    def discard_data(self) -> bool:
        """Read the message up to the lone dot; False if the client went away first."""
        at_line_start = True
        while True:
            chunk = self.rfile.readline(MAX_LINE)
            if not chunk:
                return False
            if at_line_start and chunk in (b".\r\n", b".\n"):
                return True
            at_line_start = chunk.endswith(b"\n")


class SMTPSink(socketserver.ThreadingTCPServer):
    """A threaded SMTP server that counts the messages it accepts and keeps none."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SMTPSinkHandler)
        self._lock = threading.Lock()
        self.messages = 0

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    def count_message(self) -> None:
        with self._lock:
            self.messages += 1

    def take_count(self) -> int:
        """The number of messages accepted since the last call."""
        with self._lock:
            count, self.messages = self.messages, 0
        return count


@contextmanager
def running_sink() -> Iterator[SMTPSink]:
    """An :class:`SMTPSink` on a free port of 127.0.0.1, serving in a daemon thread."""
    sink = SMTPSink()
    thread = threading.Thread(target=sink.serve_forever, name="smtp-sink", daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        sink.shutdown()
        sink.server_close()
        thread.join(timeout=5)


# --- Django set-up -------------------------------------------------------------------


def database_config(url: str | None, workdir: Path) -> dict[str, Any]:
    """Django's DATABASES entry for ``url`` (default: a SQLite file in ``workdir``)."""
    import environ

    config: dict[str, Any] = environ.Env.db_url_config(
        url or f"sqlite:///{workdir / 'bounce_tracker_bench.sqlite3'}"
    )
    if "mysql" in config["ENGINE"]:
        config.setdefault("OPTIONS", {})["charset"] = "utf8mb4"
    return config


def server_params(config: dict[str, Any]) -> dict[str, Any]:
    """host, port, user and password of a database server, as the drivers name them."""
    params = {
        "host": config.get("HOST") or "127.0.0.1",
        "port": int(config["PORT"]) if config.get("PORT") else None,
        "user": config.get("USER"),
        "password": config.get("PASSWORD"),
    }
    return {name: value for name, value in params.items() if value}


def create_database(config: dict[str, Any]) -> None:
    """Create the MySQL/MariaDB or PostgreSQL database when it doesn't exist yet."""
    engine, name = config["ENGINE"], config["NAME"]
    if "mysql" in engine:
        import MySQLdb

        server = MySQLdb.connect(charset="utf8mb4", **server_params(config))
        try:
            quoted = name.replace("`", "``")
            server.cursor().execute(
                f"CREATE DATABASE IF NOT EXISTS `{quoted}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        finally:
            server.close()
    elif "postgresql" in engine:
        import psycopg
        from psycopg import sql

        with psycopg.connect(dbname="postgres", autocommit=True, **server_params(config)) as pg:
            if not pg.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                pg.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    elif "sqlite" in engine and name != ":memory:":
        Path(name).parent.mkdir(parents=True, exist_ok=True)


def configure_django(database: dict[str, Any], smtp_port: int) -> None:
    """Settings for a bare app (no project), then ``django.setup()`` and a quiet migrate."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    settings.configure(
        SECRET_KEY="benchmark-only-secret-key-" + "0123456789" * 4,
        DEBUG=False,
        USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "bounce_tracker"],
        DATABASES={"default": database},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        EMAIL_BACKEND=TRACKING_BACKEND,
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=smtp_port,
        EMAIL_TIMEOUT=30,
        BOUNCE_TRACKER={"BOUNCE_DOMAIN": BOUNCE_DOMAIN, "BACKEND": INNER_BACKENDS["locmem"]},
    )
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def database_description() -> str:
    """The vendor and server version of the default database."""
    from django.db import connection

    connection.ensure_connection()
    vendor = connection.vendor
    if vendor == "sqlite":
        import sqlite3

        version = sqlite3.sqlite_version
    elif vendor == "mysql":
        version = connection.mysql_server_info  # type: ignore[attr-defined]
    elif vendor == "postgresql":
        number = connection.pg_version  # type: ignore[attr-defined]
        version = f"{number // 10000}.{number % 10000}"
    else:
        version = "?"
    return f"{vendor} {version} ({connection.settings_dict['NAME']})"


# --- The measurement -----------------------------------------------------------------


@dataclass
class Result:
    """Timings of one (inner backend, size, case) cell, one entry per round."""

    backend: str
    recipients: int
    case: str
    baseline: list[float] = field(default_factory=list)
    tracked: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)


@dataclass
class Bench:
    """Runs the rounds; knows how to build batches and count what was delivered."""

    shape: str
    sink: SMTPSink
    run_domain: str
    warnings: list[str] = field(default_factory=list)
    _batch_number: int = 0

    def fresh_addresses(self, size: int) -> list[str]:
        """``size`` addresses no run has sent to: the tracker must create their rows."""
        self._batch_number += 1
        return [
            f'"Subscriber {n}" <sub{n}.b{self._batch_number}@{self.run_domain}>'
            for n in range(size)
        ]

    def build_batch(self, recipients: Sequence[str]) -> list[EmailMessage]:
        """One message per recipient ("messages"), or one message Bcc'd to all ("bcc")."""
        from django.core.mail import EmailMessage

        def message(to: list[str], bcc: list[str]) -> EmailMessage:
            return EmailMessage(
                subject="Example News, this month",
                body=BODY,
                from_email="Example News <news@example.com>",
                to=to,
                bcc=bcc,
                headers={"List-Id": "Example News <news.example.com>"},
            )

        if self.shape == "bcc":
            return [message(to=[], bcc=list(recipients))]
        return [message(to=[recipient], bcc=[]) for recipient in recipients]

    def delivered(self, inner: str) -> int:
        """Copies the inner backend delivered since the last call (and forget them)."""
        from django.core import mail

        if inner == "smtp":
            return self.sink.take_count()
        outbox: list[Any] = getattr(mail, "outbox", [])
        count = len(outbox)
        outbox.clear()
        return count

    def run_baseline(self, inner: str, recipients: Sequence[str]) -> tuple[float, int]:
        """Seconds to send the copies through the inner backend alone; queries run."""
        from django.core.mail import get_connection

        from bounce_tracker.sending.backend import recipient_copy

        batch = self.build_batch(recipients)

        def send() -> None:
            with get_connection(INNER_BACKENDS[inner]) as connection:
                for message in batch:
                    for recipient in [*message.to, *message.cc, *message.bcc]:
                        copy = recipient_copy(message, recipient, BASELINE_RETURN_PATH)
                        connection.send_messages([copy])

        return self.timed(inner, "baseline", len(recipients), send)

    def run_tracked(self, inner: str, recipients: Sequence[str]) -> tuple[float, int]:
        """Seconds to send the batch through the tracking backend; queries run."""
        from django.core.mail import get_connection

        batch = self.build_batch(recipients)

        def send() -> None:
            get_connection(TRACKING_BACKEND).send_messages(batch)

        return self.timed(inner, "tracked", len(recipients), send)

    def timed(
        self, inner: str, label: str, expected: int, send: Callable[[], None]
    ) -> tuple[float, int]:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        self.delivered(inner)
        gc.collect()
        with CaptureQueriesContext(connection) as queries:
            gc.disable()
            try:
                start = time.perf_counter()
                send()
                elapsed = time.perf_counter() - start
            finally:
                gc.enable()
        delivered = self.delivered(inner)
        if delivered != expected:
            self.warnings.append(
                f"{inner} {label}: {delivered} of {expected} copies delivered; "
                "its timings do not compare."
            )
        return elapsed, len(queries)

    def measure(self, inner: str, size: int, rounds: int) -> list[Result]:
        """``rounds`` interleaved rounds (after one warm-up) for both cases."""
        results = {case: Result(inner, size, case) for case in CASES}
        for number in range(-1, rounds):  # round -1 warms up and is not recorded
            recipients = self.fresh_addresses(size)
            for case in CASES:  # "first send" creates the rows "steady" then finds
                order = ("baseline", "tracked") if number % 2 == 0 else ("tracked", "baseline")
                timings = {
                    side: (self.run_baseline if side == "baseline" else self.run_tracked)(
                        inner, recipients
                    )
                    for side in order
                }
                if number < 0:
                    continue
                result = results[case]
                result.baseline.append(timings["baseline"][0])
                result.tracked.append(timings["tracked"][0])
                result.queries.append(timings["tracked"][1])
        return list(results.values())


# --- The commit floor ---------------------------------------------------------------


def measure_commit_floor(bench: Bench, samples: int = 100) -> tuple[float, float]:
    """Median seconds of the tracker's counter write for one address, and of a SELECT.

    :func:`bounce_tracker.sending.tracking.record_sent` for one row (one autocommitted
    UPDATE: the durable commit every batch pays once) and
    :func:`bounce_tracker.sending.tracking.ensure_trackers` for that known address (one
    SELECT), each timed ``samples`` times. Together they are the floor of what tracking
    adds to a one-recipient batch, whatever the Python around them costs.
    """
    from collections import Counter

    from bounce_tracker.sending.settings import get_sending_settings
    from bounce_tracker.sending.tracking import ensure_trackers, record_sent

    tracker_settings = get_sending_settings({"BOUNCE_DOMAIN": BOUNCE_DOMAIN})
    address = bench.fresh_addresses(1)[0].split("<")[1].rstrip(">")
    trackers = ensure_trackers([address], tracker_settings)
    one = Counter({address: 1})
    writes, reads = [], []
    for _ in range(samples):
        start = time.perf_counter()
        record_sent(trackers, one)
        writes.append(time.perf_counter() - start)
        start = time.perf_counter()
        ensure_trackers([address], tracker_settings)
        reads.append(time.perf_counter() - start)
    return statistics.median(writes), statistics.median(reads)


# --- Memory -------------------------------------------------------------------------


@dataclass
class MemoryResult:
    """tracemalloc's current size after some batches of one memory case."""

    case: str
    batches: int
    recipients: int
    current: dict[int, int] = field(default_factory=dict)  # batches sent -> bytes


def memory_checkpoints(batches: int) -> list[int]:
    """After which batches to read the size: 1, N/2 and N."""
    return sorted({1, max(1, batches // 2), batches})


def measure_memory(bench: Bench, case: str, batches: int) -> MemoryResult:
    """Send ``batches`` batches through the tracker over locmem under tracemalloc.

    "same recipients" sends one batch's addresses once beforehand (so their rows exist)
    and then every batch to them; "new recipients" sends each batch to addresses never
    seen. Messages are built afresh for every batch, as an application would, and
    ``mail.outbox`` is emptied after each one.
    """
    from django.core import mail
    from django.core.mail import get_connection

    result = MemoryResult(case, batches, MEMORY_BATCH_SIZE)
    checkpoints = set(memory_checkpoints(batches))
    same = bench.fresh_addresses(MEMORY_BATCH_SIZE) if case == "same recipients" else None

    def send_one() -> None:
        recipients = same if same is not None else bench.fresh_addresses(MEMORY_BATCH_SIZE)
        get_connection(TRACKING_BACKEND).send_messages(bench.build_batch(recipients))
        delivered = len(getattr(mail, "outbox", []))
        if delivered != MEMORY_BATCH_SIZE:
            bench.warnings.append(
                f"memory, {case}: {delivered} of {MEMORY_BATCH_SIZE} copies delivered."
            )
        mail.outbox = []

    send_one()  # warm-up, not traced: creates the rows of "same", loads every module
    gc.collect()
    tracemalloc.start()
    try:
        for number in range(1, batches + 1):
            send_one()
            if number in checkpoints:
                gc.collect()
                result.current[number] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return result


def format_memory(results: Sequence[MemoryResult]) -> str:
    """One line per memory case: sizes at batch 1, N/2 and N, growth per batch."""
    from bounce_tracker.core import addresses

    lines = []
    for result in results:
        points = memory_checkpoints(result.batches)
        sizes = ", ".join(
            f"after batch {number:,}: {result.current[number] / 1024:,.0f} KiB" for number in points
        )
        middle, last = max(1, result.batches // 2), result.batches
        if last > middle:
            growth = (result.current[last] - result.current[middle]) / (last - middle)
            growth_text = f"growth per batch from {middle:,} to {last:,}: {growth / 1024:+,.1f} KiB"
        else:
            growth_text = "growth per batch: n/a (fewer than 2 batches)"
        lines.append(
            f"{result.case} ({result.batches:,} batches of {result.recipients:,}): "
            f"{sizes}; {growth_text}"
        )
    caches = [addresses._parse_address_text, addresses.normalize_email]
    lines.append(
        "the new-recipients line grows only until the address caches are full: "
        + ", ".join(
            f"{cache.__name__} holds {cache.cache_info().currsize:,} of at most "
            f"{cache.cache_info().maxsize:,} entries"
            for cache in caches
        )
    )
    return "\n".join(lines)


# --- Output --------------------------------------------------------------------------

#: Rounds for the smallest batches: enough that one slow fsync or scheduling hiccup on
#: a busy machine doesn't decide the median of a cell that takes milliseconds.
MAX_ROUNDS = 200


def rounds_for(size: int, rounds: int) -> int:
    """``rounds``, or more for small batches: at least 2,000 recipients per cell."""
    return max(rounds, min(MAX_ROUNDS, -(-2000 // size)))


def _queries_text(counts: list[int]) -> str:
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def format_table(results: Sequence[Result]) -> str:
    """The plain-text table: one row per (inner backend, size, case)."""
    header = (
        "backend",
        "recipients",
        "case",
        "baseline ms",
        "tracked ms",
        "ratio",
        "+us/rcpt",
        "queries/batch",
        "rounds",
    )
    rows = [header]
    for result in results:
        baseline = statistics.median(result.baseline)
        tracked = statistics.median(result.tracked)
        ratio = statistics.median(
            t / b for t, b in zip(result.tracked, result.baseline, strict=True)
        )
        rows.append(
            (
                result.backend,
                f"{result.recipients:,}",
                result.case,
                f"{baseline * 1000:.2f}",
                f"{tracked * 1000:.2f}",
                f"{ratio:.2f}",
                f"{(tracked - baseline) / result.recipients * 1e6:.0f}",
                _queries_text(result.queries),
                str(len(result.tracked)),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    left_aligned = {0, 2}
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if column in left_aligned else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


# --- Command line --------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    """``"1,100,1000"`` → ``[1, 100, 1000]``."""
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive numbers of recipients")
    return sizes


def parse_backends(text: str) -> list[str]:
    """``"locmem,smtp"`` → ``["locmem", "smtp"]``, checked against the known names."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in INNER_BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown backend(s) {', '.join(unknown) or '(none)'}; use {', '.join(INNER_BACKENDS)}"
        )
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time BounceTrackingBackend against its inner backend alone, side by side."
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[1, 100, 1000],
        help="recipients per batch, comma-separated (default: 1,100,1000)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="measured rounds per cell, after one warm-up round (default: 5)",
    )
    parser.add_argument(
        "--backends",
        type=parse_backends,
        default=list(INNER_BACKENDS),
        help="inner backends, comma-separated: locmem, smtp (default: both)",
    )
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="messages",
        help="'messages': one message per recipient in one send_messages() call, like "
        "send_mass_mail (default); 'bcc': one message with every recipient in Bcc",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="e.g. mysql://root:@127.0.0.1:3306/bounce_tracker_bench or "
        "postgres://postgres@127.0.0.1:5432/bounce_tracker_bench "
        "(default: a SQLite file in a temporary directory); created when missing",
    )
    parser.add_argument(
        "--memory-batches",
        type=int,
        default=50,
        help="batches of 1,000 recipients for the memory check, through the tracker over "
        "locmem, with the same and with new recipients each batch (default: 50; 0 skips it)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.memory_batches < 0:
        parser.error("--memory-batches must be 0 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))

    with tempfile.TemporaryDirectory(prefix="bounce-bench-") as workdir, running_sink() as sink:
        database = database_config(args.database_url, Path(workdir))
        create_database(database)
        configure_django(database, sink.port)

        import django
        from django.db import connection
        from django.test.utils import override_settings

        from bounce_tracker.models import EmailAddressTracker

        print(
            f"BounceTrackingBackend send overhead: Python {platform.python_version()}, "
            f"Django {django.get_version()}, {database_description()}"
        )
        print(
            f"shape: {args.shape}; rounds after 1 warm-up: {args.rounds}, more for small "
            f"batches (at least 2,000 recipients' worth, at most {MAX_ROUNDS}); "
            "baseline and tracked interleaved; times are medians;"
        )
        print("ratio = median of per-round tracked/baseline;")
        print(
            "+us/rcpt = (tracked - baseline) / recipients; "
            "queries/batch = queries in one tracked send_messages()",
            flush=True,
        )
        run_domain = f"run-{secrets.token_hex(4)}.bench.example"
        bench = Bench(shape=args.shape, sink=sink, run_domain=run_domain)
        results: list[Result] = []
        memory: list[MemoryResult] = []
        floor: tuple[float, float] | None = None
        try:
            for inner in args.backends:
                tracker_settings = {
                    "BOUNCE_DOMAIN": BOUNCE_DOMAIN,
                    "BACKEND": INNER_BACKENDS[inner],
                }
                with override_settings(BOUNCE_TRACKER=tracker_settings):
                    for size in args.sizes:
                        results += bench.measure(inner, size, rounds_for(size, args.rounds))
            floor = measure_commit_floor(bench)
            if args.memory_batches:
                tracker_settings = {
                    "BOUNCE_DOMAIN": BOUNCE_DOMAIN,
                    "BACKEND": INNER_BACKENDS["locmem"],
                }
                with override_settings(BOUNCE_TRACKER=tracker_settings):
                    memory = [
                        measure_memory(bench, case, args.memory_batches) for case in MEMORY_CASES
                    ]
        finally:
            # Leave a reused MySQL/PostgreSQL database as it was found.
            EmailAddressTracker.objects.filter(email__endswith=f"@{run_domain}").delete()
            connection.close()

    print()
    print(format_table(results))
    if floor is not None:
        print()
        print(
            f"the floor of a batch: the counter UPDATE for one address (one autocommitted "
            f"statement, its commit durable) {floor[0] * 1000:.2f} ms, the SELECT of a "
            f"known address {floor[1] * 1000:.2f} ms (medians of 100)"
        )
    if memory:
        print()
        print(
            "memory: tracemalloc current size (Python allocations) after gc, tracking "
            "backend over locmem, outbox emptied after each batch"
        )
        print(format_memory(memory))
    for warning in bench.warnings:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
