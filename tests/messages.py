"""Messages for tests, written here: DSNs in Postfix's layout, auto-replies, complaints."""

from __future__ import annotations

import itertools

_counter = itertools.count(1)


def _message_id() -> str:
    return f"<test-{next(_counter)}.{id(_counter)}@mx.example.net>"


def dsn(
    recipient: str = "dead@example.org",
    *,
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str = "smtp; 550 5.1.1 <dead@example.org>: Recipient address rejected: "
    "User unknown in virtual mailbox table",
    return_path: str = "bounces+abc@bounces.example.com",
    message_id: str | None = None,
) -> bytes:
    """A multipart/report DSN the way Postfix writes one."""
    message_id = message_id or _message_id()
    return f"""Return-Path: <>
Delivered-To: {return_path}
Received: by mx.example.net (Postfix) id 4F2A81C0
\tfor <{return_path}>; Thu, 26 Nov 2026 00:43:59 +0000 (UTC)
Date: Thu, 26 Nov 2026 00:43:59 +0000 (UTC)
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {return_path}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4F2A81C0.1795650239/mx.example.net"
Message-Id: {message_id}

This is a MIME-encapsulated message.

--4F2A81C0.1795650239/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mail.example.org[192.0.2.7] said: {diagnostic}

--4F2A81C0.1795650239/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 4F2A81C0
Arrival-Date: Thu, 26 Nov 2026 00:43:58 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.example.org
Diagnostic-Code: {diagnostic}

--4F2A81C0.1795650239/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <{return_path}>
From: News <news@example.com>
To: {recipient}
Subject: Our newsletter
Message-ID: <newsletter-1@example.com>

--4F2A81C0.1795650239/mx.example.net--
""".replace("\n", "\r\n").encode()


def auto_reply(message_id: str | None = None) -> bytes:
    return f"""From: Carol <carol@example.org>
To: bounces+abc@bounces.example.com
Subject: Automatic reply: Our newsletter
Auto-Submitted: auto-replied
Message-ID: {message_id or _message_id()}
Content-Type: text/plain; charset=utf-8

I am out of the office until Monday and will read your message then.
""".encode()


def complaint(feedback_type: str = "abuse") -> bytes:
    return f"""From: Feedback Loop <fbl@isp.example.net>
To: bounces+abc@bounces.example.com
Subject: Spam complaint
Message-ID: {_message_id()}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="arf"

--arf
Content-Type: text/plain; charset=us-ascii

This is an email abuse report for a message received from 198.51.100.4.

--arf
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: ExampleFBL/1.0
Version: 1
Original-Rcpt-To: <reader@example.org>

--arf
Content-Type: message/rfc822

From: News <news@example.com>
To: reader@example.org
Subject: Our newsletter
Message-ID: <newsletter-1@example.com>

Hello.
--arf--
""".encode()


def human_reply() -> bytes:
    return f"""From: Dave <dave@example.org>
To: bounces+abc@bounces.example.com
Subject: Re: Our newsletter
Message-ID: {_message_id()}

Thanks, see you next week.
""".encode()
