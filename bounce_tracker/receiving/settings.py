"""The receiving side's own settings: ``MAX_MESSAGE_BYTES`` and the bounce mailbox.

Validated only where receiving needs them (the pipe, the LMTP receiver, the
mailbox poller) and by the system checks: a mistake here stops that path with its
check ID, never sending. The mailbox keys are validated only by the poller, so a
bad ``MAILBOX_URL`` leaves the pipe and the receiver working too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bounce_tracker.core.settings import (
    Problem,
    TrackerSettings,
    byte_count_problems,
    core_fields,
    core_problems,
    describe,
    merged_settings,
    validated_settings,
)


@dataclass(frozen=True)
class ReceivingSettings(TrackerSettings):
    """The shared keys plus the one the pipe and the receiver read."""

    #: Bytes of an incoming message kept for parsing; the rest is read and discarded.
    max_message_bytes: int


@dataclass(frozen=True)
class MailboxSettings(ReceivingSettings):
    """The receiving settings plus the bounce mailbox the poller reads."""

    mailbox_url: str | None
    mailbox_processed_folder: str | None


def receiving_problems(values: Mapping[str, Any]) -> list[Problem]:
    """Every problem with ``MAX_MESSAGE_BYTES``."""
    return byte_count_problems(values, "MAX_MESSAGE_BYTES", "bounce_tracker.E012", 64 * 1024)


def mailbox_problems(values: Mapping[str, Any]) -> list[Problem]:
    """Every problem with ``MAILBOX_URL`` and ``MAILBOX_PROCESSED_FOLDER``."""
    url = values.get("MAILBOX_URL")
    if url is None and values.get("MAILBOX_PROCESSED_FOLDER") is None:
        return []  # the usual case: no mailbox, nothing to import
    from bounce_tracker.receiving.mailbox import parse_mailbox_url, processed_folder_problem

    problems: list[Problem] = []
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
                f"{describe(values, 'MAILBOX_PROCESSED_FOLDER')} {reason}",
                "Name an IMAP folder other than the one polled (it is created when "
                "missing), or use None to delete recorded messages.",
            )
        )
    return problems


def get_receiving_settings(overrides: Mapping[str, Any] | None = None) -> ReceivingSettings:
    """The settings the pipe and the LMTP receiver use, validated now.

    Raises ImproperlyConfigured on the first error, with its check ID.
    """
    return validated_settings(
        "receiving",
        merged_settings(overrides),
        lambda values: core_problems(values) + receiving_problems(values),
        lambda values: ReceivingSettings(
            **core_fields(values), max_message_bytes=values["MAX_MESSAGE_BYTES"]
        ),
    )


def get_mailbox_settings(overrides: Mapping[str, Any] | None = None) -> MailboxSettings:
    """The settings the bounce mailbox poller uses, validated now.

    Raises ImproperlyConfigured on the first error, with its check ID.
    """
    return validated_settings(
        "mailbox",
        merged_settings(overrides),
        lambda values: (
            core_problems(values) + receiving_problems(values) + mailbox_problems(values)
        ),
        lambda values: MailboxSettings(
            **core_fields(values),
            max_message_bytes=values["MAX_MESSAGE_BYTES"],
            mailbox_url=values["MAILBOX_URL"],
            mailbox_processed_folder=values["MAILBOX_PROCESSED_FOLDER"],
        ),
    )
