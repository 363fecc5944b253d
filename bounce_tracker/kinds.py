"""The kinds of message that reach the bounce address, and what each does to the policy.

This is the one place for those rules. It imports nothing from Django, so the
classifier and the pipe command stay cheap to start.
"""

from __future__ import annotations

import enum


class BounceKind(enum.StrEnum):
    """Exactly one kind for every message that reaches the bounce address."""

    #: The address itself is permanently undeliverable (no such user or domain, moved).
    HARD = "hard"
    #: Any other failure, even with a 5.x.x code: full, blocked, policy, expired, network.
    SOFT = "soft"
    #: A delay warning; delivery is still being tried.
    DELAYED = "delayed"
    #: Out-of-office, vacation or other autoresponder (RFC 3834).
    AUTO_REPLY = "auto_reply"
    #: A spam complaint (ARF, RFC 5965).
    COMPLAINT = "complaint"
    #: A success notification (Action: delivered, relayed or expanded).
    DELIVERED = "delivered"
    #: Anything else: a human reply, spam, unparsable input.
    NOT_BOUNCE = "not_bounce"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    BounceKind.HARD: "hard bounce",
    BounceKind.SOFT: "soft bounce",
    BounceKind.DELAYED: "delay warning",
    BounceKind.AUTO_REPLY: "auto-reply",
    BounceKind.COMPLAINT: "spam complaint",
    BounceKind.DELIVERED: "delivery notification",
    BounceKind.NOT_BOUNCE: "not a bounce",
}

#: Kinds that shift the last-bounce times and add to bounce_count.
COUNTED_KINDS = frozenset({BounceKind.HARD, BounceKind.SOFT})
#: Kinds that mark the address suppressed at once.
SUPPRESSING_KINDS = frozenset({BounceKind.HARD, BounceKind.COMPLAINT})
