"""Capture Sendmail 8.17 reports (run: ``.venv/bin/python -m tests.capture.sendmail``).

What works here (Debian 12, root, no internet), found by trying:

- ``common.unpack`` of sendmail-bin, sendmail-base, sendmail-cf, m4 and liblockfile1 (the
  last two are not installed here) into ``/tmp/smcap``. The binary is
  ``usr/libexec/sendmail/sendmail`` and needs nothing more; ``mail.local`` needs
  liblockfile, so a wrapper sets ``LD_LIBRARY_PATH`` (Sendmail clears its mailers'
  environment).
- **Host name**: run every sendmail command under ``unshare -u`` with a qualified host
  name (:func:`sendmail`). This container's name is ``vm``, unqualified and unknown to
  the resolver, and Sendmail then sleeps 60 s at every start ("unable to qualify my own
  domain name") even with ``confDOMAIN_NAME`` set.
- ``sendmail.cf`` is made by the unpacked m4 from a private .mc including
  ``usr/share/sendmail/cf/m4/cf.m4`` by absolute path, ``OSTYPE(linux)`` (Debian's ostype
  points at /etc/mail), ``MAIL_SETTINGS_DIR`` = the run directory (mailertable and
  virtusertable via ``makemap hash``, aliases via ``sendmail -bi``). Needed:
  ``DontBlameSendmail=TrustStickyBit`` (else the alias file under /tmp is "unsafe" and
  newaliases fails), ``DefaultUser=mail:mail`` (no ``mailnull`` user),
  ``no_default_msa`` (no port 587), ``accept_unresolvable_domains`` (the resolver answers
  NXDOMAIN for every name, so the sender's domain would be refused). Sendmail runs as
  root; RunAsUser is not set. makemap's "World writable directory /tmp" warnings are
  harmless.
- Daemon: ``sendmail -C CF -bd -q1s`` on 127.0.0.1:PORT (DAEMON_OPTIONS); it forks and
  writes its pid file; stop it with SIGTERM to that pid. Messages go in over SMTP
  (relaying from 127.0.0.1 is allowed by default; NOTIFY=SUCCESS, RET=HDRS as ESMTP
  options). What Sendmail refuses there itself (local unknown user, error mailer,
  message size) goes in on the command line, ``-odb -oem`` (``-oem`` mails the error
  back; the exit code is then 67 or the like).
- Routes: the smtp/esmtp mailers connect to ``$h:SINK``, ``relay`` to a second sink
  that refuses MAIL FROM. The mailertable sends the reports' domain ``bounces.test`` and
  the vendor domains to ``[127.0.0.1]``, ``refused.test`` to ``[127.0.0.2]`` (nothing
  listens: connection refused), and has two ``error:`` entries. A domain without an
  entry is looked up in DNS, where this machine's resolver answers NXDOMAIN (rcode 3)
  at once: "Host unknown (Name server: x: host not found)", 5.1.2.
- Local delivery is the real mail.local in LMTP mode inside ``unshare -m`` with
  /var/mail bind-mounted from the run directory (the system's /var/mail is untouched).
  The user ``nobody`` gets a mailbox on a full 4 kB tmpfs: mail.local answers ENOSPC
  with "450 4.2.0 ... No space left on device" (a delay, then expiry). Its 552 5.2.2
  needs a real EDQUOT (disk quotas), which was not tried.
- Timeouts: Timeout.queuewarn=10s, Timeout.queuereturn=40s (texts say "for past 10
  seconds" / "could not be delivered for 40 seconds"). With 4s the warning went out
  before the first attempt (Status 2.0.0); the whole run takes about 50 s.
- Output: each report as the sink received it, with ``Return-Path: <>`` (the envelope)
  added; the names in ``HELD_BACK`` go to ``held_back/sendmail-NAME.eml`` instead.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
import time
from email import message_from_bytes
from pathlib import Path

from tests.capture.common import CAPTURED, save, unpack, wait_for
from tests.fixture_labels import FIXTURES
from tests.smtp_sink import SmtpSink

MTA = "sendmail"
ROOT = Path("/tmp/smcap")
RUN = ROOT / "run"
CF_DIR = ROOT / "usr/share/sendmail/cf"
BIN = ROOT / "usr/libexec/sendmail"
LIBS = ROOT / "usr/lib/x86_64-linux-gnu"
PACKAGES = ["sendmail-bin", "sendmail-base", "sendmail-cf", "m4", "liblockfile1"]
HOST = "mx.sendmail.capture.test"
SENDER = "bounces+{}@bounces.test"
WARN, RETURN = "10s", "40s"

MC = """\
divert(-1)
divert(0)dnl
include(`{cf}/m4/cf.m4')dnl
VERSIONID(`capture')dnl
OSTYPE(`linux')dnl
define(`MAIL_SETTINGS_DIR', `{run}/')dnl
define(`QUEUE_DIR', `{run}/queue')dnl
define(`ALIAS_FILE', `{run}/aliases')dnl
define(`STATUS_FILE', `{run}/statistics')dnl
define(`confPID_FILE', `{run}/sendmail.pid')dnl
define(`confDOMAIN_NAME', `{host}')dnl
define(`confDEF_USER_ID', `mail:mail')dnl
define(`confTO_QUEUEWARN', `{warn}')dnl
define(`confTO_QUEUERETURN', `{ret}')dnl
define(`confTO_CONNECT', `5s')dnl
define(`confMAX_MESSAGE_SIZE', `50000')dnl
define(`confMIN_QUEUE_AGE', `0')dnl
define(`confLOG_LEVEL', `14')dnl
define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl
define(`SMTP_MAILER_ARGS', `TCP $h {sink}')dnl
define(`ESMTP_MAILER_ARGS', `TCP $h {sink}')dnl
define(`RELAY_MAILER_ARGS', `TCP $h {sink2}')dnl
define(`confCF_VERSION', `capture')dnl
DAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA')dnl
FEATURE(`nocanonify')dnl
FEATURE(`no_default_msa')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`mailertable', `hash {run}/mailertable')dnl
FEATURE(`virtusertable', `hash {run}/virtusertable')dnl
VIRTUSER_DOMAIN(`virt.test')dnl
FEATURE(`local_lmtp', `{run}/mail.local')dnl
MAILER(`local')dnl
MAILER(`smtp')dnl
"""

MAILERTABLE = """\
bounces.test esmtp:[127.0.0.1]
yahoo.test esmtp:[127.0.0.1]
aol.test esmtp:[127.0.0.1]
icloud.test esmtp:[127.0.0.1]
comcast.test esmtp:[127.0.0.1]
relayed.test esmtp:[127.0.0.1]
strict.test relay:[127.0.0.1]
refused.test esmtp:[127.0.0.2]
retired.test error:5.1.1:550 User unknown
closed.test error:nouser:No such user here
"""
VIRTUSERS = "@virt.test error:nouser 550 Address no longer exists\n"
ALIASES = 'loopa: loopb\nloopb: loopa\nunavailable: "|exit 69"\nteam: mail, daemon\n'
WRAPPER = """\
#!/bin/sh
# mail.local in a private mount namespace: /var/mail is {run}/varmail,
# /var/mail/nobody a mailbox on a full tmpfs.
exec unshare -m /bin/sh -c '
mount --bind {run}/varmail /var/mail
mount -t tmpfs -o size=4k tmpfs {run}/tiny
dd if=/dev/zero of={run}/tiny/fill bs=1k count=8 2>/dev/null
touch {run}/tiny/nobody && chown nobody {run}/tiny/nobody
touch /var/mail/nobody && mount --bind {run}/tiny/nobody /var/mail/nobody
LD_LIBRARY_PATH={libs} exec {bin}/mail.local "$@"' mail.local "$@"
"""

# Vendors' published reply texts; see the labels' notes for the sources.
REPLIES = {
    "nobody1@yahoo.test": "554 delivery error: dd This user doesn't have a yahoo.com account "
    "(nobody1@yahoo.test) [0] - mta1001.mail.gq1.yahoo.test",
    "disabled@yahoo.test": "554 delivery error: dd Sorry your message to disabled@yahoo.test "
    "cannot be delivered. This mailbox is disabled (554.30). - mta1002.mail.gq1.yahoo.test",
    "nobody2@aol.test": "552 1 Requested mail action aborted, mailbox not found",
    "busy@yahoo.test": "421 4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred due to "
    "unexpected volume or user complaints - 4.16.55.1; see "
    "https://postmaster.yahooinc.com/error-codes",
    "listed@yahoo.test": "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.25, "
    "because the ip is in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
    "quota@yahoo.test": "554 delivery error: dd Sorry, your message to quota@yahoo.test cannot "
    "be delivered. This account is over quota.",
    "relay@yahoo.test": "451 VS1-IP Excessive unknown recipients - possible Open Relay (#4.1.8)",
    "dmarc@icloud.test": "550 5.7.1 Your message was rejected due to bounces.test DMARC policy. "
    "See https://support.apple.com/en-us/HT204137",
    "volume@icloud.test": "421 4.7.1 Messages to volume@icloud.test deferred due to excessive "
    "volume. Try again later - https://support.apple.com/en-us/HT204137",
    "tss09@yahoo.test": "553 5.7.2 [TSS09] All messages from 192.0.2.25 will be permanently "
    "deferred; Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
    "ts03@yahoo.test": "421 4.7.1 [TS03] All messages from 192.0.2.25 permanently deferred; "
    "Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
    "gone1@comcast.test": "550 5.1.1 <gone1@comcast.test> Not our Customer",
    "gone2@comcast.test": "550 5.2.0 <gone2@comcast.test> Not our Customer",
    "nobody3@icloud.test": "550 5.1.1 <nobody3@icloud.test>: user does not exist",
    "full@icloud.test": "552 5.2.2 <full@icloud.test>: user is over quota",
    "blocked@comcast.test": "554 resimta-po-01v.sys.comcast.test comcast 192.0.2.25 Comcast "
    "block for spam. Please see http://postmaster.comcast.net/smtp-error-codes.php#BL000000",
    "spamhaus@comcast.test": "550 5.7.1 resimta-po-02v.sys.comcast.test comcast 192.0.2.25 "
    "found on one or more DNSBLs, see http://postmaster.comcast.net/smtp-error-codes.php"
    "#BL000001",
}
DATA_REPLIES = {
    "policy@yahoo.test": "554 5.7.9 Message not accepted for policy reasons.  See "
    "https://postmaster.yahooinc.com/error-codes",
    "cs01@icloud.test": "554 5.7.1 [CS01] Message rejected due to local policy. Please visit "
    "https://support.apple.com/en-us/HT204137",
}
MAIL_REPLY = "553 5.1.8 Sender address rejected: Domain of sender address does not exist"

# Cases retried until Timeout.queuereturn: a warning, then the final report.
DEFERRED = (
    "connection-refused",
    "yahoo-tss04-deferred",
    "local-mailbox-no-space",
    "yahoo-vs1-unknown-recipients",
    "icloud-excessive-volume",
    "yahoo-ts03-permanently-deferred",
)
# Saved to held_back/sendmail-NAME.eml instead (labelled there, never classified).
HELD_BACK = ("icloud-user-unknown", "comcast-bl000000", "connection-refused")

# name: (recipients, options); the name is also the sender's VERP token. Options:
# "receipt" asks for NOTIFY=SUCCESS, "headers" for RET=HDRS, "plain" submits on the
# command line with SendMimeErrors=False: an old-style report, no MIME, no DSN.
CASES: dict[str, tuple[list[str], str]] = {
    "local-user-unknown": ([f"nosuchuser@{HOST}"], ""),
    "local-delivered-receipt": ([f"mail@{HOST}"], "receipt"),
    "local-mailbox-no-space": ([f"nobody@{HOST}"], ""),
    "alias-loop": ([f"loopa@{HOST}"], ""),
    "program-service-unavailable": ([f"unavailable@{HOST}"], ""),
    "alias-expanded-receipt": ([f"team@{HOST}"], "receipt"),
    "message-too-large": (["someone@relayed.test"], "headers"),
    "mailertable-error-511": (["someone@retired.test"], ""),
    "mailertable-error-nouser": (["someone@closed.test"], ""),
    "virtusertable-error-nouser": (["someone@virt.test"], ""),
    "host-unknown-nxdomain": (["someone@nosuchdomain.invalid"], ""),
    "connection-refused": (["someone@refused.test"], ""),
    "relayed-receipt": (["someone@relayed.test"], "receipt"),
    "yahoo-user-unknown": (["nobody1@yahoo.test"], ""),
    "yahoo-mailbox-disabled": (["disabled@yahoo.test"], ""),
    "aol-mailbox-not-found": (["nobody2@aol.test"], ""),
    "yahoo-tss04-deferred": (["busy@yahoo.test"], ""),
    "yahoo-bl21-spamhaus": (["listed@yahoo.test"], ""),
    "yahoo-policy-579": (["policy@yahoo.test"], ""),
    "yahoo-over-quota": (["quota@yahoo.test"], ""),
    "yahoo-vs1-unknown-recipients": (["relay@yahoo.test"], ""),
    "yahoo-tss09-permanently-deferred": (["tss09@yahoo.test"], ""),
    "yahoo-ts03-permanently-deferred": (["ts03@yahoo.test"], ""),
    "comcast-not-our-customer": (["gone1@comcast.test"], ""),
    "comcast-not-our-customer-520": (["gone2@comcast.test"], ""),
    "icloud-dmarc-policy": (["dmarc@icloud.test"], ""),
    "icloud-excessive-volume": (["volume@icloud.test"], ""),
    "icloud-user-unknown": (["nobody3@icloud.test"], ""),
    "icloud-over-quota": (["full@icloud.test"], ""),
    "icloud-cs01-policy": (["cs01@icloud.test"], ""),
    "comcast-bl000000": (["blocked@comcast.test"], ""),
    "comcast-dnsbl": (["spamhaus@comcast.test"], ""),
    "sender-domain-rejected": (["someone@strict.test"], ""),
    "plain-local-user-unknown": ([f"nosuchuser@{HOST}"], "plain"),
    "plain-yahoo-user-unknown": (["nobody1@yahoo.test"], "plain"),
    "plain-icloud-over-quota": (["full@icloud.test"], "plain"),
    "three-recipients": (["nobody1@yahoo.test", "full@icloud.test", "nobody2@aol.test"], ""),
}


def sendmail(cf: Path, *args: str, stdin: bytes | None = None, check: bool = True) -> int:
    """Run sendmail in a UTS namespace whose host name is qualified (see the docstring)."""
    command = f'hostname {HOST} && exec "$0" "$@"'
    argv = ["unshare", "-u", "sh", "-c", command, str(BIN / "sendmail"), "-C", str(cf), *args]
    done = subprocess.run(argv, input=stdin, check=check, env=os.environ | {"TZ": "UTC"})
    return done.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure(sink: int, sink2: int, port: int) -> Path:
    """Write the run directory (config, maps, queue, wrapper); return the .cf."""
    if (RUN / "sendmail.pid").exists():
        raise SystemExit(f"{RUN}/sendmail.pid exists: kill that daemon first")
    shutil.rmtree(RUN, ignore_errors=True)
    for sub in ("queue", "varmail", "tiny"):
        (RUN / sub).mkdir(parents=True)
    RUN.chmod(0o755)
    (RUN / "queue").chmod(0o700)
    (RUN / "varmail").chmod(0o1777)
    values = {"cf": CF_DIR, "run": RUN, "host": HOST, "warn": WARN, "ret": RETURN}
    mc = MC
    for key, value in (values | {"sink": sink, "sink2": sink2, "port": port}).items():
        mc = mc.replace("{" + key + "}", str(value))
    (RUN / "sendmail.mc").write_text(mc)
    cf = RUN / "sendmail.cf"
    with cf.open("w") as out:
        subprocess.run([str(ROOT / "usr/bin/m4"), str(RUN / "sendmail.mc")], stdout=out, check=True)
    (RUN / "helpfile").write_text("")
    (RUN / "statistics").write_text("")
    (RUN / "service.switch").write_text("passwd files\nhosts dns\naliases files\n")
    (RUN / "aliases").write_text(ALIASES)
    wrapper = WRAPPER.replace("{run}", str(RUN)).replace("{libs}", str(LIBS))
    (RUN / "mail.local").write_text(wrapper.replace("{bin}", str(BIN)))
    (RUN / "mail.local").chmod(0o755)
    for name, text in (("mailertable", MAILERTABLE), ("virtusertable", VIRTUSERS)):
        subprocess.run(
            [str(BIN / "makemap"), "-C", str(cf), "hash", str(RUN / name)],
            input=text.encode(),
            check=True,
        )
    sendmail(cf, "-bi")
    return cf


def submit(cf: Path, port: int, name: str, recipients: list[str], options: str) -> str:
    """Submit over SMTP; if Sendmail refuses it there, on the command line instead."""
    sender = SENDER.format(name)
    message = (
        f"From: App <{sender}>\nTo: {', '.join(recipients)}\nSubject: capture {name}\n"
        f"Message-ID: <{name}@app.capture.test>\n\nHello, this is the {name} test.\n"
    )
    if name == "message-too-large":  # over confMAX_MESSAGE_SIZE
        message += "A long line of text to make this message too large.\n" * 1200
    notify = ["NOTIFY=SUCCESS"] if options == "receipt" else []
    ret = ["RET=HDRS"] if options == "headers" else []
    try:
        if options != "plain":
            with smtplib.SMTP("127.0.0.1", port) as client:
                client.ehlo("app.capture.test")
                client.sendmail(sender, recipients, message, ret, notify)
            return "smtp"
    except smtplib.SMTPException:  # every recipient refused, or the message at DATA
        pass
    # -oem: mail errors back (the default prints them); -odb: deliver at once (in a child
    # that keeps the command line's options, so SendMimeErrors=False holds).
    flags = ["-N", "success"] if notify else ["-R", "hdrs"] if ret else []
    flags += ["-OSendMimeErrors=False"] if options == "plain" else []
    argv = ["-odb", "-oem", "-f", sender, *flags, *recipients]
    sendmail(cf, *argv, stdin=message.encode(), check=False)
    return "command line"


def named(sink: SmtpSink) -> dict[str, bytes]:
    """Reports by fixture name (the VERP token, "-delay" added for a warning), as the
    sink got them with the envelope sender added as Return-Path."""
    found: dict[str, bytes] = {}
    with sink.state.lock:
        transactions = list(sink.state.transactions)
    for t in transactions:
        if not t.rcpt_to or not t.rcpt_to[0].endswith("@bounces.test"):
            continue
        token = t.rcpt_to[0].split("+", 1)[1].split("@", 1)[0]
        raw = f"Return-Path: <{t.mail_from}>\n".encode() + t.data
        warning = str(message_from_bytes(raw)["Subject"]).startswith("Warning:")
        name = f"{token}-delay" if warning else token
        while name in found:
            name += "-again"
        found[name] = raw
    return found


def main() -> None:
    unpack(PACKAGES, ROOT)
    with SmtpSink() as sink, SmtpSink() as sink2:
        sink.state.replies.update(REPLIES)
        sink.state.data_replies.update(DATA_REPLIES)
        sink2.state.mail_reply = MAIL_REPLY
        port = free_port()
        cf = configure(sink.port, sink2.port, port)
        sendmail(cf, "-bd", "-q1s")  # forks; the daemon writes its pid file when ready
        wait_for((RUN / "sendmail.pid").exists, 10, "the sendmail daemon")
        try:
            for name, (recipients, options) in CASES.items():
                print(name, "submitted by", submit(cf, port, name, recipients, options))
            wanted = {*CASES, *(f"{name}-delay" for name in DEFERRED)}
            wait_for(lambda: wanted <= set(named(sink)), 150, f"reports {sorted(wanted)}")
            time.sleep(2)
        finally:
            if (RUN / "sendmail.pid").exists():
                os.kill(int((RUN / "sendmail.pid").read_text().split()[0]), 15)
                (RUN / "sendmail.pid").unlink()
        for old in (CAPTURED / MTA).glob("*.eml"):
            old.unlink()
        for name, raw in named(sink).items():
            path = save(MTA, name, raw)
            if name in HELD_BACK:
                path = path.rename(FIXTURES / "held_back" / f"{MTA}-{name}.eml")
            print("saved", path)


if __name__ == "__main__":
    main()
