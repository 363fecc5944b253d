"""Parsing, validating and normalizing the recipient addresses of outgoing mail.

One address maps to one tracker row whatever the letter case it was written in,
so everything that looks up or stores an address goes through
:func:`normalize_email`.
"""

from __future__ import annotations

import functools
from email import _header_value_parser as header_parser
from email.errors import HeaderParseError

#: RFC 5321 section 4.5.3.1.3: a path is at most 256 octets, so an address at most 254.
MAX_ADDRESS_OCTETS = 254
#: Everything Python's ``str.splitlines`` breaks at. Not only CR and LF: Python's email
#: package folds headers with ``splitlines``, so a vertical tab or form feed in an
#: address comes out of Django as a real line break in the To/Cc/From header.
LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def has_line_break(text: str) -> bool:
    """True when ``text`` contains any character in :data:`LINE_BREAKS`."""
    return not LINE_BREAKS.isdisjoint(text)


class InvalidMessageError(ValueError):
    """A message that can't be sent safely (no recipients, a line break in a header…)."""


class InvalidAddressError(InvalidMessageError):
    """An address that cannot be sent to safely; the message says what is wrong."""


def _ascii_domain(domain: str) -> str:
    domain = domain.lower().rstrip(".")
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        # Python's IDNA 2003 codec refuses some valid IDNA 2008 names; keep them as written.
        return domain


def parse_address(value: str | tuple[str, str]) -> str:
    """The bare ``local@domain`` of a recipient as Django accepts it.

    Accepts ``alice@example.com``, ``"Alice" <alice@example.com>`` and Django's
    ``(name, address)`` tuples. Raises :class:`InvalidAddressError` naming the problem
    for line breaks, a missing ``@`` or domain, unparsable text and addresses over
    254 octets.
    """
    if isinstance(value, tuple) and len(value) == 2:
        if isinstance(value[0], str) and has_line_break(value[0]):
            raise InvalidAddressError(f"Display name {value[0]!r} contains a line break.")
        value = value[1]
    if not isinstance(value, str):
        raise InvalidAddressError(f"Recipient {value!r} is not a string.")
    return _parse_address_text(value)


# Parsing is the largest per-recipient cost of sending, and the same From address and
# many recipients repeat across a batch; invalid input raises and is not cached.
@functools.lru_cache(maxsize=8192)
def _parse_address_text(value: str) -> str:
    if has_line_break(value):
        raise InvalidAddressError(f"Address {value!r} contains a line break (CR, LF or similar).")
    if "\x00" in value:
        raise InvalidAddressError(f"Address {value!r} contains a NUL character.")
    text = value.strip()
    if not text:
        raise InvalidAddressError("Empty recipient address.")
    if "@" not in text or text.rstrip(">").rstrip().endswith("@"):
        raise InvalidAddressError(f"Address {value!r} has no '@domain' part.")
    try:
        mailbox, rest = header_parser.get_mailbox(text)
    except (HeaderParseError, ValueError, IndexError) as exc:
        raise InvalidAddressError(f"Address {value!r} cannot be parsed: {exc}") from None
    if rest:
        raise InvalidAddressError(
            f"Address {value!r} is not one mailbox; only {str(mailbox)!r} could be parsed."
        )
    local_part = mailbox.local_part
    domain = mailbox.domain
    if not local_part or not domain:
        raise InvalidAddressError(f"Address {value!r} has no '@domain' part.")
    address = f"{local_part}@{domain}"
    if len(address.encode("utf-8")) > MAX_ADDRESS_OCTETS:
        raise InvalidAddressError(
            f"Address {address[:40]!r}... is longer than {MAX_ADDRESS_OCTETS} octets."
        )
    return address


@functools.lru_cache(maxsize=8192)
def normalize_email(address: str) -> str:
    """The canonical, case-folded form of a bare address: the key of its tracker row.

    The local part is lower-cased (every common MTA treats it case-insensitively) and
    the domain is lower-cased and converted to its ASCII (IDNA) form, so
    ``Bob@Bücher.DE`` and ``bob@xn--bcher-kva.de`` are the same row.
    """
    local_part, _, domain = address.rpartition("@")
    if not local_part or not domain:
        raise InvalidAddressError(f"Address {address!r} has no '@domain' part.")
    normalized = f"{local_part.lower()}@{_ascii_domain(domain)}"
    if len(normalized.encode("utf-8")) > MAX_ADDRESS_OCTETS:
        raise InvalidAddressError(
            f"Address {address[:40]!r}... is longer than {MAX_ADDRESS_OCTETS} octets "
            "once its domain is in ASCII (IDNA) form."
        )
    return normalized
