"""Bounded input: how much of a hostile message the classifier reads, and the cut.

Every limit on what one message may cost lives here: :func:`bounded_input` cuts the
raw bytes to a prefix the standard library parser takes in bounded time and memory
(at most :data:`MAX_PARSE_BYTES`, :data:`MAX_LINES` lines, :data:`MAX_BOUNDARY_LINES`
MIME boundaries, :data:`MAX_CONTAINERS` nested containers, and each ``Content-Type``
field cut to :data:`MAX_CONTENT_TYPE_BYTES`), and the other ``MAX_*`` constants cap
what the later steps walk, decode and keep.
"""

from __future__ import annotations

from bounce_tracker.classify.patterns import lazy_re

#: Bytes of the raw message handed to the parser; the rest (deep in the returned
#: original) is never needed to classify.
MAX_PARSE_BYTES = 4 * 1024 * 1024
#: Lines handed to the parser.
MAX_LINES = 100_000
#: Lines starting with "--" (MIME boundaries) handed to the parser.
MAX_BOUNDARY_LINES = 2000
#: multipart/* and message/* containers handed to the parser (bounds its recursion).
MAX_CONTAINERS = 64
#: Bytes kept of one Content-Type field (the stdlib parameter parser is quadratic).
MAX_CONTENT_TYPE_BYTES = 1024
#: MIME levels walked below the top (nested multipart or message/rfc822).
MAX_DEPTH = 10
#: MIME parts walked in all.
MAX_PARTS = 500
#: Characters of text decoded from one part.
MAX_TEXT_CHARS = 1024 * 1024
#: Characters of the report's own text (outside the original) scanned for wording.
MAX_BOUNCE_TEXT = 256 * 1024
#: Characters of one header value looked at.
MAX_HEADER_CHARS = 4000
#: Headers of one message looked at.
MAX_HEADERS = 300
#: Characters kept in ``diagnostic``.
MAX_DIAGNOSTIC_CHARS = 1000
#: Characters of diagnostic text the per-recipient decisions of one report read in
#: all. A report naming many recipients gets fewer per recipient (at most
#: :data:`~bounce_tracker.classify.diagnosis.MAX_DECISION_CHARS`, at least
#: :data:`MIN_RECIPIENT_DECISION_CHARS`), so that its cost doesn't grow with
#: recipients times diagnostic length.
MAX_REPORT_DECISION_CHARS = 256 * 1024
#: Characters of diagnostic text one recipient's decision reads however many there are.
MIN_RECIPIENT_DECISION_CHARS = 256


# A message/delivery-status part is split by the parser into one message per block
# (a blank line ends one): 10,000 blocks cost seconds under tracemalloc. Only the first
# MAX_RECIPIENT_RECORDS + 10 blocks are ever read (mime.children), and a block takes
# at most two blank lines, so the part is cut after this many blank lines, up to the
# next line that may be its boundary: what is read stays the same.
#: Blocks of a field part that are read (mime's, from dsn.MAX_RECIPIENT_RECORDS + 10).
FIELD_BLOCKS_READ = 1010
_KEPT_FIELD_BLANK_LINES = 2 * FIELD_BLOCKS_READ + 100
_DSN_PART_RE = lazy_re(rb"(?im)^content-type:[ \t]*(?:\r?\n[ \t]+)?message/delivery-status\b")
_BLANK_LINE_RE = lazy_re(rb"\n\r?(?=\n)")

_CONTAINER_RE = lazy_re(rb"(?im)^content-type:[ \t]*(?:\r?\n[ \t]+)?(?:multipart|message)/")
_CONTENT_TYPE_FIELD_RE = lazy_re(rb"(?im)^content-type:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*")


def _nth_offset(data: bytes, needle: bytes, n: int) -> int:
    """Offset of the n-th ``needle`` in ``data``, or len(data) when there are fewer."""
    if data.count(needle) < n:
        return len(data)
    offset = -1
    for _ in range(n):
        offset = data.find(needle, offset + 1)
    return offset


def bounded_input(raw: bytes) -> bytes:
    """The prefix of ``raw`` that the stdlib parser can take in bounded time and memory."""
    # Leading blank lines (mbox exports, some MTAs) would end the headers at once.
    raw = bytes(raw[:MAX_PARSE_BYTES]).lstrip(b" \t\r\n")
    if b"\n" not in raw and b"\r" in raw:
        raw = raw.replace(b"\r", b"\n")
    cut = min(
        len(raw),
        _nth_offset(raw, b"\n", MAX_LINES),
        _nth_offset(raw, b"\r", MAX_LINES),
        _nth_offset(raw, b"\n--", MAX_BOUNDARY_LINES),
    )
    for count, match in enumerate(_CONTAINER_RE.finditer(raw, 0, cut)):
        if count >= MAX_CONTAINERS:
            cut = match.start()
            break
    raw = raw[:cut]
    pieces: list[bytes] = []
    done = 0
    for match in _CONTENT_TYPE_FIELD_RE.finditer(raw):
        if match.end() - match.start() > MAX_CONTENT_TYPE_BYTES:
            pieces.append(raw[done : match.start() + MAX_CONTENT_TYPE_BYTES])
            done = match.end()
    if pieces:
        pieces.append(raw[done:])
        raw = b"".join(pieces)
    return _bounded_field_blocks(raw)


def _bounded_field_blocks(raw: bytes) -> bytes:
    """``raw`` with each delivery-status part cut after the blocks that are read."""
    if raw.count(b"\n") < _KEPT_FIELD_BLANK_LINES:
        return raw
    pieces: list[bytes] = []
    done = 0
    for match in _DSN_PART_RE.finditer(raw):
        if match.start() < done:
            continue
        body = raw.find(b"\n\n", match.end())
        body = raw.find(b"\n\r\n", match.end()) if body < 0 else body
        if body < 0:
            break
        # The part ends at the next line starting with "--" at the latest (its boundary).
        end = raw.find(b"\n--", body + 1)
        end = len(raw) if end < 0 else end
        for count, blank in enumerate(_BLANK_LINE_RE.finditer(raw, body + 1, end)):
            if count >= _KEPT_FIELD_BLANK_LINES:
                pieces.append(raw[done : blank.start()])
                done = end
                break
    if not pieces:
        return raw
    pieces.append(raw[done:])
    return b"".join(pieces)
