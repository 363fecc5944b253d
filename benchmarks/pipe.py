"""What one bounce costs when Postfix pipes it to ``manage.py handle_bounce``.

Postfix's pipe(8) starts a new process for every bounce, so the start-up of the
interpreter and of Django is part of the price. This script runs ``handle_bounce``
exactly that way (a fresh process, the DSN on stdin, an environment as bare as
pipe's) side by side with three baselines, in interleaved rounds: every round runs
each variant once, in an order that rotates from round to round, so machine noise
hits all of them.

python -c pass
    the interpreter starting and stopping, nothing else;
original recipe
    a Python script that does only what the original PHP recipe did: read stdin,
    connect with the database driver itself (MySQLdb, sqlite3 or psycopg), run one
    ``UPDATE ... SET bounce_count = bounce_count + 1, last_bounce3 = last_bounce2,
    last_bounce2 = last_bounce, last_bounce = NOW() WHERE encoded_from = %s``, commit;
bare Django command
    a minimal project (only the database, ``bounce_tracker`` and a tiny app) whose
    management command reads stdin and runs the same UPDATE through the ORM, with no
    system checks: the floor for any Django pipe target;
handle_bounce
    the real command with the same minimal project's settings; every run gets a
    different DSN (its own Message-ID), so every run records a new event;
bare command (example site), handle_bounce (example site)
    the same two commands in the example site (``example_project/manage.py``, its
    settings plus the benchmark's app ``benchsite`` holding the bare command): the
    goal's comparison, ``handle_bounce`` against the least any command does in the
    same site (column ``x site cmd``);
handle_bounce (pipe-only settings)
    the example site with ``benchsite.pipe_settings``: the same settings with only
    ``bounce_tracker`` (and the benchmark's app) installed, what a site can do itself;
with ``--flags``: handle_bounce (example site) under ``python -X frozen_modules=on``
    and under ``python -S`` (no ``site``: the virtualenv's site-packages on
    ``PYTHONPATH`` instead, its ``.pth`` files not run).

Each variant updates its own tracker row among ``--addresses`` rows seeded first, and
the counters are checked afterwards. With ``--parallel N`` each variant's turn in a
round is a burst of N bounces started at once (Postfix's default process limit for
pipe is 10); the time per bounce is then the burst's wall time divided by N.

Run from the repository root::

    .venv/bin/python benchmarks/pipe.py
    .venv/bin/python benchmarks/pipe.py --database-url sqlite
    .venv/bin/python benchmarks/pipe.py --parallel 10 --runs 200
    .venv/bin/python benchmarks/pipe.py --addresses 1000000 --importtime
    .venv/bin/python benchmarks/pipe.py --flags

It prints a table and always exits 0: it measures, it does not judge.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import secrets
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from send_overhead import create_database, database_description, server_params

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "mysql://root:@127.0.0.1:3306/bounce_tracker_bench"
BOUNCE_DOMAIN = "bounces.example.com"
VERP_HEAD = "bounces+"
TOKEN_LENGTH = 26  # bounce_tracker.core.settings.TOKEN_LENGTH: the local parts look like real ones
SETTINGS_MODULE = "pipe_bench_settings"
FLOOR_APP = "pipe_bench_floor"
FLOOR_COMMAND = "bump_bounce_count"
RECIPE_SCRIPT = "original_recipe.py"
EXAMPLE_MANAGE_PY = REPO_ROOT / "example_project" / "manage.py"
SITE_SETTINGS = "benchsite.settings"  # the example site plus the bare command's app
PIPE_ONLY_SETTINGS = "benchsite.pipe_settings"  # the example site's pipe-only settings
#: Modules the pipe must not import (its own start: not the site's other apps).
NOT_FOR_THE_PIPE = (
    "bounce_tracker.sending",
    "bounce_tracker.backend",
    "bounce_tracker.admin",
    "bounce_tracker.receiving.mailbox",
    "imaplib",
    "poplib",
    "mailbox",
)
# What Postfix's pipe(8) passes on: little more than PATH (plus what master.cf sets).
PIPE_PATH = "/usr/bin:/bin"
SEED_BATCH_ROWS = 10_000
DELETE_BATCH_ROWS = 50_000
IMPORTTIME_TOP = 15

SETTINGS_SOURCE = '''\
"""Settings of the pipe benchmark's minimal project: the database and bounce_tracker."""

import environ

env = environ.Env()

SECRET_KEY = "pipe-benchmark-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DATABASES = {"default": env.db("DATABASE_URL")}
if "mysql" in DATABASES["default"]["ENGINE"]:
    DATABASES["default"].setdefault("OPTIONS", {})["charset"] = "utf8mb4"
INSTALLED_APPS = ["bounce_tracker", "%(floor_app)s"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
BOUNCE_TRACKER = {"BOUNCE_DOMAIN": "%(bounce_domain)s"}
'''

# The floor command is the example site's benchmark command, copied into the minimal
# project too: one source for "one UPDATE in the same site" and "in a bare project".
FLOOR_COMMAND_FILE = (
    REPO_ROOT / "example_project" / "benchsite" / "management" / "commands" / f"{FLOOR_COMMAND}.py"
)

# The original recipe's PHP, in Python: read stdin, connect, one UPDATE, commit.
RECIPE_SOURCE = {
    "mysql": """\
import sys

import MySQLdb

sys.stdin.buffer.read()
local_part = sys.argv[-1].rpartition("@")[0].lower()
db = MySQLdb.connect(**%(params)r)
db.cursor().execute(
    "UPDATE %(table)s SET bounce_count = bounce_count + 1, last_bounce3 = last_bounce2, "
    "last_bounce2 = last_bounce, last_bounce = NOW() WHERE encoded_from = %%s",
    (local_part,),
)
db.commit()
db.close()
""",
    "postgresql": """\
import sys

import psycopg

sys.stdin.buffer.read()
local_part = sys.argv[-1].rpartition("@")[0].lower()
db = psycopg.connect(**%(params)r)
db.execute(
    "UPDATE %(table)s SET bounce_count = bounce_count + 1, last_bounce3 = last_bounce2, "
    "last_bounce2 = last_bounce, last_bounce = NOW() WHERE encoded_from = %%s",
    (local_part,),
)
db.commit()
db.close()
""",
    "sqlite": """\
import sqlite3
import sys

sys.stdin.buffer.read()
local_part = sys.argv[-1].rpartition("@")[0].lower()
db = sqlite3.connect(%(params)r["database"])
db.execute(
    "UPDATE %(table)s SET bounce_count = bounce_count + 1, last_bounce3 = last_bounce2, "
    "last_bounce2 = last_bounce, last_bounce = CURRENT_TIMESTAMP WHERE encoded_from = ?",
    (local_part,),
)
db.commit()
db.close()
""",
}
RECIPE_DRIVERS = {"mysql": "MySQLdb", "postgresql": "psycopg", "sqlite": "sqlite3"}


# --- The database ----------------------------------------------------------------------


def database_config(url: str, workdir: Path) -> tuple[str, dict[str, Any]]:
    """The URL the child processes get, and Django's DATABASES entry for it.

    ``sqlite`` alone means a new SQLite file in ``workdir``; a relative SQLite path is
    made absolute (the children run in another directory).
    """
    import environ

    if url == "sqlite":
        url = f"sqlite:///{workdir / 'pipe_bench.sqlite3'}"
    config: dict[str, Any] = environ.Env.db_url_config(url)
    if "sqlite" in config["ENGINE"]:
        if config["NAME"] in ("", ":memory:"):
            raise SystemExit("an in-memory SQLite database can't be shared with child processes")
        config["NAME"] = str(Path(config["NAME"]).resolve())
        url = f"sqlite:///{config['NAME']}"
    if "mysql" in config["ENGINE"]:
        config.setdefault("OPTIONS", {})["charset"] = "utf8mb4"
    return url, config


def recipe_params(vendor: str, config: dict[str, Any]) -> dict[str, Any]:
    """Connection arguments for the recipe script's driver, written into the script."""
    if vendor == "mysql":
        return {**server_params(config), "db": config["NAME"], "charset": "utf8mb4"}
    if vendor == "postgresql":
        return {**server_params(config), "dbname": config["NAME"]}
    return {"database": config["NAME"]}


def write_project(workdir: Path) -> None:
    """The minimal project: its settings module and the floor app with its command."""
    (workdir / f"{SETTINGS_MODULE}.py").write_text(
        SETTINGS_SOURCE % {"floor_app": FLOOR_APP, "bounce_domain": BOUNCE_DOMAIN}
    )
    commands = workdir / FLOOR_APP / "management" / "commands"
    commands.mkdir(parents=True)
    for package in (workdir / FLOOR_APP, commands.parent, commands):
        (package / "__init__.py").write_text("")
    (commands / f"{FLOOR_COMMAND}.py").write_text(FLOOR_COMMAND_FILE.read_text())


def write_recipe(workdir: Path, vendor: str, config: dict[str, Any], table: str) -> None:
    """The original recipe in Python, with the connection arguments written in."""
    (workdir / RECIPE_SCRIPT).write_text(
        RECIPE_SOURCE[vendor] % {"params": recipe_params(vendor, config), "table": table}
    )


def setup_django(workdir: Path, url: str) -> None:
    """``django.setup()`` on the minimal project's settings, then a quiet migrate."""
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    os.environ["DATABASE_URL"] = url
    for path in (str(REPO_ROOT), str(workdir)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


@dataclass(frozen=True)
class Seed:
    """The rows one run seeded: addresses ``<prefix><n>@<domain>``, in key order."""

    run_token: str
    count: int

    @property
    def domain(self) -> str:
        return f"run-{self.run_token}.pipe-bench.example"

    def email(self, n: int) -> str:
        return f"s{n:0{len(str(self.count))}d}@{self.domain}"

    def local_part(self, n: int) -> str:
        # Both unique keys grow with n: inserting in key order is every B-tree's fastest
        # path, and finding one row by a unique index costs the same either way.
        return f"{VERP_HEAD}{self.run_token}{n:0{TOKEN_LENGTH - len(self.run_token)}d}"

    def verp_address(self, n: int) -> str:
        return f"{self.local_part(n)}@{BOUNCE_DOMAIN}"

    def rows(self, start: int, stop: int) -> Iterator[tuple[Any, ...]]:
        """Values for :func:`seed_columns`: the address, its local part, then defaults."""
        defaults = seed_defaults()
        for n in range(start, stop):
            yield (self.email(n), self.local_part(n), *defaults)


def _not_null_fields() -> list[Any]:
    from bounce_tracker.models import EmailAddressTracker

    return [
        field
        for field in EmailAddressTracker._meta.concrete_fields
        if not field.primary_key and not field.null and field.name not in ("email", "encoded_from")
    ]


def seed_columns() -> tuple[str, ...]:
    """email, encoded_from and every other NOT NULL column (read from the model)."""
    return ("email", "encoded_from", *(field.column for field in _not_null_fields()))


def seed_defaults() -> tuple[Any, ...]:
    return tuple(field.get_default() for field in _not_null_fields())


def seed_addresses(seed: Seed) -> float:
    """Insert the seed's rows by the database's fastest path; seconds taken."""
    from django.db import connection, transaction

    from bounce_tracker.models import EmailAddressTracker

    table = EmailAddressTracker._meta.db_table
    seed_column_names = seed_columns()
    columns = ", ".join(seed_column_names)
    start = time.perf_counter()
    with transaction.atomic():
        connection.ensure_connection()
        raw_connection: Any = connection.connection
        if connection.vendor == "postgresql":
            with (
                raw_connection.cursor() as cursor,
                cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
            ):
                for row in seed.rows(0, seed.count):
                    copy.write_row(row)
        elif connection.vendor in ("mysql", "sqlite"):
            placeholder = "%s" if connection.vendor == "mysql" else "?"
            statement = (
                f"INSERT INTO {table} ({columns}) VALUES "
                f"({', '.join([placeholder] * len(seed_column_names))})"
            )
            cursor = raw_connection.cursor()
            if connection.vendor == "mysql":
                # MySQLdb turns executemany() into multi-row INSERTs of at most this size.
                cursor.max_stmt_length = 4 * 1024 * 1024
            for first in range(0, seed.count, SEED_BATCH_ROWS):
                cursor.executemany(
                    statement, list(seed.rows(first, min(first + SEED_BATCH_ROWS, seed.count)))
                )
            cursor.close()
        else:
            EmailAddressTracker.objects.bulk_create(
                (
                    EmailAddressTracker(**dict(zip(seed_column_names, row, strict=True)))
                    for row in seed.rows(0, seed.count)
                ),
                batch_size=SEED_BATCH_ROWS,
            )
    return time.perf_counter() - start


def remove_rows(seed: Seed, addresses: Sequence[str]) -> float:
    """Delete what this run left: events and unmatched mail for ``addresses``, the rows."""
    from django.db import connection

    from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage

    start = time.perf_counter()
    pattern = f"%@{seed.domain}"
    table = EmailAddressTracker._meta.db_table
    local_parts = [address.rpartition("@")[0] for address in addresses]
    BounceEvent.objects.filter(tracker__encoded_from__in=local_parts).delete()
    UnmatchedMessage.objects.filter(envelope_recipient__in=addresses).delete()
    with connection.cursor() as cursor:
        # Raw and in id ranges: the ORM would first load a million rows to cascade.
        cursor.execute(f"SELECT MIN(id), MAX(id) FROM {table} WHERE email LIKE %s", [pattern])
        low, high = cursor.fetchone()
        if low is not None:
            for first in range(low, high + 1, DELETE_BATCH_ROWS):
                cursor.execute(
                    f"DELETE FROM {table} WHERE id >= %s AND id < %s AND email LIKE %s",
                    [first, first + DELETE_BATCH_ROWS, pattern],
                )
    connection.close()
    return time.perf_counter() - start


# --- The measurement -----------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One finished process."""

    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float


@dataclass
class Variant:
    """One way of handling a bounce, its target row and its measurements."""

    name: str
    argv: list[str]
    env: dict[str, str]
    target: int | None = None  # seeded row number; None: touches no row
    expects_quiet: bool = False
    role: str = ""  # "python", "recipe", "floor", "pipe", "site floor", "site pipe"
    per_bounce: list[float] = field(default_factory=list)  # one per round
    cpu_per_bounce: list[float] = field(default_factory=list)  # one per round
    latencies: list[float] = field(default_factory=list)  # one per measured process
    measured_bounces: int = 0
    measured_seconds: float = 0.0
    processes: int = 0  # every process started, warm-up included
    exit_codes: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass
class Bench:
    """Starts the processes and keeps the messages unique."""

    seed: Seed
    workdir: Path
    parallel: int
    pool: ThreadPoolExecutor
    _messages: int = 0

    def message(self, variant: Variant) -> bytes:
        """A Postfix DSN for the variant's row, with a Message-ID never used before."""
        from tests.messages import dsn

        self._messages += 1
        n = variant.target if variant.target is not None else 0
        return dsn(
            recipient=self.seed.email(n),
            return_path=self.seed.verp_address(n),
            message_id=f"<pipe-bench-{self.seed.run_token}-{self._messages}@mx.example.net>",
        )

    def start(self, variant: Variant, stdin: bytes, extra: Sequence[str] = ()) -> Run:
        """One process, as pipe(8) starts it: its own environment, the message on stdin."""
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, *extra, *variant.argv],
            input=stdin,
            capture_output=True,
            env=variant.env,
            cwd=self.workdir,
            timeout=300,
            check=False,
        )
        return Run(
            completed.returncode,
            completed.stdout,
            completed.stderr,
            time.perf_counter() - started,
        )

    def burst(self, variant: Variant, *, measured: bool) -> None:
        """``parallel`` bounces of one variant started at once (one, sequentially)."""
        stdins = [self.message(variant) for _ in range(self.parallel)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        if self.parallel == 1:
            runs = [self.start(variant, stdins[0])]
        else:
            runs = list(self.pool.map(lambda stdin: self.start(variant, stdin), stdins))
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        for run in runs:
            self.check(variant, run)
        if measured:
            variant.per_bounce.append(elapsed / len(runs))
            variant.cpu_per_bounce.append(cpu / len(runs))
            variant.latencies += [run.seconds for run in runs]
            variant.measured_bounces += len(runs)
            variant.measured_seconds += elapsed

    def check(self, variant: Variant, run: Run) -> None:
        """Count the process and its exit status; keep the first few failures' last line."""
        variant.processes += 1
        variant.exit_codes[run.returncode] = variant.exit_codes.get(run.returncode, 0) + 1
        noisy = variant.expects_quiet and (run.stdout or run.stderr)
        if (run.returncode != 0 or noisy) and len(variant.problems) < 3:
            output = (run.stderr or run.stdout).decode(errors="replace").strip()
            last_line = output.splitlines()[-1] if output else "(no output)"
            variant.problems.append(f"exit {run.returncode}: {last_line[:300]}")

    def measure(self, variants: Sequence[Variant], rounds: int) -> None:
        """One warm-up round, then ``rounds`` rounds in rotating order."""
        for number in range(-1, rounds):
            shift = number % len(variants)
            for variant in [*variants[shift:], *variants[:shift]]:
                self.burst(variant, measured=number >= 0)


@dataclass(frozen=True)
class Import:
    """One line of ``-X importtime``, with the module that imported it."""

    self_us: int
    cumulative_us: int
    depth: int
    module: str
    imported_by: str


def importtime(bench: Bench, variant: Variant) -> tuple[Run, list[Import]]:
    """One handle_bounce run under ``-X importtime``, and what it imported."""
    run = bench.start(variant, bench.message(variant), extra=["-X", "importtime"])
    lines = []
    other_lines = []
    for line in run.stderr.decode(errors="replace").splitlines():
        if not line.startswith("import time:"):
            other_lines.append(line)
            continue
        fields = line[len("import time:") :].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        # " " + two spaces per level of nesting + the module name
        name = fields[2][1:].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        lines.append((int(fields[0]), int(fields[1]), depth, name.strip()))
    bench.check(variant, Run(run.returncode, run.stdout, "\n".join(other_lines).encode(), 0.0))
    # A module's line comes after the lines of what it imports: its importer is the
    # next line one level up.
    imports: list[Import] = []
    importer_at_depth: dict[int, str] = {}
    for self_us, cumulative_us, depth, module in reversed(lines):
        imported_by = importer_at_depth.get(depth - 1, "-") if depth else "(run time)"
        imports.append(Import(self_us, cumulative_us, depth, module, imported_by))
        importer_at_depth[depth] = module
    imports.reverse()
    return run, imports


# --- Output --------------------------------------------------------------------------


def p90(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def paired_ratio(numerator: Variant, denominator: Variant) -> float:
    """The median of the per-round ratios (both ran in the same rounds)."""
    return statistics.median(
        n / d for n, d in zip(numerator.per_bounce, denominator.per_bounce, strict=True)
    )


def role(variants: Sequence[Variant], name: str) -> Variant:
    return next(variant for variant in variants if variant.role == name)


def format_table(
    variants: Sequence[Variant], recipe: Variant, bare: Variant, site_floor: Variant
) -> str:
    header = (
        "variant",
        "ms/bounce",
        "p90 ms",
        "CPU ms",
        "x recipe",
        "x python",
        "x site cmd",
        "bounces/s",
        "latency ms",
    )
    rows = [header]
    for variant in variants:
        rows.append(
            (
                variant.name,
                f"{statistics.median(variant.per_bounce) * 1000:.1f}",
                f"{p90(variant.per_bounce) * 1000:.1f}",
                f"{statistics.median(variant.cpu_per_bounce) * 1000:.1f}",
                f"{paired_ratio(variant, recipe):.2f}",
                f"{paired_ratio(variant, bare):.2f}",
                f"{paired_ratio(variant, site_floor):.2f}",
                f"{variant.measured_bounces / variant.measured_seconds:.1f}",
                f"{statistics.median(variant.latencies) * 1000:.1f}",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def target_addresses(seed: Seed, variants: Sequence[Variant]) -> list[str]:
    return [seed.verp_address(v.target) for v in variants if v.target is not None]


def verify(seed: Seed, variants: Sequence[Variant]) -> list[str]:
    """Counters and events against the processes run; lines to print."""
    from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage

    lines = []
    for variant in variants:
        if variant.target is None:
            continue
        tracker = EmailAddressTracker.objects.get(encoded_from=seed.local_part(variant.target))
        events = BounceEvent.objects.filter(tracker=tracker).count()
        wanted_events = variant.processes if variant.expects_quiet else 0
        line = f"{variant.name}: {variant.processes} processes, bounce_count {tracker.bounce_count}"
        if variant.expects_quiet:
            line += f", BounceEvent rows {events}"
        ok = tracker.bounce_count == variant.processes and events == wanted_events
        lines.append(line + ("" if ok else "  <-- WARNING: should all be equal"))
    unmatched = UnmatchedMessage.objects.filter(
        envelope_recipient__in=target_addresses(seed, variants)
    ).count()
    if unmatched:
        lines.append(f"WARNING: {unmatched} bounce(s) were stored as unmatched")
    for variant in variants:
        codes = ", ".join(f"{code}: {count}" for code, count in sorted(variant.exit_codes.items()))
        if set(variant.exit_codes) != {0} or variant.problems:
            lines.append(f"WARNING: {variant.name}: exit codes {{{codes}}}")
        lines += [f"WARNING: {variant.name}: {problem}" for problem in variant.problems]
    return lines


# --- Command line --------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time handle_bounce as Postfix runs it (a process per bounce) against "
        "baselines, side by side."
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"a django-environ URL (default: {DEFAULT_DATABASE_URL}); 'sqlite' for a new "
        "SQLite file in a temporary directory; e.g. "
        "postgres://postgres@127.0.0.1:5432/bounce_tracker_bench. Created when missing.",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=60,
        help="measured bounces per variant, after one warm-up round (default: 60)",
    )
    parser.add_argument(
        "--addresses",
        type=int,
        default=1000,
        help="tracker rows seeded before measuring (default: 1000)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="processes started at once, like Postfix's process limit (default: 1)",
    )
    parser.add_argument(
        "--site-settings",
        metavar="MODULE",
        help="also run handle_bounce with these settings (e.g. tests.settings, which "
        "installs admin, auth, sessions...) as a fifth variant",
    )
    parser.add_argument(
        "--flags",
        action="store_true",
        help="also run handle_bounce in the example site under 'python -X "
        "frozen_modules=on' and under 'python -S'",
    )
    parser.add_argument(
        "--importtime",
        action="store_true",
        help=f"afterwards, run handle_bounce once under 'python -X importtime' and print "
        f"the {IMPORTTIME_TOP} slowest imports (cumulative)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.addresses < 20:
        parser.error("--addresses must be at least 20 (one row per variant)")
    if args.parallel < 1:
        parser.error("--parallel must be at least 1")
    return args


def build_variants(
    vendor: str,
    seed: Seed,
    env: dict[str, str],
    site_settings: str | None,
    flags: bool = False,
) -> list[Variant]:
    """The variants, each on its own seeded row (spread over the table)."""
    pipe_args = ["--", "MAILER-DAEMON"]
    manage_py = str(EXAMPLE_MANAGE_PY)
    site_env = {**env, "DJANGO_SETTINGS_MODULE": SITE_SETTINGS}
    specs: list[tuple[str, list[str], dict[str, str], str]] = [
        (f"original recipe ({RECIPE_DRIVERS[vendor]})", [RECIPE_SCRIPT], env, "recipe"),
        ("bare Django command", ["-m", "django", FLOOR_COMMAND], env, "floor"),
        ("handle_bounce", ["-m", "django", "handle_bounce"], env, "pipe"),
        ("bare command (example site)", [manage_py, FLOOR_COMMAND], site_env, "site floor"),
        ("handle_bounce (example site)", [manage_py, "handle_bounce"], site_env, "site pipe"),
        (
            "handle_bounce (pipe-only settings)",
            [manage_py, "handle_bounce"],
            {**env, "DJANGO_SETTINGS_MODULE": PIPE_ONLY_SETTINGS},
            "",
        ),
    ]
    if flags:
        no_site_env = {
            **site_env,
            "PYTHONPATH": os.pathsep.join([env["PYTHONPATH"], sysconfig.get_paths()["purelib"]]),
        }
        specs += [
            (
                "handle_bounce (example site, -X frozen_modules=on)",
                ["-X", "frozen_modules=on", manage_py, "handle_bounce"],
                site_env,
                "",
            ),
            (
                "handle_bounce (example site, -S)",
                ["-S", manage_py, "handle_bounce"],
                no_site_env,
                "",
            ),
        ]
    if site_settings:
        specs.append(
            (
                f"handle_bounce ({site_settings})",
                ["-m", "django", "handle_bounce"],
                {**env, "DJANGO_SETTINGS_MODULE": site_settings},
                "",
            )
        )
    variants = [Variant("python -c pass", ["-c", "pass"], env, role="python")]
    for number, (name, argv, variant_env, variant_role) in enumerate(specs, start=1):
        target = seed.count * number // (len(specs) + 1)
        variants.append(
            Variant(
                name,
                [*argv, *pipe_args, seed.verp_address(target)],
                variant_env,
                target=target,
                expects_quiet="handle_bounce" in argv,
                role=variant_role,
            )
        )
    return variants


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = math.ceil(args.runs / args.parallel)
    with tempfile.TemporaryDirectory(prefix="bounce-pipe-bench-") as tmp:
        workdir = Path(tmp)
        url, config = database_config(args.database_url, workdir)
        create_database(config)
        write_project(workdir)
        setup_django(workdir, url)

        import django
        from django.db import connection

        from bounce_tracker.models import EmailAddressTracker

        if connection.vendor not in RECIPE_SOURCE:
            raise SystemExit(f"no original recipe for {connection.vendor}")
        write_recipe(workdir, connection.vendor, config, EmailAddressTracker._meta.db_table)
        print(
            f"handle_bounce as a Postfix pipe target: Python {platform.python_version()}, "
            f"Django {django.get_version()}, {database_description()}, "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        seed = Seed(run_token=secrets.token_hex(3), count=args.addresses)
        env = {
            "PATH": PIPE_PATH,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(workdir)]),
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "DATABASE_URL": url,
        }
        variants = build_variants(
            connection.vendor, seed, env, args.site_settings, flags=args.flags
        )
        imports = None
        try:
            seconds = seed_addresses(seed)
            print(f"seeded {seed.count:,} tracker rows in {seconds:.2f} s", flush=True)
            connection.close()  # no open connection or lock while the children run
            with ThreadPoolExecutor(max_workers=args.parallel) as pool:
                bench = Bench(seed, workdir, args.parallel, pool)
                bench.measure(variants, rounds)
                if args.importtime:
                    imports = importtime(bench, role(variants, "site pipe"))
            verification = verify(seed, variants)
        finally:
            cleanup_seconds = remove_rows(seed, target_addresses(seed, variants))
    print_report(args, rounds, variants, verification, cleanup_seconds, imports)
    return 0


def print_report(
    args: argparse.Namespace,
    rounds: int,
    variants: Sequence[Variant],
    verification: Sequence[str],
    cleanup_seconds: float,
    imports: tuple[Run, list[Import]] | None,
) -> None:
    bare, recipe = role(variants, "python"), role(variants, "recipe")
    floor, handle_bounce = role(variants, "floor"), role(variants, "pipe")
    site_floor, site_pipe = role(variants, "site floor"), role(variants, "site pipe")
    if args.parallel == 1:
        print(
            f"{rounds} rounds after 1 warm-up round, one process per variant per round, "
            "in rotating order"
        )
        print("ms/bounce, p90: wall time of one process, from start to exit")
    else:
        print(
            f"{rounds} rounds after 1 warm-up round; in each, every variant in turn starts "
            f"{args.parallel} processes at once ({rounds * args.parallel} bounces per variant)"
        )
        print(
            f"ms/bounce, p90: the burst's wall time / {args.parallel}; "
            "latency: one process, from start to exit"
        )
    print(
        "CPU ms: user+system time of the processes per bounce; x recipe, x python: median "
        "of the per-round ratios; bounces/s: bounces / time spent on this variant"
    )
    if args.runs < 50:
        print(f"note: only {args.runs} runs per variant; medians and p90 are rough")
    print()
    print(format_table(variants, recipe, bare, site_floor))
    print()
    median_ms = statistics.median(handle_bounce.per_bounce) * 1000
    over_floor = median_ms - statistics.median(floor.per_bounce) * 1000
    over_recipe = median_ms - statistics.median(recipe.per_bounce) * 1000
    print(
        f"handle_bounce: median {median_ms:.1f} ms per bounce, {over_floor:+.1f} ms over the "
        f"bare Django command, {over_recipe:+.1f} ms over the original recipe"
    )
    print(
        f"handle_bounce in the example site: {paired_ratio(site_pipe, site_floor):.2f} x the "
        f"bare command in the same site (median of per-round ratios; goal <= 0.9), "
        f"CPU {statistics.median(site_pipe.cpu_per_bounce) * 1000:.0f} against "
        f"{statistics.median(site_floor.cpu_per_bounce) * 1000:.0f} ms"
    )
    for line in verification:
        print(line)
    print(f"removed this run's rows in {cleanup_seconds:.2f} s")
    if imports is not None:
        run, entries = imports
        top_level = sum(entry.cumulative_us for entry in entries if entry.depth == 0)
        print()
        print(
            f"handle_bounce under -X importtime: {run.seconds * 1000:.0f} ms in all, "
            f"{top_level / 1000:.0f} ms importing; the {IMPORTTIME_TOP} slowest imports "
            "(cumulative: with what they import):"
        )
        slowest = sorted(entries, key=lambda entry: -entry.cumulative_us)[:IMPORTTIME_TOP]
        width = max(len(entry.module) for entry in slowest)
        print(f"{'cumul. ms':>9}  {'self ms':>7}  {'module':<{width}}  first imported by")
        for entry in slowest:
            print(
                f"{entry.cumulative_us / 1000:9.1f}  {entry.self_us / 1000:7.1f}  "
                f"{entry.module:<{width}}  {entry.imported_by}"
            )
        print(f"{len(entries)} modules imported in all")
        unwanted = [
            entry
            for entry in entries
            if entry.depth == 0
            and any(entry.module == n or entry.module.startswith(n + ".") for n in NOT_FOR_THE_PIPE)
        ]
        if unwanted:
            print(
                "imported though the pipe doesn't use them (at the top level: in a site with "
                "django.contrib.admin, by its autodiscover() in django.setup(), for every "
                "command; a pipe-only settings module leaves them out):"
            )
            for entry in unwanted:
                print(f"  {entry.module} ({entry.cumulative_us / 1000:.1f} ms)")


if __name__ == "__main__":
    sys.exit(main())
