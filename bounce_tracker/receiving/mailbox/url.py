"""``MAILBOX_URL`` and ``MAILBOX_PROCESSED_FOLDER``: parsing and checking them.

No Django and no network: :mod:`bounce_tracker.receiving.settings` uses it to
validate the two keys (checks ``E016`` and ``E017``). Its errors describe the value,
never where it came from (a setting or a command-line option): the caller says that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

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

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


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
        """The URL without the password."""
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
