"""Capture Dovecot's rejections, auto-replies, LMTP refusals: ``python -m tests.capture.dovecot``.

What works to run Dovecot 2.3.19.1 (Debian 12's ``dovecot-core``, installed) here, as root:

* Pigeonhole (``dovecot-sieve``) and ``dovecot-lmtpd`` are unpacked with
  ``common.unpack`` under ``/tmp/dovecot-capture/root`` (never installed). The installed
  binaries run with a private config (``dovecot -c CONF``, ``dovecot-lda -c CONF``):
  ``mail_plugin_dir`` points at a folder of links to the installed and the unpacked
  modules, and the master's ``service lmtp`` runs the unpacked ``lmtp``. The sieve
  plugin needs ``libdovecot-sieve.so.0`` (its RUNPATH is /usr/lib/dovecot): it is found
  through ``LD_LIBRARY_PATH``, which Dovecot drops unless ``import_environment``
  keeps it.
* ``dovecot-lda`` alone can't look users up: the userdb goes through the master's
  auth service, so the master runs too (``protocols = lmtp``, LMTP on 127.0.0.1:24025,
  ``base_dir`` and the log file under /tmp/dovecot-capture). Users come from a
  passwd-file (uid 65534, homes under /tmp/dovecot-capture/home), with per-user
  ``userdb_quota_rule`` and ``userdb_quota_full_tempfail`` extra fields.
* What the LDA writes itself goes out through ``submission_host`` to a ``SmtpSink``:
  the Sieve ``reject`` (an RFC 5429 MDN, report-type disposition-notification), the
  quota rejection with ``quota_full_tempfail = no`` (a DSN, 5.2.2), ``vacation``
  (RFC 3834 auto-reply) and an ``enotify`` mailto notification.
  An unknown user (exit 67) and a full mailbox with ``quota_full_tempfail = yes``
  (exit 75) make the LDA write nothing: the calling MTA reports those. So a private
  Postfix (``postfix -c``, settings from ``tests/postfix_harness.py``'s fast profile)
  relays ``dovecot.capture.test`` to Dovecot's LMTP and writes the DSNs for Dovecot's
  LMTP replies to the sink. Dovecot's LMTP announces DSN, so Postfix leaves success
  notices to it (and it writes none): ``lmtp_discard_lhlo_keywords = dsn`` makes Postfix
  write the "delivered" notice itself. ``lda.dovecot.capture.test`` goes instead to a
  pipe(8) service running ``dovecot-lda -e`` as nobody (needs ``auth-userdb`` and
  ``stats-writer`` sockets mode 0666, the log file writable): Postfix then reports the
  LDA's exit codes (67 user unknown, 77 "permission denied" with the quota text, 75
  temporary failure). A Sieve ``reject`` there still sends Dovecot's own MDN, -e or not.
* Not captured: a Sieve ``redirect`` loop (a redirect leaves through submission_host
  for the sink, which does not feed it back; not tried further), an unknown user or a
  tempfail from the LDA alone (no report, only an exit code).
"""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import time
from pathlib import Path

from bounce_tracker.ops.postfix import backdate_config, instance_main_cf, instance_master_cf
from tests.capture.common import save, unpack, wait_for
from tests.fixture_labels import FIXTURES
from tests.postfix_harness import _E2E_MAIN_CF, _E2E_SERVICES, PROFILES, free_port
from tests.smtp_sink import SmtpSink, Transaction

MTA = "dovecot"
BASE = Path("/tmp/dovecot-capture")
ROOT, HOME, CONF = BASE / "root", BASE / "home", BASE / "dovecot.conf"
PFX = Path("/tmp/dvcpfx")  # short: Postfix's socket paths must stay under 108 bytes
DOMAIN, HOST = "dovecot.capture.test", "mx.dovecot.capture.test"
PIPE_DOMAIN = f"lda.{DOMAIN}"
LMTP_PORT = 24025
HELD_BACK = {"lmtp-two-failed"}
LDA = "/usr/lib/dovecot/dovecot-lda"
ENV = {**os.environ, "LD_LIBRARY_PATH": f"{ROOT}/usr/lib/dovecot"}

# Per-user Sieve scripts (None: no script) and userdb extra fields.
USERS: dict[str, tuple[str | None, str]] = {
    "alice": (None, ""),
    "fullbox": (None, "userdb_quota_rule=*:storage=1k"),
    "tempfull": (None, "userdb_quota_rule=*:storage=1k userdb_quota_full_tempfail=yes"),
    "rejecter": ('require "reject";\nreject "I do not accept messages from this address.";', ""),
    "abweiser": (
        'require "reject";\nreject "Ich nehme keine Nachrichten von dieser Adresse an.";',
        "",
    ),
    "vacationer": (
        'require "vacation";\nvacation :days 1 :subject "Out of office" '
        '"I am away until Monday and will answer your message when I am back.";',
        "",
    ),
    "urlauber": (
        'require "vacation";\nvacation :days 1 :subject "Abwesenheitsnotiz" '
        '"Ich bin bis Montag nicht im Büro. Ihre Nachricht wird nicht weitergeleitet.";',
        "",
    ),
    "notifier": (
        'require "enotify";\nnotify :message "New mail from the capture" '
        '"mailto:bounce-notify@sink.test";',
        "",
    ),
}
# (name, user) for the LDA; the report comes back to bounce-<user>@sink.test.
LDA_CASES = [
    ("lda-sieve-reject", "rejecter"),
    ("lda-sieve-reject-german", "abweiser"),
    ("lda-quota-rejected", "fullbox"),
    ("lda-vacation", "vacationer"),
    ("lda-vacation-german", "urlauber"),
    ("lda-sieve-notify", "notifier"),
]
# (key, recipients, NOTIFY, report names in order), all through the private Postfix:
# @DOMAIN to Dovecot's LMTP, @PIPE_DOMAIN to ``dovecot-lda -e`` through pipe(8).
POSTFIX_CASES = [
    ("unknown", [f"nosuch@{DOMAIN}"], "FAILURE", ["lmtp-user-unknown"]),
    ("full", [f"fullbox@{DOMAIN}"], "FAILURE", ["lmtp-quota-rejected"]),
    ("tempfull", [f"tempfull@{DOMAIN}"], "DELAY,FAILURE",
     ["lmtp-quota-delayed", "lmtp-quota-expired"]),
    ("success", [f"alice@{DOMAIN}"], "SUCCESS", ["lmtp-success-notice"]),
    ("two", [f"nosuch2@{DOMAIN}", f"fullbox@{DOMAIN}"], "FAILURE", ["lmtp-two-failed"]),
    ("pipe-unknown", [f"nosuch@{PIPE_DOMAIN}"], "FAILURE", ["pipe-lda-user-unknown"]),
    ("pipe-full", [f"fullbox@{PIPE_DOMAIN}"], "FAILURE", ["pipe-lda-quota-rejected"]),
    ("pipe-tempfull", [f"tempfull@{PIPE_DOMAIN}"], "DELAY,FAILURE",
     ["pipe-lda-quota-delayed", "pipe-lda-quota-expired"]),
]  # fmt: skip


def dovecot_conf(sink_port: int) -> str:
    return f"""\
base_dir = {BASE}/run
log_path = {BASE}/dovecot.log
import_environment = TZ LD_LIBRARY_PATH
protocols = lmtp
listen = 127.0.0.1
ssl = no
hostname = {HOST}
postmaster_address = postmaster@{DOMAIN}
submission_host = 127.0.0.1:{sink_port}
auth_username_format = %Ln
mail_location = maildir:~/Maildir
mail_plugin_dir = {BASE}/modules
mail_plugins = quota
lmtp_save_to_detail_mailbox = no
passdb {{
  driver = passwd-file
  args = {BASE}/users
}}
userdb {{
  driver = passwd-file
  args = {BASE}/users
}}
service auth {{
  unix_listener auth-userdb {{
    mode = 0666
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
service lmtp {{
  executable = {ROOT}/usr/lib/dovecot/lmtp
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {LMTP_PORT}
  }}
}}
plugin {{
  quota = maildir:User quota
  quota_rule = *:storage=10M
  quota_full_tempfail = no
  sieve = file:~/sieve;active=~/.dovecot.sieve
  sieve_plugin_dir = {BASE}/modules/sieve
}}
protocol lda {{
  mail_plugins = $mail_plugins sieve
}}
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}
"""


def prepare(sink_port: int) -> None:
    unpack(["dovecot-sieve", "dovecot-lmtpd"], ROOT)
    for path in (BASE / "modules", HOME, BASE / "run", BASE / "dovecot.log"):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(True)
    (BASE / "modules" / "sieve").mkdir(parents=True)
    for module in [*Path("/usr/lib/dovecot/modules").glob("*.so"),
                   *(ROOT / "usr/lib/dovecot/modules").glob("*.so")]:  # fmt: skip
        (BASE / "modules" / module.name).symlink_to(module)
    for module in (ROOT / "usr/lib/dovecot/modules/sieve").glob("*.so"):
        (BASE / "modules" / "sieve" / module.name).symlink_to(module)
    CONF.write_text(dovecot_conf(sink_port))
    (BASE / "dovecot.log").touch()
    (BASE / "dovecot.log").chmod(0o666)  # dovecot-lda runs as nobody under pipe(8)
    lines = []
    for user, (script, extra) in USERS.items():
        (HOME / user).mkdir(parents=True)
        if script:
            (HOME / user / ".dovecot.sieve").write_text(script + "\n")
        lines.append(f"{user}:{{PLAIN}}capture:65534:65534::{HOME / user}::{extra}\n")
    (BASE / "users").write_text("".join(lines))
    subprocess.run(["chown", "-R", "65534:65534", str(HOME)], check=True)


def message(sender: str, rcpts: list[str], subject: str, big: bool = False) -> bytes:
    filler = "".join(f"Line {n} of a message too large for a 1 KiB quota.\n" for n in range(60))
    return (
        f"From: Capture <{sender}>\nTo: {', '.join(rcpts)}\nSubject: {subject}\n"
        f"Message-ID: <{subject.replace(' ', '-')}@sink.test>\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\n\n"
        f"This message is for the capture of Dovecot's reports.\n{filler if big else ''}"
    ).encode()


def run_lda(name: str, user: str) -> None:
    sender, rcpt = f"bounce-{user}@sink.test", f"{user}@{DOMAIN}"
    raw = message(sender, [rcpt], f"Dovecot capture {name}", big=user == "fullbox")
    command = [LDA, "-c", str(CONF), "-f", sender, "-d", user, "-a", rcpt]
    result = subprocess.run(command, input=raw, env=ENV, capture_output=True)
    print(name, "exit", result.returncode, result.stderr.decode().strip()[-200:])


def start_postfix(sink_port: int) -> int:
    shutil.rmtree(PFX, ignore_errors=True)
    (PFX / "etc").mkdir(parents=True)
    (PFX / "spool").mkdir()
    PFX.chmod(0o755)
    settings = {**_E2E_MAIN_CF, **PROFILES["fast"], "myhostname": f"relay.{DOMAIN}",
                "mydomain": DOMAIN, "transport_maps": f"texthash:{PFX}/etc/transport",
                "lmtp_discard_lhlo_keywords": "dsn",
                "dovecot_destination_recipient_limit": "1"}  # fmt: skip
    (PFX / "etc/main.cf").write_text(instance_main_cf(PFX, settings))
    port = free_port()
    lda = f"env LD_LIBRARY_PATH={ENV['LD_LIBRARY_PATH']} {LDA} -e -c {CONF}"
    lda += " -f ${sender} -d ${user} -a ${original_recipient}"
    pipe = f"dovecot unix - n n - - pipe flags=DRhu user=nobody:nogroup argv=/usr/bin/{lda}"
    services = [f"127.0.0.1:{port} inet n - n - - smtpd", *_E2E_SERVICES, pipe]
    (PFX / "etc/master.cf").write_text(instance_master_cf(services))
    (PFX / "etc/transport").write_text(
        f"{DOMAIN} lmtp:inet:127.0.0.1:{LMTP_PORT}\nsink.test smtp:[127.0.0.1]:{sink_port}\n"
        f"{PIPE_DOMAIN} dovecot:\n"
    )
    backdate_config(PFX / "etc")
    subprocess.run(["postfix", "-c", str(PFX / "etc"), "start"], check=True)
    return port


def run_lmtp(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.ehlo()  # else smtplib drops the DSN options of MAIL and RCPT
        for key, rcpts, notify, _ in POSTFIX_CASES:
            sender = f"bounce-lmtp-{key}@sink.test"
            smtp.mail(sender, ["RET=HDRS"])
            for rcpt in rcpts:
                smtp.rcpt(rcpt, [f"NOTIFY={notify}"])
            big = "full" in key or key == "two"
            smtp.data(message(sender, rcpts, f"Dovecot LMTP capture {key}", big=big))


def store(name: str, transaction: Transaction) -> None:
    path = save(MTA, name, transaction.data)
    if name in HELD_BACK:
        path.replace(FIXTURES / "held_back" / f"{MTA}-{name}.eml")
    print("saved", name)


def main() -> None:
    expected: dict[str, list[str]] = {f"bounce-{user}@sink.test": [n] for n, user in LDA_CASES}
    expected["bounce-notify@sink.test"] = expected.pop("bounce-notifier@sink.test")
    for key, _, _, names in POSTFIX_CASES:
        expected[f"bounce-lmtp-{key}@sink.test"] = names
    with SmtpSink() as sink:
        prepare(sink.port)
        subprocess.run(["dovecot", "-c", str(CONF)], env=ENV, check=True)
        port = 0
        try:
            for name, user in LDA_CASES:
                run_lda(name, user)
            port = start_postfix(sink.port)
            run_lmtp(port)

            def arrived() -> bool:
                got = [t.rcpt_to[0] for t in sink.state.transactions]
                return all(got.count(a) >= len(names) for a, names in expected.items())

            try:
                wait_for(arrived, 60, "every report")
            except TimeoutError as error:
                print(error)
            seen: dict[str, int] = {}
            for transaction in list(sink.state.transactions):
                address = transaction.rcpt_to[0]
                index = seen[address] = seen.get(address, -1) + 1
                if index < len(expected.get(address, [])):
                    store(expected[address][index], transaction)
            print("missing:", [a for a, n in expected.items() if seen.get(a, -1) + 1 < len(n)])
        finally:
            subprocess.run(["dovecot", "-c", str(CONF), "stop"], env=ENV, check=False)
            if port:
                subprocess.run(["postfix", "-c", str(PFX / "etc"), "stop"], check=False)


if __name__ == "__main__":
    main()
