"""Capture OpenSMTPD's bounce reports: ``.venv/bin/python -m tests.capture.opensmtpd``.

What works here (Debian 12, as root, OpenSMTPD 6.8.0p2 from Debian's ``opensmtpd``):

- ``opensmtpd`` is unpacked under ``/tmp/osmtpd`` (never installed: it conflicts with
  postfix). Its libraries (libevent, libdb, libssl, libpam) are already installed.
- Debian's build drops privileges to the users **opensmtpd** and **opensmtpq**, not
  OpenBSD's _smtpd/_smtpq ("unknown user opensmtpd" otherwise); this module creates
  them with ``useradd --system`` when missing. ``smtpctl`` must be setgid opensmtpq.
- The queue (``/var/spool/smtpd``), control socket (``/var/run/smtpd.sock``), chroot
  (``/var/lib/opensmtpd/empty``) and delivery helpers (``/usr/libexec/opensmtpd``) are
  compiled in; smtpd.conf has no option to move them and ``-D``/``-P`` don't either
  (``-D`` sets macros, ``-P`` pauses subsystems). So smtpd runs in a private mount
  and UTS namespace (``unshare --mount --uts``) with private directories bind-mounted
  over ``/var/spool``, ``/run``, ``/var/lib`` and ``/usr/libexec`` (the unpacked
  helpers), and its own host name, mx.opensmtpd.capture.test; nothing on the host
  changes. ``smtpctl`` is run with ``nsenter -t PID -m``. ``smtpd -d -v -f CONF`` logs
  to ``/tmp/osmtpd/smtpd.log``.
- Reports go to me@sender.test, relayed to one :class:`SmtpSink`; remote replies are
  played by a second sink (relay ``smtp+notls://127.0.0.1:PORT``). A local mailbox is
  a maildir on a 64 KiB tmpfs, filled up (disk full), or an ``mda`` command that
  fails. Retries are forced with ``smtpctl schedule all``; ``queue ttl 60s`` and
  ``bounce warn-interval 15s`` give warnings and expiries within two minutes.

What didn't: an unknown user is refused at RCPT (no report), so unknown users and
alias loops are reported through a second listener of the same smtpd (tag ``hop``)
acting as the next hop. A relay that refuses connections must not share its IP with
the sinks: OpenSMTPD marks the whole host down (127.0.0.2 is used). OpenSMTPD 6.8
sends an expired message's report as "delayed" (Action: delayed, Status 4.4.7,
"Envelope expired"), and its DSN Status is 5.0.0 for every remote reply.
"""

from __future__ import annotations

import smtplib
import subprocess
import time
from pathlib import Path

from tests.capture.common import save, unpack, wait_for
from tests.smtp_sink import SmtpSink

MTA = "opensmtpd"
BASE = Path("/tmp/osmtpd")
HOST = "mx.opensmtpd.capture.test"
PORT, HOP_PORT = 10025, 10027
SENDER = "me@sender.test"
MS = "[DM6PR00MB0000.namprd00.prod.outlook.test]"  # Exchange Online's server tag

CONF = """\
bounce warn-interval 15s
queue ttl 60s
table aliases file:{base}/aliases
table vusers file:{base}/vusers
listen on 127.0.0.1 port {port}
listen on 127.0.0.1 port {hop_port} tag hop
action "reports" relay host smtp+notls://127.0.0.1:{reports}
action "remote" relay host smtp+notls://127.0.0.1:{remote}
action "hop" relay host smtp+notls://127.0.0.1:{hop_port}
action "self" relay host smtp+notls://127.0.0.1:{port}
action "refused" relay host smtp+notls://127.0.0.2:25
action "mx" relay
action "mailfrom" relay host smtp+notls://127.0.0.1:{mailfrom}
action "delivered" mda "/bin/sh -c 'cat >/dev/null'" virtual <vusers> user nobody
action "users" maildir "{base}/full/%{{user.username}}" alias <aliases>
action "virtual" maildir "{base}/full/%{{dest.user}}" virtual <vusers> user nobody
action "mdafail" mda "/bin/sh -c 'cat >/dev/null; echo {mdafail}; exit 73'" \
    virtual <vusers> user nobody
action "mdatemp" mda "/bin/sh -c 'cat >/dev/null; echo {mdatemp}; exit 75'" \
    virtual <vusers> user nobody
match from any tag hop for domain "users.test" action "users"
match from any tag hop for domain "virtual.test" action "virtual"
match from any for domain "users.test" action "hop"
match from any for domain "virtual.test" action "hop"
match from any for domain "local.test" action "virtual"
match from any for domain "mdafail.test" action "mdafail"
match from any for domain "mdatemp.test" action "mdatemp"
match from any for domain "loop.test" action "self"
match from any for domain "mailfrom.test" action "mailfrom"
match from any for domain "delivered.test" action "delivered"
match from any for domain "refused.test" action "refused"
match from any for domain "nosuch.invalid" action "mx"
match from any for domain "sender.test" action "reports"
match from any for any action "remote"
"""
ALIASES = "loopa: loopb\nloopb: loopa\n"
VIRTUAL_USERS = ("alice@local.test", "u@mdafail.test", "u@mdatemp.test", "u@delivered.test")
VUSERS = "".join(f"{address} nobody\n" for address in VIRTUAL_USERS)

#: Remote replies at RCPT (Microsoft's "Email non-delivery reports and SMTP errors in
#: Exchange Online", learn.microsoft.com, and outlook.com's; counter-examples last).
RCPT_REPLIES = {
    "ms-recipient-not-found": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not"
    f" found by SMTP address lookup {MS}",
    "ms-ex-recip-not-found": f"550 5.1.1 RESOLVER.ADR.ExRecipNotFound; not found {MS}",
    "ms-dbeb-access-denied": "550 5.4.1 Recipient address rejected: Access denied."
    " AS(201806281) [DM6NAM00FT000.eop-nam00.prod.protection.outlook.test]",
    "ms-ip-not-accepted": "550 5.7.708 Service unavailable. Access denied, traffic not"
    " accepted from this IP. For more information please go to"
    " https://go.microsoft.com/fwlink/?LinkId=526653 AS(7171) " + MS,
    "ms-banned-ip": "550 5.7.606 Access denied, banned sending IP [192.0.2.25]. To request"
    " removal from this list please visit https://sender.office.com/ and follow the"
    " directions. For more information please go to"
    " https://go.microsoft.com/fwlink/?LinkID=526655 (AS16012609) " + MS,
    "outlook-mailbox-unavailable": "550 5.5.0 Requested action not taken: mailbox"
    " unavailable (S2017062302). [VI1EUR00FT000.eop-eur00.prod.protection.outlook.test]",
    "outlook-blocklist-multiline": "550-5.7.1 Unfortunately, messages from [192.0.2.25] weren't"
    " sent. Please contact your Internet service provider since part of their network is on"
    " our block list (S3150).\n550 5.7.1 You can also refer your provider to"
    " http://mail.live.com/mail/troubleshooting.aspx#errors. " + MS,
    "policy-no-longer-accept-network": "550 5.7.1 We no longer accept mail from this network",
    "relay-refused": "554 5.7.1 <relay-refused@remote.test>: Relay access denied",
    "ms-too-many-recipients": f"452 4.5.3 Too many recipients (AS780090) {MS}",
    "ms-rate-limited-reputation": "421 4.7.650 The mail server [192.0.2.25] has been"
    " temporarily rate limited due to IP reputation. For e-mail delivery information, see"
    " https://postmaster.live.com (S775) " + MS,
}
#: The reply to MAIL FROM of a third sink (domain mailfrom.test).
MAIL_REPLY = (
    "550 5.7.1 Service unavailable, Client host [192.0.2.25] blocked using Spamhaus. To"
    " request removal from this list see https://www.spamhaus.org/query/ip/192.0.2.25"
    " (AS3130). " + MS
)
#: Captures that go to the held-back set (chosen before any was classified).
HELD_BACK = {"ms-ex-recip-not-found", "ms-ip-not-accepted", "ms-too-many-recipients-delay-warning"}
#: Remote replies after DATA.
DATA_REPLIES = {
    "ms-mailbox-full": "554 5.2.2 mailbox full;"
    " STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded;"
    " Failed to process message due to a permanent exception with message Cannot open"
    " mailbox. " + MS,
    "ms-hop-count": f"550 5.4.14 Hop count exceeded - possible mail loop ATTR34 {MS}",
    "ms-dmarc-reject": "550 5.7.509 Access denied, sending domain sender.test does not pass"
    " DMARC verification and has a DMARC policy of reject. " + MS,
}
#: Own failures and notices: name -> recipients (the report names the rest).
OWN = {
    "unknown-local-user": ["bob@users.test"],
    "unknown-virtual-user": ["bob@virtual.test"],
    "alias-loop": ["loopa@users.test"],
    "mda-quota-exceeded": ["u@mdafail.test"],
    "disk-full": ["alice@local.test"],
    "mda-tempfail": ["u@mdatemp.test"],
    "connection-refused": ["u@refused.test"],
    "nxdomain": ["u@nosuch.invalid"],
    "mail-loop": ["u@loop.test"],
    "success-notify": ["ok@remote.test"],
    "delivered-notify": ["u@delivered.test"],
    "ms-mail-from-spamhaus": ["u@mailfrom.test"],
    "several-recipients": [
        "gone@remote.test",
        "nobody@remote.test",
        "unavailable@remote.test",
    ],
}
SEVERAL = {
    "gone@remote.test": RCPT_REPLIES["ms-recipient-not-found"],
    "nobody@remote.test": RCPT_REPLIES["ms-dbeb-access-denied"],
    "unavailable@remote.test": RCPT_REPLIES["outlook-mailbox-unavailable"],
}


def prepare() -> None:
    """Unpack the package, make the users and the private directories."""
    if not (BASE / "usr/sbin/smtpd").exists():
        unpack(["opensmtpd"], BASE)
    for user in ("opensmtpd", "opensmtpq"):
        if subprocess.run(["id", user], capture_output=True).returncode:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--home-dir",
                 "/var/lib/opensmtpd/empty", "--shell", "/usr/sbin/nologin", user],
                check=True,
            )  # fmt: skip
    subprocess.run(["chgrp", "opensmtpq", str(BASE / "usr/sbin/smtpctl")], check=True)
    (BASE / "usr/sbin/smtpctl").chmod(0o2555)
    subprocess.run(["rm", "-rf", str(BASE / "ns")], check=True)  # a fresh queue
    for sub in ("ns/spool", "ns/run", "ns/lib/opensmtpd/empty", "full"):
        (BASE / sub).mkdir(parents=True, exist_ok=True)
    (BASE / "aliases").write_text(ALIASES)
    (BASE / "vusers").write_text(VUSERS)


def start(reports: int, remote: int, mailfrom: int) -> subprocess.Popen[bytes]:
    """Run ``smtpd -d`` in its own mount and UTS namespace; return the process."""
    conf = BASE / "smtpd.conf"
    conf.write_text(
        CONF.format(
            base=BASE, port=PORT, hop_port=HOP_PORT,
            reports=reports, remote=remote, mailfrom=mailfrom,
            mdafail="552 5.2.2 Mailbox quota exceeded", mdatemp="Mailbox temporarily locked",
        )
    )  # fmt: skip
    script = f"""set -e
mount --bind {BASE}/ns/spool /var/spool
mount --bind {BASE}/ns/run /run
mount --bind {BASE}/ns/lib /var/lib
mount --bind {BASE}/usr/libexec /usr/libexec
mount -t tmpfs -o size=64k,mode=0777 tmpfs {BASE}/full
dd if=/dev/zero of={BASE}/full/filler bs=1k count=100 2>/dev/null || true
hostname {HOST}
exec {BASE}/usr/sbin/smtpd -d -v -f {conf}
"""
    log = open(BASE / "smtpd.log", "wb")  # noqa: SIM115 - lives as long as smtpd
    process = subprocess.Popen(
        ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: b"smtpd: setup done" in (BASE / "smtpd.log").read_bytes(), 20, "smtpd")
    return process


def smtpctl(process: subprocess.Popen[bytes], *args: str) -> None:
    command = ["nsenter", "-t", str(process.pid), "-m", str(BASE / "usr/sbin/smtpctl")]
    subprocess.run([*command, *args], capture_output=True, check=False)


def submit(name: str, rcpts: list[str], notify: str = "") -> None:
    """Send one message for capture ``name`` (its Subject names it)."""
    message = (
        f"From: Capture <{SENDER}>\r\nTo: {', '.join(rcpts)}\r\nSubject: capture {name}\r\n"
        f"Message-ID: <{name}@sender.test>\r\n\r\nA test message for {name}.\r\n"
    )
    if name == "mail-loop":  # start close to OpenSMTPD's limit of 100 Received fields
        received = "".join(
            f"Received: from relay{i}.example.net by relay{i + 1}.example.net; "
            "Fri, 4 Dec 2026 12:00:00 +0000\r\n"
            for i in range(95)
        )
        message = received + message
    options = [f"NOTIFY={notify}"] if notify else []
    with smtplib.SMTP("127.0.0.1", PORT) as smtp:
        smtp.ehlo("client.sender.test")
        mail_options = ["RET=HDRS", f"ENVID={name}"] if notify else []
        smtp.sendmail(SENDER, rcpts, message.encode(), mail_options, options)


def report_name(capture: str, raw: bytes) -> str:
    """The file name of one report of ``capture`` (warning and expiry differ)."""
    if b"Subject: Delivery status notification: delayed" in raw:
        return f"{capture}-expired" if b"Envelope expired" in raw else f"{capture}-delay-warning"
    return capture


def collect(process: subprocess.Popen[bytes], sink: SmtpSink, names: list[str]) -> dict[str, bytes]:
    """Force retries for 150 s; return each report by file name, with its envelope."""
    seen: dict[str, bytes] = {}
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        time.sleep(5)
        smtpctl(process, "schedule", "all")
        if b"Exiting" in (BASE / "smtpd.log").read_bytes():
            raise RuntimeError("smtpd exited, see /tmp/osmtpd/smtpd.log")
        for transaction in list(sink.state.transactions):
            data = transaction.data.replace(b"\r\n", b"\n")
            for name in names:
                if f"Subject: capture {name}\n".encode() in data:
                    envelope = f"Return-Path: <{transaction.mail_from}>\n".encode()
                    seen.setdefault(report_name(name, data), envelope + data)
    return seen


def main() -> None:
    prepare()
    with SmtpSink() as reports, SmtpSink() as remote, SmtpSink() as mailfrom:
        mailfrom.state.mail_reply = MAIL_REPLY
        replies = {**RCPT_REPLIES, **SEVERAL}
        remote.state.replies = {
            (k if "@" in k else f"{k}@remote.test"): v for k, v in replies.items()
        }
        remote.state.data_replies = {f"{k}@remote.test": v for k, v in DATA_REPLIES.items()}
        process = start(reports.port, remote.port, mailfrom.port)
        try:
            wanted = {**{k: [f"{k}@remote.test"] for k in RCPT_REPLIES | DATA_REPLIES}, **OWN}
            for name, rcpts in wanted.items():
                notify = "SUCCESS,DELAY,FAILURE" if name.endswith("-notify") else ""
                try:
                    submit(name, rcpts, notify)
                except smtplib.SMTPException as error:
                    print(f"{name}: refused at submission: {error}")
            seen = collect(process, reports, list(wanted))
            for name, raw in sorted(seen.items()):
                path = save(MTA, name, raw)
                if name in HELD_BACK:
                    path = path.rename(path.parents[2] / "held_back" / f"{MTA}-{name}.eml")
                print("saved", path)
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
