"""Replay fuzz/regressions/: inputs the fuzzer (or a reviewer) found odd, kept forever.

Each file is a whole message as bytes. The classifier must return a verdict that
keeps every contract :func:`fuzz.invariants.check` knows (the same check the atheris
harness in fuzz/fuzz_classify.py runs); no database, no atheris needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bounce_tracker.classify import classifier, classify_message, delivery_status
from bounce_tracker.classify.diagnosis import failure_kind
from bounce_tracker.classify.limits import MAX_REPORT_DECISION_CHARS
from bounce_tracker.core.kinds import BounceKind
from fuzz.invariants import check

REGRESSIONS = Path(__file__).resolve().parent.parent / "fuzz" / "regressions"
FILES = sorted(path for path in REGRESSIONS.iterdir() if path.is_file())


def test_there_are_regression_inputs():
    assert len(FILES) >= 3


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_regression_input_gets_a_valid_verdict(path):
    raw = path.read_bytes()
    check(classify_message(raw), raw)


def test_the_harness_surfaces_an_input_that_reaches_the_catch_all(monkeypatch):
    def broken(report: object) -> None:
        raise KeyError("injected")

    monkeypatch.setattr(classifier, "classify_dsn", broken)
    raw = (REGRESSIONS / "utf7-lone-surrogate-in-inline-headers.eml").read_bytes()
    result = classify_message(raw)
    assert result.failed == "KeyError: 'injected'"
    with pytest.raises(KeyError, match="injected"):  # replayed: the caught exception again
        check(result, raw)


def test_utf7_lone_surrogates_do_not_reach_the_catch_all():
    # UTF-7 decodes "+2D0-" to a lone surrogate, which header decoding used to choke on.
    result = classify_message(
        (REGRESSIONS / "utf7-lone-surrogate-in-inline-headers.eml").read_bytes()
    )
    assert result.kind == BounceKind.SOFT
    assert not result.failed, result.extra.get("traceback")


def test_a_long_feedback_type_is_clipped():
    result = classify_message((REGRESSIONS / "arf-feedback-type-3000-chars.eml").read_bytes())
    assert result.kind == BounceKind.COMPLAINT
    assert result.recipients[0].address == "reader@example.org"
    assert result.diagnostic.startswith("Feedback-Type: abusexxx")
    assert len(result.reporting_mta) <= 255


def _many_recipient_dsn(count: int, diagnostic: str) -> bytes:
    records = "".join(
        f"\nFinal-Recipient: rfc822; user{i}@example.org\nAction: failed\nStatus: 5.0.0\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n"
        for i in range(count)
    )
    return (
        "From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail Returned to Sender\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nDelivery failed.\n"
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n"
        f"{records}--b--\n"
    ).encode()


def test_decision_text_of_one_report_is_bounded_in_all(monkeypatch):
    # 300 recipients with 3,000-character diagnostics (1 MB, what one part may hold)
    # used to cost 300 full-length decisions; now the report shares one budget.
    read: list[int] = []

    def counting(status, text):
        read.append(len(text))
        return failure_kind(status, text)

    monkeypatch.setattr(delivery_status, "failure_kind", counting)
    words = "lorem ipsum dolor sit amet consectetur " * 80
    raw = _many_recipient_dsn(300, words[:3000] + " 550 5.1.1 user unknown")
    result = classify_message(raw)
    check(result, raw)
    assert len(result.recipients) == 300
    assert result.status == "5.1.1"  # codes are still read from the whole diagnostic
    assert len(read) >= 300  # every recipient's decision went through the patched call
    assert sum(read) <= 2 * MAX_REPORT_DECISION_CHARS


def test_a_few_recipients_still_get_their_whole_diagnostic():
    raw = _many_recipient_dsn(3, "x " * 1500 + " 550 5.1.1 user unknown")
    result = classify_message(raw)
    assert result.kind == BounceKind.HARD
    assert [r.kind for r in result.recipients] == [BounceKind.HARD] * 3
