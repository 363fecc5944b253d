"""Write the fuzzer's seed corpus into fuzz/corpus/ (gitignored).

Seeds: every message in tests/fixtures/bounces/*.eml, the messages built by
tests/messages.py (DSNs with several actions and statuses, an auto-reply, ARF
complaints, a human reply), and each of those with bare-LF, CRLF and bare-CR line
endings. Files are named by content hash, so re-running adds nothing twice and
leaves the inputs libFuzzer added to the directory alone.

    .venv/bin/python fuzz/make_seed_corpus.py [--out fuzz/corpus]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests import messages  # noqa: E402

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "bounces"
#: Seeds longer than this are cut: the harness runs with -max_len=65536 by default.
MAX_SEED_BYTES = 65536
# tests/messages.py numbers its Message-IDs per process; fixed here so that a rerun
# writes the same seeds.
_TEST_MESSAGE_ID_RE = re.compile(rb"<test-\d+\.\d+@")


def built_messages() -> Iterator[bytes]:
    for raw in _built_messages():
        yield _TEST_MESSAGE_ID_RE.sub(b"<test-1.1@", raw)


def _built_messages() -> Iterator[bytes]:
    yield messages.dsn()
    for status, action, diagnostic in (
        ("4.4.1", "delayed", "smtp; 451 4.4.1 connect to mx: Connection refused"),
        ("5.2.2", "failed", "smtp; 552 5.2.2 Mailbox full"),
        ("5.7.1", "failed", "smtp; 550 5.7.1 Message rejected as spam"),
        ("2.0.0", "delivered", "smtp; 250 2.0.0 Ok: queued"),
        ("5.0.0", "", "X-Postfix; host mx.example.org said: 550 no such user"),
    ):
        yield messages.dsn(status=status, action=action, diagnostic=diagnostic)
    yield messages.auto_reply()
    for feedback_type in ("abuse", "not-spam", "fraud"):
        yield messages.complaint(feedback_type)
    yield messages.human_reply()


def seeds() -> Iterator[bytes]:
    originals = [path.read_bytes() for path in sorted(FIXTURES.glob("*.eml"))]
    originals.extend(built_messages())
    for raw in originals:
        raw = raw[:MAX_SEED_BYTES]
        yield raw
        lf = raw.replace(b"\r\n", b"\n")
        yield lf
        yield lf.replace(b"\n", b"\r\n")
        yield lf.replace(b"\n", b"\r")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "corpus")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for seed in seeds():
        path = args.out / hashlib.sha1(seed).hexdigest()
        if not path.exists():
            path.write_bytes(seed)
            written += 1
    total = sum(1 for _ in args.out.iterdir())
    print(f"{args.out}: {written} new seeds, {total} files")


if __name__ == "__main__":
    main()
