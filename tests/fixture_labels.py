"""The label table of the bounce fixtures (``tests/fixtures/bounces/expected.json``).

One table for every fixture, keyed by the path below ``tests/fixtures/bounces``:
``captured/<mta>/…`` for messages captured from real MTAs run on this machine (see
``tests/capture``), ``held_back/…`` for the held-back set (labelled before the rules
were finished, never used to write them), plain names for the rest. Add or change a
label with this module, never by hand while others may be editing, because it locks
the table while it rewrites it::

    python -m tests.fixture_labels add captured/exim/user-unknown.eml --kind hard \\
        --status 5.1.1 --recipient nobody@example.test --family exim --language en \\
        --source captured --note "why this verdict, and where the message comes from"

    python -m tests.fixture_labels check captured/exim   # the verdicts, the rules set only
    python -m tests.fixture_labels report                # agreement on the rules set

``report --held-back`` runs the held-back set: do it once the rules are done, and
don't write rules from what it shows.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"
TABLE = FIXTURES / "expected.json"
HELD_BACK = "held_back/"
KINDS = ("hard", "soft", "delayed", "auto_reply", "complaint", "delivered", "not_bounce")
SOURCES = ("captured", "written")


def load() -> dict[str, dict]:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def is_held_back(name: str) -> bool:
    return name.startswith(HELD_BACK)


def fixture_names() -> set[str]:
    """Every ``*.eml`` below the fixtures folder, as its path relative to it."""
    return {path.relative_to(FIXTURES).as_posix() for path in FIXTURES.rglob("*.eml")}


@contextmanager
def locked_table() -> Iterator[dict[str, dict]]:
    """The table, locked against other writers; written back sorted on exit."""
    with open(FIXTURES / ".expected.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = load()
        yield table
        text = json.dumps(dict(sorted(table.items())), indent=2, ensure_ascii=False) + "\n"
        tmp = TABLE.with_suffix(".json.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(TABLE)


def _add(args: argparse.Namespace) -> int:
    name = args.name
    if not (FIXTURES / name).is_file():
        print(f"no such fixture: {FIXTURES / name}", file=sys.stderr)
        return 2
    if args.kind in ("auto_reply", "not_bounce", "complaint") and args.status:
        print("auto_reply, not_bounce and complaint carry no status", file=sys.stderr)
        return 2
    entry: dict[str, object] = {"kind": args.kind, "status": args.status}
    if args.status_class:
        entry["status_class"] = args.status_class
    entry |= {
        "recipients": [r.lower() for r in args.recipient],
        "family": args.family,
        "language": args.language,
        "source": args.source,
        "note": args.note,
    }
    with locked_table() as table:
        table[name] = entry
    return 0


def _remove(args: argparse.Namespace) -> int:
    with locked_table() as table:
        table.pop(args.name, None)
    return 0


def _verdicts(names: list[str]) -> Iterator[tuple[str, dict, object]]:
    from bounce_tracker.classify import classify_message

    table = load()
    for name in names:
        yield name, table[name], classify_message((FIXTURES / name).read_bytes())


def _check(args: argparse.Namespace) -> int:
    table = load()
    names = sorted(n for n in table if n.startswith(args.prefix) and not is_held_back(n))
    wrong = 0
    for name, entry, result in _verdicts(names):
        ok = str(result.kind) == entry["kind"]  # type: ignore[attr-defined]
        wrong += not ok
        print(
            f"{'ok ' if ok else 'BAD'} {name}: want {entry['kind']} {entry['status']}, got "
            f"{result.kind} {result.status} ({result.reason})"  # type: ignore[attr-defined]
        )
    print(f"{len(names) - wrong}/{len(names)} agree")
    return 1 if wrong else 0


def _report(args: argparse.Namespace) -> int:
    table = load()
    names = sorted(n for n in table if is_held_back(n) == args.held_back)
    kind_agree = hard_agree = 0
    for name, entry, result in _verdicts(names):
        got = str(result.kind)  # type: ignore[attr-defined]
        kind_agree += got == entry["kind"]
        hard_agree += (got == "hard") == (entry["kind"] == "hard")
        if got != entry["kind"]:
            print(f"  {name}: want {entry['kind']}, got {got}")
    total = len(names) or 1
    print(f"{'held-back' if args.held_back else 'rules'} set: {len(names)} fixtures")
    print(f"kind agreement {kind_agree}/{len(names)} = {kind_agree / total:.1%}")
    print(f"hard/not-hard agreement {hard_agree}/{len(names)} = {hard_agree / total:.1%}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fixture_labels")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add or replace one fixture's label")
    add.add_argument("name", help="path below tests/fixtures/bounces")
    add.add_argument("--kind", required=True, choices=KINDS)
    add.add_argument("--status", default=None, help="the enhanced status expected, or none")
    add.add_argument("--status-class", default="", help="with no --status: allowed classes")
    add.add_argument("--recipient", action="append", default=[])
    add.add_argument("--family", required=True, help="MTA or provider family")
    add.add_argument("--language", default="en", help="ISO 639-1 code of the report's words")
    add.add_argument("--source", required=True, choices=SOURCES)
    add.add_argument("--note", required=True, help="why this verdict; the source of the text")
    add.set_defaults(run=_add)
    remove = commands.add_parser("remove", help="drop one fixture's label")
    remove.add_argument("name")
    remove.set_defaults(run=_remove)
    check = commands.add_parser("check", help="verdicts of the rules set below a prefix")
    check.add_argument("prefix", nargs="?", default="")
    check.set_defaults(run=_check)
    report = commands.add_parser("report", help="agreement on the rules or held-back set")
    report.add_argument("--held-back", action="store_true")
    report.set_defaults(run=_report)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
