"""The ``BOUNCE_TRACKER`` settings dict: defaults, the shared keys, and how rooms read theirs.

Settings are read when they are used, never at import time, so that tests can
override them and a missing setting fails where it matters (a system check, the
backend's constructor, a command's start) rather than on ``import bounce_tracker``.

Every key has its default here (:data:`DEFAULTS`, the one reference). The keys every
room reads (the bounce domain, the VERP form, the soft-bounce rule, the stored-size
caps) are validated here (:func:`core_problems`) and read with :func:`get_settings`.
Each room validates only the keys it reads, beside its code:
:mod:`bounce_tracker.sending.settings` (``BACKEND``, ``POLICY``,
``SEND_WHEN_DATABASE_DOWN``) and :mod:`bounce_tracker.receiving.settings`
(``MAX_MESSAGE_BYTES``, the mailbox keys). So a mistake in one room's key stops that
room and no other: a bad ``MAILBOX_URL`` never stops ``send_mail()``. The system
checks (:mod:`bounce_tracker.checks`) report every room's problems, each with its ID.

This module imports nothing from the rest of the app.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

T = TypeVar("T")

#: RFC 5321: a local part is at most 64 octets.
MAX_LOCAL_PART_OCTETS = 64
#: Length of a VERP token in characters (lower-case base32); see :mod:`bounce_tracker.core.verp`.
TOKEN_LENGTH = 26
#: Delimiters that Postfix's ``recipient_delimiter`` can use without quoting.
ALLOWED_DELIMITERS = ("+", "-", "_", ".")

DEFAULTS: dict[str, Any] = {
    # Where bounces come back: the envelope sender is <local part>@BOUNCE_DOMAIN.
    "BOUNCE_DOMAIN": None,
    # The local part before the delimiter, e.g. "bounces" in bounces+<token>@...
    "VERP_PREFIX": "bounces",
    # Must agree with Postfix's recipient_delimiter.
    "VERP_DELIMITER": "+",
    # "token" (unguessable HMAC token) or "readable" (<user>=<domain>, the original recipe).
    "VERP_FORMAT": "token",
    # Key for the VERP token HMAC; None derives one from SECRET_KEY.
    "VERP_SECRET": None,
    # The backend that really sends the mail.
    "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    # Dotted path to the policy callable; see bounce_tracker.policy.
    "POLICY": "bounce_tracker.policy.default_policy",
    # Soft-bounce suppression: the last N counted bounces (1..3) all within the window.
    "SOFT_BOUNCE_LIMIT": 3,
    "SOFT_BOUNCE_WINDOW_DAYS": 14,
    # Evaluate the policy and report what it would suppress, but send everything.
    "OBSERVE_ONLY": False,
    # Bytes of an incoming bounce kept for parsing; the rest is read and discarded.
    "MAX_MESSAGE_BYTES": 5 * 1024 * 1024,
    # Bytes of the raw message stored with each bounce event or unmatched message.
    "RAW_MESSAGE_MAX_BYTES": 256 * 1024,
    # Unmatched messages kept (the newest); older ones are deleted as new ones arrive.
    "UNMATCHED_MAX_MESSAGES": 10_000,
    # Sending while the database is unreachable: "fail" (raise; nothing is sent) or
    # "send_untracked" (send with the computed VERP return path, no policy, no counts).
    "SEND_WHEN_DATABASE_DOWN": "fail",
    # The bounce mailbox manage.py poll_bounce_mailbox reads: imap://, imaps://,
    # imap+starttls://, pop3://, pop3s:// or pop3+starttls://user:password@host[:port][/FOLDER].
    "MAILBOX_URL": None,
    # Where the poller moves the messages it recorded (IMAP only); None deletes them.
    "MAILBOX_PROCESSED_FOLDER": None,
}

_PREFIX_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$")
# A DNS name: labels of letters, digits and hyphens (IDN domains in their A-label form).
_DOMAIN_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

VerpFormat = Literal["token", "readable"]


@dataclass(frozen=True)
class Problem:
    """A bad setting: the check ID, what is wrong and how to fix it."""

    id: str
    msg: str
    hint: str
    level: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class TrackerSettings:
    """The validated keys every room reads, with defaults filled in.

    The rooms' own settings (:class:`~bounce_tracker.sending.settings.SendingSettings`,
    :class:`~bounce_tracker.receiving.settings.ReceivingSettings`) extend it, so any
    of them can be passed where these are needed.
    """

    bounce_domain: str
    verp_prefix: str
    verp_delimiter: str
    verp_format: VerpFormat
    verp_secret: bytes | None
    soft_bounce_limit: int
    soft_bounce_window: timedelta
    observe_only: bool
    raw_message_max_bytes: int
    unmatched_max_messages: int


def raw_settings() -> dict[str, Any]:
    """The user's ``BOUNCE_TRACKER`` dict (unvalidated), or ``{}`` when unset."""
    value = getattr(django_settings, "BOUNCE_TRACKER", {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured("settings.BOUNCE_TRACKER must be a dict. (bounce_tracker.E000)")
    return dict(value)


def merged_settings(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then ``settings.BOUNCE_TRACKER``, then ``overrides`` (upper-case keys)."""
    merged = dict(DEFAULTS)
    merged.update(raw_settings())
    if overrides:
        merged.update(overrides)
    return merged


def normalize_domain(domain: str) -> str:
    """Lower-case a domain and convert an IDN to its ASCII (A-label) form."""
    domain = domain.strip().rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _is_valid_domain(domain: object) -> bool:
    if not isinstance(domain, str) or not domain or len(domain) > 253:
        return False
    ascii_domain = normalize_domain(domain)
    labels = ascii_domain.split(".")
    return len(labels) >= 2 and all(_DOMAIN_LABEL_RE.match(label) for label in labels)


def describe(values: Mapping[str, Any], key: str) -> str:
    """``BOUNCE_TRACKER['KEY'] = <value>``, for problem messages."""
    return f"BOUNCE_TRACKER[{key!r}] = {values.get(key)!r}"


def import_setting(
    values: Mapping[str, Any], key: str, check_id: str
) -> tuple[Any, Problem | None]:
    """The object a dotted-path setting names, or the problem (``check_id``) importing it."""
    path = values.get(key)
    hint = f"Set BOUNCE_TRACKER[{key!r}] to a dotted path such as {DEFAULTS[key]!r}."
    if not isinstance(path, str) or not path:
        return None, Problem(check_id, f"{describe(values, key)} is not a dotted path.", hint)
    try:
        return import_string(path), None
    except ImportError as exc:
        return None, Problem(check_id, f"{describe(values, key)} cannot be imported: {exc}", hint)


def _domain_problems(values: Mapping[str, Any]) -> list[Problem]:
    hint = "Set it to the domain whose MX is your Postfix, e.g. 'bounces.example.com'."
    if not values.get("BOUNCE_DOMAIN"):
        return [Problem("bounce_tracker.E001", "BOUNCE_TRACKER['BOUNCE_DOMAIN'] is not set.", hint)]
    if not _is_valid_domain(values["BOUNCE_DOMAIN"]):
        message = f"{describe(values, 'BOUNCE_DOMAIN')} is not a fully qualified domain name."
        return [Problem("bounce_tracker.E001", message, hint)]
    return []


def _verp_problems(values: Mapping[str, Any]) -> list[Problem]:
    problems = []
    prefix = values.get("VERP_PREFIX")
    max_prefix = MAX_LOCAL_PART_OCTETS - 1 - TOKEN_LENGTH
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix) or len(prefix) > max_prefix:
        problems.append(
            Problem(
                "bounce_tracker.E002",
                f"{describe(values, 'VERP_PREFIX')} is not a usable local part prefix.",
                f"Use 1 to {max_prefix} lower-case letters, digits, '.', '-' or '_', "
                "starting and ending with a letter or digit.",
            )
        )
    delimiter = values.get("VERP_DELIMITER")
    if delimiter not in ALLOWED_DELIMITERS:
        problems.append(
            Problem(
                "bounce_tracker.E003",
                f"{describe(values, 'VERP_DELIMITER')} is not supported.",
                f"Use one of {' '.join(ALLOWED_DELIMITERS)}, the same as Postfix's "
                "recipient_delimiter.",
            )
        )
    elif isinstance(prefix, str) and delimiter in prefix:
        problems.append(
            Problem(
                "bounce_tracker.E003",
                f"{describe(values, 'VERP_PREFIX')} contains the delimiter {delimiter!r}.",
                "Postfix splits the local part at the first delimiter; keep it out of the prefix.",
            )
        )
    if values.get("VERP_FORMAT") not in ("token", "readable"):
        problems.append(
            Problem(
                "bounce_tracker.E009",
                f"{describe(values, 'VERP_FORMAT')} is not supported.",
                "Use 'token' (the default, unguessable) or 'readable' (<user>=<domain>).",
            )
        )
    secret = values.get("VERP_SECRET")
    if secret is not None and (not isinstance(secret, str | bytes) or len(secret) < 16):
        problems.append(
            Problem(
                "bounce_tracker.E010",
                "BOUNCE_TRACKER['VERP_SECRET'] must be at least 16 characters long, or None.",
                "Leave it unset to derive the key from SECRET_KEY.",
            )
        )
    return problems


def _threshold_problems(values: Mapping[str, Any]) -> list[Problem]:
    problems = []
    limit = values.get("SOFT_BOUNCE_LIMIT")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 3:
        problems.append(
            Problem(
                "bounce_tracker.E007",
                f"{describe(values, 'SOFT_BOUNCE_LIMIT')} must be 1, 2 or 3.",
                "The tracker keeps the last three bounce times; the limit counts among them.",
            )
        )
    window = values.get("SOFT_BOUNCE_WINDOW_DAYS")
    if isinstance(window, bool) or not isinstance(window, int | float) or not 0 < window <= 3650:
        problems.append(
            Problem(
                "bounce_tracker.E008",
                f"{describe(values, 'SOFT_BOUNCE_WINDOW_DAYS')} must be a number of days "
                "greater than 0 and at most 3650.",
                "The default is 14.",
            )
        )
    if not isinstance(values.get("OBSERVE_ONLY"), bool):
        problems.append(
            Problem(
                "bounce_tracker.E011",
                f"{describe(values, 'OBSERVE_ONLY')} must be True or False.",
                "Use True during rollout to see what the policy would suppress.",
            )
        )
    return problems


def byte_count_problems(
    values: Mapping[str, Any], key: str, check_id: str, minimum: int
) -> list[Problem]:
    """The problem (``check_id``) with a setting that must be a byte count >= ``minimum``."""
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return [
            Problem(
                check_id,
                f"{describe(values, key)} must be a whole number of bytes, at least {minimum}.",
                f"The default is {DEFAULTS[key]}.",
            )
        ]
    return []


def _size_problems(values: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    problems += byte_count_problems(values, "RAW_MESSAGE_MAX_BYTES", "bounce_tracker.E013", 0)
    cap = values.get("UNMATCHED_MAX_MESSAGES")
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        problems.append(
            Problem(
                "bounce_tracker.E014",
                f"{describe(values, 'UNMATCHED_MAX_MESSAGES')} must be a whole number, at least 1.",
                "It bounds the unmatched mail kept (the newest are kept); the default is "
                f"{DEFAULTS['UNMATCHED_MAX_MESSAGES']}.",
            )
        )
    return problems


def unknown_key_problems(values: Mapping[str, Any]) -> list[Problem]:
    """A warning for keys no room reads (a misspelt key would otherwise be ignored)."""
    unknown = sorted(set(values) - set(DEFAULTS))
    if not unknown:
        return []
    return [
        Problem(
            "bounce_tracker.W001",
            f"Unknown BOUNCE_TRACKER keys: {', '.join(unknown)}.",
            f"Known keys: {', '.join(sorted(DEFAULTS))}. Check the spelling.",
            level="warning",
        )
    ]


def core_problems(values: Mapping[str, Any]) -> list[Problem]:
    """Every problem with the keys every room reads; empty when all is well."""
    return (
        _domain_problems(values)
        + _verp_problems(values)
        + _threshold_problems(values)
        + _size_problems(values)
    )


# Validating a room's settings may import its backend and policy, too slow to repeat
# for every recipient of a large batch; so results are kept per room and distinct
# settings value.
_validated: dict[tuple[str, str], Any] = {}


def validated_settings(
    room: str,
    values: Mapping[str, Any],
    problems: Callable[[Mapping[str, Any]], list[Problem]],
    build: Callable[[Mapping[str, Any]], T],
) -> T:
    """``build(values)`` once ``problems(values)`` has no error, cached per room and value.

    Raises ImproperlyConfigured naming the first error and its check ID. For the
    rooms' ``get_*_settings`` functions: ``problems`` covers the core keys and the
    room's own, nothing else.
    """
    key = (room, repr(sorted(values.items())))
    cached = _validated.get(key)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    errors = [problem for problem in problems(values) if problem.level == "error"]
    if errors:
        first = errors[0]
        raise ImproperlyConfigured(f"{first.msg} {first.hint} ({first.id})")
    if len(_validated) > 64:
        _validated.clear()
    _validated[key] = result = build(values)
    return result


def core_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`TrackerSettings` fields from validated values (for the rooms' builders)."""
    secret = values["VERP_SECRET"]
    return {
        "bounce_domain": normalize_domain(values["BOUNCE_DOMAIN"]),
        "verp_prefix": values["VERP_PREFIX"],
        "verp_delimiter": values["VERP_DELIMITER"],
        "verp_format": values["VERP_FORMAT"],
        "verp_secret": secret.encode() if isinstance(secret, str) else secret,
        "soft_bounce_limit": values["SOFT_BOUNCE_LIMIT"],
        "soft_bounce_window": timedelta(days=values["SOFT_BOUNCE_WINDOW_DAYS"]),
        "observe_only": values["OBSERVE_ONLY"],
        "raw_message_max_bytes": values["RAW_MESSAGE_MAX_BYTES"],
        "unmatched_max_messages": values["UNMATCHED_MAX_MESSAGES"],
    }


def get_settings(overrides: Mapping[str, Any] | None = None) -> TrackerSettings:
    """The keys every room reads, validated now; raises ImproperlyConfigured on the first error.

    Only those keys are validated: a mistake in a room's own key (``BACKEND``,
    ``MAILBOX_URL``…) doesn't stop code that needs only these.
    """
    return validated_settings(
        "core",
        merged_settings(overrides),
        core_problems,
        lambda values: TrackerSettings(**core_fields(values)),
    )
