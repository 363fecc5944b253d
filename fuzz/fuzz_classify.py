"""Coverage-guided fuzzing of the bounce classifier with atheris (libFuzzer).

Feeds arbitrary bytes to :func:`bounce_tracker.classify.classify_message` and checks
what it promises for every input (:func:`fuzz.invariants.check`). A finding is any of:

- an exception escaping ``classify_message`` (it must never raise);
- an input that reaches its catch-all (``failed`` set, ``reason="classifier failed: …"``):
  the catch-all is a safety net, not a code path, so the input is replayed through
  ``_classify`` to raise the caught exception with its traceback;
- a verdict that breaks an invariant: kind not a BounceKind, a status that is not an
  RFC 3463 code, a diagnostic longer than MAX_DIAGNOSTIC_CHARS, more than
  MAX_RECIPIENT_RECORDS recipients, a malformed original Message-ID;
- a hang (libFuzzer's ``-timeout``) or runaway memory (``-rss_limit_mb``).

Run it through ``make fuzz`` (see fuzz/README.md), or directly::

    .venv/bin/python fuzz/fuzz_classify.py fuzz/corpus fuzz/regressions \\
        -max_total_time=600 -rss_limit_mb=2048 -max_len=65536 -timeout=10 \\
        -artifact_prefix=fuzz/crashes/

Given file names instead of directories, it replays those inputs once each.

The classifier imports nothing from Django (see its module docstring), so no
settings are configured here: a Django import creeping into it would show up as an
ImproperlyConfigured finding at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Instrument the classifier and the stdlib email parser it drives, so that new
# branches in either count as progress. Nothing may import bounce_tracker before.
with atheris.instrument_imports(include=["bounce_tracker", "email"]):
    # message_from_bytes imports the parser lazily: import it here to instrument it.
    import email.feedparser
    import email.parser  # noqa: F401

    from bounce_tracker.classify import classify_message

# Only now: it imports bounce_tracker, which must be instrumented first.
from fuzz.invariants import check


def test_one_input(data: bytes) -> None:
    check(classify_message(data), data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
