"""Table-driven tests of the classifier over the corpus in ``tests/fixtures/bounces``.

Each ``*.eml`` file there is a message that reached the bounce address: DSNs and
non-DSN bounces from many MTAs and providers, delay warnings, success reports,
auto-replies, ARF complaints, human replies, spam and junk. Those with ``"source":
"captured"`` were produced by real MTAs run on this machine (``postfix-real-*`` and
``captured/<mta>/``; how, in ``tests/capture``); the rest were written by hand from
the formats (RFC 3464, 3463, 3834, 5965) and from how each MTA and provider words
its reports. ``expected.json`` (edited with :mod:`tests.fixture_labels`) holds, per
file (its path below the folder), what an independent reader expects:

- ``kind``: one of :class:`~bounce_tracker.core.kinds.BounceKind`.
- ``status``: the enhanced status code for the (first) failed recipient, or null when
  the message carries none that is clearly meant. With null, the classifier may
  report no status, or, when ``status_class`` is given, any ``x.y.z`` whose class
  digit is one of ``status_class`` (e.g. ``"5"`` or ``"45"``).
- ``recipients``: addresses that must appear among the reported recipients.
- ``family``, ``language``, ``source`` and ``note``: the MTA or provider, the language
  of the report's words (ISO 639-1), captured or written, and why this verdict.

Two sets: the rules set (every fixture but ``held_back/``) must be classified right
one by one; the held-back set was labelled before the rules were done and is only
held to :data:`MIN_HELD_BACK_HARD_AGREEMENT` as a whole, so it keeps measuring mail
the rules were not written from.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from bounce_tracker.classify import classify_message
from bounce_tracker.core.kinds import BounceKind
from tests.fixture_labels import FIXTURES, SOURCES, fixture_names, is_held_back

ALL: dict[str, dict] = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
#: The rules set: each must be classified as labelled.
EXPECTED = {name: entry for name, entry in ALL.items() if not is_held_back(name)}
HELD_BACK = {name: entry for name, entry in ALL.items() if is_held_back(name)}

STATUS_RE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
# Issue 17's floor for the whole corpus (both sets); docs/fixtures.rst has today's figures.
MIN_FILES = 300
MIN_FAMILIES = 40
MIN_LANGUAGES = 10
MIN_CAPTURED = 60
MIN_HELD_BACK = 100
LANGUAGE_RE = re.compile(r"^[a-z]{2}$")
KIND_VALUES = {kind.value for kind in BounceKind}
#: Per expected kind, the least share of its fixtures that must get that kind and the
#: expected status: what the classifier reaches today, rounded down to two places.
#: Every kind is held separately, so a rule change that breaks complaints or
#: deliveries (few fixtures) can't hide behind a good overall share. Lower a value
#: only on purpose, with the fixture that made it drop.
MIN_KIND_AGREEMENT = {
    "hard": 1.00,
    "soft": 1.00,
    "delayed": 1.00,
    "auto_reply": 1.00,
    "complaint": 1.00,
    "delivered": 1.00,
    "not_bounce": 1.00,
}
MIN_STATUS_AGREEMENT = dict(MIN_KIND_AGREEMENT)
MIN_OVERALL_KIND_AGREEMENT = 1.00
#: The share of fixtures on which hard/not-hard agrees with the label (issue 17: a
#: wrong hard suppresses a good address for good, a missed one keeps mailing a dead one).
MIN_HARD_AGREEMENT = 1.00
#: The held-back set as a whole (issue 17: at least 97 %).
MIN_HELD_BACK_HARD_AGREEMENT = 0.97


def _classify(name: str):
    return classify_message((FIXTURES / name).read_bytes())


def _status_ok(expected: dict, got: str | None) -> bool:
    if expected["status"] is not None:
        return got == expected["status"]
    if got is None:
        return True
    allowed = expected.get("status_class") or ""
    return bool(STATUS_RE.match(got)) and got[0] in allowed


def _addresses(result) -> list[str]:
    return [r.address.lower() for r in result.recipients if r.address]


# --- the corpus itself (these pass without a classifier) -----------------------------


def test_expected_json_matches_the_files():
    on_disk = fixture_names()
    assert on_disk == set(ALL), (
        f"without an entry: {sorted(on_disk - set(ALL))}; "
        f"entry without a file: {sorted(set(ALL) - on_disk)}"
    )


@pytest.mark.parametrize("name", sorted(ALL))
def test_expected_entry_is_well_formed(name):
    entry = ALL[name]
    assert entry["kind"] in KIND_VALUES
    assert entry["status"] is None or STATUS_RE.match(entry["status"])
    assert set(entry.get("status_class", "")) <= set("245")
    assert isinstance(entry["recipients"], list)
    assert all(r == r.lower() and "@" in r for r in entry["recipients"])
    assert entry["family"]
    assert entry["note"]
    assert LANGUAGE_RE.match(entry["language"])
    assert entry["source"] in SOURCES
    if name.startswith("captured/"):
        assert entry["source"] == "captured"
    if entry["kind"] in {"auto_reply", "not_bounce", "complaint"}:
        assert entry["status"] is None


def corpus_figures() -> dict[str, int]:
    return {
        "fixtures": len(ALL),
        "families": len({entry["family"] for entry in ALL.values()}),
        "languages": len({entry["language"] for entry in ALL.values()}),
        "captured": sum(entry["source"] == "captured" for entry in ALL.values()),
        "held back": len(HELD_BACK),
    }


def test_corpus_coverage():
    figures = corpus_figures()
    kinds = {entry["kind"] for entry in EXPECTED.values()}
    assert figures["fixtures"] >= MIN_FILES, figures
    assert figures["families"] >= MIN_FAMILIES, figures
    assert figures["languages"] >= MIN_LANGUAGES, figures
    assert figures["captured"] >= MIN_CAPTURED, figures
    assert figures["held back"] >= MIN_HELD_BACK, figures
    assert kinds == KIND_VALUES, sorted(KIND_VALUES - kinds)


# --- the classifier against the corpus -----------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_classify_fixture(name):
    expected = EXPECTED[name]
    result = _classify(name)
    context = (
        f"{name} ({expected['family']}): {expected['note']}\n"
        f"got kind={result.kind!s} status={result.status!r} reason={result.reason!r} "
        f"diagnostic={result.diagnostic[:200]!r}"
    )

    assert result.kind == BounceKind(expected["kind"]), context
    assert _status_ok(expected, result.status), context
    addresses = _addresses(result)
    missing = [r for r in expected["recipients"] if r not in addresses]
    assert not missing, f"{context}\nmissing recipients {missing}; got {addresses}"


def confusion_table(confusion: Counter[tuple[str, str]]) -> list[str]:
    """The confusion table as text: a row per expected kind, a column per kind got."""
    kinds = sorted({kind for pair in confusion for kind in pair})
    width = max(len(kind) for kind in kinds) + 1
    lines = ["expected \\ got".ljust(width + 5) + "".join(k[:10].rjust(11) for k in kinds)]
    for want in kinds:
        cells = "".join(str(confusion[(want, got)] or ".").rjust(11) for got in kinds)
        lines.append(f"  {want:<{width + 3}}{cells}")
    return lines


def test_accuracy_per_kind_and_overall(record_property):
    """Agreement per expected kind and over the whole corpus, each held to its minimum.

    Printed (run with -s) and recorded as properties. The per-file test above
    demands every verdict; this one says which kinds a regression hits.
    """
    confusion: Counter[tuple[str, str]] = Counter()
    per_kind: Counter[str] = Counter()
    kind_right: Counter[str] = Counter()
    status_right: Counter[str] = Counter()
    kind_agree = hard_agree = status_agree = 0
    wrong_hard: list[str] = []
    for name, expected in EXPECTED.items():
        result = _classify(name)
        got = str(result.kind)
        want = expected["kind"]
        status_ok = _status_ok(expected, result.status)
        confusion[(want, got)] += 1
        per_kind[want] += 1
        kind_right[want] += got == want
        status_right[want] += status_ok
        kind_agree += got == want
        hard_agree += (got == "hard") == (want == "hard")
        if (got == "hard") != (want == "hard"):
            wrong_hard.append(name)
        status_agree += status_ok

    total = len(EXPECTED)
    lines = [
        f"fixtures: {total}",
        f"kind agreement: {kind_agree}/{total} = {kind_agree / total:.1%}",
        f"hard/not-hard agreement: {hard_agree}/{total} = {hard_agree / total:.1%}",
        f"status agreement: {status_agree}/{total} = {status_agree / total:.1%}",
    ]
    lines += [
        f"  {kind:<10} kind {kind_right[kind]}/{per_kind[kind]}, "
        f"status {status_right[kind]}/{per_kind[kind]}"
        for kind in sorted(per_kind)
    ]
    lines += [
        f"  expected {want:<10} got {got:<10} x{count}"
        for (want, got), count in sorted(confusion.items())
        if want != got
    ]
    lines += ["confusion table:", *confusion_table(confusion)]
    print("\n".join(lines))
    record_property("kind_agreement", kind_agree / total)
    record_property("hard_agreement", hard_agree / total)
    record_property("status_agreement", status_agree / total)
    for kind in sorted(per_kind):
        record_property(f"kind_agreement_{kind}", kind_right[kind] / per_kind[kind])

    assert sum(confusion.values()) == total
    test_corpus_coverage()
    assert set(MIN_KIND_AGREEMENT) == KIND_VALUES == set(MIN_STATUS_AGREEMENT)
    below = [
        f"{kind}: {what} {right[kind]}/{per_kind[kind]} < {minimum[kind]:.0%}"
        for what, right, minimum in (
            ("kind", kind_right, MIN_KIND_AGREEMENT),
            ("status", status_right, MIN_STATUS_AGREEMENT),
        )
        for kind in sorted(per_kind)
        if right[kind] / per_kind[kind] < minimum[kind]
    ]
    assert not below, "\n".join(below)
    assert kind_agree / total >= MIN_OVERALL_KIND_AGREEMENT
    assert hard_agree / total >= MIN_HARD_AGREEMENT, f"hard/not-hard disagrees on {wrong_hard}"


def test_held_back_set(record_property):
    """The held-back set as a whole: hard/not-hard at least MIN_HELD_BACK_HARD_AGREEMENT.

    Its fixtures were labelled before the rules were done and the rules were not
    written from them; they are not demanded one by one, so they keep measuring
    mail the rules have not seen.
    """
    confusion: Counter[tuple[str, str]] = Counter()
    disagree = []
    for name, expected in sorted(HELD_BACK.items()):
        got = str(_classify(name).kind)
        confusion[(expected["kind"], got)] += 1
        if (got == "hard") != (expected["kind"] == "hard"):
            disagree.append(f"{name}: want {expected['kind']}, got {got}")
    total = len(HELD_BACK)
    kind_agree = sum(count for (want, got), count in confusion.items() if want == got)
    hard_agree = total - len(disagree)
    print(f"held-back set: {total} fixtures")
    print(f"kind agreement: {kind_agree}/{total} = {kind_agree / total:.1%}")
    print(f"hard/not-hard agreement: {hard_agree}/{total} = {hard_agree / total:.1%}")
    print("\n".join(["confusion table:", *confusion_table(confusion)]))
    record_property("held_back_kind_agreement", kind_agree / total)
    record_property("held_back_hard_agreement", hard_agree / total)
    assert hard_agree / total >= MIN_HELD_BACK_HARD_AGREEMENT, "\n".join(disagree)
