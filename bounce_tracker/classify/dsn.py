"""Reading the machine-readable fields of delivery and feedback reports.

RFC 3464 (and RFC 6533 for its UTF-8 form) writes a delivery status notification as
blocks of header-like fields: one block about the message (``Reporting-MTA``…), then
one block per recipient (``Final-Recipient``, ``Action``, ``Status``,
``Diagnostic-Code``…). RFC 5965 writes a feedback report (ARF) the same way. Real
reports bend the format: blocks without the blank line between them, fields in odd
letter case, folded lines, garbage lines in between. The parser here is lenient
about all of that, and bounded: it keeps at most :data:`MAX_RECIPIENT_RECORDS`
recipient blocks and a few kilobytes per field.

Pure standard library, no Django: it runs in the per-bounce pipe process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from bounce_tracker.classify.patterns import lazy_re
from bounce_tracker.classify.text import WS_RE

#: Recipient blocks kept from one report. A DSN naming more recipients than this is
#: either hostile or a mailing-list explosion; the rest adds nothing to the verdict.
MAX_RECIPIENT_RECORDS = 1000
#: Characters kept of one field value (after unfolding).
MAX_FIELD_CHARS = 4000
#: Fields read from one report before giving up on the rest.
MAX_FIELDS = 20000

# The fields RFC 3464 section 2.2 puts in the per-message block. Anything else
# (including unknown X- fields) belongs to the recipient block it appears in.
PER_MESSAGE_FIELDS = frozenset(
    {
        "reporting-mta",
        "dsn-gateway",
        "received-from-mta",
        "arrival-date",
        "original-envelope-id",
        "x-postfix-queue-id",
        "x-postfix-sender",
        "x-original-message-id",
    }
)
# Fields that say a block is about a recipient.
RECIPIENT_FIELDS = frozenset(
    {"final-recipient", "original-recipient", "action", "status", "diagnostic-code"}
)

_FIELD_RE = lazy_re(r"([A-Za-z][A-Za-z0-9_-]{0,76})[ \t]*:[ \t]*(.*)")
_BREAK = ("", "")


@dataclass
class ReportFields:
    """The fields of one report: the per-message block and the recipient blocks."""

    per_message: dict[str, str] = field(default_factory=dict)
    #: One dict per recipient block, field names in lower case.
    recipients: list[dict[str, str]] = field(default_factory=list)
    #: True when recipient blocks beyond :data:`MAX_RECIPIENT_RECORDS` were dropped.
    truncated: bool = False


def iter_fields(text: str) -> Iterator[tuple[str, str]]:
    """``(name, value)`` for each field in ``text``, names in lower case, values unfolded.

    A blank line yields ``("", "")`` so callers can see block boundaries. Lines that
    are neither fields nor continuations are skipped.
    """
    name = ""
    chunks: list[str] = []
    size = 0
    count = 0
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and line.strip():
            if name and size < MAX_FIELD_CHARS:
                chunks.append(line)
                size += len(line)
            continue
        if name:
            yield name, _unfold(chunks)
            name = ""
        if not line.strip():
            yield _BREAK
            continue
        match = _FIELD_RE.match(line)
        if match is None:
            continue
        count += 1
        if count > MAX_FIELDS:
            return
        name = match.group(1).lower()
        chunks = [match.group(2)]
        size = len(chunks[0])
    if name:
        yield name, _unfold(chunks)


def _unfold(chunks: list[str]) -> str:
    return WS_RE.sub(" ", " ".join(chunks)).strip()[:MAX_FIELD_CHARS]


def parse_report_fields(text: str) -> ReportFields:
    """Split a delivery-status (or feedback-report) body into its blocks.

    A new recipient block starts at a blank line, or, for reports that leave out
    the blank lines, when a field repeats within the current block.
    """
    report = ReportFields()
    current: dict[str, str] = {}

    def close() -> None:
        nonlocal current
        if current and RECIPIENT_FIELDS.intersection(current):
            if len(report.recipients) < MAX_RECIPIENT_RECORDS:
                report.recipients.append(current)
            else:
                report.truncated = True
        current = {}

    for name, value in iter_fields(text):
        if not name:
            close()
            continue
        if name in PER_MESSAGE_FIELDS:
            report.per_message.setdefault(name, value)
            continue
        if name in current:
            close()
        current[name] = value
        if report.truncated:
            break
    close()
    return report


def strip_type(value: str) -> str:
    """``"rfc822; a@b"`` → ``"a@b"``; ``"smtp; 550 …"`` → ``"550 …"``.

    RFC 3464 prefixes addresses, MTA names and diagnostics with a type and a
    semicolon. The prefix is dropped only when it looks like one (a short token).
    """
    head, sep, rest = value.partition(";")
    if sep and 0 < len(head.strip()) <= 24 and " " not in head.strip():
        return rest.strip()
    return value.strip()


def field_address(value: str) -> str | None:
    """The address in a ``Final-Recipient``/``Original-Rcpt-To`` value, or None."""
    address = strip_type(value).strip().strip("<>").strip()
    if "<" in address and ">" in address:
        address = address[address.rfind("<") + 1 : address.rfind(">")].strip()
    if not address or " " in address or len(address) > 320:
        return None
    return address
