"""The sending side's own settings: ``BACKEND``, ``POLICY``, ``SEND_WHEN_DATABASE_DOWN``.

Validated only where sending needs them (the backend's constructor) and by the
system checks: a mistake here stops sending with its check ID, never the pipe,
the receiver or the admin.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django.utils.module_loading import import_string

from bounce_tracker.core.settings import (
    DEFAULTS,
    Problem,
    TrackerSettings,
    core_fields,
    core_problems,
    describe,
    import_setting,
    merged_settings,
    validated_settings,
)
from bounce_tracker.policy import Policy

DatabaseDownMode = Literal["fail", "send_untracked"]
DATABASE_DOWN_MODES = ("fail", "send_untracked")


@dataclass(frozen=True)
class SendingSettings(TrackerSettings):
    """The shared keys plus the ones only sending reads."""

    #: The backend that really sends the mail (a dotted path).
    backend: str
    #: The policy callable (a dotted path); see :func:`load_policy`.
    policy: str
    send_when_database_down: DatabaseDownMode


def _backend_problems(values: Mapping[str, Any]) -> list[Problem]:
    from django.core.mail.backends.base import BaseEmailBackend

    from bounce_tracker.sending.backend import BounceTrackingBackend

    backend, problem = import_setting(values, "BACKEND", "bounce_tracker.E004")
    if problem:
        return [problem]
    if not (isinstance(backend, type) and issubclass(backend, BaseEmailBackend)):
        return [
            Problem(
                "bounce_tracker.E004",
                f"{describe(values, 'BACKEND')} is not an email backend class.",
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
    policy, problem = import_setting(values, "POLICY", "bounce_tracker.E006")
    if problem:
        return [problem]
    if not callable(policy):
        return [
            Problem(
                "bounce_tracker.E006",
                f"{describe(values, 'POLICY')} is not callable.",
                "Name a function taking (tracker, message) and returning a Verdict.",
            )
        ]
    return []


def _database_down_problems(values: Mapping[str, Any]) -> list[Problem]:
    if values.get("SEND_WHEN_DATABASE_DOWN") in DATABASE_DOWN_MODES:
        return []
    return [
        Problem(
            "bounce_tracker.E015",
            f"{describe(values, 'SEND_WHEN_DATABASE_DOWN')} must be one of "
            f"{', '.join(repr(mode) for mode in DATABASE_DOWN_MODES)}.",
            "'fail' (the default) raises and sends nothing while the database is down; "
            "'send_untracked' sends without the suppression policy and without counting.",
        )
    ]


def sending_problems(values: Mapping[str, Any]) -> list[Problem]:
    """Every problem with the keys only sending reads."""
    return _backend_problems(values) + _policy_problems(values) + _database_down_problems(values)


def get_sending_settings(overrides: Mapping[str, Any] | None = None) -> SendingSettings:
    """The settings sending uses (the shared keys and its own), validated now.

    Raises ImproperlyConfigured on the first error, with its check ID. ``overrides``
    (upper-case keys) win over ``settings.BOUNCE_TRACKER``: the backend's keyword
    arguments.
    """
    return validated_settings(
        "sending",
        merged_settings(overrides),
        lambda values: core_problems(values) + sending_problems(values),
        lambda values: SendingSettings(
            **core_fields(values),
            backend=values["BACKEND"],
            policy=values["POLICY"],
            send_when_database_down=values["SEND_WHEN_DATABASE_DOWN"],
        ),
    )


def load_policy(tracker_settings: SendingSettings) -> Policy:
    """The policy callable named in the settings, as a ``(tracker, message)`` callable.

    A policy that takes a ``tracker_settings`` keyword argument gets the sending
    backend's own settings there (including keyword overrides given to the backend).
    """
    policy = import_string(tracker_settings.policy)
    try:
        takes_settings = "tracker_settings" in inspect.signature(policy).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        takes_settings = False
    if takes_settings:
        return functools.partial(policy, tracker_settings=tracker_settings)
    return policy  # type: ignore[no-any-return]
