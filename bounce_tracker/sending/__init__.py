"""The sending room: one copy per recipient with its own VERP return path.

:mod:`~bounce_tracker.sending.backend` wraps the site's real backend, applies the
policy and counts accepted copies (:mod:`~bounce_tracker.sending.tracking`); a
refusal at send time is recorded as a bounce (:mod:`~bounce_tracker.sending.refusals`).
Its own settings are in :mod:`~bounce_tracker.sending.settings`. It never imports the
receiving room. Users name it as ``bounce_tracker.backend.BounceTrackingBackend``.
"""
