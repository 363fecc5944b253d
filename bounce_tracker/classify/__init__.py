"""Classification: what kind of message reached the bounce address, and about whom.

A pure library: it imports nothing from Django and nothing from the rest of the app
except the shared vocabulary :mod:`bounce_tracker.core.kinds` (import-linter holds
this), so ``handle_bounce`` and ``inspect_bounce`` stay cheap to start and the rules
can be tested without a database.
"""

from bounce_tracker.classify.classifier import classify_message, classify_reply
from bounce_tracker.core.kinds import Classification, RecipientResult

__all__ = ["Classification", "RecipientResult", "classify_message", "classify_reply"]
