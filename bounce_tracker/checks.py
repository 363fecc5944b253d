"""System checks for the ``BOUNCE_TRACKER`` settings (IDs ``bounce_tracker.E001``…).

The rules themselves live in :func:`bounce_tracker.core.settings.validate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from bounce_tracker.core.settings import merged_settings, validate


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
    for problem in validate(values):
        level = checks.Error if problem.level == "error" else checks.Warning
        messages.append(level(problem.msg, hint=problem.hint, id=problem.id))
    return messages
