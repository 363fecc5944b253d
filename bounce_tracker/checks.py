"""System checks for the ``BOUNCE_TRACKER`` settings (IDs ``bounce_tracker.E001``…).

The rules themselves live in :func:`bounce_tracker.core.settings.validate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from bounce_tracker.core.settings import (
    Problem,
    core_problems,
    merged_settings,
    unknown_key_problems,
)


def all_problems(values: Mapping[str, Any]) -> list[Problem]:
    """Every problem with every room's keys."""
    # Imported here, not at the top: apps.py imports this module in every process,
    # and the pipe must not import the sending side to start.
    from bounce_tracker.receiving.settings import mailbox_problems, receiving_problems
    from bounce_tracker.sending.settings import sending_problems

    return (
        unknown_key_problems(values)
        + core_problems(values)
        + sending_problems(values)
        + receiving_problems(values)
        + mailbox_problems(values)
    )


@checks.register(checks.Tags.compatibility)
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """One check message per problem in ``settings.BOUNCE_TRACKER``."""
    try:
        values = merged_settings()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="Use a dict.", id="bounce_tracker.E000")]
    messages: list[checks.CheckMessage] = []
    for problem in all_problems(values):
        level = checks.Error if problem.level == "error" else checks.Warning
        messages.append(level(problem.msg, hint=problem.hint, id=problem.id))
    return messages
