"""Capture the Courier MTA's delivery status notifications (``python -m tests.capture.courier``).

What works to run Courier 1.0.16 (Debian 12's ``courier-mta``) here, as root:

* ``courier-config`` shows the paths are compiled in: ``/etc/courier`` (config),
  ``/usr/lib/courier`` (daemons), ``/var/lib/courier`` (queue), ``/run/courier``
  (pids, authdaemon socket), and it logs only to syslog. So the packages (and the
  libraries this machine lacks: libidn12, libltdl7, libpcre3, libgamin0) are unpacked
  with ``common.unpack`` under ``/tmp/courier-capture/root`` and the module re-runs
  itself under ``unshare -m``: in that private mount namespace an overlayfs puts the
  unpacked tree over ``/etc``, ``/usr`` and ``/var/lib`` (upper layers under
  ``/tmp/courier-capture/state``, so the real system is never written), and over
  ``/run`` and ``/dev``, where a thread of this process listens on ``/dev/log`` and
  writes Courier's syslog lines to ``state/maillog``. The overlaid ``/etc/passwd``
  gains the ``courier`` user (the package's postinst would add it) and the local
  test users; ``/usr/bin/makedat`` (an alternatives link) is made by hand.
* ``/usr/sbin/authdaemond start`` (authpam, i.e. getpwnam) and ``/usr/sbin/courier
  start`` run the daemons; mail is submitted with Courier's ``/usr/sbin/sendmail -f
  SENDER -N NOTIFY``. ``esmtproutes`` sends ``sink.test`` and ``*.example`` to a
  ``SmtpSink`` on 127.0.0.1, ``strict.test`` to a second one that refuses every MAIL
  FROM, and ``dead.test`` to a closed port; ``warntime`` 8s,
  ``queuetime`` 40s and ``retryalpha``/``retrygamma`` 3s give a delay warning and
  an expiry within a minute. ``dsnfrom`` has no Debian default (debconf asks): it is
  set to MAILER-DAEMON@mx.courier.capture.test.
* A name under ``.invalid`` gets NXDOMAIN from this machine's resolver; Courier
  reports it as "No such domain." with ``Status: 5.0.0``.
* Courier's DSNs carry only generic statuses (5.0.0 failed, 4.0.0 delayed, 2.0.0);
  the remote reply, with its own code, is in ``Diagnostic-Code: smtp;``.
* What didn't work: an alias cycle in ``aliases/system`` (loopa -> loopb -> loopa)
  is dropped (``aliaslookup loopa`` finds nothing), leaving "550 User <loopa>
  unknown"; the mail loop is made with two ``.courier`` forwards instead. The
  daemons are stopped with ``courier stop`` / ``authdaemond stop`` at the end (they
  hold the namespace).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.capture.common import CAPTURED, save, unpack
from tests.fixture_labels import FIXTURES
from tests.smtp_sink import SmtpSink

MTA = "courier"
BASE = Path("/tmp/courier-capture")
ROOT, STATE = BASE / "root", BASE / "state"
PACKAGES = [
    "courier-mta", "courier-base", "courier-authlib", "courier-authdaemon",
    "courier-authlib-userdb", "libcourier-unicode4", "libidn12", "libltdl7", "libpcre3",
    "libgamin0",
]  # fmt: skip
HOST, DOMAIN = "mx.courier.capture.test", "courier.capture.test"
ETC = Path("/etc/courier")
HELD_BACK = {"remote-webde-user-unknown", "remote-yandex-spf-counter"}
IN_NAMESPACE = "COURIER_CAPTURE_NS"


@dataclass
class Case:
    """One message: its recipients, DSN request, and the report names it yields, in order."""

    key: str
    rcpts: list[str]
    reports: list[str]
    notify: str = "failure"


def local(user: str) -> str:
    return f"{user}@{DOMAIN}"


CASES = [
    Case("unknown", [local("nosuch")], ["local-user-unknown"]),
    Case("quota", [local("fullbox")], ["local-quota-delayed", "local-quota-expired"],
         "delay,failure"),
    Case("loop", [local("fwd1")], ["local-forward-loop"]),
    Case("delivered", [local("alice")], ["local-success-notice"], "success,failure"),
    Case("relayed", ["ok@sink.test"], ["remote-relayed-notice"], "success,failure"),
    Case("refused", ["someone@dead.test"], ["remote-refused-delayed", "remote-refused-expired"],
         "delay,failure"),
    Case("tempfail", ["busy@sink.test"], ["remote-4xx-delayed", "remote-4xx-expired"],
         "delay,failure"),
    Case("nxdomain", ["someone@nonexistent-domain.invalid"], ["nxdomain"]),
    Case("multi", ["gone@sink.test", "full@sink.test", "ok2@sink.test"], ["remote-two-failed"]),
    Case("spam", ["filtered@sink.test"], ["remote-data-spam-rejected"]),
    Case("gmx", ["nobody@gmx.example"], ["remote-gmx-mailbox-unavailable"]),
    Case("gmxblock", ["someone@gmx.example"], ["remote-gmx-blocklist-counter"]),
    Case("webdequota", ["full@web.example"], ["remote-webde-storage-exhausted"]),
    Case("webdeunknown", ["nobody@web.example"], ["remote-webde-user-unknown"]),
    Case("mailru", ["closed@mailru.example"], ["remote-mailru-account-disabled"]),
    Case("mailrusender", ["someone@mailru.example"], ["remote-mailru-sending-disabled-counter"]),
    Case("yandex", ["nosuch@yandex.example"], ["remote-yandex-no-such-user"]),
    Case("yandexspam", ["someone@yandex.example"], ["remote-yandex-spam-counter"]),
    Case("yandexspf", ["spf@yandex.example"], ["remote-yandex-spf-counter"]),
    Case("nullmx", ["someone@nullmx.example"], ["remote-null-mx"]),
    Case("sender", ["someone@strict.test"], ["remote-sender-domain-rejected-counter"]),
]  # fmt: skip

# The sink's replies at RCPT TO (sources of the vendor texts are in the labels' notes).
REPLIES = {
    "busy@sink.test": "452 4.2.2 Mailbox busy, try again later",
    "gone@sink.test": "550 5.1.1 <gone@sink.test>: Recipient address rejected: User unknown",
    "full@sink.test": "552 5.2.2 <full@sink.test>: Mailbox full",
    "nobody@gmx.example": "550 <nobody@gmx.example>: "
    "Requested action not taken: mailbox unavailable",
    "someone@gmx.example": "554-gmx.net (mxgmx104) Nemesis ESMTP Service not available\n"
    "554-No SMTP service\n554-IP address is block listed.\n"
    "554 For explanation visit https://postmaster.gmx.net/en/case?c=r0201&i=ip&v=192.0.2.1",
    "full@web.example": "550 Benutzer hat das Speichervolumen ueberschritten. / "
    "User has exhausted allowed storage space.",
    "nobody@web.example": "550 Benutzer nicht bekannt/User unknown",
    "closed@mailru.example": "550 Message was not accepted -- invalid mailbox. "
    "Local mailbox closed@mailru.example is unavailable: account is disabled",
    "someone@mailru.example": "550 message sending for this account is disabled",
    "nosuch@yandex.example": "550 5.7.1 No such user!",
    "someone@nullmx.example": "556 5.1.10 <someone@nullmx.example>: Recipient address "
    "rejected: Domain nullmx.example does not accept mail (nullMX)",
    "spf@yandex.example": "550 5.7.1 SPF check failed: 192.0.2.1 is not authorized "
    "to send in the name of sink.test",
}
DATA_REPLIES = {
    "filtered@sink.test": "554 5.7.1 Message rejected as spam by content filter",
    "someone@yandex.example": "554 5.7.1 Message rejected under suspicion of SPAM; https://ya.cc/1IrBc",
}
USERS = {"alice": 991, "fullbox": 992, "fwd1": 993, "fwd2": 994}


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def mount_overlays() -> None:
    """Overlay the unpacked tree on the compiled-in paths, in this private namespace."""
    for target, lower in [("/etc", f"{ROOT}/etc:/etc"), ("/usr", f"{ROOT}/usr:/usr"),
                          ("/var/lib", f"{ROOT}/var/lib:/var/lib"), ("/run", "/run"),
                          ("/dev", "/dev")]:  # fmt: skip
        layer = STATE / target.strip("/").replace("/", "-")
        (layer / "u").mkdir(parents=True)
        (layer / "w").mkdir()
        options = f"lowerdir={lower},upperdir={layer}/u,workdir={layer}/w"
        sh("mount", "-t", "overlay", "overlay", "-o", options, target)


def syslog_to_file(path: Path) -> None:
    """Receive syslog datagrams on /dev/log (overlaid) and append them to ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("/dev/log")
    os.chmod("/dev/log", 0o666)

    def loop() -> None:
        with path.open("ab", buffering=0) as log:
            while True:
                log.write(sock.recv(65536) + b"\n")

    threading.Thread(target=loop, daemon=True).start()


def configure(sink_port: int, dead_port: int, strict_port: int) -> None:
    with open("/etc/passwd", "a") as passwd, open("/etc/group", "a") as group:
        for name, uid in {"courier": 990, **USERS}.items():
            home = "/var/lib/courier" if name == "courier" else f"{BASE}/home/{name}"
            passwd.write(f"{name}:x:{uid}:{uid}::{home}:/bin/sh\n")
            group.write(f"{name}:x:{uid}:\n")
    files = {
        "me": HOST, "defaultdomain": DOMAIN, "locals": f"localhost\n{HOST}\n{DOMAIN}",
        "dsnfrom": f'"Courier mail server at {HOST}" <MAILER-DAEMON@{HOST}>',
        "esmtproutes": f"sink.test: [127.0.0.1],{sink_port}\n"
        f".example: [127.0.0.1],{sink_port}\ndead.test: [127.0.0.1],{dead_port}\n"
        f"strict.test: [127.0.0.1],{strict_port}",
        "queuetime": "40s", "warntime": "8s", "esmtpdelay": "1s",
        "retryalpha": "3s", "retrybeta": "2", "retrygamma": "3s", "retrymaxdelta": "2",
    }  # fmt: skip
    for name, text in files.items():
        (ETC / name).write_text(text + "\n")
    home = BASE / "home"
    for user, uid in USERS.items():
        maildir = home / user / "Maildir"
        maildir.parent.mkdir(parents=True)
        quota = ["-q", "1S"] if user == "fullbox" else []
        sh("/usr/bin/maildirmake.courier", *quota, str(maildir))
        if user.startswith("fwd"):
            other = "fwd2" if user == "fwd1" else "fwd1"
            (home / user / ".courier").write_text(local(other) + "\n")
        sh("chown", "-R", f"{uid}:{uid}", str(home / user))
    os.symlink("/usr/lib/courier/makedat", "/usr/bin/makedat")
    sh("chown", "-R", "courier:courier", "/var/lib/courier")
    Path("/run/courier/authdaemon").mkdir(parents=True, exist_ok=True)
    sh("chown", "-R", "courier:courier", "/run/courier")
    for tool in ("makealiases", "makesmtpaccess", "makeacceptmailfor"):
        sh(f"/usr/lib/courier/{tool}")


def submit(case: Case, number: int) -> None:
    sender = f"bounce-{case.key}@sink.test"
    message = (
        f"From: Capture <{sender}>\nTo: {', '.join(case.rcpts)}\n"
        f"Subject: Courier capture {case.key}\nMessage-ID: <capture-{number}@sink.test>\n"
        f"\nThis message goes to {', '.join(case.rcpts)} for the capture of Courier's reports.\n"
    )
    command = ["/usr/sbin/sendmail", "-f", sender, "-N", case.notify, *case.rcpts]
    subprocess.run(command, input=message.encode(), check=True)


def capture() -> None:
    mount_overlays()
    syslog_to_file(STATE / "maillog")
    with SmtpSink() as sink, SmtpSink() as strict, socket.socket() as closed:
        strict.state.mail_reply = "553 5.1.8 Sender address rejected: Domain not found"
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
        sink.state.replies.update(REPLIES)
        sink.state.data_replies.update(DATA_REPLIES)
        configure(sink.port, closed.getsockname()[1], strict.port)
        sh("/usr/sbin/authdaemond", "start")
        sh("/usr/sbin/courier", "start")
        try:
            for number, case in enumerate(CASES):
                submit(case, number)
            by_sender = {f"bounce-{case.key}@sink.test": case for case in CASES}
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                got = [t for t in sink.state.transactions if t.rcpt_to[0] in by_sender]
                if len(got) >= sum(len(case.reports) for case in CASES):
                    break
                time.sleep(1)
            seen: dict[str, int] = {}
            for transaction in list(sink.state.transactions):
                case = by_sender.get(transaction.rcpt_to[0])
                if case is None:
                    continue
                index = seen[case.key] = seen.get(case.key, -1) + 1
                if index < len(case.reports):
                    store(case.reports[index], transaction.data)
            missing = [c.key for c in CASES if seen.get(c.key, -1) + 1 < len(c.reports)]
            print("missing:", missing or "none")
        finally:
            subprocess.run(["/usr/sbin/courier", "stop"], check=False)
            subprocess.run(["/usr/sbin/authdaemond", "stop"], check=False)
            time.sleep(1)


def store(name: str, raw: bytes) -> None:
    path = save(MTA, name, raw)
    if name in HELD_BACK:
        path.replace(FIXTURES / "held_back" / f"{MTA}-{name}.eml")
    print("saved", name)


def main() -> None:
    if os.environ.get(IN_NAMESPACE):
        capture()
        return
    unpack(PACKAGES, ROOT)
    for lib in (ROOT / "lib").rglob("*.so*"):  # /lib is /usr/lib on merged-/usr Debian
        target = ROOT / "usr" / lib.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        shutil.copy2(lib, target, follow_symlinks=False)
    shutil.rmtree(STATE, ignore_errors=True)
    shutil.rmtree(BASE / "home", ignore_errors=True)
    (CAPTURED / MTA).mkdir(parents=True, exist_ok=True)
    command = ["unshare", "-m", "--propagation", "private", sys.executable, "-m", __spec__.name]
    sys.exit(subprocess.run(command, env={**os.environ, IN_NAMESPACE: "1"}).returncode)


if __name__ == "__main__":
    main()
