"""The Dask cluster behind `bidopt train --dask`: connect or start one, describe it, and run a
LightGBM fit on it so that it cannot hang.

LightGBM on Dask has known ways to hang (its issue tracker): a worker that dies, restarts or
pauses on memory mid-fit leaves the others waiting on their sockets, and the scheduler holds
the dead worker's task, pinned to that worker, forever; two fits sharing a cluster deadlock;
a listening port already taken fails. So here: the fit runs in a daemon thread while the
caller watches the scheduler (a worker gone or paused too long, or a time bound, ends it with
one line), fits are serialised by a cluster-wide `distributed.Lock`, and the listening ports
are chosen free on each worker just before the fit (`free_ports`).

`local:N` starts a LocalCluster of N worker processes on 127.0.0.1 only, for trying it out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

FIT_LOCK = "bidopt-lightgbm-fit"
_LOCAL = re.compile(r"^local:(\d+)$")
_REMOTE = re.compile(r"^(tcp|tls)://[^\s:/]+:\d+$")
MAX_LOCAL_WORKERS = 64


class ClusterError(ValueError):
    """The cluster cannot be reached or used, or a fit on it failed; one line says why."""


@dataclass(frozen=True)
class ClusterInfo:
    """What the MLflow run records about where it trained."""

    address: str  # as given: local:N or tcp://host:port
    scheduler: str  # the scheduler's address
    workers: int
    threads: int
    memory_bytes: int
    dask_version: str

    def params(self) -> dict[str, Any]:
        return {
            "engine": "dask",
            "dask.address": self.address,
            "dask.scheduler": self.scheduler,
            "dask.workers": self.workers,
            "dask.threads": self.threads,
            "dask.memory_bytes": self.memory_bytes,
            "dask.version": self.dask_version,
        }

    def tags(self) -> dict[str, str]:
        return {
            "bidopt.engine": "dask",
            "bidopt.dask.workers": str(self.workers),
            "bidopt.dask.threads": str(self.threads),
            "bidopt.dask.memory_gb": f"{self.memory_bytes / 2**30:.1f}",
        }


def parse_address(address: str) -> int | str:
    """`local:N` -> N workers to start; `tcp://host:port` -> that scheduler's address."""
    text = address.strip()
    m = _LOCAL.match(text)
    if m:
        n = int(m.group(1))
        if not 1 <= n <= MAX_LOCAL_WORKERS:
            raise ClusterError(f"--dask {address}: local:N needs 1 <= N <= {MAX_LOCAL_WORKERS}")
        return n
    if _REMOTE.match(text):
        return text
    raise ClusterError(
        f"--dask {address!r}: expected a scheduler address tcp://host:port or local:N "
        "(N worker processes started on this machine)"
    )


@dataclass
class Cluster:
    """A connected client, and the LocalCluster it owns when started here."""

    client: Any  # distributed.Client
    info: ClusterInfo
    local: Any = None  # distributed.LocalCluster when `local:N`

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> process id (for tests that kill a worker, and for diagnostics)."""
        return dict(self.client.run(os.getpid))

    def workers(self) -> dict[str, dict[str, Any]]:
        return dict(self.client.scheduler_info(n_workers=-1)["workers"])


def describe(client: Any, address: str) -> ClusterInfo:
    import dask

    workers = client.scheduler_info(n_workers=-1)["workers"]
    return ClusterInfo(
        address=address,
        scheduler=str(client.scheduler.address),
        workers=len(workers),
        threads=sum(int(w.get("nthreads", 0)) for w in workers.values()),
        memory_bytes=sum(int(w.get("memory_limit") or 0) for w in workers.values()),
        dask_version=dask.__version__,
    )


@contextlib.contextmanager
def connect(
    address: str, *, connect_timeout_s: float = 10.0, memory_limit: str | None = None
) -> Iterator[Cluster]:
    """A client on `address`; `local:N` starts (and at the end stops) a LocalCluster."""
    target = parse_address(address)
    from distributed import Client, LocalCluster

    local = None
    try:
        if isinstance(target, int):
            local = LocalCluster(
                n_workers=target,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
                memory_limit=memory_limit or "auto",
            )
            client = Client(local, timeout=f"{connect_timeout_s}s")
        else:
            client = Client(target, timeout=f"{connect_timeout_s}s")
    except (OSError, TimeoutError) as e:
        if local is not None:
            local.close()
        raise ClusterError(
            f"--dask {address}: no Dask scheduler answered within {connect_timeout_s:g} s ({e})"
        ) from None
    try:
        if not client.scheduler_info()["workers"]:
            client.wait_for_workers(1, timeout=connect_timeout_s)
    except (OSError, TimeoutError):
        _close(client, local)
        raise ClusterError(f"--dask {address}: the scheduler has no workers") from None
    try:
        yield Cluster(client, describe(client, address), local)
    finally:
        _close(client, local)


def _close(client: Any, local: Any) -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # workers' goodbyes
    with contextlib.suppress(Exception):
        client.close(timeout=10)
    if local is not None:
        with contextlib.suppress(Exception):
            local.close(timeout=10)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(cluster: Cluster, workers: list[str]) -> str:
    """LightGBM's `machines`: host:port per worker, each port found free on that worker's host.

    Asked of each worker (a port free here says nothing about a remote host); two workers on
    one host get distinct ports, since each probe holds its port only while it asks.
    """
    from urllib.parse import urlparse

    taken: set[tuple[str, int]] = set()
    out = []
    for w in workers:
        host = urlparse(w).hostname or "127.0.0.1"
        for _ in range(20):
            port = int(cluster.client.run(_free_port, host, workers=[w])[w])
            if (host, port) not in taken:
                break
        taken.add((host, port))
        out.append(f"{host}:{port}")
    return ",".join(out)


def guarded_fit(
    cluster: Cluster,
    fit: Callable[[], T],
    *,
    timeout_s: float,
    pause_grace_s: float,
    lock_timeout_s: float,
    poll_s: float = 0.25,
) -> T:
    """Run `fit()` (which talks to the cluster) so that it ends within a bounded time.

    Fails with one ClusterError line when a worker that was there at the start leaves (killed,
    restarted by its nanny, out of memory), when a worker stays paused on memory longer than
    `pause_grace_s`, when the fit exceeds `timeout_s`, or when another fit holds the cluster's
    fit lock for `lock_timeout_s`. The abandoned fit's thread is a daemon; its tasks are
    cancelled and the workers still running LightGBM are restarted, since a LightGBM task
    blocked on a dead peer holds its worker until its network time_out.
    """
    from distributed import Lock

    with cluster.client.as_current():
        lock = Lock(FIT_LOCK)
    if not lock.acquire(timeout=lock_timeout_s):
        raise ClusterError(
            f"another LightGBM fit holds the cluster {cluster.info.scheduler} (lock {FIT_LOCK}) "
            f"for more than {lock_timeout_s:g} s; LightGBM fits sharing a cluster deadlock"
        )
    try:
        return _watch(cluster, fit, timeout_s, pause_grace_s, poll_s)
    finally:
        with contextlib.suppress(Exception):
            lock.release()


def _watch(
    cluster: Cluster, fit: Callable[[], T], timeout_s: float, pause_grace_s: float, poll_s: float
) -> T:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fit()
        except BaseException as e:
            box["error"] = e

    start_workers = set(cluster.workers())
    thread = threading.Thread(target=run, name="bidopt-dask-fit", daemon=True)
    start = time.monotonic()
    thread.start()
    paused_since: dict[str, float] = {}
    problem = ""
    while thread.is_alive():
        thread.join(poll_s)
        if not thread.is_alive():
            break
        try:
            now = cluster.workers()
        except Exception as e:  # the scheduler itself is gone
            problem = f"lost the Dask scheduler during the LightGBM fit ({_one_line(e)})"
            break
        gone = sorted(start_workers - set(now))
        if gone:
            problem = (
                f"Dask worker {gone[0]} left during the LightGBM fit (killed, restarted or out "
                "of memory); the fit was abandoned"
            )
            break
        t = time.monotonic()
        for addr, w in now.items():
            if str(w.get("status", "")).lower().endswith("paused"):
                paused_since.setdefault(addr, t)
                if t - paused_since[addr] > pause_grace_s:
                    problem = (
                        f"Dask worker {addr} paused on memory for over {pause_grace_s:g} s "
                        "during the LightGBM fit (give workers more memory, or use more of "
                        "them); the fit was abandoned"
                    )
            else:
                paused_since.pop(addr, None)
        if not problem and t - start > timeout_s:
            problem = (
                f"the LightGBM fit on Dask did not finish within {timeout_s:g} s "
                "(dask.fit_timeout_s); the fit was abandoned"
            )
        if problem:
            break
    if problem:
        _abandon(cluster)
        raise ClusterError(problem)
    if "error" in box:
        raise ClusterError(f"the LightGBM fit on Dask failed: {_one_line(box['error'])}")
    return box["result"]  # type: ignore[no-any-return]


def _abandon(cluster: Cluster) -> None:
    """Free the workers still inside LightGBM: cancel its tasks, restart the workers running
    them (a task blocked in a socket cannot be cancelled in place)."""
    with contextlib.suppress(Exception):
        busy = [w for w, keys in cluster.client.processing().items() if keys]
        if busy:
            cluster.client.restart_workers(busy, timeout=30, raise_for_error=False)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
