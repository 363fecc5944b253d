"""A private three-node MariaDB Galera cluster on 127.0.0.1, for the scale-out tests.

Each node is a :class:`~tests.mariadb_harness.PrivateMariaDB` (its own data directory,
SQL port and process) started with Galera's provider: its own group-communication,
IST and SST ports, all distinct and free. The first node bootstraps the cluster
(``--wsrep-new-cluster``); each other node joins it by a state snapshot (rsync SST)
and is waited for until it reports ``Synced``, one at a time. A node killed with
SIGKILL rejoins like a Debian or systemd start does it: ``--wsrep-recover`` finds the
last committed position in InnoDB, and the node asks the others only for what it
missed (IST), or for a whole snapshot when they no longer hold it.

What works on this kind of machine is recorded in /work/shared/galera-test-cluster.md;
docs/performance.md reports the figures the tests and ``benchmarks/galera.py`` measure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import MySQLdb

from tests.mariadb_harness import PrivateMariaDB, available
from tests.postfix_harness import free_port, wait_until

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
SST_SCRIPT = "/usr/bin/wsrep_sst_rsync"
RSYNC = "/usr/bin/rsync"
CLUSTER_NAME = "bounce_tracker_test"
#: Status counters of aborted transactions: a local commit that failed certification
#: against another node's write, and a local transaction rolled back ("brute force")
#: by a replicated write that needed its locks. Both reach the client as error 1213.
CONFLICT_COUNTERS = ("wsrep_local_cert_failures", "wsrep_local_bf_aborts")
_RECOVERED_RE = re.compile(r"WSREP: Recovered position:\s*([0-9a-f-]{36}:-?\d+)")


def galera_problem() -> str | None:
    """Why a Galera cluster can't run here, or None when it can."""
    if not available():
        return "this needs root and MariaDB's mariadbd and mariadb-install-db"
    for path, package in ((PROVIDER, "galera-4"), (SST_SCRIPT, "mariadb-server"), (RSYNC, "rsync")):
        if not os.path.exists(path):
            return f"{path} is missing (apt-get install {package})"
    return None


class GaleraNode(PrivateMariaDB):
    """One member of a :class:`GaleraCluster`; ``start()`` returns once it is Synced."""

    def __init__(self, name: str, gcomm_ports: list[int], index: int) -> None:
        super().__init__()
        self.name = name
        self.gcomm_ports = gcomm_ports
        self.gcomm_port = gcomm_ports[index]
        self.ist_port = free_port()
        self.sst_port = free_port()

    def server_arguments(self) -> list[str]:
        members = ",".join(f"127.0.0.1:{port}" for port in self.gcomm_ports)
        provider_options = ";".join(
            [
                f"gmcast.listen_addr=tcp://127.0.0.1:{self.gcomm_port}",
                f"ist.recv_addr=127.0.0.1:{self.ist_port}",
                # Room for the writes a killed node misses, so that it rejoins by IST.
                "gcache.size=64M",
                # A killed member is declared dead after 3 s instead of 5: the others
                # stop waiting for it sooner (evs.inactive_timeout >= suspect_timeout).
                "evs.suspect_timeout=PT3S",
                "evs.inactive_timeout=PT6S",
            ]
        )
        return [
            *super().server_arguments(),
            "--binlog-format=ROW",
            "--default-storage-engine=InnoDB",
            "--innodb-autoinc-lock-mode=2",
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER}",
            f"--wsrep-cluster-name={CLUSTER_NAME}",
            f"--wsrep-cluster-address=gcomm://{members}",
            f"--wsrep-node-name={self.name}",
            f"--wsrep-node-address=127.0.0.1:{self.gcomm_port}",
            f"--wsrep-provider-options={provider_options}",
            "--wsrep-sst-method=rsync",
            f"--wsrep-sst-receive-address=127.0.0.1:{self.sst_port}",
        ]

    def start(self, *extra_arguments: str, timeout: float = 120) -> None:
        """Start the node and wait until it is a Synced member of the cluster."""
        super().start(*extra_arguments, timeout=timeout)
        wait_until(self.synced, timeout, f"{self.name} to be Synced")

    def bootstrap(self) -> None:
        """Start the node as the first member of a new cluster."""
        self.start("--wsrep-new-cluster")

    def rejoin(self) -> str:
        """Start a node that was killed, from its recovered position; how it caught up.

        Returns ``"IST"`` (only the missed writes were sent) or ``"SST"`` (a whole
        snapshot), read from the node's log.
        """
        position = self.recovered_position()
        log = self.base / "server.log"
        offset = log.stat().st_size
        self.start(f"--wsrep-start-position={position}")
        with open(log, "rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode(errors="replace")
        if "IST received" in lines or "Receiving IST" in lines:
            return "IST"
        return "SST"

    def recovered_position(self) -> str:
        """``uuid:seqno`` of the last transaction committed here, as InnoDB recovers it."""
        result = subprocess.run(
            [*self.server_arguments(), "--wsrep-recover"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        found = _RECOVERED_RE.search(result.stdout + result.stderr)
        if not found:
            raise RuntimeError(f"{self.name}: no recovered position:\n{result.stderr[-2000:]}")
        return found.group(1)

    def status(self) -> dict[str, str]:
        """The node's ``wsrep_%`` status variables."""
        with contextlib.closing(self.connect(database=None)) as connection:
            cursor = connection.cursor()
            cursor.execute("SHOW GLOBAL STATUS LIKE 'wsrep%%'")
            return {name.lower(): value for name, value in cursor.fetchall()}

    def synced(self) -> bool:
        try:
            status = self.status()
        except MySQLdb.OperationalError:
            return False
        return status.get("wsrep_local_state_comment") == "Synced" and (
            status.get("wsrep_ready") == "ON"
        )

    def conflicts(self) -> int:
        """Transactions of this node aborted by conflicts with other nodes, since it started."""
        status = self.status()
        return sum(int(status[name]) for name in CONFLICT_COUNTERS)

    def causal_query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """A read that first waits for every write the cluster committed before it."""
        with contextlib.closing(self.connect()) as connection:
            cursor = connection.cursor()
            cursor.execute("SET SESSION wsrep_sync_wait = 1")
            cursor.execute(sql, params or None)
            return list(cursor.fetchall())


class GaleraCluster:
    """``size`` :class:`GaleraNode` s on 127.0.0.1; :meth:`start` forms the cluster."""

    def __init__(self, size: int = 3) -> None:
        gcomm_ports = [free_port() for _ in range(size)]
        # One mariadb-install-db at a time: run side by side, their bootstrap servers'
        # temporary tables in /tmp sometimes clashed ("Unknown table 'mysql.tmp_user_sys'").
        self.nodes: list[GaleraNode] = []
        try:
            for n in range(size):
                self.nodes.append(GaleraNode(f"node{n + 1}", gcomm_ports, n))
        except BaseException:
            self.destroy()
            raise

    def start(self) -> None:
        """Bootstrap the first node, then join the others one at a time."""
        first, *others = self.nodes
        first.bootstrap()
        for node in others:
            node.start()
        assert self.size() == len(self.nodes)

    def size(self) -> int:
        """``wsrep_cluster_size`` as the first running node sees it."""
        node = next(node for node in self.nodes if node.running)
        return int(node.status()["wsrep_cluster_size"])

    def create_schema(self) -> None:
        """``migrate`` against the first node; the others get the tables by replication."""
        self.nodes[0].create_schema()

    def conflicts(self) -> int:
        """Aborted transactions over the running nodes (see :data:`CONFLICT_COUNTERS`)."""
        return sum(node.conflicts() for node in self.nodes if node.running)

    def wait_for_all_synced(self, timeout: float = 120) -> None:
        wait_until(
            lambda: all(node.synced() for node in self.nodes) and self.size() == len(self.nodes),
            timeout,
            "every node Synced in a full cluster",
        )

    def destroy(self) -> None:
        for node in self.nodes:
            node.kill()
        for node in self.nodes:
            shutil.rmtree(node.base, ignore_errors=True)


@contextlib.contextmanager
def galera_cluster(size: int = 3) -> Iterator[GaleraCluster]:
    """A running cluster of ``size`` nodes with the app's tables (``migrate`` on node 1)."""
    cluster = GaleraCluster(size)
    try:
        cluster.start()
        cluster.create_schema()
        yield cluster
    finally:
        cluster.destroy()
