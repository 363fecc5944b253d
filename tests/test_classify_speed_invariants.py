"""What keeps the classifier cheap must not change its answers (issue 18).

- importing it compiles no pattern of its tables and loads no module it doesn't need
  to start (the per-bounce pipe pays the import on every message);
- :class:`~bounce_tracker.classify.patterns.Alternation` (each rule searched only when
  the strings it needs occur) answers exactly as the table's plain alternation would;
- :func:`~bounce_tracker.classify.patterns.required_literals` only names strings
  every match really contains.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bounce_tracker.classify import convention_rules, patterns
from bounce_tracker.classify.diagnosis import normalize_text
from bounce_tracker.classify.patterns import Alternation, LazyPattern, lazy_re, required_literals

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "bounces"

_FRESH_IMPORT = r"""
import json, sys
before = set(sys.modules)
from bounce_tracker.classify import classify_message
from bounce_tracker.classify import convention_rules, patterns
loaded = sorted(set(sys.modules) - before)
lazy = compiled = 0
for name, module in list(sys.modules.items()):
    if name.startswith("bounce_tracker.classify"):
        for value in vars(module).values():
            if isinstance(value, patterns.LazyPattern):
                lazy += 1
                compiled += "search" in vars(value)
tables = sum("_matcher" in vars(tier) for tier in convention_rules.TIERS)
print(json.dumps({"loaded": loaded, "lazy": lazy, "compiled": compiled, "tables": tables}))
"""


def _fresh_import() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _FRESH_IMPORT],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return json.loads(out)


def test_importing_the_classifier_compiles_none_of_its_patterns():
    found = _fresh_import()
    assert found["lazy"] > 50  # the module-level patterns are lazy ones
    assert found["compiled"] == 0
    assert found["tables"] == 0  # the convention's tiers are built on first use


def test_importing_the_classifier_loads_only_what_it_needs_to_start():
    loaded = set(_fresh_import()["loaded"])
    # Loaded on first use, or never for most messages.
    for module in ("json", "email.message", "email.utils", "email.parser", "socket", "typing"):
        assert module not in loaded, module
    assert not any(name.startswith("django") for name in loaded)


def test_a_lazy_pattern_behaves_like_the_compiled_one():
    lazy = lazy_re(r"(\d+)-(\w+)", re.IGNORECASE)
    plain = re.compile(r"(\d+)-(\w+)", re.IGNORECASE)
    assert isinstance(lazy, LazyPattern)
    text = "a 12-Ab, 7-x"
    assert lazy.search(text).groups() == plain.search(text).groups()  # type: ignore[union-attr]
    assert lazy.findall(text) == plain.findall(text)
    assert lazy.sub("#", text) == plain.sub("#", text)
    assert [m.span() for m in lazy.finditer(text)] == [m.span() for m in plain.finditer(text)]
    assert lazy.match(text) is None
    assert lazy.pattern == plain.pattern
    assert lazy.flags == plain.flags
    with pytest.raises(AttributeError):
        lazy.no_such_method  # noqa: B018


@pytest.mark.parametrize(
    ("pattern", "contained"),
    [
        (r"\buser unknown\b", ["user unknown"]),
        (r"\bno such (?:user|mailbox)", ["no such user", "no such mailbox"]),
        (r"recip(?:ient)?notfound|resolver\.adr\.", ["recipnotfound", "resolver.adr.x"]),
        (r"\bquota\b|mailbox (?:is )?full", ["over quota", "mailbox is full"]),
        (r"(?:a|b)c{2,}d", ["accd", "bcccd"]),
    ],
)
def test_required_literals_are_in_every_match(pattern, contained):
    strings = required_literals(pattern)
    assert strings
    for text in contained:
        assert re.search(pattern, text)
        assert any(string in text for string in strings), (pattern, text, strings)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [(r"x*", None), (r"(?i)user", None), (r"[ab]|c", None), (r"\w+ unknown?", {" unknow"})],
)
def test_required_literals_says_none_when_a_match_may_lack_every_string(pattern, expected):
    assert required_literals(pattern) == (None if expected is None else frozenset(expected))


def _texts() -> list[str]:
    """Normalized lines of the labelled fixtures (the held-back set is not read)."""
    texts = []
    for path in sorted(FIXTURES.glob("*.eml")):
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()[:60]
        texts += [normalize_text(line) for line in lines if line.strip()]
        texts.append(normalize_text(" ".join(lines)))
    return texts


def test_each_tier_answers_as_its_plain_alternation():
    texts = _texts()
    assert len(texts) > 1000
    for tier in convention_rules.TIERS:
        plain = re.compile(
            "|".join(f"(?P<r{i}>{rule.pattern})" for i, rule in enumerate(tier.rules))
        )
        fresh = Alternation([rule.pattern for rule in tier.rules], tier.rules)
        for text in texts:
            found = plain.search(text)
            expected = tier.rules[int(found.lastgroup[1:])] if found and found.lastgroup else None
            assert fresh.first(text) is expected, (tier.name, text)
            assert tier.match(text) is expected, (tier.name, text)


def test_without_the_engine_internals_every_rule_is_searched_with_the_same_answers(monkeypatch):
    """On a Python whose re internals differ, the prefilter is left out, not the rules."""
    monkeypatch.setattr(patterns, "_parser", None)
    monkeypatch.setattr(patterns, "_compiler", None)
    texts = _texts()[:400]
    for tier in convention_rules.TIERS:
        fallback = Alternation([rule.pattern for rule in tier.rules], tier.rules)
        assert fallback._always == frozenset(range(len(tier.rules)))
        assert required_literals(tier.rules[0].pattern) is None
        plain = re.compile(
            "|".join(f"(?P<r{i}>{rule.pattern})" for i, rule in enumerate(tier.rules))
        )
        for text in texts:
            found = plain.search(text)
            expected = tier.rules[int(found.lastgroup[1:])] if found and found.lastgroup else None
            assert fallback.first(text) is expected, (tier.name, text)
