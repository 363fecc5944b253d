"""One pass over an IMAP folder for the mailbox poller (``MailboxPoller``).

Header fields are fetched in batches with ``BODY.PEEK`` (no ``\\Seen`` flag), so
unrelated mail stays exactly as it was; the messages for the bounce domain are
fetched whole (or their first ``MAX_MESSAGE_BYTES``) in groups, received through the
poller, and those the database now holds are moved to ``MAILBOX_PROCESSED_FOLDER``
(``UID MOVE``, else ``UID COPY`` then delete) or deleted (``\\Deleted`` then
``UID EXPUNGE``, else ``EXPUNGE``). The session ends with LOGOUT, never CLOSE, which
would expunge what others flagged ``\\Deleted``.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import re
from collections.abc import Iterable, Iterator
from typing import Any

from bounce_tracker.receiving.mailbox.connection import MailboxError, MailboxReader, MailClient
from bounce_tracker.receiving.mailbox.headers import HEADER_FIELDS, header_fields, return_path

#: Messages whose header fields are fetched in one IMAP command.
HEADER_BATCH = 500
#: Messages fetched in one IMAP command (and removed together afterwards).
BODY_BATCH = 100

_FETCH_START_RE = re.compile(rb"^\d+ \(")
_UID_RE = re.compile(rb"\bUID (\d+)")
_SIZE_RE = re.compile(rb"\bRFC822\.SIZE (\d+)")

IMAP_CLIENT: MailClient[imaplib.IMAP4] = MailClient(
    plain=imaplib.IMAP4,
    tls=lambda host, port, ctx, t: imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=t),
    starttls=imaplib.IMAP4.starttls,
    abandon=imaplib.IMAP4.shutdown,
)

#: (uid, size, VERP address, sender) of a message to receive.
Wanted = tuple[int, int, str, str]


class IMAPReader(MailboxReader[imaplib.IMAP4]):
    """Reads the poller's IMAP folder once."""

    client = IMAP_CLIENT

    def read(self, connection: imaplib.IMAP4) -> None:
        """Log in, receive every message for the bounce domain, log out."""
        try:
            capabilities = self.login(connection)
            ok(connection.select(imap_quote(self.url.folder)), f"SELECT {self.url.folder}")
            if self.poller.processed_folder:
                self.ensure_folder(connection, self.poller.processed_folder)
            data = ok(connection.uid("SEARCH", "ALL"), "UID SEARCH")
            uids = [int(uid) for uid in b" ".join(d for d in data if isinstance(d, bytes)).split()]
            for start in range(0, len(uids), HEADER_BATCH):
                if self.poller.should_stop():
                    break
                self.batch(connection, capabilities, uids[start : start + HEADER_BATCH])
        finally:
            with contextlib.suppress(Exception):
                connection.logout()  # LOGOUT, not CLOSE: CLOSE would expunge others' \Deleted

    def login(self, connection: imaplib.IMAP4) -> set[str]:
        """Log in; the server's capabilities (upper case) once logged in."""
        user, password = self.url.username, self.url.password
        if (user + password).isascii():
            connection.login(user, password)
        else:  # LOGIN is ASCII-only in imaplib; AUTHENTICATE PLAIN carries UTF-8
            plain = b"\0" + user.encode() + b"\0" + password.encode()
            connection.authenticate("PLAIN", lambda _challenge: plain)
        data = ok(connection.capability(), "CAPABILITY")
        return {
            word.upper()
            for item in data
            if isinstance(item, bytes)
            for word in item.decode().split()
        }

    def ensure_folder(self, connection: imaplib.IMAP4, folder: str) -> None:
        """Create ``folder`` when the server has none of that name."""
        if not any(ok(connection.list('""', imap_quote(folder)), "LIST")):
            ok(connection.create(imap_quote(folder)), f"CREATE {folder}")

    def batch(self, connection: imaplib.IMAP4, capabilities: set[str], uids: list[int]) -> None:
        """Find the bounce address of each message in ``uids``; receive those that have one."""
        items = f"(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({' '.join(HEADER_FIELDS).upper()})])"
        headers = fetch(connection, uids, items)
        wanted: list[Wanted] = []
        for uid in uids:
            if uid not in headers:
                continue  # expunged meanwhile by someone else
            size, header_block = headers[uid]
            fields = header_fields(header_block)
            address = self.poller.address(fields, f"uid={uid}")
            if address is not None:
                wanted.append((uid, size, address, return_path(fields)))
        for group in self.groups(wanted):
            if self.poller.should_stop():
                return
            self.receive_group(connection, capabilities, group)

    def groups(self, wanted: list[Wanted]) -> Iterator[list[Wanted]]:
        """Groups of at most BODY_BATCH messages and about MAX_MESSAGE_BYTES of data."""
        budget = self.poller.settings.max_message_bytes
        group: list[Wanted] = []
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

    def receive_group(
        self, connection: imaplib.IMAP4, capabilities: set[str], group: list[Wanted]
    ) -> None:
        """Fetch and receive ``group``; remove the messages received, also on an error."""
        limit = self.poller.settings.max_message_bytes
        whole = [uid for uid, size, _, _ in group if size <= limit]
        bodies = fetch(connection, whole, "(UID BODY.PEEK[])") if whole else {}
        done: list[int] = []
        try:
            for uid, size, address, sender in group:
                if self.poller.should_stop():
                    break
                if size > limit:  # only the first MAX_MESSAGE_BYTES, partial FETCH
                    part = fetch(connection, [uid], f"(UID BODY.PEEK[]<0.{limit}>)")
                    raw = part[uid][1] if uid in part else None
                else:
                    raw = bodies[uid][1] if uid in bodies else None
                if raw is None:
                    continue  # gone meanwhile
                if self.poller.receive(raw, size, address, sender, f"uid={uid}"):
                    done.append(uid)
        finally:
            if done:
                self.remove(connection, capabilities, done)

    def remove(self, connection: imaplib.IMAP4, capabilities: set[str], uids: list[int]) -> None:
        """Move ``uids`` to the processed folder, or delete them."""
        uid_set = imap_uid_set(uids)
        folder = self.poller.processed_folder
        if folder and "MOVE" in capabilities:
            ok(connection.uid("MOVE", uid_set, imap_quote(folder)), f"UID MOVE to {folder}")
        else:
            if folder:
                ok(connection.uid("COPY", uid_set, imap_quote(folder)), f"UID COPY to {folder}")
            ok(connection.uid("STORE", uid_set, "+FLAGS.SILENT", r"(\Deleted)"), "UID STORE")
            if "UIDPLUS" in capabilities:
                ok(connection.uid("EXPUNGE", uid_set), "UID EXPUNGE")
            else:  # also expunges messages others flagged \Deleted: what they asked for
                ok(connection.expunge(), "EXPUNGE")
        self.poller.summary.removed += len(uids)


# --- Protocol helpers ------------------------------------------------------------


def ok(response: tuple[str, list[Any]], what: str) -> list[Any]:
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


def fetch(connection: imaplib.IMAP4, uids: list[int], items: str) -> dict[int, tuple[int, bytes]]:
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
