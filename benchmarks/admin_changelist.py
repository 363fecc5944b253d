"""How the admin's address list behaves on a large tracker table.

Seeds tracker rows (``bulk_create`` in batches) in a scratch database, logs in with
Django's test client and times GET requests of the ``EmailAddressTracker``
changelist -- plain, searched, filtered, sorted, a deep page -- and of one address's
page with a long bounce history. For each it prints the number of queries per page,
the time those queries took, and the median wall time of the whole request (render
included) over ``--rounds`` requests after one warm-up. With several ``--rows`` sizes
the same requests run at each size and the last column is the ratio of the largest
size's time to the smallest's: the page should cost about the same on a small and on
a large table.

Run from the repository root::

    .venv/bin/python benchmarks/admin_changelist.py
    .venv/bin/python benchmarks/admin_changelist.py --database-url mysql://root:@127.0.0.1:3306/bounce_tracker_bench
    .venv/bin/python benchmarks/admin_changelist.py --database-url postgres://postgres@127.0.0.1:5432/bounce_tracker_bench

Rows it seeds use the domain ``*.admin-bench.example`` and are deleted at the end
(and at the start, if a previous run was interrupted). It always exits 0: it
measures, it does not judge.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from send_overhead import create_database, database_config, database_description

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DOMAIN = "admin-bench.example"
BOUNCE_DOMAIN = "bounces.example.com"
HISTORY_EVENTS = 200


def configure_django(database: dict[str, Any]) -> None:
    """The test suite's site (its apps, middleware, templates, URLs), then setup and migrate."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    from tests.settings import INSTALLED_APPS, MIDDLEWARE, TEMPLATES

    settings.configure(
        SECRET_KEY="benchmark-only-secret-key-" + "0123456789" * 4,
        DEBUG=False,
        USE_TZ=True,
        TIME_ZONE="UTC",
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=INSTALLED_APPS,
        MIDDLEWARE=MIDDLEWARE,
        ROOT_URLCONF="tests.urls",
        TEMPLATES=TEMPLATES,
        STATIC_URL="/static/",
        DATABASES={"default": database},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        # Logging in through the test client: no need for a slow password hasher.
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        BOUNCE_TRACKER={"BOUNCE_DOMAIN": BOUNCE_DOMAIN},
    )
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


# --- seeding --------------------------------------------------------------------------------


def bench_email(index: int) -> str:
    return f"user{index:07d}@d{index % 997}.{BENCH_DOMAIN}"


def bench_row(index: int, now: datetime, rng: random.Random) -> dict[str, Any]:
    """Tracker fields for row ``index``: a plausible mix of states."""
    email = bench_email(index)
    token = hashlib.sha256(email.encode()).hexdigest()[:26]
    fields: dict[str, Any] = {
        "email": email,
        "encoded_from": f"bounces+{token}",
        "msg_count": rng.randint(1, 500),
        "first_email": now - timedelta(days=rng.randint(100, 900)),
        "last_email": now - timedelta(days=rng.randint(0, 90)),
    }
    draw = rng.random()

    def bounced(*days: float) -> None:
        times = [now - timedelta(days=d) for d in sorted(days)]
        fields.update(
            dict(zip(["last_bounce", "last_bounce2", "last_bounce3"], times, strict=False)),
            first_bounce=times[-1],
            bounce_count=len(days) + rng.randint(0, 5),
        )

    if draw < 0.02:  # suppressed by a hard bounce
        bounced(rng.uniform(0, 400))
        fields.update(suppressed_reason="hard", suppressed_at=fields["last_bounce"])
        fields.update(suppressed_detail="5.1.1 user unknown", last_event_kind="hard")
    elif draw < 0.025:
        fields.update(suppressed_reason="complaint", suppressed_at=now, last_event_kind="complaint")
    elif draw < 0.027:
        fields.update(suppressed_reason="manual", suppressed_at=now)
    elif draw < 0.037:
        fields.update(ignore_bounces=True)
        bounced(rng.uniform(0, 30), rng.uniform(0, 30), rng.uniform(0, 30))
    elif draw < 0.067:  # three soft bounces within the window
        bounced(rng.uniform(0, 13), rng.uniform(0, 13), rng.uniform(0, 13))
        fields["last_event_kind"] = "soft"
    elif draw < 0.267:  # bounced once or twice, now and then
        bounced(*(rng.uniform(0, 365) for _ in range(rng.randint(1, 2))))
        fields["last_event_kind"] = rng.choice(["soft", "delayed", "auto_reply"])
    return fields


def seed(start: int, stop: int, batch: int) -> float:
    """Insert rows ``start``..``stop - 1``; returns the seconds it took."""
    from django.db import transaction
    from django.utils import timezone

    from bounce_tracker.models import EmailAddressTracker

    now = timezone.now()
    rng = random.Random(start)
    began = time.perf_counter()
    for first in range(start, stop, batch):
        rows = [
            EmailAddressTracker(**bench_row(index, now, rng))
            for index in range(first, min(first + batch, stop))
        ]
        with transaction.atomic():
            EmailAddressTracker.objects.bulk_create(rows, batch_size=batch)
    return time.perf_counter() - began


def seed_history(count: int) -> int:
    """A bounce history of ``count`` events for row 0; returns its tracker's pk."""
    from django.utils import timezone

    from bounce_tracker.models import BounceEvent, EmailAddressTracker

    tracker = EmailAddressTracker.objects.get(email=bench_email(0))
    now = timezone.now()
    BounceEvent.objects.bulk_create(
        BounceEvent(
            tracker=tracker,
            kind="soft",
            counted=True,
            status="4.2.2",
            diagnostic="smtp; 452 4.2.2 mailbox full " + "x" * 200,
            reporting_mta="dns; mx.example.net",
            envelope_recipient=f"{tracker.encoded_from}@{BOUNCE_DOMAIN}",
            received_at=now - timedelta(hours=n),
            fingerprint=f"admin-bench-{tracker.pk}-{n}",
            raw_message=b"x" * 4096,
            raw_size=4096,
        )
        for n in range(count)
    )
    return int(tracker.pk)


def delete_bench_rows() -> None:
    from bounce_tracker.models import BounceEvent, EmailAddressTracker

    BounceEvent.objects.filter(fingerprint__startswith="admin-bench-").delete()
    EmailAddressTracker.objects.filter(email__endswith=f".{BENCH_DOMAIN}").delete()


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    params: dict[str, str] = field(default_factory=dict)
    detail: bool = False


CASES = [
    Case("list (ordered by address)"),
    Case("search 'user00042' (partial)", {"q": "user00042"}),
    Case("search whole bounce address", {"q": "<verp>"}),
    Case("filter state=hard", {"state": "hard"}),
    Case("filter state=soft threshold", {"state": "soft_threshold"}),
    Case("filter state=ok", {"state": "ok"}),
    Case("filter last bounce 7 days", {"bounced": "7d"}),
    Case("sort by last bounce, newest", {"o": "-<last_bounce_at>"}),
    Case("sort by bounce count (no index)", {"o": "-<bounce_count>"}),
    Case("deep page (p=200, or the last)", {"p": "<deep>"}),
    Case(f"address page, {HISTORY_EVENTS} events", detail=True),
]


@dataclass
class Measurement:
    queries: int
    sql_ms: float
    median_ms: float
    matched: str


def measure(client: Any, url: str, params: dict[str, str], rounds: int) -> Measurement:
    from django.db import connection

    durations: list[float] = []

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            durations.append(time.perf_counter() - began)

    client.get(url, params)  # warm-up: fills caches (content types, templates)
    with connection.execute_wrapper(timed):
        response = client.get(url, params)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} {params} answered {response.status_code}")
    sql_ms = sum(durations) * 1000
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        client.get(url, params)
        times.append((time.perf_counter() - began) * 1000)
    # The paginator's "12,345 email address trackers" (only lists have one).
    paginator = response.content.partition(b'class="paginator"')[2]
    found = re.search(rb"([\d,]+) email address trackers?\s", paginator)
    matched = f"{int(found.group(1).replace(b',', b'')):,}" if found else "-"
    return Measurement(len(durations), sql_ms, statistics.median(times), matched)


def column_numbers(client: Any) -> dict[str, str]:
    """``<column name>`` → its number in the list's ``?o=`` sort parameter, for this user."""
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    from bounce_tracker.models import EmailAddressTracker

    request = RequestFactory().get("/")
    request.user = get_user_model().objects.get(pk=client.session["_auth_user_id"])
    model_admin = admin.site.get_model_admin(EmailAddressTracker)
    columns = ["action_checkbox", *model_admin.get_list_display(request)]
    return {
        f"<{name}>": str(number) for number, name in enumerate(columns) if isinstance(name, str)
    }


def run_cases(client: Any, history_pk: int, rows: int, rounds: int) -> dict[str, Measurement]:
    from django.urls import reverse

    from bounce_tracker.models import EmailAddressTracker

    changelist = reverse("admin:bounce_tracker_emailaddresstracker_changelist")
    detail = reverse("admin:bounce_tracker_emailaddresstracker_change", args=[history_pk])
    verp = EmailAddressTracker.objects.get(email=bench_email(42)).encoded_from
    substitutes = {
        "<verp>": f"{verp}@{BOUNCE_DOMAIN}",
        "<deep>": str(max(1, min(200, -(-rows // 100)))),  # 100 rows per page
        **column_numbers(client),
    }
    results = {}
    for case in CASES:
        params = dict(case.params)
        for key, value in params.items():
            for placeholder, substitute in substitutes.items():
                value = value.replace(placeholder, substitute)
            params[key] = value
        url = detail if case.detail else changelist
        results[case.name] = measure(client, url, params, rounds)
    return results


def format_table(sizes: Sequence[int], results: dict[int, dict[str, Measurement]]) -> str:
    largest, smallest = max(sizes), min(sizes)
    header = ["case", "queries"]
    for size in sizes:
        header += [f"matched@{size:,}", f"SQL ms@{size:,}", f"ms@{size:,}"]
    if len(sizes) > 1:
        header.append(f"x ({largest:,} / {smallest:,})")
    lines = [header]
    for case in CASES:
        row = [case.name, "/".join(sorted({str(results[s][case.name].queries) for s in sizes}))]
        for size in sizes:
            cell = results[size][case.name]
            row += [cell.matched, f"{cell.sql_ms:.1f}", f"{cell.median_ms:.1f}"]
        if len(sizes) > 1:
            ratio = results[largest][case.name].median_ms / results[smallest][case.name].median_ms
            row.append(f"{ratio:.2f}")
        lines.append(row)
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of row counts: {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("row counts must be at least 1")
    return sizes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows",
        type=parse_sizes,
        default=[1000, 100_000],
        help="tracker rows to measure at, comma-separated (default: 1000,100000)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed requests per case")
    parser.add_argument("--batch", type=int, default=5000, help="rows per bulk_create batch")
    parser.add_argument(
        "--database-url",
        help="a django-environ URL (default: a SQLite file in a temporary directory); "
        "a missing MySQL/MariaDB or PostgreSQL database is created",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))

    with tempfile.TemporaryDirectory(prefix="bounce-admin-bench-") as workdir:
        database = database_config(args.database_url, Path(workdir))
        create_database(database)
        configure_django(database)

        import django
        from django.contrib.auth import get_user_model
        from django.db import connection
        from django.test import Client

        from bounce_tracker.models import EmailAddressTracker

        print(
            f"Admin address list: Python {platform.python_version()}, "
            f"Django {django.get_version()}, {database_description()}"
        )
        print(
            f"median of {args.rounds} requests after 1 warm-up, rendering included; "
            "queries and SQL ms: one more request, between the two",
            flush=True,
        )
        delete_bench_rows()
        user_model = get_user_model()
        user_model.objects.filter(username="admin-bench").delete()
        user = user_model.objects.create_superuser("admin-bench", "admin-bench@example.com", "x")
        client = Client()
        client.force_login(user)
        results: dict[int, dict[str, Measurement]] = {}
        seeded = 0
        history_pk = 0
        try:
            for size in args.rows:
                seconds = seed(seeded, size, args.batch)
                if seeded == 0:
                    history_pk = seed_history(HISTORY_EVENTS)
                seeded = size
                total = EmailAddressTracker.objects.count()
                print(
                    f"seeded {size:,} rows ({seconds:.1f} s); the table holds {total:,}",
                    flush=True,
                )
                if connection.vendor in ("mysql", "postgresql"):
                    with connection.cursor() as cursor:  # fresh statistics, as in production
                        table = EmailAddressTracker._meta.db_table
                        verb = "ANALYZE TABLE" if connection.vendor == "mysql" else "ANALYZE"
                        cursor.execute(f"{verb} {connection.ops.quote_name(table)}")
                        if connection.vendor == "mysql":
                            cursor.fetchall()
                results[size] = run_cases(client, history_pk, total, args.rounds)
        finally:
            delete_bench_rows()
            user.delete()
            connection.close()

    print()
    print(format_table(args.rows, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
