"""What the pipe's launcher adds to a bounce: ``manage.py handle_bounce`` with and without it.

The rendered master.cf runs ``python -I -S …/ops/pipe_launcher.py manage.py
handle_bounce -- ${sender} ${recipient}``: one more interpreter start-up in front of
the command, so that a site that can't start defers its bounces instead of losing
them. This script times, side by side in interleaved rounds (every round runs each
variant once, in an order that rotates from round to round):

python -c pass
    an interpreter start-up;
python -I -S -c pass
    the launcher's own interpreter start-up (no ``site``, no PYTHON* variables);
manage.py handle_bounce
    the command run directly, as the pipe ran it before the launcher;
launcher + manage.py handle_bounce
    the same command through the launcher, as the rendered pipe runs it now.

Both handle_bounce variants record a new DSN each run (its own Message-ID) on their
own tracker row of the minimal project of ``benchmarks/pipe.py``; the counters are
checked afterwards. Run from the repository root::

    .venv/bin/python benchmarks/pipe_launcher.py                    # a new SQLite file
    .venv/bin/python benchmarks/pipe_launcher.py --database-url mysql://root:@127.0.0.1:3306/bounce_tracker_bench

It prints a table and always exits 0: it measures, it does not judge.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipe import (
    PIPE_PATH,
    REPO_ROOT,
    SETTINGS_MODULE,
    Bench,
    Seed,
    Variant,
    database_config,
    p90,
    remove_rows,
    seed_addresses,
    setup_django,
    target_addresses,
    verify,
    write_project,
)
from send_overhead import create_database, database_description

LAUNCHER = REPO_ROOT / "bounce_tracker" / "ops" / "pipe_launcher.py"
MANAGE_PY_SOURCE = """\
import os
import sys

from django.core.management import execute_from_command_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "%(settings)s")
execute_from_command_line(sys.argv)
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time manage.py handle_bounce with and without the pipe's launcher."
    )
    parser.add_argument(
        "--database-url",
        default="sqlite",
        help="a django-environ URL; 'sqlite' (default) for a new SQLite file",
    )
    parser.add_argument(
        "--runs", type=int, default=40, help="measured runs per variant (default: 40)"
    )
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2")
    return args


def build_variants(seed: Seed, env: dict[str, str], manage_py: str) -> list[Variant]:
    pipe_args = ["handle_bounce", "--", "MAILER-DAEMON"]
    return [
        Variant("python -c pass", ["-c", "pass"], env),
        Variant("python -I -S -c pass", ["-I", "-S", "-c", "pass"], env),
        Variant(
            "manage.py handle_bounce",
            [manage_py, *pipe_args, seed.verp_address(1)],
            env,
            target=1,
            expects_quiet=True,
        ),
        Variant(
            "launcher + manage.py handle_bounce",
            ["-I", "-S", str(LAUNCHER), manage_py, *pipe_args, seed.verp_address(3)],
            env,
            target=3,
            expects_quiet=True,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bounce-launcher-bench-") as tmp:
        workdir = Path(tmp)
        url, config = database_config(args.database_url, workdir)
        create_database(config)
        write_project(workdir)
        manage_py = workdir / "manage.py"
        manage_py.write_text(MANAGE_PY_SOURCE % {"settings": SETTINGS_MODULE})
        setup_django(workdir, url)

        import django
        from django.db import connection

        print(
            f"the pipe's launcher: Python {platform.python_version()}, Django "
            f"{django.get_version()}, {database_description()}, {os.cpu_count()} CPUs",
            flush=True,
        )
        seed = Seed(run_token=secrets.token_hex(3), count=5)
        env = {
            "PATH": PIPE_PATH,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(workdir)]),
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "DATABASE_URL": url,
        }
        variants = build_variants(seed, env, str(manage_py))
        try:
            seed_addresses(seed)
            connection.close()
            with ThreadPoolExecutor(max_workers=1) as pool:
                Bench(seed, workdir, 1, pool).measure(variants, args.runs)
            verification = verify(seed, variants)
        finally:
            remove_rows(seed, target_addresses(seed, variants))
    print_report(args.runs, variants, verification)
    return 0


def print_report(runs: int, variants: Sequence[Variant], verification: Sequence[str]) -> None:
    print(f"{runs} rounds after 1 warm-up round, one process per variant per round")
    print("ms: wall time of one process from start to exit; CPU ms: user+system time\n")
    width = max(len(variant.name) for variant in variants)
    print(f"{'variant':<{width}}  {'ms':>6}  {'p90 ms':>6}  {'CPU ms':>6}")
    for variant in variants:
        print(
            f"{variant.name:<{width}}  {statistics.median(variant.per_bounce) * 1000:6.1f}  "
            f"{p90(variant.per_bounce) * 1000:6.1f}  "
            f"{statistics.median(variant.cpu_per_bounce) * 1000:6.1f}"
        )
    direct, launched = variants[2], variants[3]
    pairs = list(zip(launched.per_bounce, direct.per_bounce, strict=True))
    extra_ms = statistics.median(a - b for a, b in pairs) * 1000
    ratio = statistics.median(a / b for a, b in pairs)
    extra_cpu = (
        statistics.median(
            a - b for a, b in zip(launched.cpu_per_bounce, direct.cpu_per_bounce, strict=True)
        )
        * 1000
    )
    print(
        f"\nthe launcher adds {extra_ms:+.1f} ms per bounce (median of the per-round "
        f"differences; x{ratio:.3f}), {extra_cpu:+.1f} ms CPU"
    )
    for line in verification:
        print(line)


if __name__ == "__main__":
    sys.exit(main())
