"""The receiving room: every way a bounce comes back, recorded once.

The pipe and the LMTP receiver (:mod:`~bounce_tracker.receiving.receive`,
:mod:`~bounce_tracker.receiving.lmtp`), the bounce mailbox poller
(:mod:`~bounce_tracker.receiving.mailbox`) and ESP events
(:mod:`~bounce_tracker.receiving.esp`), each classifying with
:mod:`bounce_tracker.classify` and recording through :mod:`bounce_tracker.core.events`.
Its own settings are in :mod:`~bounce_tracker.receiving.settings`. It never imports
the sending room.
"""
