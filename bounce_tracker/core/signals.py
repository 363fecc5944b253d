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

``bounce_recorded``
    Sent after the transaction that recorded a message for a tracked address
    commits (every kind, counted or not; never for a duplicate delivery). Arguments:
    ``sender`` (the :class:`~bounce_tracker.models.BounceEvent` class), ``tracker``
    (the updated row) and ``event`` (the new :class:`~bounce_tracker.models.BounceEvent`).

``address_suppressed``
    Sent after ``bounce_recorded`` when the event marked the address suppressed (a
    hard bounce or a complaint). Same arguments.
"""

from __future__ import annotations

from django.dispatch import Signal

#: A recipient copy was refused by the policy (or would be, in observe-only mode).
recipient_suppressed = Signal()
#: A message for a tracked address was recorded (after commit).
bounce_recorded = Signal()
#: A recorded hard bounce or complaint marked the address suppressed (after commit).
address_suppressed = Signal()
