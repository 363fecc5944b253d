"""The kinds of message that reach the bounce address, and what each does to the policy.

This is the one place for those rules, and for the shape of a verdict
(:class:`Classification`): the vocabulary that the classifier produces and the
recorder (:mod:`bounce_tracker.core.events`) consumes. It imports only the
standard library, so the classifier, which may import nothing else of the app,
can use it, and the pipe command stays cheap to start.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


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
    #: Anything else: a human reply, spam; also the kind of a verdict that ``failed``.
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


@dataclass(frozen=True)
class RecipientResult:
    """One failed (or delayed, delivered…) recipient named by a report."""

    address: str | None
    status: str | None
    kind: BounceKind
    action: str | None = None
    diagnostic: str = ""
    remote_mta: str = ""
    #: The status the diagnostic's words clearly mean when ``status`` is None or
    #: generic (x.0.0); see :mod:`bounce_tracker.classify.inferred`. Never stored.
    inferred_status: str | None = None


@dataclass(frozen=True)
class Classification:
    """The verdict on one message.

    A verdict whose ``failed`` is set is no verdict: the classifier raised on the
    message (a bug, not a property of the message). Its kind is ``not_bounce`` only
    because every verdict has one; the receiving side never records it as one, but
    keeps the message for review (:func:`bounce_tracker.core.events.store_for_review`).
    """

    kind: BounceKind
    #: The RFC 3463 enhanced status code, e.g. "5.1.1", or None when there is none.
    status: str | None
    #: The most telling text: Diagnostic-Code, the quoted SMTP reply, or a summary.
    diagnostic: str
    recipients: tuple[RecipientResult, ...] = ()
    #: Reporting-MTA, or the host the report came from, when known.
    reporting_mta: str = ""
    #: Message-ID of the original message, when the report includes it.
    original_message_id: str | None = None
    #: Which rule decided, for people reading ``inspect_bounce`` output.
    reason: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)
    #: Empty, or the classifier's exception on one line (``"KeyError: 'x'"``) when it
    #: failed on this message; ``extra["traceback"]`` then holds the formatted traceback.
    failed: str = ""
    #: The exception itself when ``failed``, for logging it with its traceback.
    error: BaseException | None = field(default=None, compare=False, repr=False)
    #: The status the wording clearly means when ``status`` is None or generic (x.0.0),
    #: else None (:mod:`bounce_tracker.classify.inferred`). ``status`` keeps what the
    #: report said: that is what is recorded.
    inferred_status: str | None = None

    @property
    def status_inferred(self) -> bool:
        """Whether the wording gave a status the report didn't (``inferred_status``)."""
        return self.inferred_status is not None
