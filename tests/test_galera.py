"""Scale-out on a real three-node MariaDB Galera cluster (``tests.galera_harness``).

Receivers on several MX hosts, each connected to a different node, write the same
rows at the same time. On one server the row lock makes them wait for each other;
across Galera nodes nothing waits: each node commits locally, and at COMMIT the
cluster certifies the write against every write other nodes committed meanwhile. The
loser gets a deadlock error (1213): ``core.db.retry_deadlocks`` runs its transaction
again, and when the retries run out the pipe exits 75 (LMTP 451) and Postfix delivers
the bounce again. What these tests prove, for docs/performance.md and
docs/reliability.md: through all of that, and through a node killed mid-stream, every
bounce is recorded exactly once, every count is exact, and every node agrees.

They print the conflicts they met (run with ``-s`` to see them). The module takes
about 35 s, a third of it forming the cluster, so it runs in both MariaDB passes.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import environ
import pytest
from django.db import connections

from bounce_tracker.core.settings import get_settings
from bounce_tracker.core.verp import encode_local_part
from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage
from tests import galera_harness
from tests.galera_harness import GaleraCluster, GaleraNode, galera_cluster, galera_problem
from tests.mariadb_harness import django_environment
from tests.postfix_harness import wait_until
from tests.services import missing_service
from tests.test_faults import (
    Bounce,
    DeliveryLog,
    bounces_for,
    deliver_until_done,
    handle_bounce,
    lmtp_deliver,
)
from tests.test_receive_bounces import start_command

pytestmark = [pytest.mark.mysql, pytest.mark.galera]

ALIAS = "galera"  # the ORM's connection to node 1
TRACKERS = "bounce_tracker_emailaddresstracker"
EVENTS = "bounce_tracker_bounceevent"


def require_galera() -> None:
    """Skip (or, under BOUNCE_TRACKER_REQUIRE_SERVICES=1, fail) without Galera."""
    problem = galera_problem()
    if problem:
        missing_service(problem)


@pytest.fixture(scope="module")
def running_cluster(django_db_blocker) -> Iterator[GaleraCluster]:
    """One cluster for the module; node 1 is also the ORM's ``galera`` alias."""
    require_galera()
    with galera_cluster() as started:
        config = environ.Env.db_url_config(started.nodes[0].url())
        config["OPTIONS"] = {"charset": "utf8mb4"}
        connections.settings[ALIAS] = connections.configure_settings({"default": config})["default"]
        try:
            with django_db_blocker.unblock():
                yield started
                connections[ALIAS].close()
        finally:
            del connections[ALIAS]
            del connections.settings[ALIAS]


@pytest.fixture
def cluster(running_cluster: GaleraCluster) -> GaleraCluster:
    """The cluster with every node up and the app's tables empty."""
    for node in running_cluster.nodes:
        if not node.running:  # a test failed before its killed node came back
            node.rejoin()
    running_cluster.wait_for_all_synced()
    connections[ALIAS].close()
    BounceEvent.objects.using(ALIAS).all().delete()
    UnmatchedMessage.objects.using(ALIAS).all().delete()
    EmailAddressTracker.objects.using(ALIAS).all().delete()
    return running_cluster


def make_trackers(count: int, prefix: str = "user") -> list[EmailAddressTracker]:
    tracker_settings = get_settings()
    emails = [f"{prefix}{n}@example.org" for n in range(count)]
    EmailAddressTracker.objects.using(ALIAS).bulk_create(
        EmailAddressTracker(email=email, encoded_from=encode_local_part(email, tracker_settings))
        for email in emails
    )
    return list(EmailAddressTracker.objects.using(ALIAS).filter(email__in=emails).order_by("id"))


# --- What each node holds ------------------------------------------------------------


@dataclass(frozen=True)
class NodeState:
    """The app's rows as one node holds them, read after every earlier commit."""

    trackers: tuple[tuple[Any, ...], ...]  # id, email, msg_count, bounce_count, 4 times
    events: tuple[tuple[Any, ...], ...]  # fingerprint, tracker id, received_at


def node_state(node: GaleraNode) -> NodeState:
    trackers = node.causal_query(
        "SELECT id, email, msg_count, bounce_count, first_bounce, last_bounce, last_bounce2, "
        f"last_bounce3 FROM {TRACKERS} ORDER BY id"
    )
    events = node.causal_query(
        f"SELECT fingerprint, tracker_id, received_at FROM {EVENTS} ORDER BY fingerprint"
    )
    return NodeState(tuple(trackers), tuple(events))


def assert_nodes_agree_and_counts_are_exact(
    cluster: GaleraCluster, *, events: int, bounces_each: int, messages_each: int | None = None
) -> NodeState:
    """Every node holds the same rows; each address has exactly ``bounces_each`` bounces,
    its last three bounce times are its three newest events and its first bounce time
    its oldest; ``events`` events in all (so nothing doubled), one per fingerprint."""
    states = [node_state(node) for node in cluster.nodes]
    assert all(state == states[0] for state in states[1:]), "the nodes disagree"
    state = states[0]
    assert len(state.events) == events
    assert len({fingerprint for fingerprint, _, _ in state.events}) == events
    times: dict[int, list[datetime]] = {}
    for _, tracker_id, received_at in state.events:
        times.setdefault(tracker_id, []).append(received_at)
    for tracker_id, _, msg_count, bounce_count, first, last, last2, last3 in state.trackers:
        newest = sorted(times.get(tracker_id, []), reverse=True)
        assert bounce_count == len(newest) == bounces_each
        assert len(set(newest[:3])) == 3
        assert [last, last2, last3] == newest[:3]
        assert first == newest[-1]
        if messages_each is not None:
            assert msg_count == messages_each
    return state


# --- Receivers, one per "MX host" ---------------------------------------------------


@dataclass
class Receiver:
    """A ``receive_bounces`` process connected to one node, its log lines collected."""

    node: GaleraNode
    process: subprocess.Popen[bytes]
    port: int
    lines: list[str] = field(default_factory=list)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


def _collect(receiver: Receiver) -> None:
    assert receiver.process.stderr is not None
    for line in receiver.process.stderr:  # drained as it comes: a full pipe would block it
        receiver.lines.append(line.decode(errors="replace"))


@contextlib.contextmanager
def receivers_on(*nodes: GaleraNode) -> Iterator[list[Receiver]]:
    """One ``receive_bounces`` (10 database threads) per node, logging at INFO."""
    started: list[Receiver] = []
    readers: list[threading.Thread] = []
    try:
        for node in nodes:
            process, port = start_command(url=node.url())
            receiver = Receiver(node, process, port)
            started.append(receiver)
            readers.append(threading.Thread(target=_collect, args=(receiver,), daemon=True))
            readers[-1].start()
        yield started
    finally:
        for receiver in started:
            receiver.process.send_signal(signal.SIGTERM)
        for receiver, reader in zip(started, readers, strict=True):
            receiver.process.wait(timeout=60)
            reader.join(timeout=10)
            for stream in (receiver.process.stdout, receiver.process.stderr):
                assert stream is not None
                stream.close()
    for receiver in started:
        assert receiver.process.returncode == 0, "".join(receiver.lines[-20:])


def deliver_to_every_host(
    bounces: list[Bounce], receivers: list[Receiver], log: DeliveryLog, *, workers: int
) -> None:
    """Each bounce to every receiver at the same moment, as when the remote MTA's first
    attempt timed out at one MX after it had taken the message and it retried at the
    other; each copy is delivered again after a 451 as that host's Postfix would."""

    def to_every_host(bounce: Bounce) -> None:
        with ThreadPoolExecutor(len(receivers)) as hosts:
            copies = [
                hosts.submit(
                    deliver_until_done,
                    partial(lmtp_deliver, receiver.port),
                    [bounce],
                    log,
                    workers=1,
                    retry_delay=0.2,
                )
                for receiver in receivers
            ]
            for copy in copies:
                copy.result()

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(to_every_host, bounces))


# --- The tests ------------------------------------------------------------------------


def test_a_missing_galera_provider_skips_and_fails_when_services_are_required(monkeypatch):
    monkeypatch.setattr(galera_harness, "available", lambda: True)
    monkeypatch.setattr(galera_harness, "PROVIDER", "/nonexistent/libgalera_smm.so")
    problem = "/nonexistent/libgalera_smm.so is missing (apt-get install galera-4)"
    assert galera_problem() == problem
    monkeypatch.delenv("BOUNCE_TRACKER_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"^{re.escape(problem)}$"):
        require_galera()
    monkeypatch.setenv("BOUNCE_TRACKER_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match=r"REQUIRE_SERVICES=1 but /nonexistent/"):
        require_galera()


def test_the_cluster_has_three_synced_nodes_and_the_schema_on_each(cluster):
    assert cluster.size() == 3
    for node in cluster.nodes:
        assert node.status()["wsrep_cluster_status"] == "Primary"
        assert node.causal_query(f"SELECT COUNT(*) FROM {TRACKERS}") == [(0,)]


def test_two_mx_receivers_on_two_nodes_get_the_same_200_dsns_and_record_each_once(cluster):
    trackers = make_trackers(20)
    bounces = bounces_for(trackers, per_address=10)
    log = DeliveryLog()
    conflicts_before = cluster.conflicts()
    with receivers_on(cluster.nodes[0], cluster.nodes[1]) as receivers:
        deliver_to_every_host(bounces, receivers, log, workers=10)
    conflicts = cluster.conflicts() - conflicts_before

    assert_nodes_agree_and_counts_are_exact(cluster, events=200, bounces_each=10)
    # Each DSN recorded by one host and found a duplicate by the other, once each.
    assert sum(receiver.count(" recorded kind=") for receiver in receivers) == 200
    assert sum(receiver.count(" duplicate kind=") for receiver in receivers) == 200
    retried = sum(receiver.count("Deadlock on attempt") for receiver in receivers)
    deferred = sum(receiver.count(" deferred (") for receiver in receivers)
    assert deferred == log.tempfails
    assert len(log.statuses) == 400 + log.tempfails
    print(
        f"\n2 receivers on 2 nodes, 200 DSNs each: {conflicts} certification conflicts, "
        f"{retried} retried in process, {log.tempfails} answered 451 and delivered again"
    )


def test_twenty_handler_processes_over_three_nodes_on_one_address_count_twenty(cluster):
    [tracker] = make_trackers(1)
    bounces = bounces_for([tracker], per_address=20)
    node_of = {bounce: cluster.nodes[n % 3] for n, bounce in enumerate(bounces)}
    log = DeliveryLog()
    conflicts_before = cluster.conflicts()
    deliver_until_done(
        lambda bounce: handle_bounce(node_of[bounce], bounce).returncode,
        bounces,
        log,
        workers=20,
        retry_delay=0.2,
    )
    conflicts = cluster.conflicts() - conflicts_before

    assert_nodes_agree_and_counts_are_exact(cluster, events=20, bounces_each=20)
    print(
        f"\n20 handle_bounce processes over 3 nodes, one address: {conflicts} certification "
        f"conflicts, {log.tempfails} exits 75 delivered again"
    )


def test_a_node_killed_during_300_deliveries_loses_and_doubles_nothing_and_rejoins(cluster):
    trackers = make_trackers(30)
    bounces = bounces_for(trackers, per_address=10)
    victim = cluster.nodes[2]
    log = DeliveryLog()
    rejoined_by: list[str] = []

    def kill_and_rejoin() -> None:
        wait_until(lambda: len(log.statuses) >= 100, 120, "100 deliveries")
        victim.kill()
        wait_until(lambda: cluster.size() == 2, 60, "the others to drop the killed node")
        rejoined_by.append(victim.rejoin())

    with receivers_on(*cluster.nodes) as receivers:
        port_of = {bounce: receivers[n % 3].port for n, bounce in enumerate(bounces)}
        killer = threading.Thread(target=kill_and_rejoin)
        killer.start()
        try:
            deliver_until_done(
                lambda bounce: lmtp_deliver(port_of[bounce], bounce),
                bounces,
                log,
                workers=10,
                retry_delay=0.5,
            )
        finally:
            killer.join()

    assert rejoined_by, "the killed node did not come back"
    cluster.wait_for_all_synced()
    assert_nodes_agree_and_counts_are_exact(cluster, events=300, bounces_each=10)
    assert log.tempfails > 0, "the receiver on the killed node should have answered 451"
    # One 250 per bounce. A duplicate: committed in the cluster, but the node died
    # before it could say so; the 451 made Postfix deliver it again.
    recorded = sum(receiver.count(" recorded kind=") for receiver in receivers)
    duplicates = sum(receiver.count(" duplicate kind=") for receiver in receivers)
    assert recorded + duplicates == 300
    print(
        f"\n300 deliveries over 3 nodes, node 3 killed after 100: {log.tempfails} answered 451 "
        f"and delivered again ({duplicates} of them committed before the kill, found "
        f"duplicates); node 3 rejoined by {rejoined_by[0]}"
    )


SEND_SCRIPT = """
import json, logging, os, sys, time
import django
django.setup()
from django.core import mail
from django.test import override_settings
log = logging.getLogger("bounce_tracker")
log.addHandler(logging.StreamHandler(sys.stderr))
log.setLevel(logging.INFO)
addresses = json.loads(os.environ["ADDRESSES"])
# Observe only: soft bounces arriving meanwhile must not stop the sends being counted.
tracker = {**django.conf.settings.BOUNCE_TRACKER, "OBSERVE_ONLY": True}
sent = 0
with override_settings(BOUNCE_TRACKER=tracker):
    if os.environ["ROUNDS"] != "1":
        print("ready", flush=True)
        sys.stdin.readline()
    for n in range(int(os.environ["ROUNDS"])):
        sent += mail.send_mass_mail(
            [(f"Issue {n}", "Hello.", "news@example.com", [address]) for address in addresses]
        )
        time.sleep(0.005)
print(json.dumps({"sent": sent}), flush=True)
"""


def start_sender(node: GaleraNode, addresses: list[str], rounds: int) -> subprocess.Popen[str]:
    """A process sending ``rounds`` batches, one message per address, through the
    tracking backend (over Django's in-memory backend) on ``node``."""
    return subprocess.Popen(
        [sys.executable, "-c", SEND_SCRIPT],
        env=django_environment(node.url(), ADDRESSES=json.dumps(addresses), ROUNDS=str(rounds)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sending_on_one_node_while_bounces_arrive_on_the_others_counts_both_exactly(cluster):
    """60 batches to 20 addresses (one UPDATE of 20 rows each) on node 1 while 200
    bounces for them are recorded on nodes 2 and 3.

    Node 1 applies the others' bounces while it sends, and aborts a batch's UPDATE
    each time one of them needs its rows. With five retries 10-40 ms apart the UPDATE
    sometimes ran out of attempts before node 1 had caught up, and the batch's
    ``msg_count`` was lost (logged, never raised: the copies were out). The retries
    now back off to 0.2 s (``core.db.retry_delay``).
    """
    addresses = [f"buyer{n}@example.org" for n in range(20)]
    first = start_sender(cluster.nodes[0], addresses, rounds=1)  # creates the rows
    out, err = first.communicate(timeout=120)
    assert (first.returncode, json.loads(out)) == (0, {"sent": 20}), err
    trackers = list(EmailAddressTracker.objects.using(ALIAS).filter(email__in=addresses))
    bounces = bounces_for(trackers, per_address=10)
    rounds = 60
    log = DeliveryLog()
    conflicts_before = cluster.conflicts()
    with receivers_on(cluster.nodes[1], cluster.nodes[2]) as receivers:
        sender = start_sender(cluster.nodes[0], addresses, rounds)
        assert sender.stdout is not None
        assert sender.stdin is not None
        assert sender.stdout.readline() == "ready\n"
        sender.stdin.write("go\n")
        sender.stdin.flush()
        port_of = {bounce: receivers[n % 2].port for n, bounce in enumerate(bounces)}
        deliver_until_done(
            lambda bounce: lmtp_deliver(port_of[bounce], bounce),
            bounces,
            log,
            workers=20,
            retry_delay=0.2,
        )
        out, err = sender.communicate(timeout=120)
    conflicts = cluster.conflicts() - conflicts_before

    assert (sender.returncode, json.loads(out)) == (0, {"sent": 20 * rounds}), err
    assert "could not update their counters" not in err
    assert_nodes_agree_and_counts_are_exact(
        cluster, events=200, bounces_each=10, messages_each=1 + rounds
    )
    sender_retried = err.count("Deadlock on attempt")
    retried = sum(receiver.count("Deadlock on attempt") for receiver in receivers)
    print(
        f"\n{20 * rounds} sends on node 1 beside 200 bounces on nodes 2 and 3: {conflicts} "
        f"certification conflicts; the sender retried {sender_retried} in process, the "
        f"receivers {retried}; {log.tempfails} answered 451"
    )
