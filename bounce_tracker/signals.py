"""Public signals. Receivers never break sending: they are called with ``send_robust``
and their exceptions are logged to the ``bounce_tracker`` logger.

``recipient_suppressed``
    Sent once for every recipient copy the policy refuses, before the rest of the
    message is sent. Arguments:

    - ``sender``: the :class:`~bounce_tracker.backend.BounceTrackingBackend` class
    - ``tracker``: the recipient's :class:`~bounce_tracker.models.EmailAddressTracker`
    - ``message``: the caller's original ``EmailMessage`` (not the per-recipient copy)
    - ``verdict``: the :class:`~bounce_tracker.policy.Verdict` with the reason
    - ``observe_only``: True when ``OBSERVE_ONLY`` is on and the copy is sent anyway
"""

from __future__ import annotations

from django.dispatch import Signal

recipient_suppressed = Signal()
