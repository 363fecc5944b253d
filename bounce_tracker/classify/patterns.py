"""Regular expressions compiled on first use, and the words a pattern cannot match without.

Two small tools that keep the classifier cheap, so its tables can stay plain tables:

:func:`lazy_re`
    ``re.compile`` deferred to the first search. Importing the classifier compiles
    nothing: the per-bounce pipe process starts in a few milliseconds, and a pattern
    a message never reaches is never compiled.
:func:`required_literals`
    strings one of which occurs in every text a pattern matches (read from the
    pattern's parse tree). :class:`~bounce_tracker.classify.convention_rules.Tier`
    uses them to run only the rules whose words occur in the text: a rule none of
    whose required strings occurs can't match anywhere, so leaving it out of the
    alternation never changes which rule matches first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# The regular expression engine's parser and compiler (CPython 3.11+). They are
# internals: on a Python where they differ, every pattern is searched on every text
# and compiled from its source (the same answers, only slower).
try:
    from re import _compiler, _parser  # type: ignore[attr-defined]
    from re import _constants as _c  # type: ignore[attr-defined]

    _ZERO_WIDTH = frozenset({_c.AT, _c.ASSERT, _c.ASSERT_NOT})
    _REPEATS = frozenset({_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT})
except (ImportError, AttributeError):  # pragma: no cover - other Pythons
    _compiler = _parser = _c = None

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up cost)
if TYPE_CHECKING:
    from typing import Any, AnyStr
__all__ = ["Alternation", "LazyPattern", "lazy_re", "required_literals"]

# What a compiled pattern offers; bound to the instance on first use, so later calls
# cost a plain attribute lookup.
_METHODS = (
    "search",
    "match",
    "fullmatch",
    "finditer",
    "findall",
    "sub",
    "subn",
    "split",
    "scanner",
    "pattern",
    "flags",
    "groups",
    "groupindex",
)


class LazyPattern:
    """A regular expression compiled the first time one of its methods is used."""

    def __init__(self, pattern: str | bytes, flags: int = 0) -> None:
        self._source = pattern
        self._flags = flags

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not set yet: compile, then bind every method.
        if name.startswith("__") or name not in _METHODS:
            raise AttributeError(name)
        compiled = re.compile(self._source, self._flags)
        for method in _METHODS:
            setattr(self, method, getattr(compiled, method))
        return getattr(compiled, name)

    def __repr__(self) -> str:
        return f"lazy_re({self._source!r}, {self._flags!r})"


def lazy_re(pattern: AnyStr, flags: int = 0) -> re.Pattern[AnyStr]:
    """Like :func:`re.compile`, but the pattern is compiled on first use."""
    return LazyPattern(pattern, flags)  # type: ignore[return-value]


def _parse(pattern: str) -> Any:
    """The parse tree of ``pattern``, or None where the parser can't be used."""
    if _parser is None:
        return None
    try:
        return _parser.parse(pattern)
    except Exception:  # another Python's internals: do without
        return None


def _strings_needed(parsed: Any) -> frozenset[str] | None:
    if parsed is None or parsed.state.flags & re.IGNORECASE:
        return None
    try:
        return _needed(parsed)
    except Exception:  # another Python's internals: do without
        return None


def required_literals(pattern: str) -> frozenset[str] | None:
    """Strings one of which every match of ``pattern`` contains; None when it can't tell.

    Case-sensitive: for patterns compiled without ``re.IGNORECASE`` (a pattern with
    an inline ``(?i)`` gets None).
    """
    return _strings_needed(_parse(pattern))


def _needed(items: Any) -> frozenset[str] | None:
    """For a sequence of parsed items: the best set of strings one of which must occur."""
    candidates: list[frozenset[str]] = []
    run: list[str] = []
    for op, av in items:
        if op is _c.LITERAL:
            run.append(chr(av))
            continue
        if op in _ZERO_WIDTH:  # consumes nothing: the literals around it are adjacent
            continue
        if run:
            candidates.append(frozenset({"".join(run)}))
            run = []
        inner: frozenset[str] | None = None
        if op is _c.SUBPATTERN:
            _group, add_flags, _del_flags, sub = av
            inner = None if add_flags & re.IGNORECASE else _needed(sub)
        elif op is _c.ATOMIC_GROUP:
            inner = _needed(av)
        elif op is _c.BRANCH:
            alternatives = [_needed(alternative) for alternative in av[1]]
            if all(alternatives):
                inner = frozenset().union(*alternatives)  # type: ignore[arg-type]
        elif op in _REPEATS:
            low, _high, sub = av
            inner = _needed(sub) if low >= 1 else None
        if inner:
            candidates.append(inner)
    if run:
        candidates.append(frozenset({"".join(run)}))
    if not candidates:
        return None
    # The most selective: the longest shortest string, then the fewest strings.
    return max(candidates, key=lambda strings: (min(map(len, strings)), -len(strings)))


#: Texts whose answer each table remembers.
MAX_REMEMBERED = 64


class Alternation:
    """Patterns tried as one alternation ``p0|p1|…`` would be: which one matches first.

    The first match is the leftmost, and at the same position the earliest pattern.
    Each pattern is searched on its own, and only when one of its
    :func:`required_literals` occurs in the text (or it has none): a pattern none of
    whose strings occurs can't match anywhere. Which strings occur is found in one
    pass (:func:`_trie`). Each pattern is parsed once, on first use of the table, and
    compiled when a text first needs it. Answers are remembered for the last
    :data:`MAX_REMEMBERED` texts (the same sentence is judged several times).
    """

    def __init__(self, patterns: Sequence[str], values: Sequence[Any]) -> None:
        self.patterns = tuple(patterns)
        self.values = tuple(values)
        self._parsed: dict[int, Any] = {}
        self._compiled: dict[int, re.Pattern[str]] = {}
        needs: dict[str, set[int]] = {}
        always: list[int] = []
        for index, pattern in enumerate(self.patterns):
            parsed = self._parsed[index] = _parse(pattern)
            strings = _strings_needed(parsed)
            if strings is None:
                always.append(index)
            for string in strings or ():
                needs.setdefault(string, set()).add(index)
        self._always = frozenset(always)
        # The scan reports the longest string found at each position: the shorter
        # ones it starts with occur there too.
        self._patterns_at: dict[str, frozenset[int]] = {
            string: frozenset().union(
                *(needs.get(string[:n], ()) for n in range(1, len(string) + 1))
            )
            for string in needs
        }
        self._scan = re.compile(f"(?=({_trie(needs)}))") if needs else None
        self._remembered: dict[str, Any] = {}

    def first(self, text: str) -> Any:
        """The value of the first pattern that matches in ``text``, or None."""
        try:
            return self._remembered[text]
        except KeyError:
            pass
        present = set(self._always)
        if self._scan is not None:
            for string in self._scan.finditer(text):
                present |= self._patterns_at[string.group(1)]
        best: int | None = None
        best_start = len(text) + 1
        for index in sorted(present):
            found = self._pattern(index).search(text)
            if found is not None and found.start() < best_start:
                best, best_start = index, found.start()
        value = None if best is None else self.values[best]
        if len(self._remembered) >= MAX_REMEMBERED:
            self._remembered.clear()
        self._remembered[text] = value
        return value

    def _pattern(self, index: int) -> re.Pattern[str]:
        try:
            return self._compiled[index]
        except KeyError:
            pass
        compiled: re.Pattern[str] | None = None
        parsed = self._parsed.pop(index, None)
        try:  # from the tree parsed already: parsing is most of the cost of compiling
            if parsed is not None:
                compiled = _compiler.compile(parsed)
        except Exception:  # another Python's internals: compile from the text
            pass
        if compiled is None:
            compiled = re.compile(self.patterns[index])
        self._compiled[index] = compiled
        return compiled


def _trie(strings: Iterable[str]) -> str:
    """A pattern matching the longest of ``strings`` that starts where it is tried.

    Nested by common prefix (``a(?:ccount|dd(?:r(?:ess)?)?)``), so the engine follows
    one branch per character instead of trying every string at every position.
    """
    tree: dict[str, Any] = {}
    for string in strings:
        node = tree
        for char in string:
            node = node.setdefault(char, {})
        node[""] = {}  # a string ends here

    def pattern(node: dict[str, Any]) -> str:
        branches = [
            re.escape(char) + pattern(child) for char, child in sorted(node.items()) if char
        ]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        # Greedy: the longer string first; where a string ends, the rest is optional.
        return f"(?:{body})?" if "" in node else body

    return pattern(tree)
