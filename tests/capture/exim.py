"""Capture Exim 4.96's own reports (Debian 12's exim4-daemon-light), run privately.

Run as root from the checkout: ``.venv/bin/python -m tests.capture.exim`` (about 3
minutes; rerunnable, it starts from an empty spool each time).

What works here (Debian 12, root, no exim installed, no syslog, no real DNS):

- ``tests.capture.common.unpack`` of exim4-base, exim4-config, exim4-daemon-light,
  plus libidn12 (the binary needs libidn.so.12, not installed: ``LD_LIBRARY_PATH``)
  and libnss-wrapper, into /tmp/exim-cap; the binary is run from there.
- The binary looks up its compiled-in user ``Debian-exim`` by name before reading any
  configuration ("failed to find uid for user name"). No system user is added:
  nss_wrapper (``LD_PRELOAD`` + ``NSS_WRAPPER_PASSWD``/``GROUP``) gives it a private
  passwd/group with Debian-exim and the local mailbox users. ``keep_environment``
  must list those variables, or Exim empties its environment when it re-executes
  itself (to send a bounce) and the copy can't start.
- ``-C private.conf``: Debian's build has TRUSTED_CONFIG_LIST=/etc/exim4/trusted_configs
  and no ALT_CONFIG_PREFIX, so any file is accepted with -C, but root privilege is
  kept only when the *caller* is root. The daemon (root) takes messages over SMTP
  on a loopback port with ``queue_only``: the reception process runs as Debian-exim,
  and a delivery it re-executed would lose root with -C (spec, "-C"). Deliveries are
  therefore done by queue runs started by this script as root (``exim -C conf -q``
  every few seconds); those keep root, deliver locally as the mailbox users and
  re-execute Exim as root to send reports. /etc/exim4 is not touched.
- ``exim_path``, ``spool_directory``, ``log_file_path``, ``pid_file_path`` point into
  the private run directory; ``primary_hostname = mx.exim.capture.test``.
- Remote domains go by ``manualroute`` to 127.0.0.1 (``self = send``, transport
  ``allow_localhost``) on the port of a ``tests.smtp_sink.SmtpSink`` that plays the
  vendors' replies; reports go to ``sender@bounces.test``, routed the same way, and
  are the DATA of the sink's null-sender transactions, bytes as Exim wrote them.
- Short timers: retry rule ``F,75s,15s``, ``delay_warning = 20s``; an appendfile quota
  of 1 KB for the user ``full`` with a ``quota`` retry rule that fails at once.
- This machine's resolver (10.255.255.53) answers NXDOMAIN at once for every name,
  ``.invalid`` included; the ``dnslookup`` router then declines and Exim reports
  "Unrouteable address". A SERVFAIL or timeout could not be produced here.

What didn't: running deliveries from the daemon itself (``-bd -q10s`` or immediate
delivery) loses root because of -C; SMTP-time refusals produce no report at all
(the client just gets the error), so the local "refused after DATA" case is a system
filter ``fail``, and the remote ones are played by the sink after DATA.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from tests.capture import common
from tests.smtp_sink import SmtpSink

ROOT = Path("/tmp/exim-cap")
RUN = ROOT / "run"
LIB = ROOT / "usr/lib/x86_64-linux-gnu"
EXIM = ROOT / "usr/sbin/exim4"
PACKAGES = ["exim4-base", "exim4-config", "exim4-daemon-light", "libidn12", "libnss-wrapper"]
LOCAL = "exim.capture.test"
SENDER = "sender@bounces.test"
EXIM_UID = 64990
#: Local mailbox users (nss_wrapper's passwd), delivered to RUN/mail/<name>.
USERS = {"carol": 64991, "full": 64992}

CONFIG = """\
primary_hostname = mx.exim.capture.test
qualify_domain = exim.capture.test
exim_path = @EXIM@
spool_directory = @RUN@/spool
log_file_path = @RUN@/log/%slog
pid_file_path = @RUN@/exim.pid
keep_environment = LD_LIBRARY_PATH : LD_PRELOAD : NSS_WRAPPER_PASSWD : NSS_WRAPPER_GROUP
daemon_smtp_ports = @PORT@
local_interfaces = 127.0.0.1
queue_only = true
dsn_advertise_hosts = *
rfc1413_hosts =
tls_advertise_hosts =
host_lookup =
delay_warning = 20s : 1h
system_filter = @RUN@/system.filter
trusted_users = root
domainlist local_domains = exim.capture.test
acl_smtp_rcpt = acl_rcpt

begin acl
acl_rcpt:
  accept hosts = 127.0.0.1

begin routers
nowhere:
  driver = dnslookup
  domains = *.invalid
  transport = sink_smtp
  no_more
down:
  driver = manualroute
  domains = down.example
  route_list = * 127.0.0.1
  self = send
  transport = closed_smtp
  no_more
remote:
  driver = manualroute
  domains = ! +local_domains
  route_list = * 127.0.0.1
  self = send
  transport = sink_smtp
  no_more
aliases:
  driver = redirect
  domains = +local_domains
  data = ${lookup{$local_part}lsearch{@RUN@/aliases}}
  allow_fail
  allow_defer
local_user:
  driver = accept
  domains = +local_domains
  check_local_user
  transport = local_mailbox

begin transports
sink_smtp:
  driver = smtp
  port = @SINK@
  allow_localhost
closed_smtp:
  driver = smtp
  port = @CLOSED@
  allow_localhost
local_mailbox:
  driver = appendfile
  file = $home/mbox
  delivery_date_add
  envelope_to_add
  return_path_add
  quota = ${if eq{$local_part}{full}{1K}{}}

begin retry
*  quota
*  *  F,75s,15s
"""

ALIASES = """\
gone: :fail: Unknown user
loop-a: loop-b@exim.capture.test
loop-b: loop-a@exim.capture.test
"""

SYSTEM_FILTER = """\
# Exim filter
if $h_subject: contains "[refuse]" then
  fail text "Message rejected by content policy: attachments of this type are not accepted"
endif
"""


def gmail(reply: str, url: str, n: int) -> str:
    """Gmail's multi-line reply: ``"550 5.1.1 line\\nline"`` + its help link and session id."""
    code, status, text = reply.split(" ", 2)
    last = f"https://support.google.com/mail/?p={url} 2adb3069b0e04-59a1b2c3d4si12345{n}e87.{n}"
    lines = [*text.split("\n"), f" {last} - gsmtp"]
    return "\n".join(
        f"{code}{'-' if i < len(lines) - 1 else ' '}{status} {line}" for i, line in enumerate(lines)
    )


@dataclass
class Scenario:
    """One message sent through Exim, and the replies the sink plays for its recipients."""

    name: str
    rcpts: list[str]
    replies: dict[str, str] = field(default_factory=dict)  # to RCPT TO
    data_replies: dict[str, str] = field(default_factory=dict)  # after DATA
    notify: str = ""  # NOTIFY= for every recipient
    subject: str = "Your order has shipped"
    body_lines: int = 3
    received: int = 0  # extra Received headers; > 0 submits by command line, not SMTP
    message_id: str = ""


NO_SUCH_USER = gmail(
    "550 5.1.1 The email account that you tried to reach does not exist. Please try\n"
    "double-checking the recipient's email address for typos or\n"
    "unnecessary spaces. For more information, go to",
    "NoSuchUser",
    1,
)
OVER_QUOTA = gmail(
    "552 5.2.2 The recipient's inbox is out of storage space and inactive. Please direct\n"
    "the recipient to",
    "OverQuotaPerm",
    2,
)
ZOHO_NO_USER = "550 5.1.1 User does not exist"
SCENARIOS = [
    Scenario(
        "remote-gmail-user-unknown",
        ["ana@gmail.example"],
        replies={"ana@gmail.example": NO_SUCH_USER},
    ),
    Scenario(
        "remote-gmail-over-quota",
        ["bruno@gmail.example"],
        replies={"bruno@gmail.example": OVER_QUOTA},
    ),
    Scenario(
        "remote-gmail-unsolicited-after-data",
        ["chen@gmail.example"],
        data_replies={
            "chen@gmail.example": gmail(
                "550 5.7.1 [192.0.2.25] Our system has detected that this message is\n"
                "likely unsolicited mail. To reduce the amount of spam sent to Gmail,\n"
                "this message has been blocked. For more information, go to",
                "UnsolicitedMessageError",
                3,
            )
        },
    ),
    Scenario(
        "remote-gmail-unauthenticated-sender",
        ["dana@workspace.example"],
        data_replies={
            "dana@workspace.example": gmail(
                "550 5.7.26 This mail has been blocked because the sender is unauthenticated.\n"
                "Gmail requires all senders to authenticate with either SPF or DKIM.\n\n"
                " Authentication results:\n DKIM = did not pass\n"
                " SPF [bounces.test] with ip: [192.0.2.25] = did not pass\n\n"
                " For instructions on setting up authentication, go to",
                "UnauthenticatedSenderError",
                4,
            )
        },
    ),
    Scenario(
        "remote-gmail-rate-limited",
        ["emil@gmail.example"],
        replies={
            "emil@gmail.example": gmail(
                "421 4.7.0 [192.0.2.25      15] Our system has detected an unusual rate of\n"
                "unsolicited mail originating from your IP address. To protect our\n"
                "users from spam, mail sent from your IP address has been temporarily\n"
                "rate limited. For more information, go to",
                "UnsolicitedRateLimitError",
                5,
            )
        },
    ),
    Scenario(
        "remote-gmail-message-too-big",
        ["fay@workspace.example"],
        data_replies={
            "fay@workspace.example": gmail(
                "552 5.3.4 Your message exceeded Google's message size limits. For more\n"
                "information, go to",
                "MaxSizeError",
                6,
            )
        },
    ),
    Scenario(
        "remote-gmail-too-many-hops",
        ["gus@gmail.example"],
        data_replies={
            "gus@gmail.example": gmail(
                "554 5.6.0 Message exceeded 50 hops, this may indicate a mail loop. For more\n"
                "information, go to",
                "MailLoop",
                7,
            )
        },
    ),
    Scenario(
        "remote-gmail-account-disabled",
        ["hana@workspace.example"],
        replies={
            "hana@workspace.example": gmail(
                "550 5.2.1 The email account that you tried to reach is disabled. For more\n"
                "information, go to",
                "DisabledUser",
                8,
            )
        },
    ),
    Scenario(
        "remote-zoho-user-unknown",
        ["ines@zoho.example"],
        replies={"ines@zoho.example": ZOHO_NO_USER},
    ),
    Scenario(
        "remote-access-denied",
        ["ivan@corp.example"],
        replies={
            "ivan@corp.example": "550 5.7.1 <ivan@corp.example>: Recipient address rejected: "
            "Access denied"
        },
    ),
    Scenario(
        "remote-certificate-not-found",
        ["jo@partner.example"],
        replies={
            "jo@partner.example": "550 5.7.1 Client certificate of mx.exim.capture.test could not "
            "be found in the trusted partner list; TLS with a partner certificate is required"
        },
    ),
    Scenario("connection-refused", ["kim@down.example"]),
    Scenario("success-relayed", ["lee@example.com"], notify="SUCCESS"),
    Scenario("success-local", [f"carol@{LOCAL}"], notify="SUCCESS,FAILURE"),
    Scenario("local-user-unknown", [f"nosuch@{LOCAL}"]),
    Scenario("local-alias-fail", [f"gone@{LOCAL}"]),
    Scenario("local-alias-loop", [f"loop-a@{LOCAL}"]),
    Scenario("local-quota-exceeded", [f"full@{LOCAL}"], body_lines=60),
    Scenario("unrouteable-domain", ["max@nosuch.invalid"]),
    Scenario("local-system-filter-fail", ["nora@example.com"], subject="[refuse] Invoice"),
    Scenario("local-too-many-received", ["otto@example.com"], received=31),
    Scenario(
        "multi-recipient-mixed",
        [
            "pia@gmail.example",
            "quinn@zoho.example",
            f"nosuch2@{LOCAL}",
            "rosa@workspace.example",
            "sam@example.com",
            "tom@gmail.example",
        ],
        replies={
            "pia@gmail.example": NO_SUCH_USER,
            "quinn@zoho.example": ZOHO_NO_USER,
            "rosa@workspace.example": OVER_QUOTA,
            "tom@gmail.example": "450 4.2.1 The user you are trying to contact is "
            "receiving mail too quickly.",
        },
    ),
]
#: Reports expected: one each, delay warnings for three, the 450 in the mixed one expires.
EXPECTED = len(SCENARIOS) + 3 + 1
#: Saved to held_back/exim-<name>.eml instead (labelled before any classifying).
HELD_BACK = {"remote-zoho-user-unknown", "remote-gmail-unauthenticated-sender", "local-alias-fail"}


def environment() -> dict[str, str]:
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LD_LIBRARY_PATH": str(LIB),
        "LD_PRELOAD": str(LIB / "libnss_wrapper.so"),
        "NSS_WRAPPER_PASSWD": str(RUN / "passwd"),
        "NSS_WRAPPER_GROUP": str(RUN / "group"),
    }


def exim(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    command = [str(EXIM), "-C", str(RUN / "exim.conf"), *args]
    return subprocess.run(command, input=stdin, env=environment(), capture_output=True)


def log(name: str) -> str:
    path = RUN / "log" / name
    return path.read_text(errors="replace") if path.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(sink_port: int) -> int:
    """A fresh run directory: passwd/group, config, aliases, filter; the daemon's port."""
    if RUN.exists():
        shutil.rmtree(RUN)
    for sub in ("spool", "log", *(f"home/{user}" for user in USERS)):
        (RUN / sub).mkdir(parents=True)
    for user, uid in USERS.items():
        os.chown(RUN / "home" / user, uid, EXIM_UID)
    users = "".join(
        f"{n}:x:{uid}:{EXIM_UID}::{RUN}/home/{n}:/bin/false\n" for n, uid in USERS.items()
    )
    (RUN / "passwd").write_text(
        f"root:x:0:0:root:/root:/bin/sh\nDebian-exim:x:{EXIM_UID}:{EXIM_UID}::{RUN}:/bin/false\n"
        f"nobody:x:65534:65534::/nonexistent:/bin/false\n{users}"
    )
    (RUN / "group").write_text(f"root:x:0:\nDebian-exim:x:{EXIM_UID}:\nnogroup:x:65534:\n")
    os.chown(RUN / "spool", EXIM_UID, EXIM_UID)
    os.chown(RUN / "log", EXIM_UID, EXIM_UID)
    port = free_port()
    values = {
        "@EXIM@": str(EXIM),
        "@RUN@": str(RUN),
        "@PORT@": str(port),
        "@SINK@": str(sink_port),
        "@CLOSED@": str(free_port()),
    }
    config = CONFIG
    for key, value in values.items():
        config = config.replace(key, value)
    (RUN / "exim.conf").write_text(config)
    (RUN / "aliases").write_text(ALIASES)
    (RUN / "system.filter").write_text(SYSTEM_FILTER)
    return port


def message(scenario: Scenario) -> bytes:
    msg = EmailMessage()
    for i in range(scenario.received):
        msg["Received"] = (
            f"from relay{i}.example.net by relay{i + 1}.example.net with ESMTP "
            f"id r{i}; Fri, 4 Dec 2026 10:{i:02d}:00 +0000"
        )
    msg["From"] = f"Example Shop <{SENDER}>"
    msg["To"] = ", ".join(scenario.rcpts)
    msg["Subject"] = scenario.subject
    msg["Message-ID"] = scenario.message_id = make_msgid(scenario.name, "app.bounces.test")
    body = "Hello,\n\nyour order 1042 is on its way.\n"
    msg.set_content(
        body + "".join(f"Item {i}: garden chair, blue\n" for i in range(scenario.body_lines))
    )
    return msg.as_bytes()


def submit(port: int, scenario: Scenario) -> None:
    raw = message(scenario)
    if scenario.received:
        done = exim("-odq", "-oem", "-oi", "-f", SENDER, *scenario.rcpts, stdin=raw)
        print(scenario.name, "exit", done.returncode, done.stderr.decode().strip())
        return
    options = [f"NOTIFY={scenario.notify}"] if scenario.notify else []
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.sendmail(SENDER, scenario.rcpts, raw, rcpt_options=options)


def report_type(raw: bytes) -> str:
    head = raw.split(b"\n\n", 1)[0].lower()
    if b"subject: warning: message" in head:
        return "delay"
    if b"report-type=delivery-status" in head and b"Action: failed" not in raw:
        return "success"
    return "failure"


def collect(sink: SmtpSink, expected: int, timeout: float) -> dict[str, bytes]:
    """Run the queue as root every few seconds; the reports the sink got, by file name."""
    reports: dict[str, bytes] = {}
    seen = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(reports) < expected:
        exim("-q")
        with sink.state.lock:
            new, seen = sink.state.transactions[seen:], len(sink.state.transactions)
        for raw in (t.data for t in new if not t.mail_from):
            (name,) = (s.name for s in SCENARIOS if s.message_id.encode() in raw)
            kind = report_type(raw)
            base = name if kind == "failure" or name.startswith(kind) else f"{kind}-{name}"
            file_name = base if base not in reports else f"{base}-2"  # a later report
            reports[file_name] = raw
        time.sleep(4)
    return reports


def main() -> None:
    common.unpack(PACKAGES, ROOT)
    os.chmod(EXIM, 0o755)  # not setuid: a setuid copy ignores LD_PRELOAD/LD_LIBRARY_PATH
    with SmtpSink() as sink:
        port = prepare(sink.port)
        for s in SCENARIOS:
            sink.state.replies.update(s.replies)
            sink.state.data_replies.update(s.data_replies)
        daemon = subprocess.Popen(
            [str(EXIM), "-C", str(RUN / "exim.conf"), "-bdf", "-oX", str(port)], env=environment()
        )
        try:
            common.wait_for(lambda: "daemon started" in log("mainlog"), 10, "the exim daemon")
            for s in SCENARIOS:
                submit(port, s)
            reports = collect(sink, expected=EXPECTED, timeout=300)
        finally:
            daemon.terminate()
            daemon.wait()
    for file_name, raw in sorted(reports.items()):
        path = common.save("exim", file_name, raw)
        if file_name in HELD_BACK:
            path.replace(common.FIXTURES / "held_back" / f"exim-{file_name}.eml")
        print(file_name)
    print(f"{len(reports)} reports of {EXPECTED} expected")


if __name__ == "__main__":
    main()
