"""A private, loopback-only Dovecot (IMAP and POP3) for the bounce mailbox tests.

Debian's ``dovecot-imapd`` and ``dovecot-pop3d`` packages, started by the test with
a configuration of its own (``dovecot -c``): its own base directory under /tmp, one
passwd-file user, Maildir storage owned by ``mail``, plain IMAP/POP3 plus IMAPS on
free 127.0.0.1 ports with a throw-away self-signed certificate for 127.0.0.1, and a
log file. The system's Dovecot (if any) is neither used nor touched.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.postfix_harness import free_port, wait_until

DOVECOT = "/usr/sbin/dovecot"
USER = "bounces"
PASSWORD = "s3cret p@ss/word"  # needs percent-encoding in a URL, on purpose
#: A second user whose password is not ASCII (IMAP LOGIN can't carry it).
UNICODE_USER, UNICODE_PASSWORD = "juergen", "pässwörd-ß"

_CONFIG = """\
base_dir = {base}/run
state_dir = {base}/state
instance_name = bt-dovecot-{imap_port}
protocols = imap pop3
listen = 127.0.0.1
log_path = {base}/dovecot.log
info_log_path = {base}/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
ssl = yes
ssl_cert = <{base}/cert.pem
ssl_key = <{base}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{base}/mail/%u/Maildir
mail_uid = mail
mail_gid = mail
first_valid_uid = 1
first_valid_gid = 1
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/passwd
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={base}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service stats {{
  inet_listener http {{
    port = 0
  }}
}}
"""


def dovecot_available() -> bool:
    """Debian's Dovecot with IMAP and POP3, and root to run it as (it switches to ``mail``)."""
    return os.geteuid() == 0 and os.path.exists(DOVECOT) and os.path.exists("/usr/lib/dovecot/pop3")


class DovecotInstance:
    """One private Dovecot: start, talk IMAP to it as the test user, stop."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="btdc-", dir="/tmp"))
        self.base.chmod(0o755)
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.pop3_port = free_port()
        self.cert = self.base / "cert.pem"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.base / "dovecot.conf"

    def start(self) -> None:
        self._make_certificate()
        (self.base / "passwd").write_text(
            f"{USER}:{{PLAIN}}{PASSWORD}::::::\n{UNICODE_USER}:{{PLAIN}}{UNICODE_PASSWORD}::::::\n",
            encoding="utf-8",
        )
        mail = self.base / "mail"
        mail.mkdir(mode=0o755)
        owner = pwd.getpwnam("mail")
        os.chown(mail, owner.pw_uid, owner.pw_gid)
        self.config.write_text(
            _CONFIG.format(
                base=self.base,
                imap_port=self.imap_port,
                imaps_port=self.imaps_port,
                pop3_port=self.pop3_port,
            )
        )
        # -F: stay in the foreground, so the test owns the process and its end.
        with open(self.base / "stderr.log", "wb") as stderr:
            self.process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            for port in (self.imap_port, self.imaps_port, self.pop3_port):
                wait_until(lambda port=port: self._listening(port), 15, f"dovecot on {port}")
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}; log:\n{self.log()[-3000:]}") from None

    def _make_certificate(self) -> None:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(self.base / "key.pem"),
                "-out",
                str(self.cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def _listening(self, port: int) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"dovecot exited with status {self.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=15)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        parts = []
        for name in ("dovecot.log", "stderr.log"):
            path = self.base / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    # -- the test user's mailbox, over IMAP ------------------------------------------

    def url(self, scheme: str = "imap", folder: str = "") -> str:
        from urllib.parse import quote

        port = {
            "imap": self.imap_port,
            "imap+starttls": self.imap_port,
            "imaps": self.imaps_port,
            "pop3": self.pop3_port,
        }[scheme]
        path = f"/{quote(folder, safe='')}" if folder else ""
        return f"{scheme}://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{port}{path}"

    @contextlib.contextmanager
    def imap(self) -> Iterator[imaplib.IMAP4]:
        connection = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=30)
        try:
            connection.login(USER, PASSWORD)
            yield connection
        finally:
            with contextlib.suppress(Exception):
                connection.logout()

    def append(self, *raw_messages: bytes, folder: str = "INBOX") -> None:
        with self.imap() as connection:
            self.create(folder, connection)
            for raw in raw_messages:
                typ, data = connection.append(_quoted(folder), "", None, raw)
                assert typ == "OK", data

    def create(self, folder: str, connection: imaplib.IMAP4 | None = None) -> None:
        if folder.upper() == "INBOX":
            return
        with contextlib.ExitStack() as stack:
            if connection is None:
                connection = stack.enter_context(self.imap())
            connection.create(_quoted(folder))  # "already exists" is fine

    def messages(self, folder: str = "INBOX") -> list[tuple[bytes, set[str]]]:
        """(raw message, flags) for every message in ``folder``, without changing flags."""
        with self.imap() as connection:
            typ, _ = connection.select(_quoted(folder), readonly=True)
            assert typ == "OK"
            typ, data = connection.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            assert typ == "OK", data
        found = []
        for item in data:
            if isinstance(item, tuple):
                prefix = item[0].decode()
                flags_text = prefix.split("FLAGS (", 1)[1].split(")", 1)[0]
                found.append((item[1], set(flags_text.split())))
        return found

    def count(self, folder: str = "INBOX") -> int:
        with self.imap() as connection:
            typ, data = connection.status(_quoted(folder), "(MESSAGES)")
            assert typ == "OK", data
        return int(data[0].split(b"MESSAGES ")[1].rstrip(b")"))


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wait_for_count(server: DovecotInstance, expected: int, timeout: float = 30) -> None:
    wait_until(lambda: server.count() == expected, timeout, f"{expected} message(s) in INBOX")
