"""A tiny SMTP server on loopback that records each transaction's envelope and data.

It plays the role of the MTA the site's SMTP backend talks to, so tests can see the
real envelope sender (MAIL FROM) and recipients (RCPT TO) Django sends.
"""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class Transaction:
    mail_from: str
    rcpt_to: list[str]
    data: bytes


@dataclass
class SinkState:
    transactions: list[Transaction] = field(default_factory=list)
    #: RCPT TO addresses answered with 550 (lower case).
    reject: set[str] = field(default_factory=set)
    #: Reply lines for RCPT TO, by lower-case address or "@domain" (e.g. "452 4.2.2 Full";
    #: a multi-line reply as "550-5.1.1 First line\n550 5.1.1 Last line").
    replies: dict[str, str] = field(default_factory=dict)
    #: Reply lines after the DATA of a transaction with this recipient, by lower-case
    #: address or "@domain" (e.g. "554 5.7.1 Spam"); such a transaction is not kept.
    data_replies: dict[str, str] = field(default_factory=dict)
    #: The reply line to every MAIL FROM, instead of 250 (e.g. "553 5.7.1 Not yours").
    mail_reply: str = ""
    #: Every RCPT TO address received, accepted or not, in order.
    rcpts_seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply_for(self, replies: dict[str, str], address: str) -> str | None:
        address = address.lower()
        return replies.get(address) or replies.get("@" + address.rpartition("@")[2])


def _address(argument: str) -> str:
    value = argument.split(":", 1)[1].strip()
    value = value.split(" ", 1)[0]
    return value.strip("<>")


class _Handler(socketserver.StreamRequestHandler):
    server: SmtpSink

    def reply(self, text: str) -> None:
        """Send a reply; a multi-line one is written with "\\n" between its lines."""
        for line in text.split("\n"):
            self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        state = self.server.state
        self.reply("220 sink.test ESMTP")
        mail_from, rcpts = "", []
        while line := self.rfile.readline():
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            elif verb == "MAIL":
                if state.mail_reply:
                    self.reply(state.mail_reply)
                    continue
                mail_from, rcpts = _address(command), []
                self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                address = _address(command)
                with state.lock:
                    state.rcpts_seen.append(address)
                reply = state.reply_for(state.replies, address)
                if reply:
                    self.reply(reply)
                elif address.lower() in state.reject:
                    self.reply(f"550 5.1.1 <{address}>: Recipient address rejected: No such user")
                else:
                    rcpts.append(address)
                    self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                chunks = []
                while (data_line := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                    chunks.append(data_line[1:] if data_line.startswith(b"..") else data_line)
                refusal = next(
                    (r for r in (state.reply_for(state.data_replies, a) for a in rcpts) if r), None
                )
                if refusal:
                    self.reply(refusal)
                    continue
                with state.lock:
                    state.transactions.append(Transaction(mail_from, rcpts, b"".join(chunks)))
                self.reply("250 2.0.0 Ok: queued")
            elif verb == "RSET":
                mail_from, rcpts = "", []
                self.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Error: command not recognized")


class SmtpSink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = SinkState()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def __enter__(self) -> SmtpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
