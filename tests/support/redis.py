"""A Redis server of the test session's own: `redis-server` on a free 127.0.0.1 port, nothing kept on disk.

Several tests flush their database, reset the server's statistics and count its commands (`INFO commandstats`). On
the machine's shared Redis, two pytest-xdist workers, or two suites at once, would wipe and count each other's work;
a server per session (one per worker) shares nothing. The `redis_service` fixture (tests/conftest.py) starts it
on first use and empties it before each test that asks for it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import serve_command


def _pings(base: str) -> bool:
    import redis

    try:
        with redis.Redis.from_url(base.replace("http://", "redis://"), socket_connect_timeout=0.5) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


@dataclass(frozen=True)
class RedisService:
    """The session's Redis: its URL (database 0) and port, and what tests do to it."""

    url: str
    port: int

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)

    def flush(self) -> None:
        with self.client() as client:
            client.flushdb()

    def evalsha_calls(self) -> int:
        """How many EVALSHA commands (rate-limit scripts) the server ran since its statistics were last reset."""
        with self.client() as client:
            return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

    def reset_statistics(self) -> None:
        with self.client() as client:
            client.config_resetstat()


@contextlib.contextmanager
def redis_server(log_dir: Path) -> Iterator[RedisService]:
    """A private redis-server, until the end of the block."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs it)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    command = [binary, "--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with serve_command([*command, "--dir", str(log_dir)], log_dir, ready=_pings) as server:
        yield RedisService(f"redis://127.0.0.1:{server.port}/0", server.port)
