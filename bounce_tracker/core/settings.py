"""The ``BOUNCE_TRACKER`` settings dict: defaults, validation and access.

Settings are read when they are used, never at import time, so that tests can
override them and a missing setting fails where it matters (a system check, the
backend's constructor) rather than on ``import bounce_tracker``.

Every validation rule lives in :func:`validate`; the system checks in
:mod:`bounce_tracker.checks` and :func:`get_settings` both use it, so a value the
checks accept is a value the code can run with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

#: RFC 5321: a local part is at most 64 octets.
MAX_LOCAL_PART_OCTETS = 64
#: Length of a VERP token in characters (lower-case base32); see :mod:`bounce_tracker.core.verp`.
TOKEN_LENGTH = 26
#: Delimiters that Postfix's ``recipient_delimiter`` can use without quoting.
ALLOWED_DELIMITERS = ("+", "-", "_", ".")

TRACKING_BACKEND_PATH = "bounce_tracker.backend.BounceTrackingBackend"

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
DatabaseDownMode = Literal["fail", "send_untracked"]
DATABASE_DOWN_MODES = ("fail", "send_untracked")


@dataclass(frozen=True)
class Problem:
    """A bad setting: the check ID, what is wrong and how to fix it."""

    id: str
    msg: str
    hint: str
    level: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class TrackerSettings:
    """The validated ``BOUNCE_TRACKER`` settings, with defaults filled in."""

    bounce_domain: str
    verp_prefix: str
    verp_delimiter: str
    verp_format: VerpFormat
    verp_secret: bytes | None
    backend: str
    policy: str
    soft_bounce_limit: int
    soft_bounce_window: timedelta
    observe_only: bool
    max_message_bytes: int
    raw_message_max_bytes: int
    unmatched_max_messages: int
    send_when_database_down: DatabaseDownMode
    mailbox_url: str | None
    mailbox_processed_folder: str | None


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


def _setting(values: Mapping[str, Any], key: str) -> str:
    """``BOUNCE_TRACKER['KEY'] = <value>``, for messages."""
    return f"BOUNCE_TRACKER[{key!r}] = {values.get(key)!r}"


def _import_setting(
    values: Mapping[str, Any], key: str, check_id: str
) -> tuple[Any, Problem | None]:
    path = values.get(key)
    hint = f"Set BOUNCE_TRACKER[{key!r}] to a dotted path such as {DEFAULTS[key]!r}."
    if not isinstance(path, str) or not path:
        return None, Problem(check_id, f"{_setting(values, key)} is not a dotted path.", hint)
    try:
        return import_string(path), None
    except ImportError as exc:
        return None, Problem(check_id, f"{_setting(values, key)} cannot be imported: {exc}", hint)


def _domain_problems(values: Mapping[str, Any]) -> list[Problem]:
    hint = "Set it to the domain whose MX is your Postfix, e.g. 'bounces.example.com'."
    if not values.get("BOUNCE_DOMAIN"):
        return [Problem("bounce_tracker.E001", "BOUNCE_TRACKER['BOUNCE_DOMAIN'] is not set.", hint)]
    if not _is_valid_domain(values["BOUNCE_DOMAIN"]):
        message = f"{_setting(values, 'BOUNCE_DOMAIN')} is not a fully qualified domain name."
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
                f"{_setting(values, 'VERP_PREFIX')} is not a usable local part prefix.",
                f"Use 1 to {max_prefix} lower-case letters, digits, '.', '-' or '_', "
                "starting and ending with a letter or digit.",
            )
        )
    delimiter = values.get("VERP_DELIMITER")
    if delimiter not in ALLOWED_DELIMITERS:
        problems.append(
            Problem(
                "bounce_tracker.E003",
                f"{_setting(values, 'VERP_DELIMITER')} is not supported.",
                f"Use one of {' '.join(ALLOWED_DELIMITERS)}, the same as Postfix's "
                "recipient_delimiter.",
            )
        )
    elif isinstance(prefix, str) and delimiter in prefix:
        problems.append(
            Problem(
                "bounce_tracker.E003",
                f"{_setting(values, 'VERP_PREFIX')} contains the delimiter {delimiter!r}.",
                "Postfix splits the local part at the first delimiter; keep it out of the prefix.",
            )
        )
    if values.get("VERP_FORMAT") not in ("token", "readable"):
        problems.append(
            Problem(
                "bounce_tracker.E009",
                f"{_setting(values, 'VERP_FORMAT')} is not supported.",
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


def _backend_problems(values: Mapping[str, Any]) -> list[Problem]:
    from django.core.mail.backends.base import BaseEmailBackend

    from bounce_tracker.backend import BounceTrackingBackend

    backend, problem = _import_setting(values, "BACKEND", "bounce_tracker.E004")
    if problem:
        return [problem]
    if not (isinstance(backend, type) and issubclass(backend, BaseEmailBackend)):
        return [
            Problem(
                "bounce_tracker.E004",
                f"{_setting(values, 'BACKEND')} is not an email backend class.",
                "Name a subclass of django.core.mail.backends.base.BaseEmailBackend.",
            )
        ]
    if issubclass(backend, BounceTrackingBackend):
        return [
            Problem(
                "bounce_tracker.E005",
                "BOUNCE_TRACKER['BACKEND'] is the bounce tracking backend itself.",
                f"Name the backend that really sends, e.g. {DEFAULTS['BACKEND']!r}.",
            )
        ]
    return []


def _policy_problems(values: Mapping[str, Any]) -> list[Problem]:
    policy, problem = _import_setting(values, "POLICY", "bounce_tracker.E006")
    if problem:
        return [problem]
    if not callable(policy):
        return [
            Problem(
                "bounce_tracker.E006",
                f"{_setting(values, 'POLICY')} is not callable.",
                "Name a function taking (tracker, message) and returning a Verdict.",
            )
        ]
    return []


def _threshold_problems(values: Mapping[str, Any]) -> list[Problem]:
    problems = []
    limit = values.get("SOFT_BOUNCE_LIMIT")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 3:
        problems.append(
            Problem(
                "bounce_tracker.E007",
                f"{_setting(values, 'SOFT_BOUNCE_LIMIT')} must be 1, 2 or 3.",
                "The tracker keeps the last three bounce times; the limit counts among them.",
            )
        )
    window = values.get("SOFT_BOUNCE_WINDOW_DAYS")
    if isinstance(window, bool) or not isinstance(window, int | float) or not 0 < window <= 3650:
        problems.append(
            Problem(
                "bounce_tracker.E008",
                f"{_setting(values, 'SOFT_BOUNCE_WINDOW_DAYS')} must be a number of days "
                "greater than 0 and at most 3650.",
                "The default is 14.",
            )
        )
    if not isinstance(values.get("OBSERVE_ONLY"), bool):
        problems.append(
            Problem(
                "bounce_tracker.E011",
                f"{_setting(values, 'OBSERVE_ONLY')} must be True or False.",
                "Use True during rollout to see what the policy would suppress.",
            )
        )
    return problems


def _size_problems(values: Mapping[str, Any]) -> list[Problem]:
    problems = []
    for key, check_id, minimum in (
        ("MAX_MESSAGE_BYTES", "bounce_tracker.E012", 64 * 1024),
        ("RAW_MESSAGE_MAX_BYTES", "bounce_tracker.E013", 0),
    ):
        value = values.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            problems.append(
                Problem(
                    check_id,
                    f"{_setting(values, key)} must be a whole number of bytes, at least {minimum}.",
                    f"The default is {DEFAULTS[key]}.",
                )
            )
    cap = values.get("UNMATCHED_MAX_MESSAGES")
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        problems.append(
            Problem(
                "bounce_tracker.E014",
                f"{_setting(values, 'UNMATCHED_MAX_MESSAGES')} must be a whole number, at least 1.",
                "It bounds the unmatched mail kept (the newest are kept); the default is "
                f"{DEFAULTS['UNMATCHED_MAX_MESSAGES']}.",
            )
        )
    return problems


def _database_down_problems(values: Mapping[str, Any]) -> list[Problem]:
    if values.get("SEND_WHEN_DATABASE_DOWN") in DATABASE_DOWN_MODES:
        return []
    return [
        Problem(
            "bounce_tracker.E015",
            f"{_setting(values, 'SEND_WHEN_DATABASE_DOWN')} must be one of "
            f"{', '.join(repr(mode) for mode in DATABASE_DOWN_MODES)}.",
            "'fail' (the default) raises and sends nothing while the database is down; "
            "'send_untracked' sends without the suppression policy and without counting.",
        )
    ]


def _mailbox_problems(values: Mapping[str, Any]) -> list[Problem]:
    url = values.get("MAILBOX_URL")
    if url is None and values.get("MAILBOX_PROCESSED_FOLDER") is None:
        return []  # the usual case: no mailbox, nothing to import
    from bounce_tracker.receiving.mailbox import parse_mailbox_url, processed_folder_problem

    problems = []
    parsed = None
    if url is not None:
        try:
            parsed = parse_mailbox_url(url)
        except ValueError as exc:
            problems.append(
                Problem(
                    "bounce_tracker.E016",
                    f"BOUNCE_TRACKER['MAILBOX_URL'] is not a usable mailbox URL: {exc}",
                    "Use imap://, imaps://, imap+starttls://, pop3://, pop3s:// or "
                    "pop3+starttls://USER:PASSWORD@HOST[:PORT][/FOLDER], with reserved "
                    "characters in USER and PASSWORD percent-encoded; or None.",
                )
            )
    folder = values.get("MAILBOX_PROCESSED_FOLDER")
    reason = processed_folder_problem(folder, parsed)
    if reason:
        problems.append(
            Problem(
                "bounce_tracker.E017",
                f"{_setting(values, 'MAILBOX_PROCESSED_FOLDER')} {reason}",
                "Name an IMAP folder other than the one polled (it is created when "
                "missing), or use None to delete recorded messages.",
            )
        )
    return problems


def validate(values: Mapping[str, Any]) -> list[Problem]:
    """Every problem with a merged settings dict; empty when all is well."""
    problems = []
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        problems.append(
            Problem(
                "bounce_tracker.W001",
                f"Unknown BOUNCE_TRACKER keys: {', '.join(unknown)}.",
                f"Known keys: {', '.join(sorted(DEFAULTS))}. Check the spelling.",
                level="warning",
            )
        )
    problems += _domain_problems(values)
    problems += _verp_problems(values)
    problems += _backend_problems(values)
    problems += _policy_problems(values)
    problems += _threshold_problems(values)
    problems += _size_problems(values)
    problems += _database_down_problems(values)
    problems += _mailbox_problems(values)
    return problems


# Validation imports the backend and the policy, too slow to repeat for every
# recipient of a large batch; so results are kept per distinct settings value.
_validated: dict[str, TrackerSettings] = {}


def get_settings(overrides: Mapping[str, Any] | None = None) -> TrackerSettings:
    """The validated settings, read now; raises ImproperlyConfigured on the first error."""
    values = merged_settings(overrides)
    key = repr(sorted(values.items()))
    cached = _validated.get(key)
    if cached is not None:
        return cached
    if len(_validated) > 32:
        _validated.clear()
    _validated[key] = result = _build_settings(values)
    return result


def _build_settings(values: dict[str, Any]) -> TrackerSettings:
    errors = [p for p in validate(values) if p.level == "error"]
    if errors:
        first = errors[0]
        raise ImproperlyConfigured(f"{first.msg} {first.hint} ({first.id})")
    secret = values["VERP_SECRET"]
    return TrackerSettings(
        bounce_domain=normalize_domain(values["BOUNCE_DOMAIN"]),
        verp_prefix=values["VERP_PREFIX"],
        verp_delimiter=values["VERP_DELIMITER"],
        verp_format=values["VERP_FORMAT"],
        verp_secret=secret.encode() if isinstance(secret, str) else secret,
        backend=values["BACKEND"],
        policy=values["POLICY"],
        soft_bounce_limit=values["SOFT_BOUNCE_LIMIT"],
        soft_bounce_window=timedelta(days=values["SOFT_BOUNCE_WINDOW_DAYS"]),
        observe_only=values["OBSERVE_ONLY"],
        max_message_bytes=values["MAX_MESSAGE_BYTES"],
        raw_message_max_bytes=values["RAW_MESSAGE_MAX_BYTES"],
        unmatched_max_messages=values["UNMATCHED_MAX_MESSAGES"],
        send_when_database_down=values["SEND_WHEN_DATABASE_DOWN"],
        mailbox_url=values["MAILBOX_URL"],
        mailbox_processed_folder=values["MAILBOX_PROCESSED_FOLDER"],
    )
