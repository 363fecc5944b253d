"""``BounceTrackingBackend``: sends one copy per recipient with a VERP return path.

Use it as ``EMAIL_BACKEND = "bounce_tracker.backend.BounceTrackingBackend"``; it
wraps the backend named in ``BOUNCE_TRACKER["BACKEND"]`` (Django's SMTP backend by
default), which does the real sending.

For every message and every distinct recipient (to, cc and bcc, compared
case-insensitively) it asks the policy, and if the answer is "send", hands the
inner backend a copy whose envelope has that one recipient and the recipient's
VERP envelope sender. The visible From, To and Cc headers stay exactly as the
caller wrote them, and Bcc recipients never appear in any header.

A recipient the server (or an ESP) refuses while a copy is sent is recorded as a
bounce event of that address (:mod:`bounce_tracker.sending.refusals`). To see the reply
even with ``fail_silently=True``, the inner backend is always built with
``fail_silently=False`` and this backend applies ``fail_silently`` itself.

The accepted copies are counted once per batch, after every copy has been handed
to the inner backend and before ``send_messages()`` returns: one autocommitted
``msg_count + n`` UPDATE (or part of the caller's transaction). A process killed in
between loses that batch's counts and never counts a copy twice (at most once);
why neither a transaction around the batch nor a deferred write replaced this is
in :mod:`bounce_tracker.sending.tracking`.
"""

from __future__ import annotations

import copy
import logging
import smtplib
from collections import Counter
from collections.abc import Sequence
from email.utils import formatdate, make_msgid
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.utils import DNS_NAME
from django.db import DatabaseError
from django.utils.module_loading import import_string

from bounce_tracker.core.addresses import (
    InvalidAddressError,
    InvalidMessageError,
    has_line_break,
    normalize_email,
    parse_address,
)
from bounce_tracker.core.settings import DEFAULTS
from bounce_tracker.core.signals import recipient_suppressed
from bounce_tracker.core.verp import encode_local_part, return_path
from bounce_tracker.models import EmailAddressTracker
from bounce_tracker.policy import Verdict
from bounce_tracker.sending.refusals import (
    Refusal,
    anymail_refusal,
    backend_esp_name,
    record_refusal,
    refusal_error,
    refusal_from_error,
    reply_text,
)
from bounce_tracker.sending.settings import get_sending_settings, load_policy
from bounce_tracker.sending.tracking import ensure_trackers, record_sent

logger = logging.getLogger("bounce_tracker")


def _check_header(name: str, value: object) -> None:
    text = str(value)
    if has_line_break(text) or has_line_break(name):
        raise InvalidMessageError(
            f"Header {name!r} contains a line break (CR, LF or similar): {text!r}"
        )


def message_recipients(message: EmailMessage) -> dict[str, str]:
    """The message's distinct recipients: normalized address → the value as written.

    Raises :class:`~bounce_tracker.core.addresses.InvalidMessageError` (or its subclass
    :class:`~bounce_tracker.core.addresses.InvalidAddressError`) for anything that can't
    be sent safely, before anything is sent.
    """
    _check_header("Subject", message.subject)
    _check_header("From", message.from_email)
    for name, value in message.extra_headers.items():
        _check_header(name, value)
    for value in message.reply_to:
        parse_address(value)
    parse_address(message.extra_headers.get("From", message.from_email))

    recipients: dict[str, str] = {}
    for value in [*message.to, *message.cc, *message.bcc]:
        address = parse_address(value)
        recipients.setdefault(normalize_email(address), value)
    if not recipients:
        raise InvalidMessageError(
            f"Message {message.subject!r} has no recipients: to, cc and bcc are all empty."
        )
    return recipients


def visible_headers(message: EmailMessage) -> dict[str, str]:
    """The headers every copy of ``message`` shares, as Django would render them once.

    From, To and Cc as the caller wrote them (Django renders To/Cc from
    ``extra_headers`` when given, else from the non-empty list), plus one Message-ID
    and Date for all copies, so replies thread together whichever copy they answer.
    """
    headers = dict(message.extra_headers)
    names = {name.lower() for name in headers}
    headers["From"] = message.extra_headers.get("From", message.from_email)
    for name, values in (("To", message.to), ("Cc", message.cc)):
        if name not in headers and values:
            headers[name] = ", ".join(str(v) for v in values)
    if "message-id" not in names:
        headers["Message-ID"] = make_msgid(domain=DNS_NAME)
    if "date" not in names:
        headers["Date"] = formatdate(localtime=settings.EMAIL_USE_LOCALTIME)
    return headers


def recipient_copy(
    message: EmailMessage,
    recipient: str,
    envelope_sender: str,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """A copy of ``message`` for one envelope recipient, with the VERP envelope sender.

    ``headers`` are the shared :func:`visible_headers` (computed when not given). The
    recipient goes in ``bcc``, so it is an envelope recipient only and never a header.
    """
    duplicate = copy.copy(message)
    duplicate.extra_headers = dict(headers if headers is not None else visible_headers(message))
    duplicate.from_email = envelope_sender
    duplicate.to = []
    duplicate.cc = []
    duplicate.bcc = [recipient]
    return duplicate


class BounceTrackingBackend(BaseEmailBackend):
    """Wraps the real backend; sends per-recipient VERP copies and applies the policy.

    Keyword arguments named like ``BOUNCE_TRACKER`` keys in lower case
    (``bounce_domain=…``, ``backend=…``, ``observe_only=…``) override the settings
    for this instance; every other keyword argument goes to the inner backend.

    The inner backend is built with ``fail_silently=False`` whatever this backend's
    ``fail_silently`` is, so that a refusal reaches this backend (Django's SMTP
    backend would swallow the reply); this backend then swallows and logs what the
    inner backend raises when ``fail_silently`` is set, in :meth:`open`,
    :meth:`close` and :meth:`send_messages`.
    """

    def __init__(self, fail_silently: bool = False, **kwargs: Any) -> None:
        overrides = {
            name.upper(): kwargs.pop(name) for name in list(kwargs) if name.upper() in DEFAULTS
        }
        super().__init__(fail_silently=fail_silently)
        self.tracker_settings = get_sending_settings(overrides)
        backend_class = import_string(self.tracker_settings.backend)
        self.inner: BaseEmailBackend = backend_class(fail_silently=False, **kwargs)
        self.policy = load_policy(self.tracker_settings)
        self._silenced = 0  # copies failed and skipped in this send_messages() call

    def open(self) -> bool | None:
        """Open the inner backend's connection; returns what the inner backend returns.

        With ``fail_silently``, an error is logged and None returned, as Django's SMTP
        backend does.
        """
        try:
            return self.inner.open()
        except Exception:
            if not self.fail_silently:
                raise
            logger.warning("Could not open the connection; fail_silently is set.", exc_info=True)
            return None

    def close(self) -> None:
        """Close the inner backend's connection (errors only logged with ``fail_silently``)."""
        try:
            self.inner.close()
        except Exception:
            if not self.fail_silently:
                raise
            logger.warning("Could not close the connection; fail_silently is set.", exc_info=True)

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Send the messages; return how many had at least one copy accepted."""
        if not email_messages:
            return 0
        plans = [(message, message_recipients(message)) for message in email_messages]
        addresses = [address for _, recipients in plans for address in recipients]
        try:
            trackers = ensure_trackers(addresses, self.tracker_settings)
            tracked = True
        except DatabaseError:
            if not self._send_untracked(len(plans)):
                if self.fail_silently:
                    return 0
                raise  # nothing has been sent
            trackers = self._untracked(addresses)
            tracked = False
        # accepted: copies per address; sent: messages with at least one copy accepted.
        accepted: Counter[str] = Counter()
        sent: list[EmailMessage] = []
        self._silenced = 0
        try:
            new_connection = self.inner.open()
        except Exception:
            if not self.fail_silently:
                raise  # nothing has been sent
            logger.warning("Could not open the connection; fail_silently is set.", exc_info=True)
            return 0
        try:
            for message, recipients in plans:
                self._send_copies(
                    message, recipients, trackers, accepted, sent, apply_policy=tracked
                )
        except Exception:
            if not self.fail_silently:
                raise
            logger.exception("Sending failed after %d message(s); fail_silently is set.", len(sent))
        finally:
            if tracked:
                self._count(trackers, accepted)
            if new_connection:
                self.close()
            if self._silenced > 1:
                logger.warning(
                    "%d cop(ies) failed and were skipped; fail_silently is set.", self._silenced
                )
        return len(sent)

    def _send_untracked(self, message_count: int) -> bool:
        """Whether to send without tracking after a database error, logged either way.

        True with ``SEND_WHEN_DATABASE_DOWN = "send_untracked"``; False with ``"fail"``
        (the default), when the caller raises the error, or returns 0 if
        ``fail_silently`` is set.
        """
        if self.tracker_settings.send_when_database_down == "send_untracked":
            logger.warning(
                "The tracking database is unavailable: sending %d message(s) untracked "
                "(no suppression policy, no counts; SEND_WHEN_DATABASE_DOWN='send_untracked').",
                message_count,
                exc_info=True,
            )
            return True
        logger.error(
            "The tracking database is unavailable: %d message(s) not sent "
            "(SEND_WHEN_DATABASE_DOWN='fail').",
            message_count,
            exc_info=True,
        )
        return False

    def _untracked(self, addresses: Sequence[str]) -> dict[str, EmailAddressTracker]:
        """Unsaved trackers carrying the VERP local part computed from each address.

        Bounces to these return paths match once the address is tracked (the stored
        ``encoded_from`` is the same computed value); until then they are stored as
        unmatched mail. Addresses imported with a legacy ``encoded_from`` get the
        computed one here.
        """
        return {
            address: EmailAddressTracker(
                email=address, encoded_from=encode_local_part(address, self.tracker_settings)
            )
            for address in addresses
        }

    def _send_copies(
        self,
        message: EmailMessage,
        recipients: dict[str, str],
        trackers: dict[str, EmailAddressTracker],
        accepted: Counter[str],
        sent: list[EmailMessage],
        apply_policy: bool = True,
    ) -> None:
        """Send one message's allowed copies, counting them in ``accepted`` and ``sent``.

        A recipient refused by the SMTP server (at RCPT or DATA) or by the ESP doesn't
        stop the others, as with one multi-recipient message, and is recorded as a
        bounce event of its address. Only when every recipient the policy allowed
        was refused (and none accepted) is an exception raised (see
        :func:`~bounce_tracker.sending.refusals.refusal_error`), unless ``fail_silently``.
        With ``fail_silently``, any other error of one copy is logged and the next
        copy is tried, as when Django's SMTP backend swallows it.
        """
        copies_accepted = 0
        refusals: list[Refusal] = []
        headers = visible_headers(message)
        message_id = next(
            (value for name, value in headers.items() if name.lower() == "message-id"), ""
        )
        for address, written in recipients.items():
            tracker = trackers[address]
            if apply_policy and not self._allowed(tracker, message):
                continue
            envelope_sender = return_path(tracker.encoded_from, self.tracker_settings)
            duplicate = recipient_copy(message, written, envelope_sender, headers)
            try:
                sent_count = self.inner.send_messages([duplicate])
            except Exception as exc:
                refusal = refusal_from_error(exc, duplicate, address, recipient=written)
                if refusal is None:
                    self._copy_failed(exc, address, envelope_sender)
                    if not self.fail_silently:
                        raise
                    continue
                refusals.append(refusal)
                self._record(tracker, refusal, envelope_sender, message_id)
                continue
            # An ESP may report the recipient rejected without raising
            # (anymail's IGNORE_RECIPIENT_STATUS): recorded; the copy counts as
            # the inner backend says.
            esp_refused = anymail_refusal(
                duplicate, address, recipient=written, esp_name=backend_esp_name(self.inner)
            )
            if esp_refused is not None:
                self._record(tracker, esp_refused, envelope_sender, message_id)
            if sent_count:
                accepted[address] += 1
                copies_accepted += 1
                if copies_accepted == 1:
                    sent.append(message)
        if refusals and not copies_accepted:
            error = refusal_error(refusals)
            if not self.fail_silently:
                raise error
            logger.info(
                "Every recipient of %r was refused; fail_silently is set: %s",
                message.subject,
                error,
            )

    def _copy_failed(self, exc: Exception, address: str, envelope_sender: str) -> None:
        """Log a copy that failed for a reason that is not the recipient's refusal.

        The caller raises it unless ``fail_silently``; then the first such failure of
        the batch is logged with its traceback and the others counted.
        """
        if isinstance(exc, smtplib.SMTPSenderRefused):
            # Our own envelope sender, never the recipient's fault: not recorded.
            logger.error(
                "The server refused the envelope sender %s (%s %s) of the copy to %s; "
                "nothing is recorded against the recipient.",
                envelope_sender,
                exc.smtp_code,
                reply_text(exc.smtp_error),
                address,
            )
        if not self.fail_silently:
            return
        self._silenced += 1
        if self._silenced == 1:
            logger.warning(
                "Sending the copy to %s failed; fail_silently is set.", address, exc_info=exc
            )

    def _record(
        self,
        tracker: EmailAddressTracker,
        refusal: Refusal,
        envelope_sender: str,
        message_id: str,
    ) -> None:
        host = getattr(self.inner, "host", None)
        record_refusal(
            tracker,
            refusal,
            envelope_sender=envelope_sender,
            message_id=message_id,
            reporting_mta=host if isinstance(host, str) else backend_esp_name(self.inner),
            tracker_settings=self.tracker_settings,
        )

    def _allowed(self, tracker: EmailAddressTracker, message: EmailMessage) -> bool:
        verdict = self.policy(tracker, message)
        if verdict.send:
            return True
        observe_only = self.tracker_settings.observe_only
        self._report_suppressed(tracker, message, verdict, observe_only)
        return observe_only

    def _report_suppressed(
        self,
        tracker: EmailAddressTracker,
        message: EmailMessage,
        verdict: Verdict,
        observe_only: bool,
    ) -> None:
        logger.info(
            "%s %s: %s",
            "Would suppress (observe only)" if observe_only else "Suppressed",
            tracker.email,
            verdict.reason,
            extra={"email": tracker.email, "reason": verdict.reason, "observe_only": observe_only},
        )
        for receiver, response in recipient_suppressed.send_robust(
            sender=type(self),
            tracker=tracker,
            message=message,
            verdict=verdict,
            observe_only=observe_only,
        ):
            if isinstance(response, Exception):
                logger.error("recipient_suppressed receiver %r failed", receiver, exc_info=response)

    def _count(self, trackers: dict[str, EmailAddressTracker], accepted: Counter[str]) -> None:
        # The copies are already out: failing to count them must not make the caller
        # believe the send failed (and send again), so log instead of raising.
        try:
            record_sent(trackers, accepted)
        except Exception:
            logger.exception(
                "Sent %d cop(ies) but could not update their counters.", sum(accepted.values())
            )


__all__ = [
    "BounceTrackingBackend",
    "InvalidAddressError",
    "InvalidMessageError",
    "message_recipients",
    "recipient_copy",
    "visible_headers",
]
