"""Hostile messages for the robustness tests, built here (no copied corpora).

Every builder returns the whole message as bytes. :data:`CASES` names each one with
the kinds it may be classified as when it reaches a tracked address; ``None`` means
any kind is acceptable (the message says nothing a classifier could rely on).

Large messages are built once per process (``functools.cache``).
"""

from __future__ import annotations

import base64
import functools
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tests import messages

CRLF = b"\r\n"
MB = 1024 * 1024
BOUNDARY = b"4F2A81C0.1795650239/mx.example.net"
#: What a zip-bomb member expands to (never to be decompressed by anything under test).
ZIP_BOMB_EXPANDED_BYTES = 1024 * MB

HARD = frozenset({"hard"})
BOUNCE = frozenset({"hard", "soft"})
NOT_BOUNCE = frozenset({"not_bounce"})


def dsn(**kwargs: str) -> bytes:
    """The Postfix DSN of :mod:`tests.messages`, with a fresh Message-ID each time."""
    return messages.dsn(**kwargs)


def _split(raw: bytes) -> tuple[bytes, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, body


def with_headers(raw: bytes, *lines: bytes) -> bytes:
    """``raw`` with header ``lines`` added after its first header line."""
    first, _, rest = raw.partition(CRLF)
    return first + CRLF + b"".join(line + CRLF for line in lines) + rest


def with_part(raw: bytes, part: bytes) -> bytes:
    """The DSN ``raw`` with one more MIME ``part`` (headers and body) before its end."""
    closing = b"--" + BOUNDARY + b"--"
    assert closing in raw
    return raw.replace(closing, b"--" + BOUNDARY + CRLF + part + CRLF + closing)


# --- empty and noise -----------------------------------------------------------------


def empty() -> bytes:
    return b""


def binary_noise(size: int = 64 * 1024, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def nul_bytes(size: int = MB) -> bytes:
    return b"\x00" * size


def only_newlines() -> bytes:
    return b"\r\n" * 100_000


def headers_without_body() -> bytes:
    head, _ = _split(dsn())
    return head


# --- compressed payloads -------------------------------------------------------------


@functools.cache
def _deflated_zeros() -> tuple[bytes, int]:
    """Raw deflate data for ZIP_BOMB_EXPANDED_BYTES zeros, and their CRC-32.

    Built without compressing a gigabyte: after a full flush the compressor starts
    afresh, so every 1 MiB block of zeros compresses to the same bytes.
    """
    chunk = bytes(MB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    count = ZIP_BOMB_EXPANDED_BYTES // MB
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    return block * count + compressor.flush(), crc


@functools.cache
def zip_bomb() -> bytes:
    """A zip archive of about 1 MB whose one member expands to 1 GiB of zeros."""
    data, crc = _deflated_zeros()
    name = b"invoice.pdf"
    sizes = (crc, len(data), ZIP_BOMB_EXPANDED_BYTES, len(name))
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, *sizes, 0) + name
    central = (
        struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, *sizes, 0, 0, 0, 0, 0, 0)
        + name
    )
    offset = len(local) + len(data)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), offset, 0)
    return local + data + central + end


@functools.cache
def gzip_bomb() -> bytes:
    """A gzip stream of about 1 MB that expands to 1 GiB of zeros."""
    data, crc = _deflated_zeros()
    trailer = struct.pack("<II", crc, ZIP_BOMB_EXPANDED_BYTES % 2**32)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + data + trailer


def _base64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF)


def zip_bomb_dsn() -> bytes:
    """A hard-bounce DSN carrying a zip bomb and a gzip bomb as attachments."""
    raw = with_part(
        dsn(),
        b"Content-Type: application/zip; name=invoice.zip\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=invoice.zip\r\n\r\n"
        + _base64_lines(zip_bomb()),
    )
    return with_part(
        raw,
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"Content-Encoding: gzip\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + _base64_lines(gzip_bomb()),
    )


def compressed_charset_dsn() -> bytes:
    """Parts that declare codecs which are compressors, not charsets ("zlib", "bz2")."""
    raw = dsn()
    for codec in (b"zlib", b"zlib_codec", b"bz2", b"base64", b"hex", b"rot13", b"uu"):
        raw = with_part(
            raw,
            b"Content-Type: text/plain; charset=" + codec + b"\r\n\r\n" + zlib.compress(bytes(MB)),
        )
    return raw.replace(b"charset=us-ascii", b"charset=zlib", 1)


# --- sizes ---------------------------------------------------------------------------


def dsn_with_recipients(count: int = 10_000) -> bytes:
    """One DSN naming ``count`` failed recipients, one per-recipient block each."""
    blocks = b"".join(
        b"Final-Recipient: rfc822; user%d@example.org\r\n"
        b"Action: failed\r\n"
        b"Status: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n" % index
        for index in range(count)
    )
    raw = dsn()
    marker = b"Final-Recipient:"
    at = raw.index(marker)
    return raw[:at] + blocks + raw[at:]


def one_mb_header_line() -> bytes:
    """A single unfolded header line of 1 MB."""
    return with_headers(dsn(), b"X-Junk: " + b"a" * MB)


def one_mb_subject_line() -> bytes:
    return dsn().replace(b"Subject: Undelivered", b"Subject: " + b"x" * MB + b" Undelivered", 1)


def one_mb_folded_header() -> bytes:
    """A Received header of 1 MB folded into some 14,000 continuation lines."""
    line = b"\tfrom relay.example.net (relay.example.net [192.0.2.1]) by mx.example.net"
    count = MB // (len(line) + 2)
    return with_headers(dsn(), b"Received: from a" + CRLF + CRLF.join([line] * count))


def one_mb_content_type() -> bytes:
    """A Content-Type whose parameters run to 1 MB (the stdlib parser is quadratic)."""
    params = b"".join(b';\r\n\tp%d="%s"' % (i, b"v" * 60) for i in range(MB // 70))
    return dsn().replace(
        b"Content-Type: message/delivery-status",
        b"Content-Type: message/delivery-status" + params,
        1,
    )


def one_mb_email_like_line() -> bytes:
    """1 MB of text that almost looks like addresses (regular expression work)."""
    junk = (b"a.b-c_d." * (MB // 16)) + b"@" + (b"x." * (MB // 4))
    return dsn().replace(b"This is the mail system", junk + CRLF + b"This is the mail system", 1)


def ten_thousand_parts() -> bytes:
    part = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return (
        b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        + part * 10_000
        + b"--b--\r\n"
    )


# --- MIME structure ------------------------------------------------------------------


def missing_closing_boundary() -> bytes:
    return dsn().replace(b"--" + BOUNDARY + b"--", b"")


def boundary_absent_from_body() -> bytes:
    return dsn().replace(b'boundary="' + BOUNDARY, b'boundary="no-such-boundary-' + BOUNDARY, 1)


def nested_boundary_reuse() -> bytes:
    """A nested multipart that declares the same boundary as the one around it."""
    inner = (
        b'Content-Type: multipart/mixed; boundary="' + BOUNDARY + b'"\r\n\r\n'
        b"--" + BOUNDARY + b"\r\nContent-Type: text/plain\r\n\r\ninner\r\n"
        b"--"
        + BOUNDARY
        + b'\r\nContent-Type: multipart/alternative; boundary="'
        + BOUNDARY
        + b'"\r\n\r\n--'
        + BOUNDARY
        + b"\r\n\r\ninnermost\r\n"
    )
    return with_part(dsn(), inner)


def empty_boundary() -> bytes:
    return dsn().replace(b'boundary="' + BOUNDARY + b'"', b'boundary=""', 1)


def boundary_lines_flood(count: int = 200_000) -> bytes:
    """Many boundary-looking lines (each would start a part)."""
    return with_part(dsn(), b"Content-Type: text/plain\r\n\r\n" + (b"--x\r\n" * count))


def nested_rfc822(depth: int, *, inside_dsn: bool = True) -> bytes:
    """A message/rfc822 part nested ``depth`` levels deep."""
    inner = b"From: someone@example.org\r\nSubject: level 0\r\n\r\nbody\r\n"
    for level in range(1, depth + 1):
        inner = (
            b"From: forwarder%d@example.org\r\nSubject: Fwd: level %d\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n" % (level, level)
        ) + inner
    if not inside_dsn:
        return inner
    return with_part(dsn(), b"Content-Type: message/rfc822\r\n\r\n" + inner)


def nested_multipart(depth: int = 1000) -> bytes:
    """``depth`` multiparts, each with its own boundary, none of them closed."""
    head = b"From: a@example.org\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    body = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
        for level in range(depth)
    )
    return head + body + b"Content-Type: text/plain\r\n\r\nleaf\r\n"


# --- charsets and encodings ----------------------------------------------------------


def _in_delivery_status(raw: bytes, content_type: bytes) -> bytes:
    return raw.replace(b"Content-Type: message/delivery-status", content_type, 1)


def unknown_charsets() -> bytes:
    raw = dsn().replace(b"charset=us-ascii", b"charset=x-no-such-charset-\xff", 1)
    raw = _in_delivery_status(raw, b"Content-Type: message/delivery-status; charset=klingon")
    return with_headers(raw, b"Subject: =?x-unknown?Q?caf=E9?= =?\xff\xfe?B?AAAA?=")


def invalid_utf8() -> bytes:
    raw = dsn(diagnostic="smtp; 550 5.1.1 user unknown \xe9")
    raw = raw.replace("\xe9".encode(), b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc\xed\xa0\x80")
    raw = raw.replace(b"charset=us-ascii", b"charset=utf-8", 1)
    return _in_delivery_status(raw, b"Content-Type: message/global-delivery-status; charset=utf-8")


def invalid_shift_jis() -> bytes:
    raw = dsn(diagnostic="smtp; 550 5.1.1 user unknown JUNK")
    raw = raw.replace(b"JUNK", b"\x81\x39\xff\xfc\xa0\x82\xfd\x81", 2)
    return raw.replace(b"charset=us-ascii", b"charset=shift_jis", 1)


def invalid_iso_2022_jp() -> bytes:
    raw = dsn(diagnostic="smtp; 550 5.1.1 user unknown JUNK")
    raw = raw.replace(b"JUNK", b"\x1b$B\x7f\x7f\x1b(Q\x1b$\xff\x8e", 2)
    raw = raw.replace(b"charset=us-ascii", b"charset=iso-2022-jp", 1)
    return with_headers(raw, b"Subject: =?iso-2022-jp?B?GyRCJUYlOSVIGyhC\xff?=")


def bad_encoded_words() -> bytes:
    words = [
        b"=?utf-8?B?!!!not*base64!!!?=",
        b"=?utf-8?B?QUJD?=",  # valid, between broken ones
        b"=?utf-8?B?QQ?=",  # bad padding
        b"=?utf-8?Q?=ZZ=XX=?=",
        b"=?utf-8?Q?" + b"=" * 3000 + b"?=",
        b"=?utf-8*en?B?" + b"A" * 5000 + b"?=",
        b"=?shift_jis?B?gTn//KCC/YE=?=",
        b"=?punycode?Q?xn--abc?=",
        b"=?idna?Q?" + b"a." * 500 + b"?=",
        b"=?zlib?B?eJwDAAAAAAE=?=",
        b"=??B?AAAA?=",
        b"=?utf-8?X?unknown-encoding?=",
    ]
    raw = dsn().replace(b"Subject: Undelivered", b"Subject: " + b" ".join(words) + b" Undelivered")
    return with_headers(raw, b"From: =?utf-8?B?" + b"/" * 999 + b"?= <x@example.net>")


def broken_rfc2231() -> bytes:
    raw = dsn().replace(
        b"Content-Type: text/plain; charset=us-ascii",
        b"Content-Type: text/plain; charset*=bogus'xx'%ZZ%; name*0*=utf-8''%E9%ZZ;"
        b" name*2=missing-one; name*1*=; name*=''; title*0=a; title*0=b;"
        b" charset*1*=%%%; x*99999999999999999999=overflow",
        1,
    )
    return _in_delivery_status(
        raw, b"Content-Type: message/delivery-status; charset*=us-ascii'en'%FF%FE%00"
    )


def eight_bit_headers() -> bytes:
    return with_headers(
        dsn(),
        b"Subject: Unzustellbar: \xe4\xf6\xfc Nachricht",
        b"X-Latin1: caf\xe9 cr\xe8me",
        b"X-Utf8: \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
        b"X-Overlong: \xc0\xaf\xe0\x80\xaf",
        b"X-Surrogate: \xed\xa0\x80\xed\xb0\x80",
        b"\xff\xfe-Name: value",
    )


def nul_in_headers_and_body() -> bytes:
    raw = dsn(diagnostic="smtp; 550 5.1.1 user unknown\x00\x00")
    raw = raw.replace(b"Reporting-MTA: dns; mx.example.net", b"Reporting-MTA: dns; mx\x00evil", 1)
    raw = raw.replace(b"Message-ID: <newsletter-1", b"Message-ID: <news\x00letter-1", 1)
    return with_headers(raw, b"X-Nul: a\x00b", b"Subject\x00: nul in a name")


def bare_cr() -> bytes:
    return dsn().replace(CRLF, b"\r")


def bare_lf() -> bytes:
    return dsn().replace(CRLF, b"\n")


def mixed_line_endings() -> bytes:
    endings = [b"\r\n", b"\n", b"\r", b"\n\r", b"\r\r\n"]
    lines = dsn().split(CRLF)
    return b"".join(line + endings[index % len(endings)] for index, line in enumerate(lines))


def control_characters() -> bytes:
    """Every C0 control and DEL sprinkled through the report."""
    controls = bytes(range(32)) + b"\x7f"
    return dsn(diagnostic="smtp; 550 5.1.1 user unknown CTRL").replace(b"CTRL", controls)


def utf16_body() -> bytes:
    raw = dsn().replace(b"charset=us-ascii", b"charset=utf-16", 1)
    text = "I'm sorry: user unknown \ud83d".encode("utf-16-le", "surrogatepass")
    return raw.replace(b"This is the mail system", text + b"\xd8", 1)


def base64_garbage() -> bytes:
    return _in_delivery_status(
        dsn(),
        b"Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64",
    ).replace(b"Reporting-MTA:", b"!!!!====%%%%\x00\xff", 1)


def quoted_printable_garbage() -> bytes:
    return (
        dsn()
        .replace(
            b"charset=us-ascii",
            b"charset=us-ascii\r\nContent-Transfer-Encoding: quoted-printable",
            1,
        )
        .replace(b"This is the mail system", b"=ZZ=\r\n=0=" + b"=" * 10_000, 1)
    )


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    #: Acceptable kinds when sent to a tracked address; None: any kind.
    kinds: frozenset[str] | None


CASES: list[Case] = [
    Case("empty", empty, NOT_BOUNCE),
    Case("binary noise (64 KiB)", binary_noise, NOT_BOUNCE),
    Case("NUL bytes only (1 MiB)", nul_bytes, NOT_BOUNCE),
    Case("only newlines", only_newlines, NOT_BOUNCE),
    Case("headers without body", headers_without_body, None),
    Case("zip and gzip bombs (1 GiB each) attached to a DSN", zip_bomb_dsn, HARD),
    Case("compressor codecs declared as charsets", compressed_charset_dsn, HARD),
    Case("DSN with 10,000 recipient blocks", dsn_with_recipients, HARD),
    Case("1 MB single header line", one_mb_header_line, HARD),
    Case("1 MB Subject line", one_mb_subject_line, HARD),
    Case("1 MB folded header", one_mb_folded_header, HARD),
    Case("1 MB Content-Type parameters", one_mb_content_type, BOUNCE),
    Case("1 MB address-like line", one_mb_email_like_line, HARD),
    Case("10,000 MIME parts", ten_thousand_parts, None),
    Case("missing closing boundary", missing_closing_boundary, HARD),
    Case("boundary in header absent from body", boundary_absent_from_body, BOUNCE),
    Case("nested multipart reusing the outer boundary", nested_boundary_reuse, HARD),
    Case("empty boundary", empty_boundary, BOUNCE),
    Case("200,000 boundary-like lines", boundary_lines_flood, HARD),
    Case("message/rfc822 nested 20 deep in a DSN", lambda: nested_rfc822(20), HARD),
    Case("message/rfc822 nested 1,000 deep in a DSN", lambda: nested_rfc822(1000), HARD),
    Case(
        "message/rfc822 nested 1,000 deep, no DSN",
        lambda: nested_rfc822(1000, inside_dsn=False),
        None,
    ),
    Case("multipart nested 1,000 deep", nested_multipart, None),
    Case("unknown charset names", unknown_charsets, HARD),
    Case("invalid bytes in declared utf-8", invalid_utf8, HARD),
    Case("invalid bytes in declared shift_jis", invalid_shift_jis, HARD),
    Case("invalid bytes in declared iso-2022-jp", invalid_iso_2022_jp, HARD),
    Case("RFC 2047 words with bad base64/QP/charsets", bad_encoded_words, HARD),
    Case("broken RFC 2231 parameters", broken_rfc2231, HARD),
    Case("8-bit bytes in headers", eight_bit_headers, HARD),
    Case("NUL bytes in headers and body", nul_in_headers_and_body, HARD),
    Case("bare CR line endings", bare_cr, HARD),
    Case("bare LF line endings", bare_lf, HARD),
    Case("mixed line endings", mixed_line_endings, None),
    Case("every control character", control_characters, HARD),
    Case("utf-16 declared, broken surrogate", utf16_body, HARD),
    Case("base64 delivery-status with garbage", base64_garbage, None),
    Case("quoted-printable garbage", quoted_printable_garbage, HARD),
]


def seeds() -> list[bytes]:
    """Real-looking messages that the fuzzing tests mutate."""
    return [
        messages.dsn(),
        messages.dsn(status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full"),
        messages.dsn(status="4.4.1", action="delayed", diagnostic="X-Postfix; timed out"),
        messages.dsn(status="2.0.0", action="delivered", diagnostic="smtp; 250 2.0.0 Ok"),
        messages.auto_reply(),
        messages.complaint(),
        messages.human_reply(),
        nested_boundary_reuse(),
        broken_rfc2231(),
        bad_encoded_words(),
        nested_rfc822(3),
    ]


def streamed_message(total: int) -> Iterator[bytes]:
    """Exactly ``total`` bytes: a hard-bounce DSN whose returned message never ends.

    The returned message is a rotation of hostile blocks (a 1 MiB line, base64,
    boundary lines of the enclosing multipart, nested multipart headers, NUL bytes,
    binary noise), produced on demand: the test never holds the message in memory.
    """
    raw = dsn()
    head = raw[: raw.rindex(b"--" + BOUNDARY + b"--")]
    head += b"--" + BOUNDARY + b"\r\nContent-Type: message/rfc822\r\n\r\n"
    head += b"From: News <news@example.com>\r\nSubject: the original\r\n\r\n"
    blocks = [
        b"a" * MB,
        _base64_lines(binary_noise(48 * 1024, seed=2)),
        (b"--" + BOUNDARY + b"\r\n") * 2000,
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" * 1000,
        bytes(64 * 1024),
        binary_noise(64 * 1024, seed=3),
        b"\r" * 64 * 1024,
    ]
    sent = 0
    index = 0
    piece = head
    while sent < total:
        piece = piece[: total - sent]
        yield piece
        sent += len(piece)
        piece = blocks[index % len(blocks)]
        index += 1
