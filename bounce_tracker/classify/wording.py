"""What bounce reports say in words: the tables that recognise a report without a DSN.

Regular expressions for the senders, subjects and sentences that mail software
writes (strong markers that make a bounce on their own, weak ones that need another
sign), failure, delay, permanence and success wording, the lures of phishing mail
dressed as a bounce, and where a report names its host. Each does bounded work per
position. Several languages, never per-sample special cases.
"""

from __future__ import annotations

import re

from bounce_tracker.classify import languages
from bounce_tracker.classify.patterns import lazy_re
from bounce_tracker.classify.report import Report

# Who sends bounces: the From of a report written by mail software.
FROM_DAEMON_RE = lazy_re(
    r"mailer[-_ ]?daemon|\bpostmaster\b|mail ?delivery|delivery ?(?:subsystem|system|service)"
    r"|\bmail system\b|mail administrator|\bmdaemon\b|microsoftexchange[0-9a-f]{8}",
    re.IGNORECASE,
)
SUBJECT_BOUNCE_RE = lazy_re(
    r"undeliver|undelivered|not (?:been )?delivered|non[- ]?deliver|delivery (?:status"
    r" notification|failure|failed|report|problem|notification|error|incomplete)"
    r"|(?:mail|message) delivery failed|failure notice|returned mail|return(?:ed)? to sender"
    r"|mail system error|could ?n[o']?t be delivered|delivery has failed|delivery to .{0,80} failed"
    r"|^\s*rejected\b|\bbounced? (?:mail|message)|delayed mail|delivery delayed|message delayed"
    r"|warning: could not send|warning: message .{0,120} delayed|mail delivery problem"
    r"|returning message to sender|delivery warning|message status - (?:undeliverable|delayed)"
    # Older and smaller MTAs: "Mail failure", "Failed mail", "NDN: <subject>" (a
    # non-delivery notification), "Automatically rejected mail" (Courier).
    r"|\bmail failure\b|\bfailed mail\b|^\s*ndn\s*:|\brejected mail\b"
    # Smail: "mail failed, returning to sender".
    r"|\bmail failed\b|\breturning to sender\b"
    r"|" + languages.BOUNCE_SUBJECT,
    re.IGNORECASE,
)
# Sentences only mail software writes: on their own they make a message a bounce.
STRONG_MARKER_RE = lazy_re(
    r"this is the qmail-send program|(?:wasn't|was not) able to deliver your message"
    r"|created automatically by mail delivery software|could not be delivered to one or more"
    r"|has not yet been delivered to one or more|following addresses had (?:permanent|transient)"
    r"|transcript of (?:the )?session follows|delivery has failed to these recipients"
    r"|delivery is delayed to these recipients|diagnostic information for administrators"
    r"|not listed in (?:the )?(?:domino directory|public address book)"
    r"|message that you sent was undeliverable|unable to deliver your message to the following"
    r"|error occurred while trying to deliver the mail|delivery to the following recipients? "
    r"(?:failed|has been delayed|was unsuccessful|was aborted)|i'm sorry to have to inform you"
    r" that|this is the (?:mail system|postfix program) at host|following recipient\(?s?\)?"
    r" (?:cannot|could not) be reached|following recipients? did not receive this message"
    r"|did not reach (?:some or all of )?the intended recipient|did not reach the following"
    r" recipient|could not be delivered to (?:the"
    r" following|some) recipients?|unable to deliver (?:the )?message to the following"
    r"|smtp error from remote (?:mail )?server|technical details of (?:permanent|temporary)"
    r" failure|error that the other server returned|response from the remote server was"
    r"|does not like recipient\.|giving up on \S{1,255}\.|the following message to .{0,100}"
    r" was undeliverable|running the courier mail server|failed addresses follow"
    # Exchange's localized NDR sentences ("Diagnoseinformationen für Administratoren"…).
    r"|" + languages.STRONG_BOUNCE_MARKER,
    re.IGNORECASE,
)
# Wording that is a bounce only with another sign (a bounce subject, a null sender…).
WEAK_MARKER_RE = lazy_re(
    r"your message (?:could ?n[o']?t|was ?n[o']?t|did not|has not|cannot|can't) (?:be )?"
    r"(?:delivered|reach)|was not delivered to|remote host said:|(?:permanent|fatal) (?:error"
    r"|failure)|undeliverable (?:mail|message)|message (?:was )?(?:undeliverable|not delivered)"
    r"|mail delivery (?:failed|system)|delivery status notification|delivery failed"
    r"|delivery report|retry timeout exceeded|the original message was received at|"
    + languages.WEAK_BOUNCE_MARKER,
    re.IGNORECASE,
)
FAILURE_WORDS_RE = lazy_re(
    r"undeliver|not (?:be )?delivered|could ?n[o']?t (?:be )?deliver|unable to deliver|failed"
    r"|failure|rejected|returned|permanent|\berror\b|bounced|(?<![\w.])[45]\.\d\.\d"
    r"|(?:^|\s)[45][0-5]\d[ -]",
    re.IGNORECASE,
)
_DELAY_RE = lazy_re(
    r"warning (?:message )?only|do not need to resend|will (?:continue|keep) (?:trying|to try"
    r"|attempting|to attempt)|will be retried|will retry|still (?:be )?(?:trying|retrying|being"
    r" retried|attempting)|has not (?:yet )?been delivered|not yet been delivered|hasn't been"
    r" delivered yet|no action is required on your part|delivery (?:is|has been) delayed"
    r"|\(delay\)|delivery delayed|delayed mail|message delayed|could not send message for past"
    r"|warning: message .{0,120} delayed|temporary problem delivering|retry for .{0,40} more"
    r"|is delayed to these recipients|delivery incomplete"
    r"|will try (?:again|to deliver)|trying to deliver"
    # MMDF: "has not yet been fully delivered. Attempts to deliver the message will continue".
    r"|not yet been fully delivered|attempts to deliver (?:the|your) message will continue"
    r"|" + languages.DELAY,
    re.IGNORECASE,
)
_PERMANENT_RE = lazy_re(
    r"permanent (?:error|fatal|failure)|failed permanently|permanently (?:rejected|failed)"
    r"|gave up|given up|giving up|could not be delivered for \d|message expired|has expired"
    r"|delivery (?:has )?failed|retry timeout exceeded|time limit exceeded"
    r"|have been (?:deleted|removed) from the queue|will not be (?:retried|delivered)"
    r"|non[- ]?deliver|undeliverable|returning message to sender|returned to sender",
    re.IGNORECASE,
)
SUCCESS_RE = lazy_re(
    r"\(success\)|\(relay\)|successful mail delivery|^\s*(?:delivered|relayed)\s*:"
    r"|delivery to these recipients or groups is complete|was successfully delivered"
    r"|has been successfully delivered|delivery to the following recipients? (?:was )?"
    # Sendmail's return receipt transcript: "<rcpt>... Successfully delivered".
    r"|\.\.\. ?successfully delivered|\.\.\. ?expanded to multiple addresses"
    r"(?:successful|succeeded|complete)|your message (?:has been|was) delivered",
    re.IGNORECASE | re.MULTILINE,
)
PHISH_RE = lazy_re(
    r"\bclick (?:here|below|the link)|\b(?:log ?in|sign ?in) (?:to|here|now)"
    r"|\bverify your (?:account|mailbox|e-?mail|password)|\brelease (?:your )?(?:pending|held"
    r"|blocked|these)? ?messages|\bpassword\b|\bmailbox (?:will be )?(?:deactivat|suspend|clos)"
    r"|\bupgrade your (?:mailbox|storage)|\brecover (?:your )?messages",
    re.IGNORECASE,
)
HOST_SENTENCE_RE = lazy_re(
    r"(?:qmail-send program at|mail system at host|running the courier mail server|generating"
    r" server:|reporting-mta:[ \t]*dns;)[ \t]*([\w.-]{3,255})",
    re.IGNORECASE,
)


def looks_failed(report: Report) -> bool:
    """The subject or text announce a failure rather than a delay (computed once per report:
    a DSN asks for each recipient that lacks an Action)."""
    cached = report.memo.get("looks_failed")
    if cached is None:
        head = f"{report.subject}\n{report.text[:65536]}"
        if _DELAY_RE.search(head) and not _PERMANENT_RE.search(head):
            cached = False
        else:
            cached = bool(SUBJECT_BOUNCE_RE.search(report.subject) or _PERMANENT_RE.search(head))
        report.memo["looks_failed"] = cached
    return cached


def delay_wording(text: str) -> bool:
    """Whether ``text`` says delivery is still being tried (a delay warning's words)."""
    return bool(_DELAY_RE.search(text))


def is_delay(report: Report) -> bool:
    """The subject or text announce a delay (delivery still being tried), not a failure."""
    cached = report.memo.get("is_delay")
    if cached is None:
        head = f"{report.subject}\n{report.text[:65536]}"
        cached = bool(_DELAY_RE.search(head)) and not _PERMANENT_RE.search(head)
        report.memo["is_delay"] = cached
    return cached
