"""A report's own words next to each recipient it names, and the sentence that fails.

A text bounce (and the human-readable part of a DSN) names several addresses, each
with its own reason. :class:`Snippets` cuts the report's text into a window per
address, from one mention to the next mention of another address, so that each
recipient is decided from its own words. :func:`decision_share` keeps the text all
decisions of one report read bounded however many recipients it names;
:func:`key_sentence` picks the line that states a failure, for ``diagnostic``.
"""

from __future__ import annotations

import re

from bounce_tracker.classify import diagnosis
from bounce_tracker.classify.diagnosis import enhanced_codes
from bounce_tracker.classify.dsn import MAX_RECIPIENT_RECORDS
from bounce_tracker.classify.limits import (
    MAX_REPORT_DECISION_CHARS,
    MIN_RECIPIENT_DECISION_CHARS,
)
from bounce_tracker.classify.patterns import lazy_re
from bounce_tracker.classify.report import Report
from bounce_tracker.classify.text import ADDRESS_RE, clip

_SUCCESS_REPLY_LINE_RE = lazy_re(r"^[ \t]*<<<[ \t]*[123]\d\d[ -][^\n]*\n?", re.MULTILINE)
_SUMMARY_LINE_RE = lazy_re(
    r"^[ \t]*(?:subject|betreff|objet|asunto|oggetto|onderwerp|assunto|temat|sent|date|datum"
    r"|gesendet|envoy[ée]|enviado|inviato)[ \t]*:[^\n]*\n?|^[^\n]{0,100}\bsubject of the message"
    r"[^\n]*\n?",
    re.IGNORECASE | re.MULTILINE,
)
_HEADERISH_LINE_RE = lazy_re(
    r"^[ \t]*(?:message-id|references|in-reply-to|x-[\w-]{1,60}|received|dkim-signature"
    r"|list-[\w-]{1,30}|thread-index|authentication-results|arc-[\w-]{1,30}|return-path"
    r"|from|sender|reply-to|errors-to|mail from|>>>)[ \t]*:?",
    re.IGNORECASE,
)


def decision_share(count: int) -> int:
    """Characters of text one recipient's decision reads, in a report naming ``count``."""
    share = MAX_REPORT_DECISION_CHARS // max(count, 1)
    return max(MIN_RECIPIENT_DECISION_CHARS, min(diagnosis.MAX_DECISION_CHARS, share))


def _decision_text(text: str) -> str:
    """Bounce wording without lines that only echo the original or our side of SMTP."""
    text = _SUCCESS_REPLY_LINE_RE.sub("", text)
    return _SUMMARY_LINE_RE.sub("", text)


class Snippets:
    """The words of a text bounce next to each recipient it names."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.text = _decision_text(report.text)
        self.whole = self.text[: diagnosis.MAX_DECISION_CHARS]
        self._windows: dict[str, list[str]] | None = None

    def addresses(self) -> list[str]:
        """The addresses the text names (not ours, not system mailboxes), in order."""
        return list(self._collect())

    def for_address(self, address: str) -> str:
        """The words next to ``address`` ("" when the text doesn't name it)."""
        return "\n".join(self._collect().get(address.lower(), []))[: diagnosis.MAX_DECISION_CHARS]

    def _collect(self) -> dict[str, list[str]]:
        if self._windows is not None:
            return self._windows
        found: list[tuple[int, str]] = []
        for line_match in re.finditer(r"[^\n]{1,20000}", self.text):
            line = line_match.group(0)
            if "@" not in line or _HEADERISH_LINE_RE.match(line):
                continue
            for match in ADDRESS_RE.finditer(line):
                address = match.group(1).strip(".").lower()
                if not self.report.is_excluded(address):
                    found.append((line_match.start() + match.start(), address))
                if len(found) >= 4 * MAX_RECIPIENT_RECORDS:
                    break
        # Each mention of an address opens a window that runs to the next mention of
        # a different address (at most 2000 characters).
        next_other = [len(self.text)] * len(found)
        for index in range(len(found) - 2, -1, -1):
            if found[index + 1][1] != found[index][1]:
                next_other[index] = found[index + 1][0]
            else:
                next_other[index] = next_other[index + 1]
        windows: dict[str, list[str]] = {}
        sizes: dict[str, int] = {}
        for index, (start, address) in enumerate(found):
            if address not in windows and len(windows) >= MAX_RECIPIENT_RECORDS:
                continue
            chunks = windows.setdefault(address, [])
            if sizes.get(address, 0) < diagnosis.MAX_DECISION_CHARS:
                chunk = self.text[start : min(start + 2000, next_other[index])]
                chunks.append(chunk)
                sizes[address] = sizes.get(address, 0) + len(chunk)
        self._windows = windows
        return windows


def key_sentence(text: str) -> str:
    """The line of ``text`` that states the failure, with its continuation lines."""
    lines = [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        if enhanced_codes(line) or diagnosis.basic_codes(line) or diagnosis.failure_evidence(line):
            chunk = [line]
            for follower in lines[index + 1 : index + 4]:
                if not follower:
                    break
                chunk.append(follower)
            return clip(" ".join(chunk))
    return clip(" ".join(line for line in lines if line)[:300])
