"""Reading bounces from a mailbox over IMAP or POP3 (``manage.py poll_bounce_mailbox``).

For sites whose bounces land in a mailbox they can only read remotely, instead of
being piped or handed over LMTP by their own Postfix. Each message is fed through
:func:`bounce_tracker.receiving.receive.receive_message`, like ``handle_bounce`` does, with
``source=EventSource.MAILBOX``:

- **Which address.** A mailbox message has no envelope, so the VERP address comes
  from its delivery headers: the first address whose domain is ``BOUNCE_DOMAIN`` in
  ``Delivered-To``, then ``X-Original-To``, ``Envelope-To``, ``X-Envelope-To``,
  then ``To`` and ``Cc``. The sender is the ``Return-Path`` (empty for a DSN).
- **Unrelated mail** (no such address) is left exactly as it was: only its header
  fields are read, with ``BODY.PEEK`` (no ``\\Seen`` flag) or POP3 ``TOP``.
- **What is removed** (or, over IMAP, moved to ``MAILBOX_PROCESSED_FOLDER``): the
  messages the database now holds, that is those recorded, recognised as
  duplicates (recorded by an earlier run that stopped before removing them) and
  stored as unmatched mail (the same three outcomes for which ``handle_bounce``
  exits 0 and Postfix deletes its copy). Messages are removed only after they were
  committed, so a crash at any point loses nothing and counts nothing twice: the
  next run finds the leftovers again, sees duplicates and removes them.
- **Errors.** A database error stops the run (:class:`PollFailedError`) after
  removing what was already recorded; the failed message and the rest stay for the
  next run. Any other error with one message (a classifier bug, say) is logged and
  counted; the message stays and the run goes on with the next.
"""

from __future__ import annotations

import contextlib
import dataclasses
import imaplib
import logging
import poplib
import re
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from django.db import DatabaseError

from bounce_tracker.core.events import Outcome
from bounce_tracker.core.settings import normalize_domain
from bounce_tracker.models import EventSource
from bounce_tracker.receiving.receive import IncomingMessage, MessageBuilder, receive_message
from bounce_tracker.receiving.settings import ReceivingSettings

logger = logging.getLogger("bounce_tracker")

MailProtocol = Literal["imap", "pop3"]
Security = Literal["plain", "starttls", "tls"]

#: URL scheme: (protocol, transport security, default port).
SCHEMES: dict[str, tuple[MailProtocol, Security, int]] = {
    "imap": ("imap", "plain", 143),
    "imap+starttls": ("imap", "starttls", 143),
    "imaps": ("imap", "tls", 993),
    "pop3": ("pop3", "plain", 110),
    "pop3+starttls": ("pop3", "starttls", 110),
    "pop3s": ("pop3", "tls", 995),
}

#: Headers naming the address a message was delivered to, most reliable first.
ADDRESS_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to", "cc")
_HEADER_FIELDS = (*ADDRESS_HEADERS, "return-path")

#: Seconds a mailbox server may take to answer one command.
TIMEOUT = 60.0
#: Messages whose header fields are fetched in one IMAP command.
HEADER_BATCH = 500
#: Messages fetched in one IMAP command (and removed together afterwards).
BODY_BATCH = 100
#: Header bytes read per POP3 message to find its address.
POP3_HEADER_BYTES = 64 * 1024

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_FOLD_RE = re.compile(r"\r?\n[ \t]+")
_FETCH_START_RE = re.compile(rb"^\d+ \(")
_UID_RE = re.compile(rb"\bUID (\d+)")
_SIZE_RE = re.compile(rb"\bRFC822\.SIZE (\d+)")


class MailboxError(Exception):
    """The mailbox could not be reached, read or changed now."""


class PollFailedError(Exception):
    """The run stopped early (database or mailbox unavailable); try again later."""


# --- Settings ------------------------------------------------------------------


@dataclass(frozen=True)
class MailboxURL:
    """A parsed ``MAILBOX_URL``; :meth:`redacted` is the form to show anyone."""

    scheme: str
    protocol: MailProtocol
    security: Security
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    folder: str

    def redacted(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = f"/{quote(self.folder, safe='')}" if self.protocol == "imap" else ""
        return f"{self.scheme}://{quote(self.username, safe='')}@{host}:{self.port}{path}"


def parse_mailbox_url(url: object) -> MailboxURL:
    """Parse ``MAILBOX_URL``; ``ValueError`` says what is wrong, never showing the password."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("it is not a non-empty string.")
    if _CONTROL_RE.search(url):
        raise ValueError("it contains control characters or whitespace line breaks.")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"the scheme is not one of {', '.join(SCHEMES)}.")
    protocol, security, default_port = SCHEMES[scheme]
    if parts.query or parts.fragment:
        raise ValueError("it has a '?' or '#' part (percent-encode them in the password).")
    try:
        port = parts.port or default_port
        host = parts.hostname
    except ValueError:
        raise ValueError(
            "the port is not a number from 1 to 65535 (percent-encode '/', '?', '#' and "
            "'@' in the user name and password)."
        ) from None
    if not host:
        raise ValueError("it names no host.")
    if parts.username is None or not unquote(parts.username):
        raise ValueError("it names no user.")
    if parts.password is None:
        raise ValueError("it has no password (USER:PASSWORD@HOST).")
    folder = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
    if protocol == "pop3" and folder:
        raise ValueError("POP3 has only one mailbox: remove the /FOLDER part.")
    if _CONTROL_RE.search(folder):
        raise ValueError("the folder name contains control characters.")
    return MailboxURL(
        scheme=scheme,
        protocol=protocol,
        security=security,
        host=host,
        port=port,
        username=unquote(parts.username),
        password=unquote(parts.password),
        folder=folder or "INBOX",
    )


def processed_folder_problem(folder: object, url: MailboxURL | None) -> str | None:
    """What is wrong with ``MAILBOX_PROCESSED_FOLDER`` for ``url``, or None."""
    if folder is None:
        return None
    if not isinstance(folder, str) or not folder.strip():
        return "must be a folder name or None."
    if _CONTROL_RE.search(folder):
        return "contains control characters."
    if url is not None and url.protocol == "pop3":
        return "is set, but MAILBOX_URL is a POP3 mailbox, which can only delete messages."
    if url is not None and _same_folder(folder, url.folder):
        return "is the folder being polled."
    return None


def _same_folder(first: str, second: str) -> bool:
    if first.upper() == "INBOX" or second.upper() == "INBOX":
        return first.upper() == second.upper()
    return first == second


# --- Which message is for which address ------------------------------------------


def header_fields(data: bytes) -> list[tuple[str, str]]:
    """``(lower-case name, unfolded value)`` for each header field of a message or header block."""
    end = re.search(rb"\r?\n\r?\n", data)
    text = data[: end.start() if end else len(data)].decode("utf-8", "replace")
    fields = []
    for line in _FOLD_RE.sub(" ", text).splitlines():
        name, colon, value = line.partition(":")
        if colon and name and not name[0].isspace():
            fields.append((name.strip().lower(), value.strip()))
    return fields


def bounce_address(fields: Iterable[tuple[str, str]], bounce_domain: str) -> str | None:
    """The first address at ``bounce_domain`` in the delivery headers, then To and Cc."""
    values: dict[str, list[str]] = {}
    for name, value in fields:
        values.setdefault(name, []).append(value)
    for name in ADDRESS_HEADERS:
        for _, address in getaddresses(values.get(name, [])):
            local, at, domain = address.strip().rpartition("@")
            if at and local and normalize_domain(domain) == bounce_domain:
                return address.strip()
    return None


def return_path(fields: Iterable[tuple[str, str]]) -> str:
    """The address in the first ``Return-Path`` header; empty for ``<>`` or none."""
    for name, value in fields:
        if name == "return-path":
            addresses = getaddresses([value])
            return addresses[0][1].strip() if addresses else ""
    return ""


def incoming_message(raw: bytes, size: int) -> IncomingMessage:
    """The message as the other receive paths see it: LF line ends, ``size`` its full size.

    IMAP and POP3 hand out CRLF lines; Postfix's pipe and the LMTP receiver LF ones.
    Normalising keeps the content hash (and so the duplicate check of a message without
    a Message-ID) the same whichever way a copy arrived.
    """
    data = raw.replace(b"\r\n", b"\n")
    builder = MessageBuilder(len(data))
    builder.write(data)
    message = builder.finish()
    if size > len(raw):  # only the first MAX_MESSAGE_BYTES were fetched
        message = dataclasses.replace(message, size=size)
    return message


# --- One run -----------------------------------------------------------------------


@dataclass
class PollSummary:
    """What one run did."""

    recorded: int = 0
    duplicates: int = 0
    unmatched: int = 0
    removed: int = 0
    unrelated: int = 0
    errors: int = 0
    seconds: float = 0.0
    moved_to: str | None = None

    @property
    def processed(self) -> int:
        return self.recorded + self.duplicates + self.unmatched

    def add(self, other: PollSummary) -> None:
        for name in ("recorded", "duplicates", "unmatched", "removed", "unrelated", "errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds

    def line(self) -> str:
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        removed = f"moved to {self.moved_to}" if self.moved_to else "removed"
        return (
            f"{self.recorded} recorded, {self.duplicates} duplicate(s), "
            f"{self.unmatched} unmatched, {self.removed} {removed}, "
            f"{self.unrelated} unrelated left alone, {self.errors} error(s) "
            f"in {self.seconds:.2f} s ({rate:.0f} messages/s)"
        )


class MailboxPoller:
    """Reads one mailbox once: :meth:`run` returns a :class:`PollSummary`.

    ``should_stop`` is asked between messages (a signal handler sets it); the
    messages recorded so far are still removed before :meth:`run` returns.
    """

    def __init__(
        self,
        url: MailboxURL,
        tracker_settings: ReceivingSettings,
        *,
        processed_folder: str | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        timeout: float = TIMEOUT,
    ) -> None:
        problem = processed_folder_problem(processed_folder, url)
        if problem:
            raise ValueError(f"MAILBOX_PROCESSED_FOLDER {problem}")
        self.url = url
        self.settings = tracker_settings
        self.processed_folder = processed_folder
        self.should_stop = should_stop
        self.timeout = timeout
        self.summary = PollSummary(moved_to=processed_folder)

    def run(self) -> PollSummary:
        """Poll once. Raises :class:`PollFailedError` when the run had to stop early."""
        started = time.perf_counter()
        self.summary = PollSummary(moved_to=self.processed_folder)
        try:
            if self.url.protocol == "imap":
                self._run_imap()
            else:
                self._run_pop3()
        except DatabaseError as exc:
            raise PollFailedError(f"database error, stopped: {_one_line(exc)}") from exc
        except (MailboxError, OSError, imaplib.IMAP4.error, poplib.error_proto) as exc:
            raise PollFailedError(f"mailbox {self.url.redacted()}: {_one_line(exc)}") from exc
        finally:
            self.summary.seconds = time.perf_counter() - started
        return self.summary

    # -- the shared part ----------------------------------------------------------

    def _receive(self, raw: bytes, size: int, recipient: str, sender: str, where: str) -> bool:
        """Record one message; True when the database has it now (so it may go)."""
        message = incoming_message(raw, size)
        try:
            result = receive_message(
                message,
                sender,
                recipient,
                source=EventSource.MAILBOX,
                tracker_settings=self.settings,
            )
        except DatabaseError:
            logger.error("mailbox %s to=<%s>: database error, stopping", where, recipient)
            raise
        except Exception:  # one bad message must not block the rest of the mailbox
            logger.exception(
                "mailbox %s to=<%s>: not recorded, left in the mailbox", where, recipient
            )
            self.summary.errors += 1
            return False
        if result.outcome == Outcome.RECORDED:
            self.summary.recorded += 1
        elif result.outcome == Outcome.DUPLICATE:
            self.summary.duplicates += 1
        else:
            self.summary.unmatched += 1
        logger.info(
            "mailbox %s to=<%s> size=%d%s %s kind=%s",
            where,
            recipient,
            message.size,
            " truncated" if message.truncated else "",
            result.outcome,
            result.kind,
        )
        return True

    def _address(self, fields: list[tuple[str, str]], where: str) -> str | None:
        address = bounce_address(fields, self.settings.bounce_domain)
        if address is None:
            self.summary.unrelated += 1
            logger.debug("mailbox %s: not for %s, left alone", where, self.settings.bounce_domain)
        return address

    # -- IMAP -------------------------------------------------------------------------

    def _run_imap(self) -> None:
        connection = self._imap_connect()
        try:
            capabilities = self._imap_login(connection)
            _ok(connection.select(imap_quote(self.url.folder)), f"SELECT {self.url.folder}")
            if self.processed_folder:
                self._imap_ensure_folder(connection, self.processed_folder)
            data = _ok(connection.uid("SEARCH", "ALL"), "UID SEARCH")
            uids = [int(uid) for uid in b" ".join(d for d in data if isinstance(d, bytes)).split()]
            for start in range(0, len(uids), HEADER_BATCH):
                if self.should_stop():
                    break
                self._imap_batch(connection, capabilities, uids[start : start + HEADER_BATCH])
        finally:
            with contextlib.suppress(Exception):
                connection.logout()  # LOGOUT, not CLOSE: CLOSE would expunge others' \Deleted

    def _imap_connect(self) -> imaplib.IMAP4:
        url = self.url
        if url.security == "tls":
            return imaplib.IMAP4_SSL(
                url.host, url.port, ssl_context=ssl.create_default_context(), timeout=self.timeout
            )
        connection = imaplib.IMAP4(url.host, url.port, timeout=self.timeout)
        if url.security == "starttls":
            try:
                connection.starttls(ssl.create_default_context())
            except BaseException:
                with contextlib.suppress(Exception):
                    connection.shutdown()
                raise
        return connection

    def _imap_login(self, connection: imaplib.IMAP4) -> set[str]:
        user, password = self.url.username, self.url.password
        if (user + password).isascii():
            connection.login(user, password)
        else:  # LOGIN is ASCII-only in imaplib; AUTHENTICATE PLAIN carries UTF-8
            plain = b"\0" + user.encode() + b"\0" + password.encode()
            connection.authenticate("PLAIN", lambda _challenge: plain)
        data = _ok(connection.capability(), "CAPABILITY")
        return {
            word.upper()
            for item in data
            if isinstance(item, bytes)
            for word in item.decode().split()
        }

    def _imap_ensure_folder(self, connection: imaplib.IMAP4, folder: str) -> None:
        if not any(_ok(connection.list('""', imap_quote(folder)), "LIST")):
            _ok(connection.create(imap_quote(folder)), f"CREATE {folder}")

    def _imap_batch(
        self, connection: imaplib.IMAP4, capabilities: set[str], uids: list[int]
    ) -> None:
        """Find the bounce address of each message in ``uids``; receive those that have one."""
        items = f"(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({' '.join(_HEADER_FIELDS).upper()})])"
        headers = _fetch(connection, uids, items)
        wanted: list[tuple[int, int, str, str]] = []
        for uid in uids:
            if uid not in headers:
                continue  # expunged meanwhile by someone else
            size, header_block = headers[uid]
            fields = header_fields(header_block)
            address = self._address(fields, f"uid={uid}")
            if address is not None:
                wanted.append((uid, size, address, return_path(fields)))
        for group in self._groups(wanted):
            if self.should_stop():
                return
            self._imap_receive(connection, capabilities, group)

    def _groups(
        self, wanted: list[tuple[int, int, str, str]]
    ) -> Iterator[list[tuple[int, int, str, str]]]:
        """Groups of at most BODY_BATCH messages and about MAX_MESSAGE_BYTES of data."""
        budget = self.settings.max_message_bytes
        group: list[tuple[int, int, str, str]] = []
        total = 0
        for item in wanted:
            size = min(item[1], budget)
            if group and (len(group) >= BODY_BATCH or total + size > budget):
                yield group
                group, total = [], 0
            group.append(item)
            total += size
        if group:
            yield group

    def _imap_receive(
        self,
        connection: imaplib.IMAP4,
        capabilities: set[str],
        group: list[tuple[int, int, str, str]],
    ) -> None:
        limit = self.settings.max_message_bytes
        whole = [uid for uid, size, _, _ in group if size <= limit]
        bodies = _fetch(connection, whole, "(UID BODY.PEEK[])") if whole else {}
        done: list[int] = []
        try:
            for uid, size, address, sender in group:
                if self.should_stop():
                    break
                if size > limit:  # only the first MAX_MESSAGE_BYTES, partial FETCH
                    part = _fetch(connection, [uid], f"(UID BODY.PEEK[]<0.{limit}>)")
                    raw = part[uid][1] if uid in part else None
                else:
                    raw = bodies[uid][1] if uid in bodies else None
                if raw is None:
                    continue  # gone meanwhile
                if self._receive(raw, size, address, sender, f"uid={uid}"):
                    done.append(uid)
        finally:
            if done:
                self._imap_remove(connection, capabilities, done)

    def _imap_remove(
        self, connection: imaplib.IMAP4, capabilities: set[str], uids: list[int]
    ) -> None:
        uid_set = imap_uid_set(uids)
        folder = self.processed_folder
        if folder and "MOVE" in capabilities:
            _ok(connection.uid("MOVE", uid_set, imap_quote(folder)), f"UID MOVE to {folder}")
        else:
            if folder:
                _ok(connection.uid("COPY", uid_set, imap_quote(folder)), f"UID COPY to {folder}")
            _ok(connection.uid("STORE", uid_set, "+FLAGS.SILENT", r"(\Deleted)"), "UID STORE")
            if "UIDPLUS" in capabilities:
                _ok(connection.uid("EXPUNGE", uid_set), "UID EXPUNGE")
            else:  # also expunges messages others flagged \Deleted: what they asked for
                _ok(connection.expunge(), "EXPUNGE")
        self.summary.removed += len(uids)

    # -- POP3 -------------------------------------------------------------------------

    def _run_pop3(self) -> None:
        connection = self._pop3_connect()
        finished = False
        try:
            connection.user(self.url.username)
            connection.pass_(self.url.password)
            _, listing, _ = connection.list()
            numbers = [int(line.split()[0]) for line in listing]
            pending = 0
            try:
                for number in numbers:
                    if self.should_stop():
                        break
                    if self._pop3_one(connection, number):
                        connection.dele(number)
                        pending += 1
            finally:
                # QUIT commits the deletions, also when a database error stopped the run.
                connection.quit()
                finished = True
                self.summary.removed += pending
        finally:
            if not finished:
                with contextlib.suppress(Exception):
                    connection.close()  # no QUIT: the server deletes nothing

    def _pop3_connect(self) -> poplib.POP3:
        url = self.url
        if url.security == "tls":
            return poplib.POP3_SSL(
                url.host, url.port, context=ssl.create_default_context(), timeout=self.timeout
            )
        connection = poplib.POP3(url.host, url.port, timeout=self.timeout)
        if url.security == "starttls":
            connection.stls(ssl.create_default_context())
        return connection

    def _pop3_one(self, connection: poplib.POP3, number: int) -> bool:
        where = f"pop3 #{number}"
        limit = self.settings.max_message_bytes
        retrieved = None
        try:
            header_block, _ = pop3_multiline(connection, f"TOP {number} 0", POP3_HEADER_BYTES)
        except poplib.error_proto:  # TOP is optional in POP3: read the message instead
            retrieved = pop3_multiline(connection, f"RETR {number}", limit)
            header_block = retrieved[0]
        fields = header_fields(header_block)
        address = self._address(fields, where)
        if address is None:
            return False
        raw, total = retrieved or pop3_multiline(connection, f"RETR {number}", limit)
        return self._receive(raw, total, address, return_path(fields), where)


# --- Protocol helpers ------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    reason = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def _ok(response: tuple[str, list[Any]], what: str) -> list[Any]:
    """The data of an OK IMAP response; anything else raises :class:`MailboxError`."""
    typ, data = response
    if typ != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise MailboxError(f"{what} failed: {typ} {detail}".strip())
    return data


def imap_quote(name: str) -> str:
    """A mailbox name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501)."""
    encoded = _modified_utf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _modified_utf7(text: str) -> str:
    import base64

    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            chunk = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(chunk).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in text:
        if " " <= char <= "~":
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def imap_uid_set(uids: Iterable[int]) -> str:
    """``1:3,7,9:10`` for 1, 2, 3, 7, 9, 10."""
    ranges: list[list[int]] = []
    for uid in sorted(set(uids)):
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in ranges)


def _fetch(connection: imaplib.IMAP4, uids: list[int], items: str) -> dict[int, tuple[int, bytes]]:
    """``{uid: (RFC822.SIZE or 0, the one literal fetched)}`` for a UID FETCH of ``items``."""
    typ, data = connection.uid("FETCH", imap_uid_set(uids), items)
    if typ != "OK":
        raise MailboxError(f"UID FETCH failed: {typ} {data!r:.200}")
    records: list[list[bytes]] = []  # [metadata, literal]
    for item in data:
        if isinstance(item, tuple):
            records.append([item[0], item[1]])
        elif isinstance(item, bytes):
            if _FETCH_START_RE.match(item) or not records:
                records.append([item, b""])  # a response without a literal
            else:
                records[-1][0] += item  # the rest of the response after its literal
    found: dict[int, tuple[int, bytes]] = {}
    for meta, literal in records:
        uid = _UID_RE.search(meta)
        if uid is None:
            continue  # an unsolicited FLAGS update
        size = _SIZE_RE.search(meta)
        found[int(uid.group(1))] = (int(size.group(1)) if size else 0, literal)
    return found


def pop3_multiline(connection: poplib.POP3, command: str, max_bytes: int) -> tuple[bytes, int]:
    """Send a POP3 command with a multi-line answer; (its first ``max_bytes``, its size).

    poplib's own ``retr`` keeps the whole message in memory and rejects lines longer
    than 2048 bytes; this reads any message in bounded memory.
    """
    connection.sock.sendall(command.encode("ascii") + b"\r\n")
    status = connection.file.readline(8192)
    if not status.startswith(b"+OK"):
        raise poplib.error_proto(f"{command.split()[0]}: {status.decode(errors='replace').strip()}")
    kept = bytearray()
    size = 0
    at_line_start = True
    while True:
        piece = connection.file.readline(64 * 1024)
        if not piece:
            raise MailboxError(f"the connection closed during {command.split()[0]}")
        if at_line_start:
            if piece in (b".\r\n", b".\n"):
                break
            if piece.startswith(b"."):
                piece = piece[1:]  # dot-stuffing
        at_line_start = piece.endswith(b"\n")
        size += len(piece)
        if len(kept) < max_bytes:
            kept += piece[: max_bytes - len(kept)]
    return bytes(kept), size
