"""A real redis-server on a free loopback port, for the tests that use Redis.

Where no redis-server binary exists the test is skipped with a message, except when
BIDOPT_REQUIRE_REDIS=1 (set by .ci/run, which installs it): there a missing server is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (Debian package redis-server)"
        if os.environ.get("BIDOPT_REQUIRE_REDIS") == "1":
            pytest.fail(f"{message}, and BIDOPT_REQUIRE_REDIS=1 makes that a failure")
        pytest.skip(message)
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class RedisProcess:
    """A redis-server that a test kills (SIGKILL, by its PID) and starts again on the same port
    and directory; with `aof=True` it persists every write (appendfsync always), as a
    deployment whose Redis holds budgets must."""

    def __init__(self, workdir: Path, *, aof: bool = True) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed (Debian package redis-server)"
            if os.environ.get("BIDOPT_REQUIRE_REDIS") == "1":
                pytest.fail(f"{message}, and BIDOPT_REQUIRE_REDIS=1 makes that a failure")
            pytest.skip(message)
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        persist = ["--appendonly", "yes", "--appendfsync", "always"] if aof else []
        # DEBUG SLEEP (from loopback) lets a test stall Redis past a client's timeout
        self.args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--dir", str(workdir), *(persist or ["--appendonly", "no"]),
                     "--enable-debug-command", "local"]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL, to this PID only
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
