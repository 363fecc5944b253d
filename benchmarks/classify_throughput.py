"""How fast ``classify_message`` is, how much memory it takes, and what it adds to start-up.

Three measurements, each side by side with a baseline in the same run:

throughput
    every ``tests/fixtures/bounces/**/*.eml``, every folder (or, when that corpus is
    missing, a set of generated variants) classified ``--repeat`` times per round; the
    baseline is the standard library parse alone (``email.message_from_bytes``), so the
    ratio is what the classifier adds on top of parsing. The two alternate which goes first.
hostile input
    a few crafted worst cases (10,000 recipient blocks, deep nesting, a 1 MB header
    line, unclosed HTML…), each timed once per round.
start-up
    ``python -c "import bounce_tracker.classify"`` against ``python -c "pass"`` and
    against ``import bounce_tracker.core.kinds`` (the shared vocabulary, which pulls in
    ``dataclasses``): the per-bounce pipe process pays this on every message. Wall
    and CPU time (the CPU time is steadier on a busy machine), the modules
    ``from bounce_tracker.classify import classify_message`` loads, and the first
    message a fresh process classifies (the patterns it needs are compiled then).

Memory per message: tracemalloc's peak while classifying each message once (median,
95th percentile, the largest), and the process's maximum resident set size
(``ru_maxrss``).

Run from the repository root::

    .venv/bin/python benchmarks/classify_throughput.py
    .venv/bin/python benchmarks/classify_throughput.py --rounds 9 --repeat 50

It prints tables and always exits 0: it measures, it does not judge.
"""

from __future__ import annotations

import argparse
import email
import gc
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bounce_tracker.classify import classify_message  # noqa: E402

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "bounces"
VERP = "bounces+k3q9v0c2m4x8z1w7b5n6t0r2ya@bounces.example.com"


def _generated_messages() -> dict[str, bytes]:
    """Stand-ins for the fixture corpus: a DSN, a text bounce, an auto-reply, a reply."""
    dsn = f"""From: MAILER-DAEMON@mx.example.net
To: {VERP}
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This is the mail system at host mx.example.net.

<a@example.org>: host mx.example.org said: 550 5.1.1 <a@example.org>: Recipient
    address rejected: User unknown in local recipient table (in reply to RCPT TO command)

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; a@example.org
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <a@example.org>: Recipient address rejected

--B
Content-Type: text/rfc822-headers

From: news@shop.example
To: a@example.org
Message-ID: <m1@shop.example>
Subject: Offers

--B--
"""
    qmail = f"""From: MAILER-DAEMON@mail.example.net
To: {VERP}
Subject: failure notice

Hi. This is the qmail-send program at mail.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<b@example.org>:
The users mailfolder is over the allowed quota (size). (#5.2.2)

--- Below this line is a copy of the message.

To: b@example.org
Subject: Offers

Hello
"""
    vacation = f"""From: c@example.org
To: {VERP}
Subject: Out of Office: Offers
Auto-Submitted: auto-replied

I am away until Monday.
"""
    reply = f"""From: d@example.org
To: {VERP}
Subject: Re: Offers

Please remove me from this list.
"""
    texts = {"dsn": dsn, "qmail": qmail, "vacation": vacation, "reply": reply}
    return {f"generated-{name}.eml": text.encode() for name, text in texts.items()}


def _hostile_messages() -> dict[str, bytes]:
    record = "Final-Recipient: rfc822; u{0}@example.org\nAction: failed\nStatus: 5.1.1\n\n"
    many = "".join(record.format(i) for i in range(10_000))
    dsn_head = (
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
    )
    nested = b"From: x@example.org\n" + b"Content-Type: message/rfc822\n\n" * 5000 + b"x\n"
    return {
        "10k recipient blocks": (dsn_head + many + "--B--\n").encode(),
        "5000 nested messages": nested,
        "1 MB header line": b"Subject: " + b"x" * 1_000_000 + b"\n\nbody\n",
        "1 MB of unclosed <script>": (
            b"From: MAILER-DAEMON@x.example\nSubject: Undeliverable\nContent-Type: text/html\n\n"
            + b"<script>" * 130_000
        ),
        "4 MB of newlines": b"Subject: x\n\n" + b"\n" * 4_000_000,
    }


def _load(directory: Path) -> tuple[dict[str, bytes], str]:
    files = sorted(directory.rglob("*.eml"))
    if files:
        messages = {str(path.relative_to(directory)): path.read_bytes() for path in files}
        folders = len({path.parent for path in files})
        return messages, f"{directory} ({folders} folders, recursively)"
    return _generated_messages(), "generated variants (no fixture corpus found)"


def _time(
    function: Callable[[bytes], object], messages: list[bytes], repeat: int
) -> tuple[float, float]:
    """Wall time and this process's CPU time (steadier on a busy machine)."""
    gc.collect()
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        for raw in messages:
            function(raw)
    return time.perf_counter() - start, time.process_time() - start_cpu


def _throughput(messages: dict[str, bytes], rounds: int, repeat: int) -> None:
    bodies = list(messages.values())
    count = len(bodies) * repeat
    _time(classify_message, bodies, 1)  # warm-up, not recorded
    parse_times: list[tuple[float, float]] = []
    classify_times: list[tuple[float, float]] = []
    for round_number in range(rounds):
        pair: list[tuple[list[tuple[float, float]], Callable[[bytes], object]]] = [
            (parse_times, email.message_from_bytes),
            (classify_times, classify_message),
        ]
        if round_number % 2:
            pair.reverse()
        for bucket, function in pair:
            bucket.append(_time(function, bodies, repeat))
    ratios = [c[0] / p[0] for c, p in zip(classify_times, parse_times, strict=True)]
    print(f"{'case (median of rounds)':<24} {'msgs/s':>10} {'us/msg':>10} {'msgs/s cpu':>11}")
    cases = (("parse only (baseline)", parse_times), ("classify_message", classify_times))
    for label, times in cases:
        wall = statistics.median(t[0] for t in times)
        cpu = statistics.median(t[1] for t in times)
        per = wall / count * 1e6
        print(f"{label:<24} {count / wall:>10,.0f} {per:>10.1f} {count / cpu:>11,.0f}")
    print(f"ratio classify/parse (median of rounds): {statistics.median(ratios):.2f}")


def _memory(messages: dict[str, bytes]) -> None:
    peaks: list[tuple[int, str]] = []
    for name, raw in messages.items():
        gc.collect()
        tracemalloc.start()
        classify_message(raw)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peaks.append((peak, name))
    peaks.sort(reverse=True)
    values = sorted(peak for peak, _ in peaks)
    median = statistics.median(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    mean = statistics.fmean(values)
    print(
        f"tracemalloc peak per message: median {median / 1024:,.0f} KiB, mean {mean / 1024:,.0f}"
        f" KiB, 95th percentile {p95 / 1024:,.0f} KiB; largest:"
    )
    for peak, name in peaks[:3]:
        size = len(messages[name])
        print(f"  {peak / 1024:>8,.0f} KiB  {name} ({size / 1024:,.1f} KiB raw)")


def _hostile(rounds: int) -> None:
    print(f"{'hostile input':<28} {'raw KiB':>9} {'ms':>9} {'peak KiB':>10}  verdict")
    for name, raw in _hostile_messages().items():
        times = []
        for _ in range(rounds):
            gc.collect()
            start = time.perf_counter()
            result = classify_message(raw)
            times.append(time.perf_counter() - start)
        tracemalloc.start()
        classify_message(raw)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        verdict = f"{result.kind} ({len(result.recipients)} recipients)"
        print(
            f"{name:<28} {len(raw) / 1024:>9,.0f} {statistics.median(times) * 1000:>9.1f}"
            f" {peak / 1024:>10,.0f}  {verdict}"
        )


def _startup(rounds: int, first_message: Path | None) -> None:
    def run(code: str) -> tuple[float, float]:
        """Median wall time and median CPU time (user + system) of ``python -c code``."""
        walls, cpus = [], []
        for _ in range(rounds):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
            walls.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        return statistics.median(walls), statistics.median(cpus)

    cases = [
        ("python -c pass", "pass"),
        ("import bounce_tracker.core.kinds", "import bounce_tracker.core.kinds"),
        ("import bounce_tracker.classify", "import bounce_tracker.classify"),
    ]
    if first_message is not None:
        code = (
            "from bounce_tracker.classify import classify_message; "
            f"classify_message(open({str(first_message)!r}, 'rb').read())"
        )
        cases.append(("... and classify one message", code))
    print(f"{'start-up (median of ' + str(rounds) + ')':<36} {'wall ms':>9} {'cpu ms':>9}")
    results = {}
    for label, code in cases:
        wall, cpu = results[label] = run(code)
        print(f"{label:<36} {wall * 1000:>9.1f} {cpu * 1000:>9.1f}")
    bare_wall, bare_cpu = results["python -c pass"]
    kinds_wall, kinds_cpu = results["import bounce_tracker.core.kinds"]
    wall, cpu = results["import bounce_tracker.classify"]
    print(
        f"import cost above python -c pass: +{(wall - bare_wall) * 1000:.1f} ms wall,"
        f" +{(cpu - bare_cpu) * 1000:.1f} ms cpu"
    )
    print(
        f"import cost above core.kinds: +{(wall - kinds_wall) * 1000:.1f} ms wall,"
        f" +{(cpu - kinds_cpu) * 1000:.1f} ms cpu"
    )
    modules = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; before = set(sys.modules); "
            "from bounce_tracker.classify import classify_message; "
            "print(len(set(sys.modules) - before)); "
            "print(' '.join(sorted(m for m in set(sys.modules) - before"
            " if not m.startswith('bounce_tracker'))))",
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    print(f"modules 'from bounce_tracker.classify import classify_message' loads: {modules[0]}")
    print(f"  outside bounce_tracker: {modules[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument(
        "--repeat", type=int, default=20, help="times each message is classified per round"
    )
    parser.add_argument(
        "--fixtures", type=Path, default=FIXTURES, help="directory of *.eml (searched recursively)"
    )
    args = parser.parse_args()

    messages, source = _load(args.fixtures)
    total = sum(len(raw) for raw in messages.values())
    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    print(f"messages: {len(messages)} from {source}, {total / 1024:,.0f} KiB in all")
    print(f"rounds: {args.rounds}, each message {args.repeat} times per round\n")
    _throughput(messages, args.rounds, args.repeat)
    print()
    _memory(messages)
    print()
    _hostile(args.rounds)
    print()
    first = next(iter(sorted(args.fixtures.glob("*.eml"))), None)
    _startup(max(args.rounds, 9), first)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    print(f"\nmaximum resident set size of this process: {maxrss * scale / 1024 / 1024:,.1f} MiB")


if __name__ == "__main__":
    main()
