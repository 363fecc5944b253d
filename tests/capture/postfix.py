"""Capture Postfix's own reports: ``python -m tests.capture.postfix`` (as root, from /work/main).

What works here (Debian 12, Postfix 3.7.11 installed from Debian's packages, root):
nothing is unpacked; two private instances run from ``/tmp/pfc-*`` with the
installed binaries (``postfix -c DIR``, facts in shared/postfix-test-instance.md),
every daemon unchrooted, logging to ``DIR/maillog``:

- ``mx`` (mx.postfix.capture.test) is the reporting MTA. It delivers locally
  (local(8) to an mbox spool under DIR as ``nobody``; aliases from a texthash
  table) and to virtual(8) mailboxes (uid 65534), relays to the other instance and
  to :class:`tests.smtp_sink.SmtpSink` servers by texthash transport entries, and
  sends every report to ``bounces+<scenario>@sink.capture.test`` (a sink).
  Retries every second, a delay warning at the first deferral, expiry after 6 s.
- ``remote`` (mx.remote.capture.test) is a receiving Postfix whose smtpd refusals
  (local/virtual tables, relay, access(5), sender checks, size, STARTTLS, null
  MX) the first instance reports. Its STARTTLS listener uses a throw-away
  self-signed certificate made with openssl.
- DNS: this machine's resolver (10.255.255.53) answers NXDOMAIN (rcode 3, not
  authoritative) for every name, .invalid included. Both instances are started in
  a private mount namespace (``unshare -m`` + a bind mount over /etc/resolv.conf;
  the host's file is untouched) whose resolver is :class:`DnsStub` on
  127.0.0.77:53: it answers a null MX and SERVFAIL for two test names and passes
  every other query to the machine's resolver, so the NXDOMAIN report is the
  real resolver's answer. Only the ``dnssmtp`` transport looks names up.

What did not work or was left out: Postfix's ``error:``/``retry:`` wording was not
needed for DNS (the real resolver and the stub give Postfix's own wording); a
DNS timeout was left out (each try costs the resolver's timeout).
Vendor replies (Mimecast, Proofpoint, Barracuda, Cisco, Spamhaus, Proton, postgrey)
are played by sinks; their texts and sources are in the fixture labels' notes.
"""

from __future__ import annotations

import email
import shutil
import smtplib
import socket
import socketserver
import struct
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from bounce_tracker.ops.postfix import backdate_config, instance_main_cf, instance_master_cf
from tests.capture.common import save, wait_for
from tests.fixture_labels import FIXTURES
from tests.postfix_harness import free_port
from tests.smtp_sink import SmtpSink

STUB_IP = "127.0.0.77"
HELD_BACK = {  # written to held_back/postfix-<name>.eml, never classified here
    "protonmail-address-does-not-exist",
    "remote-sender-user-unknown",
    "virtual-mailbox-full",
}
LOGS = Path("/tmp/pfc-logs")  # each instance's maillog is copied here when it stops
SINK_DOMAIN = "sink.capture.test"
NULL_MX = ("nullmx.capture.test", "nullmx2.capture.test")
SERVFAIL = ("servfail.capture.test",)
COMMON_MAIN_CF = {
    "inet_interfaces": "127.0.0.1",
    "inet_protocols": "ipv4",
    "smtpd_peername_lookup": "no",
    "smtp_dns_support_level": "disabled",
    "smtp_host_lookup": "native",
    "biff": "no",
    "smtputf8_enable": "no",
    "append_dot_mydomain": "no",
    "recipient_delimiter": "+",
    "transport_maps": "texthash:{etc}/transport",
    "default_transport": "error:5.7.1 default route disabled in capture instance",
    "relay_transport": "$default_transport",
}
SERVICES = (
    "flush     unix  n  -  n  1000? 0 flush",
    "proxymap  unix  -  -  n  -   -  proxymap",
    "showq     unix  n  -  n  -   -  showq",
    "retry     unix  -  -  n  -   -  error",
    "discard   unix  -  -  n  -   -  discard",
    "anvil     unix  -  -  n  -   1  anvil",
    "scache    unix  -  -  n  -   1  scache",
    "verify    unix  -  -  n  -   1  verify",
    "local     unix  -  n  n  -   -  local",
    "virtual   unix  -  n  n  -   -  virtual",
    "dnssmtp   unix  -  -  n  -   -  smtp -o smtp_dns_support_level=enabled"
    " -o smtp_host_lookup=dns",
)


def _name(domain: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in domain.split(".") if p) + b"\0"


LOOP_MX = "loop-mx.capture.test"
RECORDS = {  # the stub's own answers by name and query type (15 MX, 1 A); rdata
    **{name: {15: b"\0\0" + _name(".")} for name in NULL_MX},  # RFC 7505: MX 0 .
    LOOP_MX: {15: b"\0\x0a" + _name(f"mx.{LOOP_MX}")},
    f"mx.{LOOP_MX}": {1: socket.inet_aton("127.0.0.1")},  # the reporting MTA itself
}


class DnsStub(socketserver.ThreadingUDPServer):
    """A DNS server on STUB_IP:53 answering RECORDS and SERVFAIL, else asking upstream."""

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
        head = query[:2] + struct.pack(">H", 0x8580 | (query[2] & 1) << 8)  # QR AA RD RA
        if name in SERVFAIL:
            answer = head[:3] + bytes([head[3] | 2]) + struct.pack(">HHHH", 1, 0, 0, 0)
            answer += query[12 : end + 5]
        elif name in RECORDS:
            rdata = RECORDS[name].get(qtype)
            answer = head + struct.pack(">HHHH", 1, 1 if rdata else 0, 0, 0)
            answer += query[12 : end + 5]
            if rdata:
                answer += struct.pack(">HHHIH", 0xC00C, qtype, 1, 300, len(rdata)) + rdata
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
                upstream.settimeout(5)
                upstream.sendto(query, (self.server.upstream, 53))
                answer = upstream.recv(4096)
        sock.sendto(answer, self.client_address)


@dataclass
class Instance:
    """One private Postfix, configured from ``settings``, ``services`` and ``files``."""

    hostname: str
    settings: dict[str, str]
    services: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pfc-", dir="/tmp")))

    @property
    def etc(self) -> Path:
        return self.base / "etc"

    def start(self, resolv_conf: Path) -> None:
        self.base.chmod(0o755)
        self.etc.mkdir(mode=0o755)
        (self.base / "spool").mkdir(mode=0o755)
        values = {"myhostname": self.hostname, "myorigin": "$myhostname", **COMMON_MAIN_CF}
        values = {k: v.format(etc=self.etc, base=self.base) for k, v in values.items()}
        values |= {k: v.format(etc=self.etc, base=self.base) for k, v in self.settings.items()}
        (self.etc / "main.cf").write_text(instance_main_cf(self.base, values))
        smtpd = f"127.0.0.1:{self.port} inet n - n - - smtpd"
        (self.etc / "master.cf").write_text(instance_master_cf([smtpd, *self.services]))
        for name, text in self.files.items():
            (self.etc / name).write_text(text)
        backdate_config(self.etc)
        script = f"mount --bind {resolv_conf} /etc/resolv.conf && exec postfix -c {self.etc} start"
        subprocess.run(["unshare", "-m", "sh", "-c", script], check=True, timeout=60)
        wait_for(lambda: _listening(self.port), 20, f"{self.hostname} to listen")

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.etc), "stop"], check=False, timeout=60)
        LOGS.mkdir(exist_ok=True)
        shutil.copy(self.base / "maillog", LOGS / f"{self.hostname}.log")
        shutil.rmtree(self.base, ignore_errors=True)

    def sendmail(self, sender: str, recipients: list[str], message: bytes) -> None:
        command = ["sendmail", "-C", str(self.etc), "-f", sender, *recipients]
        subprocess.run(command, input=message, check=True, timeout=60)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Scenario:
    """One message; ``want`` maps a report kind (failed, delayed, delivered) to a file name."""

    name: str
    recipients: list[str]
    want: dict[str, str] = field(default_factory=dict)
    sender: str | None = None
    mail_options: tuple[str, ...] = ()
    rcpt_options: tuple[str, ...] = ()
    size: int = 0
    via_sendmail: bool = False
    headers: str = ""

    def __post_init__(self) -> None:
        self.want = self.want or {"failed": self.name}
        if self.sender is None:
            self.sender = f"bounces+{self.name}@{SINK_DOMAIN}"

    @property
    def report_to(self) -> str:
        return self.sender or f"postmaster@{SINK_DOMAIN}"  # a null sender's report: 2bounce

    def message(self) -> bytes:
        padding = "".join(f"{n:05d} {'x' * 70}\n" for n in range(self.size // 77 + 1))
        return (
            f"{self.headers}From: App <noreply@app.example>\nTo: {', '.join(self.recipients)}\n"
            f"Subject: capture {self.name}\nMessage-ID: <{self.name}@app.example>\n"
            f"Date: {email.utils.formatdate()}\nMIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=us-ascii\n\nHello from the capture.\n"
            + (padding if self.size else "")
        ).encode()


MIMECAST = "https://community.mimecast.com/docs/DOC-1369#{} [qI7pXz1bTmWcYd4nLk0aEw.uk42]"
CLIENT = "192.0.2.25"
REPLIES = {  # RCPT TO replies of the main sink
    "former.staff@mimecast.example": "550 Invalid Recipient - " + MIMECAST.format(550),
    "grey@mimecast.example": "451 Internal resource temporarily unavailable - "
    + MIMECAST.format(451),
    "@spamhaus.example": f"554 5.7.1 Service unavailable; Client host [{CLIENT}] blocked using"
    f" zen.spamhaus.org; https://www.spamhaus.org/query/ip/{CLIENT}",
    "@network.example": "550 5.7.1 We no longer accept mail from this network",
    "pat@greylist.example": "450 4.2.0 <pat@greylist.example>: Recipient address rejected:"
    " Greylisted, see http://postgrey.schweikert.ch/help/greylist.example.html",
    "@proton.example": "550 5.1.1 Address does not exist",
}
DATA_REPLIES = {  # replies after DATA
    "secure@mimecast.example": "554 Email rejected due to security policies - "
    + MIMECAST.format(554),
    "@barracuda.example": f"554 Service unavailable; Client host [{CLIENT}] blocked using"
    f" Barracuda Reputation; http://bbl.barracudacentral.com/q.cgi?ip={CLIENT}",
}
MAIL_REPLIES = {  # a sink of its own per MAIL FROM refusal, by recipient domain
    "proofpoint.example": f"554 5.7.0 Blocked - see https://ipcheck.proofpoint.com/?ip={CLIENT}",
    "bigmail.example": "552 5.3.4 Message size exceeds fixed limit",
    "cisco.example": "554 Your access to this mail system has been rejected due to the sending"
    " MTA's poor reputation. If you believe that this failure is in error, please contact the"
    " intended recipient via alternate means.",
}
NOTIFY = ("NOTIFY=SUCCESS,FAILURE,DELAY",)
SCENARIOS = [
    Scenario("local-unknown-user", ["no.such.user@local.capture.test"]),
    Scenario("local-mailbox-full", ["nobody@local.capture.test"]),
    Scenario("virtual-unknown-user", ["nobody@virtual.capture.test"], via_sendmail=True),
    Scenario("virtual-mailbox-full", ["full@virtual.capture.test"]),
    Scenario("alias-forwarding-loop", ["loop-a@local.capture.test"]),
    Scenario(
        "local-mail-forwarding-loop",
        ["hops@local.capture.test"],
        headers="Delivered-To: hops@local.capture.test\n",
    ),
    Scenario("smtp-too-many-hops", ["someone@loop.capture.test"]),
    Scenario("dns-host-not-found", ["someone@nosuch.invalid"]),
    Scenario(
        "dns-servfail",
        ["someone@servfail.capture.test"],
        {"delayed": "dns-servfail-delayed", "failed": "dns-servfail-expired"},
    ),
    Scenario("smtp-null-mx", ["someone@nullmx.capture.test"]),
    Scenario("smtp-size-exceeds-server-limit", ["big-size@users.remote.test"], size=30000),
    Scenario("remote-message-file-too-big", ["big-nosize@users.remote.test"], size=30000),
    Scenario("size-exceeds-fixed-limit", ["ray@bigmail.example"]),
    Scenario("smtp-loops-back-to-myself", [f"someone@{LOOP_MX}"]),
    Scenario("double-bounce-expired", ["someone@down.capture.test"], sender=""),
    Scenario("headers-only-bounce-size-limit", ["ana@network.example"], size=60000),
    Scenario("headers-only-ret-hdrs", ["someone@relay.example"], mail_options=("RET=HDRS",)),
    Scenario(
        "multi-recipient-mixed",
        [
            "no.such.user@local.capture.test",
            "nobody@local.capture.test",
            "bob@users.remote.test",
            "secure@mimecast.example",
        ],
    ),
    Scenario(
        "success-virtual-maildir",
        ["ok@virtual.capture.test"],
        {"delivered": "success-virtual-maildir"},
        rcpt_options=NOTIFY,
    ),
    Scenario("remote-local-recipient-table", ["bob@users.remote.test"]),
    Scenario("remote-virtual-mailbox-table", ["nobody@vmail.remote.test"]),
    Scenario("remote-virtual-alias-table", ["nobody@valias.remote.test"]),
    Scenario("remote-relay-access-denied", ["someone@relay.example"]),
    Scenario("remote-access-denied", ["denied@users.remote.test"]),
    Scenario("remote-sender-domain-not-found", ["carol@users.remote.test"]),
    Scenario(
        "remote-sender-user-unknown", ["alice@users.remote.test"], sender="ghost@staff.remote.test"
    ),
    Scenario("remote-starttls-required", ["tls-required@users.remote.test"]),
    Scenario("remote-null-mx", ["someone@nullmx2.capture.test"]),
    Scenario("mimecast-invalid-recipient", ["former.staff@mimecast.example"]),
    Scenario("mimecast-security-policies", ["secure@mimecast.example"]),
    Scenario(
        "mimecast-greylisted",
        ["grey@mimecast.example"],
        {"delayed": "mimecast-451-delayed", "failed": "mimecast-451-expired"},
    ),
    Scenario("proofpoint-blocked", ["lee@proofpoint.example"]),
    Scenario("barracuda-reputation", ["kim@barracuda.example"]),
    Scenario("cisco-poor-reputation", ["max@cisco.example"]),
    Scenario("spamhaus-zen-listed", ["sam@spamhaus.example"]),
    Scenario("access-no-longer-accept-network", ["eve@network.example"]),
    Scenario("postgrey-greylisted-expired", ["pat@greylist.example"]),
    Scenario("protonmail-address-does-not-exist", ["gone@proton.example"]),
]


def remote_instance(size_port: int, tls_port: int) -> Instance:
    """The receiving Postfix: tables, relay control, access(5), sender checks, TLS, size."""
    users = ("alice", "carol", "big-size", "big-nosize", "tls-required")
    return Instance(
        "mx.remote.capture.test",
        {
            "mydestination": "users.remote.test, staff.remote.test",
            "local_recipient_maps": "texthash:{etc}/localusers",
            "virtual_mailbox_domains": "vmail.remote.test",
            "virtual_mailbox_maps": "texthash:{etc}/vmailbox",
            "virtual_alias_domains": "valias.remote.test",
            "virtual_alias_maps": "texthash:{etc}/valias",
            "relay_domains": NULL_MX[1],
            "mynetworks": "127.0.0.2/32",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_restriction_classes": "sender_domain_check",
            "sender_domain_check": "reject_unknown_sender_domain",
            "smtpd_recipient_restrictions": "check_recipient_access texthash:{etc}/access,"
            " reject_unknown_recipient_domain",
            "smtpd_reject_unlisted_sender": "yes",  # an error: default route would fail it
            "default_transport": "discard:",
            "relay_transport": "discard:",
            "unknown_address_reject_code": "553",
            "message_size_limit": "20480",
            "smtpd_tls_cert_file": "{base}/cert.pem",
            "smtpd_tls_key_file": "{base}/key.pem",
        },
        [
            *SERVICES,
            "tlsmgr    unix  -  -  n  1000? 1  tlsmgr",
            f"127.0.0.1:{size_port} inet n - n - - smtpd -o smtpd_discard_ehlo_keywords=size",
            f"127.0.0.1:{tls_port} inet n - n - - smtpd -o smtpd_tls_security_level=encrypt",
        ],
        {
            "transport": "",
            "localusers": "".join(f"{user}@users.remote.test ok\n" for user in users),
            "vmailbox": "vera@vmail.remote.test vera/\n",
            "valias": "team@valias.remote.test alice@users.remote.test\n",
            "access": "denied@users.remote.test REJECT\n"
            "carol@users.remote.test sender_domain_check\n",
        },
    )


def mx_instance(routes: dict[str, str], port: int) -> Instance:
    """The reporting Postfix: local and virtual delivery, loops, DNS, fast retries."""
    return Instance(
        "mx.postfix.capture.test",
        {
            "mydomain": "postfix.capture.test",
            "mydestination": "$myhostname, local.capture.test",
            "local_recipient_maps": "",
            "alias_maps": "texthash:{etc}/aliases",
            "mail_spool_directory": "{base}/mail",
            "mailbox_delivery_lock": "fcntl",
            "message_size_limit": "200000",
            "mailbox_size_limit": "200000",
            "virtual_mailbox_domains": "virtual.capture.test",
            "virtual_mailbox_maps": "texthash:{etc}/vmailbox",
            "virtual_mailbox_base": "{base}/vmail",
            "virtual_uid_maps": "static:65534",
            "virtual_gid_maps": "static:65534",
            "virtual_mailbox_limit": "200000",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "notify_classes": "resource, software, 2bounce",
            "2bounce_notice_recipient": f"postmaster@{SINK_DOMAIN}",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "1s",
            "delay_warning_time": "1s",
            "maximal_queue_lifetime": "6s",
            "bounce_queue_lifetime": "3s",
        },
        list(SERVICES),
        {
            "transport": "".join(f"{key} {nexthop}\n" for key, nexthop in routes.items()),
            "aliases": "loop-a loop-b@local.capture.test\nloop-b loop-a@local.capture.test\n",
            "vmailbox": "full@virtual.capture.test fullbox\nok@virtual.capture.test ok/\n",
        },
        port,
    )


def prepare(mx: Instance, remote: Instance) -> None:
    """Full mailboxes for local(8) and virtual(8); the remote's TLS certificate."""
    (mx.base / "mail").mkdir(mode=0o755)
    (mx.base / "vmail").mkdir(mode=0o755)
    shutil.chown(mx.base / "vmail", 65534, 65534)
    for box in (mx.base / "mail" / "nobody", mx.base / "vmail" / "fullbox"):
        box.write_text("From someone@example.org  Thu Dec  3 10:00:00 2026\n" + "x" * 200000)
        shutil.chown(box, 65534, 65534)
        box.chmod(0o600)
    key, cert = str(remote.base / "key.pem"), str(remote.base / "cert.pem")
    subject = f"/CN={remote.hostname}"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"]
    command = [*openssl, subject, "-keyout", key, "-out", cert]
    subprocess.run(command, check=True, capture_output=True)


def report_kind(raw: bytes) -> str:
    """failed, delayed or delivered, from the Action fields of a DSN."""
    actions = set()
    for part in email.message_from_bytes(raw).walk():
        if part.get_content_type() == "message/delivery-status":
            actions |= {str(b.get("Action", "")).lower() for b in part.get_payload()}
    if "delayed" in actions:
        return "delayed"
    if "failed" in actions:
        return "failed"
    return "delivered" if actions & {"delivered", "relayed", "expanded"} else "other"


def submit(mx: Instance, scenario: Scenario) -> None:
    assert scenario.sender is not None
    if scenario.via_sendmail:
        mx.sendmail(scenario.sender, scenario.recipients, scenario.message())
        return
    with smtplib.SMTP("127.0.0.1", mx.port) as client:
        client.sendmail(
            scenario.sender,
            scenario.recipients,
            scenario.message(),
            list(scenario.mail_options),
            list(scenario.rcpt_options),
        )


def collect(sink: SmtpSink, timeout: float) -> dict[str, bytes]:
    """Wait for every wanted report; return them by file name."""
    by_address = {s.report_to.lower(): s for s in SCENARIOS}
    wanted = {name for s in SCENARIOS for name in s.want.values()}
    found: dict[str, bytes] = {}

    def scan() -> bool:
        for tx in list(sink.state.transactions):
            scenario = by_address.get(tx.rcpt_to[0].lower())
            kind = report_kind(tx.data)
            if scenario and (kind in scenario.want or scenario.sender == ""):
                found.setdefault(scenario.want.get(kind, scenario.name), tx.data)
        return wanted <= set(found)

    try:
        wait_for(scan, timeout, "every report")
    except TimeoutError:
        print("missing:", sorted(wanted - set(found)))
    return found


def main() -> None:
    upstream = next(
        line.split()[1]
        for line in Path("/etc/resolv.conf").read_text().splitlines()
        if line.startswith("nameserver")
    )
    closed, size_port, tls_port = free_port(), free_port(), free_port()
    with SmtpSink() as sink, DnsStub(upstream) as stub:
        sink.state.replies.update(REPLIES)
        sink.state.data_replies.update(DATA_REPLIES)
        refusing = {domain: SmtpSink().__enter__() for domain in MAIL_REPLIES}
        for domain, refuser in refusing.items():
            refuser.state.mail_reply = MAIL_REPLIES[domain]
        remote = remote_instance(size_port, tls_port)
        to_sink, to_remote = f"smtp:[127.0.0.1]:{sink.port}", f"smtp:[127.0.0.1]:{remote.port}"
        mx_port = free_port()
        routes = {
            **dict.fromkeys((SINK_DOMAIN, "staff.remote.test", "mimecast.example"), to_sink),
            **dict.fromkeys(("barracuda.example", "spamhaus.example"), to_sink),
            **dict.fromkeys(("network.example", "greylist.example", "proton.example"), to_sink),
            **{d: f"smtp:[127.0.0.1]:{r.port}" for d, r in refusing.items()},
            **dict.fromkeys(("users.remote.test", "vmail.remote.test"), to_remote),
            **dict.fromkeys(("valias.remote.test", "relay.example", NULL_MX[1]), to_remote),
            "big-nosize@users.remote.test": f"smtp:[127.0.0.1]:{size_port}",
            "tls-required@users.remote.test": f"smtp:[127.0.0.1]:{tls_port}",
            **dict.fromkeys((NULL_MX[0], SERVFAIL[0], "nosuch.invalid", LOOP_MX), "dnssmtp:"),
            "loop.capture.test": f"smtp:[127.0.0.1]:{mx_port}",
            "down.capture.test": f"smtp:[127.0.0.1]:{closed}",
        }
        mx = mx_instance(routes, mx_port)
        resolv_conf = mx.base / "resolv.conf"
        resolv_conf.write_text(f"nameserver {STUB_IP}\noptions timeout:2 attempts:1\n")
        resolv_conf.chmod(0o644)
        try:
            prepare(mx, remote)
            remote.start(resolv_conf)
            mx.start(resolv_conf)
            for scenario in SCENARIOS:
                try:
                    submit(mx, scenario)
                except smtplib.SMTPException as exc:
                    print(f"{scenario.name}: refused at submission: {exc}")
            for name, raw in sorted(collect(sink, 60).items()):
                if name in HELD_BACK:
                    held = FIXTURES / "held_back" / f"postfix-{name}.eml"
                    held.write_bytes(raw.replace(b"\r\n", b"\n"))
                else:
                    print("saved", save("postfix", name, raw))
        finally:
            mx.stop()
            remote.stop()
            for refuser in refusing.values():
                refuser.__exit__()
            stub.shutdown()


if __name__ == "__main__":
    main()
