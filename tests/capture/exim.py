"""Capture Exim 4.96's own reports (Debian 12's exim4-daemon-light), run privately.

Run as root from the checkout: ``.venv/bin/python -m tests.capture.exim`` (about 90 s;
rerunnable: it starts from an empty run directory, /tmp/exim-cap/run, each time).

What works here (Debian 12, root, no Exim installed, no syslog, no usable DNS):

- ``common.unpack`` of exim4-base, exim4-config, exim4-daemon-light, plus libidn12
  (``exim4`` needs libidn.so.12, not installed: ``LD_LIBRARY_PATH``) and
  libnss-wrapper, into /tmp/exim-cap. Nothing under /etc is touched.
- The copy's setuid bit is dropped (``chmod 0755``). Reports are injected by an Exim
  that the delivery process re-executes as Debian-exim; from a setuid binary the loader
  then ignores ``LD_LIBRARY_PATH``/``LD_PRELOAD`` and every report was lost with
  "Process failed (127) when writing error message".
- Exim looks up its compiled-in user ``Debian-exim`` by name before reading any
  configuration ("failed to find uid for user name"). No system user is added:
  nss_wrapper (``LD_PRELOAD`` + ``NSS_WRAPPER_PASSWD``/``_GROUP``) supplies a private
  passwd/group with Debian-exim and the mailbox users. ``keep_environment`` must name
  those variables: without it Exim logs "purging the environment" and its re-executed
  copies fail on libidn.so.12 (no report at all).
- ``-C run/exim.conf``: Debian's build has no ALT_CONFIG_PREFIX, so any path is taken,
  and TRUSTED_CONFIG_LIST=/etc/exim4/trusted_configs (absent, left so). Every
  re-executed Exim then logs "exim user lost privilege for using -C option": deliveries
  started by the daemon (immediately or by ``-q5s``) or by ``-odi`` run as Debian-exim,
  so remote deliveries and reports work but local ones fail ("unable to set gid=...
  or uid=...", message frozen). What works: the daemon (``-bdf -oX PORT``, loopback)
  only receives, with ``queue_only``; this script, as root, runs ``exim -C ... -q``
  every 4 s, and those queue runs keep root for appendfile deliveries.
- With ``-oX`` no pid file is written; the script waits for "daemon started" in mainlog.
  Exim 4.96 refuses an appendfile path built from ``$local_part`` ("Tainted ... not
  permitted"); ``$home`` from ``check_local_user`` is accepted.
- ``primary_hostname = mx.exim.capture.test``. Remote domains go by ``manualroute`` to
  127.0.0.1 (``self = send``, ``allow_localhost``) on the port of a ``SmtpSink`` that
  plays the vendors' replies (a second sink, for strict.example, refuses MAIL FROM);
  reports go to ``sender@bounces.test`` the same way and are saved from the sink's
  null-sender transactions, as Exim wrote them.
- Short timers: retry rule ``F,75s,15s``, ``delay_warning = 20s : 1h``; a 1K appendfile
  quota for ``full`` with a ``quota`` retry rule that has no times (fails at once).
- The resolver (10.255.255.53) answers NXDOMAIN at once for every name, ``.invalid``
  included: the ``dnslookup`` router declines and Exim says "Unrouteable address".
  No SERVFAIL or timeout could be produced.

What Exim does that one might not expect: an alias loop (a -> b -> a) ends as
"Unrouteable address" (a redirect router is skipped for an address it already
handled), word for word the unknown-user report; 31 Received headers submitted on the
command line fail with "Too many Received headers" in the log but nothing but the
address in the report (over SMTP it would be refused at DATA, no report); refusals in
Exim's own ACLs reach only the SMTP client, so the local "refused after the message"
case is a system filter ``fail``, and remote refusals after DATA are played by the sink.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
import time
from dataclasses import dataclass
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
#: Local mailbox users (nss_wrapper's passwd), delivered to RUN/home/<name>/mbox.
USERS = {"carol": 64991, "full": 64992}

CONFIG = """\
primary_hostname = mx.exim.capture.test
exim_path = @EXIM@
spool_directory = @RUN@/spool
log_file_path = @RUN@/log/%slog
keep_environment = LD_LIBRARY_PATH : LD_PRELOAD : NSS_WRAPPER_PASSWD : NSS_WRAPPER_GROUP
daemon_smtp_ports = @PORT@
local_interfaces = 127.0.0.1
queue_only = true
dsn_advertise_hosts = *
rfc1413_hosts =
tls_advertise_hosts =
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
remote:
  driver = manualroute
  domains = ! +local_domains
  route_list = * 127.0.0.1
  self = send
  transport = ${if eq{$domain}{down.example}{closed_smtp}\
    {${if eq{$domain}{strict.example}{strict_smtp}{sink_smtp}}}}
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
strict_smtp:
  driver = smtp
  port = @STRICT@
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


def gmail(n: int, reply: str, url: str) -> str:
    """Gmail's multi-line reply to ``"550 5.1.1 line\\nline"``, its help link, session id."""
    code, status, text = reply.split(" ", 2)
    link = f"https://support.google.com/mail/?p={url} 2adb3069b0e04-59a1b2c3d4si1234{n}e87.{n}"
    lines = [*text.split("\n"), f" {link} - gsmtp"]
    last = len(lines) - 1
    return "\n".join(f"{code}{'-' if i < last else ' '}{status} {t}" for i, t in enumerate(lines))


# fmt: off
MORE = "For more information, go to"
NO_SUCH_USER = gmail(1, "550 5.1.1 The email account that you tried to reach does not exist. "
                     "Please try\ndouble-checking the recipient's email address for typos or\n"
                     f"unnecessary spaces. {MORE}", "NoSuchUser")
OVER_QUOTA = gmail(2, "552 5.2.2 The recipient's inbox is out of storage space and inactive. "
                   "Please direct\nthe recipient to", "OverQuotaPerm")
ZOHO_NO_USER = "550 5.1.1 User does not exist"
#: What the sink answers to RCPT TO, by recipient (Gmail: support.google.com/a/answer/3726730).
REPLIES = {
    "ana@gmail.example": NO_SUCH_USER, "pia@gmail.example": NO_SUCH_USER,
    "bruno@gmail.example": OVER_QUOTA, "rosa@workspace.example": OVER_QUOTA,
    "ines@zoho.example": ZOHO_NO_USER, "quinn@zoho.example": ZOHO_NO_USER,
    "emil@gmail.example": gmail(5, "421 4.7.0 [192.0.2.25      15] Our system has detected an "
        "unusual rate of\nunsolicited mail originating from your IP address. To protect our\n"
        "users from spam, mail sent from your IP address has been temporarily\n"
        f"rate limited. {MORE}", "UnsolicitedRateLimitError"),
    "hana@workspace.example": gmail(8, "550 5.2.1 The email account that you tried to reach is "
                                    f"disabled. {MORE}", "DisabledUser"),
    "tom@gmail.example": "450 4.2.1 The user you are trying to contact is receiving mail too "
                         "quickly.",
    "uma@gmail.example": gmail(9, "550 5.7.1 The IP you're using to send mail is not authorized "
        "to send email directly to our servers. Please use the SMTP relay at your service "
        f"provider instead. {MORE}", "NotAuthorizedError"),
    "vera@gmail.example": gmail(10, "452 4.2.2 The email account that you tried to reach is over "
                                "quota. Please direct the recipient to", "OverQuotaTemp"),
    "ivan@corp.example": "550 5.7.1 <ivan@corp.example>: Recipient address rejected: Access denied",
    "jo@partner.example": "550 5.7.1 Client certificate of mx.exim.capture.test could not be "
                          "found in the trusted partner list; TLS with a partner certificate "
                          "is required",
}
#: What the sink answers after DATA, by recipient.
DATA_REPLIES = {
    "chen@gmail.example": gmail(3, "550 5.7.1 [192.0.2.25] Our system has detected that this "
        "message is\nlikely unsolicited mail. To reduce the amount of spam sent to Gmail,\n"
        f"this message has been blocked. {MORE}", "UnsolicitedMessageError"),
    "dana@workspace.example": gmail(4, "550 5.7.26 This mail has been blocked because the sender "
        "is unauthenticated.\nGmail requires all senders to authenticate with either SPF or "
        "DKIM.\n\n Authentication results:\n DKIM = did not pass\n SPF [bounces.test] with ip: "
        "[192.0.2.25] = did not pass\n\n For instructions on setting up authentication, go to",
        "UnauthenticatedSenderError"),
    "fay@workspace.example": gmail(6, "552 5.3.4 Your message exceeded Google's message size "
                                   f"limits. {MORE}", "MaxSizeError"),
    "gus@gmail.example": gmail(7, "554 5.6.0 Message exceeded 50 hops, this may indicate a mail "
                               f"loop. {MORE}", "MailLoop"),
}
# fmt: on


@dataclass
class Scenario:
    """One message sent through Exim."""

    name: str
    rcpts: list[str]
    notify: str = ""  # NOTIFY= for every recipient
    subject: str = "Your order has shipped"
    body_lines: int = 3
    received: int = 0  # extra Received headers; > 0 submits by command line, not SMTP
    message_id: str = ""


S = Scenario
# fmt: off
SCENARIOS = [
    S("remote-gmail-user-unknown", ["ana@gmail.example"]),
    S("remote-gmail-over-quota", ["bruno@gmail.example"]),
    S("remote-gmail-unsolicited-after-data", ["chen@gmail.example"]),
    S("remote-gmail-unauthenticated-sender", ["dana@workspace.example"]),
    S("remote-gmail-rate-limited", ["emil@gmail.example"]),
    S("remote-gmail-message-too-big", ["fay@workspace.example"]),
    S("remote-gmail-too-many-hops", ["gus@gmail.example"]),
    S("remote-gmail-account-disabled", ["hana@workspace.example"]),
    S("remote-zoho-user-unknown", ["ines@zoho.example"]),
    S("remote-access-denied", ["ivan@corp.example"]),
    S("remote-certificate-not-found", ["jo@partner.example"]),
    S("remote-gmail-ip-not-authorized", ["uma@gmail.example"]),
    S("remote-gmail-over-quota-temporary", ["vera@gmail.example"]),
    S("remote-sender-rejected", ["walt@strict.example"]),
    S("connection-refused", ["kim@down.example"]),
    S("success-relayed", ["lee@example.com"], notify="SUCCESS"),
    S("success-local", [f"carol@{LOCAL}"], notify="SUCCESS,FAILURE"),
    S("local-user-unknown", [f"nosuch@{LOCAL}"]),
    S("local-alias-fail", [f"gone@{LOCAL}"]),
    S("local-alias-loop", [f"loop-a@{LOCAL}"]),
    S("local-quota-exceeded", [f"full@{LOCAL}"], body_lines=60),
    S("unrouteable-domain", ["max@nosuch.invalid"]),
    S("local-system-filter-fail", ["nora@example.com"], subject="[refuse] Invoice"),
    S("local-too-many-received", ["otto@example.com"], received=31),
    S("multi-recipient-mixed", ["pia@gmail.example", "quinn@zoho.example", f"nosuch2@{LOCAL}",
                                "rosa@workspace.example", "sam@example.com", "tom@gmail.example"]),
]
# fmt: on
#: Reports expected: one each, delay warnings for four, the 450 in the mixed one expires.
EXPECTED = len(SCENARIOS) + 4 + 1
#: The second sink's reply to MAIL FROM (Postfix reject_unknown_sender_domain wording).
SENDER_REFUSED = "553 5.1.8 <sender@bounces.test>: Sender address rejected: Domain not found"
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


def prepare(sink_port: int, strict_port: int) -> int:
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
    config = CONFIG.replace("@EXIM@", str(EXIM)).replace("@RUN@", str(RUN))
    config = config.replace("@PORT@", str(port)).replace("@SINK@", str(sink_port))
    config = config.replace("@CLOSED@", str(free_port())).replace("@STRICT@", str(strict_port))
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
    with SmtpSink() as sink, SmtpSink() as strict:
        strict.state.mail_reply = SENDER_REFUSED
        port = prepare(sink.port, strict.port)
        sink.state.replies.update(REPLIES)
        sink.state.data_replies.update(DATA_REPLIES)
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
