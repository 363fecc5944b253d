"""What :func:`bounce_tracker.classify.classify_message` promises for every input.

Shared by the atheris harness (fuzz/fuzz_classify.py) and the replay test
(tests/test_fuzz_regressions.py); needs no atheris.
"""

from __future__ import annotations

import re

from bounce_tracker.classify.classifier import _classify
from bounce_tracker.classify.dsn import MAX_RECIPIENT_RECORDS
from bounce_tracker.classify.limits import MAX_DIAGNOSTIC_CHARS
from bounce_tracker.core.kinds import BounceKind, Classification

# What diagnosis.enhanced_codes can produce: class 2/4/5, subject 0-7, detail 0-999
# without leading zeros.
STATUS_RE = re.compile(r"^[245]\.[0-7]\.(?:0|[1-9]\d{0,2})$")
MESSAGE_ID_RE = re.compile(r"^<[^<>\s]{1,250}>$")


class InvariantError(AssertionError):
    """A verdict that breaks the classifier's contract."""


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise InvariantError(what)


def check(result: Classification, raw: bytes) -> None:
    """Raise if ``result`` (the verdict on ``raw``) breaks a contract.

    An input that reached the catch-all (``result.failed`` set) is replayed through
    ``_classify`` so that the exception it caught surfaces with its traceback.
    """
    _require(isinstance(result, Classification), f"not a Classification: {result!r}")
    if result.failed:
        _classify(raw)
        raise InvariantError(f"catch-all reached ({result.failed}); _classify did not raise")
    _require(isinstance(result.kind, BounceKind), f"kind {result.kind!r}")
    _require(
        result.status is None or bool(STATUS_RE.match(result.status)),
        f"status {result.status!r}",
    )
    _require(isinstance(result.reason, str) and bool(result.reason), "empty reason")
    _require(
        len(result.diagnostic) <= MAX_DIAGNOSTIC_CHARS,
        f"diagnostic of {len(result.diagnostic)} characters",
    )
    _require(
        result.original_message_id is None or bool(MESSAGE_ID_RE.match(result.original_message_id)),
        f"original_message_id {result.original_message_id!r}",
    )
    _require(
        len(result.recipients) <= MAX_RECIPIENT_RECORDS, f"{len(result.recipients)} recipients"
    )
    for recipient in result.recipients:
        _require(isinstance(recipient.kind, BounceKind), f"recipient kind {recipient.kind!r}")
        _require(
            recipient.status is None or bool(STATUS_RE.match(recipient.status)),
            f"recipient status {recipient.status!r}",
        )
        _require(
            len(recipient.diagnostic) <= MAX_DIAGNOSTIC_CHARS,
            f"recipient diagnostic of {len(recipient.diagnostic)} characters",
        )
    _require(
        all(isinstance(k, str) and isinstance(v, str) for k, v in result.extra.items()),
        f"extra {result.extra!r}",
    )
