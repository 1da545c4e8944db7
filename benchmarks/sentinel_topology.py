"""``SentinelTopology``: drive ``deploy/sentinel/sentinel.sh`` from Python.

Tests and the failover benchmark start a private topology (one primary, two
replicas, three Sentinels) on free loopback ports in a directory of their own,
kill or fail over its primary, and destroy it afterwards. The script is the
single implementation; this class only passes it the settings. It needs the
source tree (the script is not in the wheel), so it lives in the checkout-only
``benchmarks`` package, beside the failover scenario that uses it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from synckairos.dev.embedded import free_port

__all__ = ["SCRIPT", "SentinelTopology"]

#: The topology script, in the source tree (``benchmarks/`` and ``deploy/`` are siblings).
SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "sentinel" / "sentinel.sh"


class SentinelTopology:
    """A Sentinel-managed Redis on loopback; a context manager (destroyed on exit)."""

    def __init__(
        self,
        *,
        master: str = "synckairos",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 10_000,
    ) -> None:
        if not SCRIPT.exists():
            raise FileNotFoundError(f"{SCRIPT} not found: run from a source checkout")
        self.dir = Path(tempfile.mkdtemp(prefix="synckairos-sentinel-"))
        self.redis_ports = [free_port() for _ in range(3)]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.master = master
        self._env = {
            **os.environ,
            "SK_SENTINEL_DIR": str(self.dir),
            "SK_REDIS_PORTS": " ".join(map(str, self.redis_ports)),
            "SK_SENTINEL_PORTS": " ".join(map(str, self.sentinel_ports)),
            "SK_MASTER_NAME": master,
            "SK_DOWN_AFTER_MS": str(down_after_ms),
            "SK_FAILOVER_TIMEOUT_MS": str(failover_timeout_ms),
        }

    def run(self, *args: str, timeout: float = 90.0) -> str:
        """Run ``sentinel.sh args``; return its standard output (stripped).

        Raises:
            subprocess.CalledProcessError: the script failed (its stderr attached).
        """
        done = subprocess.run(
            ["bash", str(SCRIPT), *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout.strip()

    @property
    def sentinels(self) -> str:
        """``SYNCKAIROS_REDIS_SENTINELS`` of this topology."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def env(self) -> dict[str, str]:
        """The ``SYNCKAIROS_*`` variables that point a process at this topology."""
        return {
            "SYNCKAIROS_REDIS_SENTINELS": self.sentinels,
            "SYNCKAIROS_REDIS_SENTINEL_MASTER": self.master,
        }

    def start(self) -> SentinelTopology:
        """Start every process and wait until the Sentinels know each other."""
        self.run("start")
        return self

    def primary(self) -> str:
        """``host:port`` of the primary the Sentinels name now."""
        return self.run("primary")

    def kill_primary(self) -> int:
        """SIGKILL the primary; return its port."""
        return int(self.run("kill-primary"))

    def failover(self) -> None:
        """Ask the Sentinels for a manual failover (``SENTINEL FAILOVER``)."""
        self.run("failover")

    def wait_primary(self, old: str) -> str:
        """Wait until the Sentinels name a primary other than ``old``; return it."""
        return self.run("wait-primary", old)

    def restart(self, port: int) -> None:
        """Restart a stopped data node as a replica of the current primary."""
        self.run("restart", str(port))

    def destroy(self) -> None:
        """Stop every process and delete the directory."""
        try:
            self.run("destroy", timeout=60)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SentinelTopology:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()
