"""VERP: the per-recipient envelope sender (return path) that bounces come back to.

Every copy of a message is sent with the return path
``<prefix><delimiter><code>@<BOUNCE_DOMAIN>``. The whole local part is stored in
``EmailAddressTracker.encoded_from``, so a bounce is matched by looking that up,
never by decoding: values imported from the original PHP table keep matching.

Two forms of ``<code>``:

``token`` (default)
    26 lower-case base32 characters of a keyed HMAC of the address. Stable for an
    address, unguessable without the key (a forged bounce can't name a real
    customer), immune to MTAs that change letter case, and short enough that the
    local part stays within RFC 5321's 64 octets for any address.
``readable`` (opt-in, the original recipe)
    ``<user>=<domain>``, e.g. ``sentto-brian=example.com``. Anyone can forge a
    bounce for any address in this form. Falls back to the token when the result
    would be longer than 64 octets or is not plain unquoted ASCII.
"""

from __future__ import annotations

import base64
import re

from django.utils.crypto import salted_hmac

from bounce_tracker.core.addresses import InvalidAddressError, has_line_break, normalize_email
from bounce_tracker.core.settings import MAX_LOCAL_PART_OCTETS, TOKEN_LENGTH, TrackerSettings

_TOKEN_SALT = "bounce_tracker.core.verp.token"
# RFC 5322 atext plus '.', excluding the delimiters Postfix might split on is not needed:
# Postfix splits at the first delimiter only, which is the one after the prefix.
_DOT_ATOM_RE = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$"
)


def address_token(email: str, secret: bytes | None) -> str:
    """The stable, unguessable token for an address: lower-case letters and digits."""
    digest = salted_hmac(
        _TOKEN_SALT, normalize_email(email), secret=secret, algorithm="sha256"
    ).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:TOKEN_LENGTH]


def readable_code(email: str) -> str | None:
    """``user=domain`` for an address, or None when that can't be used unquoted."""
    user, _, domain = normalize_email(email).rpartition("@")
    code = f"{user}={domain}"
    if not code.isascii() or not _DOT_ATOM_RE.match(code):
        return None
    return code


def encode_local_part(email: str, tracker_settings: TrackerSettings) -> str:
    """The VERP local part for a new address, as stored in ``encoded_from``."""
    head = f"{tracker_settings.verp_prefix}{tracker_settings.verp_delimiter}"
    if tracker_settings.verp_format == "readable":
        code = readable_code(email)
        if code is not None and len(head) + len(code) <= MAX_LOCAL_PART_OCTETS:
            return head + code
    return head + address_token(email, tracker_settings.verp_secret)


def return_path(local_part: str, tracker_settings: TrackerSettings) -> str:
    """The envelope sender ``<local part>@<BOUNCE_DOMAIN>``.

    Raises :class:`~bounce_tracker.core.addresses.InvalidAddressError` for a stored local
    part with a line break (only possible in rows written outside this app, e.g. a
    bad legacy import): it would end the SMTP ``MAIL FROM`` command early.
    """
    if has_line_break(local_part):
        raise InvalidAddressError(f"VERP local part {local_part!r} contains a line break.")
    return f"{local_part}@{tracker_settings.bounce_domain}"


def local_part_of(recipient: str) -> str:
    """The lower-cased local part of a bounce recipient such as ``Bounces+Tok@Domain``."""
    local_part, _, _ = recipient.strip().strip("<>").rpartition("@")
    return (local_part or recipient.strip().strip("<>")).lower()


def parse_readable(local_part: str, tracker_settings: TrackerSettings) -> str | None:
    """The address named by a readable VERP local part, or None if it isn't one.

    Only for reporting (e.g. unmatched mail): a readable local part is forgeable, so
    matching is always done through ``encoded_from``.
    """
    head = f"{tracker_settings.verp_prefix}{tracker_settings.verp_delimiter}"
    if not local_part.lower().startswith(head):
        return None
    user, sep, domain = local_part[len(head) :].rpartition("=")
    if not sep or not user or "." not in domain:
        return None
    return f"{user}@{domain}".lower()
