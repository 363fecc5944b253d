"""The public path of the tracking backend, named in users' settings.

``EMAIL_BACKEND = "bounce_tracker.backend.BounceTrackingBackend"``. The backend
itself lives in :mod:`bounce_tracker.sending.backend`.
"""

from bounce_tracker.sending.backend import BounceTrackingBackend

__all__ = ["BounceTrackingBackend"]
