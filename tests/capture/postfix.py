"""Capture Postfix's own reports: ``.venv/bin/python -m tests.capture.postfix [SCENARIO...]``.

Run as root from /work/main; with scenario names, only those are captured again.

What works here (Debian 12, Postfix 3.7.11 installed from Debian's packages): nothing
is unpacked. Two private instances run the installed binaries from ``/tmp/pfc-*``
(``postfix -c DIR``, see shared/postfix-test-instance.md), every daemon unchrooted,
on 127.0.0.1 ports, logging to ``DIR/maillog`` (copied to /tmp/pfc-logs/ at stop):

- ``mx.postfix.capture.test`` reports. It delivers with local(8) (an mbox spool
  under DIR, user ``nobody``, texthash aliases) and virtual(8) (uid 65534), relays by
  texthash transport entries to the other instance and to :class:`SmtpSink` servers
  that play remote replies, and sends every report to
  ``bounces+<scenario>@sink.capture.test`` (a sink). It retries every second, warns
  at the first deferral and expires mail after 6 s (null-sender mail after 3 s).
- ``mx.remote.capture.test`` receives: its smtpd refusals (local/virtual tables,
  relay, access(5), sender checks, size, STARTTLS with a throw-away openssl
  certificate, null MX) are what the first instance reports.
- DNS: this machine's resolver (10.255.255.53) answers NXDOMAIN (rcode 3, not
  authoritative) for every name, .invalid included. Both instances start inside
  ``unshare -m`` with a bind mount over /etc/resolv.conf (the host's file is not
  touched) naming :class:`DnsStub` on 127.0.0.77:53, which answers a null MX, a
  SERVFAIL, a malformed reply and an MX pointing back at the reporting MTA for
  test names and passes
  every other query to the machine's resolver: the NXDOMAIN report is the real
  resolver's answer. Only the ``dnssmtp`` transport looks names up.

What did not work or was left out: Postfix's client reports NXDOMAIN as
``type=A: Host not found`` (it falls back from MX to A), not ``type=MX``; a DNS
timeout was left out (it costs the resolver's timeout per try); the error(8)
transport was not needed for DNS wording. ``552 5.3.4 Message size exceeds fixed
limit`` is played by a sink: Postfix's own client never sends an oversized SIZE=
to a server that announces its limit (it bounces by itself, also captured), and
without SIZE the remote smtpd says ``Error: message file too big``. Vendor replies
(Mimecast, Proofpoint, Barracuda, Cisco, Spamhaus, Proton, postgrey) are played by
sinks; their sources are in the labels' notes.

Gotchas met: with ``smtpd_reject_unlisted_sender`` an ``error:`` default_transport
makes smtpd refuse every remote sender ("default route disabled"), so the receiving
instance discards instead; a ``transport_maps`` table must exist even when empty
(else 451 4.3.0 Temporary lookup failure); a bracketed next hop back to oneself
gives "too many hops", only an MX naming oneself gives "loops back to myself". A
full run takes about 15 s; logs stay in /tmp/pfc-logs/.
"""

from __future__ import annotations

import contextlib
import email
import shutil
import smtplib
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from bounce_tracker.ops.postfix import backdate_config, instance_main_cf, instance_master_cf
from tests.capture.common import save, wait_for
from tests.fixture_labels import FIXTURES
from tests.postfix_harness import free_port
from tests.smtp_sink import SmtpSink

HELD_BACK = {
    "protonmail-address-does-not-exist",
    "remote-sender-user-unknown",
    "virtual-mailbox-full",
}
LOGS = Path("/tmp/pfc-logs")
STUB_IP = "127.0.0.77"
SINK = "sink.capture.test"
SERVFAIL = "servfail.capture.test"
LOOP_MX = "loop-mx.capture.test"
MALFORMED = "malformed.capture.test"  # answers one MX record it does not send


def _name(domain: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in domain.split(".") if p) + b"\0"


RECORDS = {  # the stub's own answers: name -> query type (15 MX, 1 A) -> rdata
    "nullmx.capture.test": {15: b"\0\0" + _name(".")},  # RFC 7505 null MX
    "nullmx2.capture.test": {15: b"\0\0" + _name(".")},
    LOOP_MX: {15: b"\0\x0a" + _name(f"mx.{LOOP_MX}")},
    f"mx.{LOOP_MX}": {1: socket.inet_aton("127.0.0.1")},  # the reporting MTA itself
}


class DnsStub(socketserver.ThreadingUDPServer):
    """DNS on STUB_IP:53: RECORDS, SERVFAIL for SERVFAIL, anything else from upstream."""

    def __init__(self, upstream: str) -> None:
        super().__init__((STUB_IP, 53), _DnsHandler)
        self.upstream = upstream
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _DnsHandler(socketserver.BaseRequestHandler):
    server: DnsStub

    def handle(self) -> None:
        query, sock = self.request
        labels, end = [], 12
        while query[end]:
            labels.append(query[end + 1 : end + 1 + query[end]].decode().lower())
            end += query[end] + 1
        name, qtype = ".".join(labels), struct.unpack(">H", query[end + 1 : end + 3])[0]
        flags = 0x8580 | (query[2] & 1) << 8  # QR AA RA, and RD as asked
        rdata = RECORDS.get(name, {}).get(qtype, b"")
        if name in (SERVFAIL, MALFORMED) or name in RECORDS:
            count = 1 if rdata or name == MALFORMED else 0
            answer = query[:2] + struct.pack(
                ">HHHHH", flags | (name == SERVFAIL) * 2, 1, count, 0, 0
            )
            answer += query[12 : end + 5]
            if rdata:
                answer += struct.pack(">HHHIH", 0xC00C, qtype, 1, 300, len(rdata)) + rdata
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
                upstream.settimeout(5)
                upstream.sendto(query, (self.server.upstream, 53))
                answer = upstream.recv(4096)
        sock.sendto(answer, self.client_address)


def _settings(text: str) -> dict[str, str]:
    """main.cf lines ("name = value") as a dict."""
    lines = text.strip().replace("\n ", " ").splitlines()  # a leading space continues a line
    pairs = (line.split("=", 1) for line in lines if line.strip())
    return {name.strip(): value.strip() for name, value in pairs}


COMMON_MAIN_CF = """
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
biff = no
smtputf8_enable = no
append_dot_mydomain = no
recipient_delimiter = +
transport_maps = texthash:{etc}/transport
"""
SERVICES = """
flush     unix  n  -  n  1000? 0 flush
proxymap  unix  -  -  n  -   -  proxymap
showq     unix  n  -  n  -   -  showq
discard   unix  -  -  n  -   -  discard
anvil     unix  -  -  n  -   1  anvil
scache    unix  -  -  n  -   1  scache
verify    unix  -  -  n  -   1  verify
tlsmgr    unix  -  -  n  1000? 1  tlsmgr
local     unix  -  n  n  -   -  local
virtual   unix  -  n  n  -   -  virtual
dnssmtp   unix  -  -  n  -   -  smtp -o smtp_dns_support_level=enabled -o smtp_host_lookup=dns
"""


@dataclass
class Instance:
    """One private Postfix: main.cf ``settings``, extra master.cf lines, files in etc/."""

    hostname: str
    settings: str
    files: dict[str, str]
    services: str = ""
    port: int = field(default_factory=free_port)
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pfc-", dir="/tmp")))

    def start(self, resolv_conf: Path) -> None:
        etc = self.base / "etc"
        self.base.chmod(0o755)
        etc.mkdir(mode=0o755)
        (self.base / "spool").mkdir(mode=0o755)
        values = _settings(f"myhostname = {self.hostname}\n{COMMON_MAIN_CF}\n{self.settings}")
        values = {k: v.format(etc=etc, base=self.base) for k, v in values.items()}
        (etc / "main.cf").write_text(instance_main_cf(self.base, values))
        smtpd = f"127.0.0.1:{self.port} inet n - n - - smtpd"
        services = f"{smtpd}\n{SERVICES}\n{self.services}".strip().splitlines()
        (etc / "master.cf").write_text(instance_master_cf(services))
        for name, text in self.files.items():
            (etc / name).write_text(text.strip() + "\n")
        backdate_config(etc)
        script = f"mount --bind {resolv_conf} /etc/resolv.conf && exec postfix -c {etc} start"
        subprocess.run(["unshare", "-m", "sh", "-c", script], check=True, timeout=60)
        wait_for(lambda: _listening(self.port), 20, f"{self.hostname} to listen")

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.base / "etc"), "stop"], check=False, timeout=60)
        LOGS.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copy(self.base / "maillog", LOGS / f"{self.hostname}.log")
        shutil.rmtree(self.base, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


REMOTE = """
mydestination = users.remote.test, staff.remote.test
local_recipient_maps = texthash:{etc}/localusers
virtual_mailbox_domains = vmail.remote.test
virtual_mailbox_maps = texthash:{etc}/vmailbox
virtual_alias_domains = valias.remote.test
virtual_alias_maps = texthash:{etc}/valias
relay_domains = nullmx2.capture.test
mynetworks = 127.0.0.2/32
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_restriction_classes = sender_domain_check
sender_domain_check = reject_unknown_sender_domain
smtpd_recipient_restrictions = check_recipient_access texthash:{etc}/access,
 reject_unknown_recipient_domain
smtpd_reject_unlisted_sender = yes
unknown_address_reject_code = 553
default_transport = discard:
relay_transport = discard:
message_size_limit = 20480
smtpd_tls_cert_file = {base}/cert.pem
smtpd_tls_key_file = {base}/key.pem
"""
REMOTE_FILES = {
    "transport": "",
    "localusers": "\n".join(
        f"{user}@users.remote.test ok"
        for user in ("alice", "carol", "big-size", "big-nosize", "tls-required")
    ),
    "vmailbox": "vera@vmail.remote.test vera/",
    "valias": "team@valias.remote.test alice@users.remote.test",
    "access": "denied@users.remote.test REJECT\ncarol@users.remote.test sender_domain_check",
}
REMOTE_SERVICES = """
127.0.0.1:{size} inet n - n - - smtpd -o smtpd_discard_ehlo_keywords=size
127.0.0.1:{tls} inet n - n - - smtpd -o smtpd_tls_security_level=encrypt
"""
MX = """
mydomain = postfix.capture.test
mydestination = $myhostname, local.capture.test
local_recipient_maps =
alias_maps = texthash:{etc}/aliases
mail_spool_directory = {base}/mail
mailbox_delivery_lock = fcntl
message_size_limit = 200000
mailbox_size_limit = 200000
virtual_mailbox_domains = virtual.capture.test
virtual_mailbox_maps = texthash:{etc}/vmailbox
virtual_mailbox_base = {base}/vmail
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_mailbox_limit = 200000
virtual_alias_domains = valias.capture.test
virtual_alias_maps = texthash:{etc}/valias
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
default_transport = error:5.7.1 default route disabled in capture instance
relay_transport = $default_transport
notify_classes = resource, software, 2bounce
2bounce_notice_recipient = postmaster@sink.capture.test
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 1s
delay_warning_time = 1s
maximal_queue_lifetime = 6s
bounce_queue_lifetime = 3s
"""
MX_TRANSPORT = """
sink.capture.test {sink}
staff.remote.test {sink}
mimecast.example {sink}
barracuda.example {sink}
spamhaus.example {sink}
network.example {sink}
greylist.example {sink}
proton.example {sink}
proofpoint.example {proofpoint}
cisco.example {cisco}
bigmail.example {bigmail}
users.remote.test {remote}
vmail.remote.test {remote}
valias.remote.test {remote}
relay.example {remote}
nullmx2.capture.test {remote}
big-nosize@users.remote.test {size}
tls-required@users.remote.test {tls}
nullmx.capture.test dnssmtp:
servfail.capture.test dnssmtp:
nosuch.invalid dnssmtp:
loop-mx.capture.test dnssmtp:
malformed.capture.test dnssmtp:
loop.capture.test {mx}
down.capture.test {closed}
"""
MX_FILES = {
    "aliases": """
loop-a loop-b@local.capture.test
loop-b loop-a@local.capture.test
team ok@virtual.capture.test, ok2@virtual.capture.test
pipe-fail |/bin/false
pipe-nouser "|exit 67;"
""",
    "valias": "sales@valias.capture.test ok@virtual.capture.test",
    "vmailbox": "full@virtual.capture.test fullbox\nok@virtual.capture.test ok/\n"
    "ok2@virtual.capture.test ok2/",
}
MIMECAST = " - https://community.mimecast.com/docs/DOC-1369#{} [qI7pXz1bTmWcYd4nLk0aEw.uk42]"
BLOCKED = "Service unavailable; Client host [192.0.2.25] blocked using"
REPLIES = {  # the sink's replies to RCPT TO
    "former.staff@mimecast.example": "550 Invalid Recipient" + MIMECAST.format(550),
    "grey@mimecast.example": "451 Internal resource temporarily unavailable" + MIMECAST.format(451),
    "@spamhaus.example": f"554 5.7.1 {BLOCKED} zen.spamhaus.org;"
    " https://www.spamhaus.org/query/ip/192.0.2.25",
    "@network.example": "550 5.7.1 We no longer accept mail from this network",
    "pat@greylist.example": "450 4.2.0 <pat@greylist.example>: Recipient address rejected:"
    " Greylisted, see http://postgrey.schweikert.ch/help/greylist.example.html",
    "@proton.example": "550 5.1.1 Address does not exist",
}
DATA_REPLIES = {  # the sink's replies after DATA
    "secure@mimecast.example": "554 Email rejected due to security policies" + MIMECAST.format(554),
    "@barracuda.example": f"554 {BLOCKED} Barracuda Reputation;"
    " http://bbl.barracudacentral.com/q.cgi?ip=192.0.2.25",
}
MAIL_REPLIES = {  # one sink each, refusing MAIL FROM
    "proofpoint": "554 5.7.0 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.25",
    "cisco": "554 Your access to this mail system has been rejected due to the sending MTA's"
    " poor reputation. If you believe that this failure is in error, please contact the"
    " intended recipient via alternate means.",
    "bigmail": "552 5.3.4 Message size exceeds fixed limit",
}


@dataclass
class Scenario:
    """One message to ``recipients`` (space-separated), and the reports to keep of it."""

    name: str
    recipients: str
    sender: str | None = None  # default bounces+<name>@SINK; "" for a null sender
    mail_options: tuple[str, ...] = ()
    rcpt_options: tuple[str, ...] = ()
    size: int = 0
    headers: str = ""
    sendmail: bool = False  # submit with sendmail(1) instead of SMTP
    retried: bool = False  # keep the delay warning (-delayed) and the expiry (-expired)
    success: bool = False  # keep the success notice instead of a failure

    @property
    def want(self) -> dict[str, str]:
        """Report kind (see report_kind) -> file name."""
        if self.retried:
            return {"delayed": f"{self.name}-delayed", "failed": f"{self.name}-expired"}
        return {"delivered" if self.success else "failed": self.name}

    def __post_init__(self) -> None:
        self.sender = f"bounces+{self.name}@{SINK}" if self.sender is None else self.sender

    @property
    def report_to(self) -> str:
        return self.sender or f"postmaster@{SINK}"  # a null sender's: the 2bounce notice

    def message(self) -> bytes:
        padding = (
            "".join(f"{n:05d} {'x' * 70}\n" for n in range(self.size // 77)) if self.size else ""
        )
        return (
            f"{self.headers}From: App <noreply@app.example>\n"
            f"To: {', '.join(self.recipients.split())}\n"
            f"Subject: capture {self.name}\nMessage-ID: <{self.name}@app.example>\n"
            f"Date: {formatdate()}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n"
            f"\nHello from the capture.\n{padding}"
        ).encode()


S = Scenario
NOTIFY = ("NOTIFY=SUCCESS,FAILURE,DELAY",)
SCENARIOS = [
    S("local-unknown-user", "no.such.user@local.capture.test"),
    S("local-mailbox-full", "nobody@local.capture.test"),
    S("virtual-unknown-user", "nobody@virtual.capture.test", sendmail=True),
    S("virtual-mailbox-full", "full@virtual.capture.test"),
    S("alias-forwarding-loop", "loop-a@local.capture.test"),
    S(
        "local-mail-forwarding-loop",
        "hops@local.capture.test",
        headers="Delivered-To: hops@local.capture.test\n",
    ),
    S("smtp-too-many-hops", "someone@loop.capture.test"),
    S("smtp-loops-back-to-myself", f"someone@{LOOP_MX}"),
    S("dns-host-not-found", "someone@nosuch.invalid"),
    S("dns-malformed-reply", f"someone@{MALFORMED}", retried=True),
    S("virtual-alias-unknown-user", "nobody@valias.capture.test", sendmail=True),
    S("alias-expanded-success", "team@local.capture.test", success=True, rcpt_options=NOTIFY),
    S("local-command-failed", "pipe-fail@local.capture.test"),
    S("local-command-ex-nouser", "pipe-nouser@local.capture.test"),
    S("dns-servfail", f"someone@{SERVFAIL}", retried=True),
    S("smtp-null-mx", "someone@nullmx.capture.test"),
    S("smtp-size-exceeds-server-limit", "big-size@users.remote.test", size=30000),
    S("remote-message-file-too-big", "big-nosize@users.remote.test", size=30000),
    S("size-exceeds-fixed-limit", "ray@bigmail.example"),
    S("double-bounce-expired", "someone@down.capture.test", sender=""),
    S("headers-only-bounce-size-limit", "ana@network.example", size=60000),
    S("headers-only-ret-hdrs", "someone@relay.example", mail_options=("RET=HDRS",)),
    S(
        "multi-recipient-mixed",
        "no.such.user@local.capture.test nobody@local.capture.test"
        " bob@users.remote.test secure@mimecast.example",
    ),
    S("success-virtual-maildir", "ok@virtual.capture.test", success=True, rcpt_options=NOTIFY),
    S("remote-local-recipient-table", "bob@users.remote.test"),
    S("remote-virtual-mailbox-table", "nobody@vmail.remote.test"),
    S("remote-virtual-alias-table", "nobody@valias.remote.test"),
    S("remote-relay-access-denied", "someone@relay.example"),
    S("remote-access-denied", "denied@users.remote.test"),
    S("remote-sender-domain-not-found", "carol@users.remote.test"),
    S("remote-sender-user-unknown", "alice@users.remote.test", sender="ghost@staff.remote.test"),
    S("remote-starttls-required", "tls-required@users.remote.test"),
    S("remote-null-mx", "someone@nullmx2.capture.test"),
    S("mimecast-invalid-recipient", "former.staff@mimecast.example"),
    S("mimecast-security-policies", "secure@mimecast.example"),
    S("mimecast-451", "grey@mimecast.example", retried=True),
    S("proofpoint-blocked", "lee@proofpoint.example"),
    S("barracuda-reputation", "kim@barracuda.example"),
    S("cisco-poor-reputation", "max@cisco.example"),
    S("spamhaus-zen-listed", "sam@spamhaus.example"),
    S("access-no-longer-accept-network", "eve@network.example"),
    S("postgrey-greylisted-expired", "pat@greylist.example"),
    S("protonmail-address-does-not-exist", "gone@proton.example"),
]


def prepare(mx: Instance, remote: Instance) -> None:
    """Full mailboxes for local(8) and virtual(8); the remote's TLS certificate."""
    (mx.base / "mail").mkdir(mode=0o755)
    (mx.base / "vmail").mkdir(mode=0o755)
    shutil.chown(mx.base / "vmail", 65534, 65534)
    for box in (mx.base / "mail" / "nobody", mx.base / "vmail" / "fullbox"):
        box.write_text("From someone@example.org  Thu Dec  3 10:00:00 2026\n" + "x" * 200000)
        shutil.chown(box, 65534, 65534)
        box.chmod(0o600)
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"]
    files = ["-keyout", str(remote.base / "key.pem"), "-out", str(remote.base / "cert.pem")]
    subprocess.run([*openssl, f"/CN={remote.hostname}", *files], check=True, capture_output=True)


def report_kind(raw: bytes) -> str:
    """delayed, failed or delivered, from the Action fields of a DSN."""
    actions = set()
    for part in email.message_from_bytes(raw).walk():
        if part.get_content_type() == "message/delivery-status":
            actions |= {str(block.get("Action", "")).lower() for block in part.get_payload()}
    for kind in ("delayed", "failed"):
        if kind in actions:
            return kind
    return "delivered" if actions & {"delivered", "relayed", "expanded"} else "other"


def submit(mx: Instance, scenario: Scenario) -> None:
    sender, recipients = scenario.sender or "", scenario.recipients.split()
    if scenario.sendmail:
        command = ["sendmail", "-C", str(mx.base / "etc"), "-f", sender, *recipients]
        subprocess.run(command, input=scenario.message(), check=True, timeout=60)
        return
    with smtplib.SMTP("127.0.0.1", mx.port) as client:
        options = list(scenario.mail_options), list(scenario.rcpt_options)
        client.sendmail(sender, recipients, scenario.message(), *options)


def collect(sink: SmtpSink, scenarios: list[Scenario], timeout: float) -> dict[str, bytes]:
    """Wait for every wanted report (the first of each kind per scenario); by file name."""
    by_address = {s.report_to.lower(): s for s in scenarios}
    wanted = {name for s in scenarios for name in s.want.values()}
    found: dict[str, bytes] = {}

    def scan() -> bool:
        for tx in list(sink.state.transactions):
            scenario, kind = by_address.get(tx.rcpt_to[0].lower()), report_kind(tx.data)
            if scenario and (kind in scenario.want or not scenario.sender):
                found.setdefault(scenario.want.get(kind, scenario.name), tx.data)
        return wanted <= set(found)

    try:
        wait_for(scan, timeout, "every report")
    except TimeoutError:
        print("missing:", sorted(wanted - set(found)))
    return found


def main(names: list[str]) -> None:
    """Capture the scenarios called ``names`` (all when empty)."""
    scenarios = [s for s in SCENARIOS if not names or s.name in names]
    resolv = Path("/etc/resolv.conf").read_text().split()
    upstream = resolv[resolv.index("nameserver") + 1]
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(SmtpSink())
        sink.state.replies.update(REPLIES)
        sink.state.data_replies.update(DATA_REPLIES)
        nexthops = {
            "sink": sink.port,
            "size": free_port(),
            "tls": free_port(),
            "closed": free_port(),
        }
        for name, reply in MAIL_REPLIES.items():
            refuser = stack.enter_context(SmtpSink())
            refuser.state.mail_reply = reply
            nexthops[name] = refuser.port
        stub = stack.enter_context(DnsStub(upstream))
        stack.callback(stub.shutdown)
        remote = Instance(
            "mx.remote.capture.test", REMOTE, REMOTE_FILES, REMOTE_SERVICES.format(**nexthops)
        )
        mx = Instance("mx.postfix.capture.test", MX, MX_FILES)
        nexthops |= {"remote": remote.port, "mx": mx.port}
        routes = {name: f"smtp:[127.0.0.1]:{port}" for name, port in nexthops.items()}
        mx.files["transport"] = MX_TRANSPORT.format(**routes)
        stack.callback(remote.stop)
        stack.callback(mx.stop)
        resolv_conf = mx.base / "resolv.conf"
        resolv_conf.write_text(f"nameserver {STUB_IP}\noptions timeout:2 attempts:1\n")
        prepare(mx, remote)
        remote.start(resolv_conf)
        mx.start(resolv_conf)
        for scenario in scenarios:
            try:
                submit(mx, scenario)
            except smtplib.SMTPException as exc:
                print(f"{scenario.name}: refused at submission: {exc}")
        for name, raw in sorted(collect(sink, scenarios, 60).items()):
            if name in HELD_BACK:  # labelled before any rule saw them; never classified here
                held = FIXTURES / "held_back" / f"postfix-{name}.eml"
                held.write_bytes(raw.replace(b"\r\n", b"\n"))
            else:
                print("saved", save("postfix", name, raw))


if __name__ == "__main__":
    main(sys.argv[1:])
