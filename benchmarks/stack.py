"""A private SyncKairos stack for one benchmark run.

``with DevStack.start() as stack:`` runs ``python -m synckairos dev`` on a free
loopback port (it starts its own redis-server and the HTTP server), waits until
``GET /health`` answers 200, and yields. On exit it sends SIGTERM, waits up to
:data:`STOP_TIMEOUT_S`, then SIGKILLs the child's whole process group.

More nodes on the same Redis: ``DevStack.start_node(stack.redis_url())`` runs
``python -m synckairos serve`` on another free port with
``SYNCKAIROS_REDIS_URL`` pointing at the first stack's private Redis (read from
the line ``private Redis      redis://...`` that ``dev`` prints on stderr).

The child runs with rate limiting off and warning-level logs (:data:`CHILD_ENV`);
its stdout and stderr go to a temporary file whose tail is quoted in
:class:`StackError` when the stack fails to start or dies before it is stopped.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import IO

__all__ = ["CHILD_ENV", "DevStack", "StackError"]

#: Environment added to the child's: no rate limiting, quiet logs.
CHILD_ENV = {"SYNCKAIROS_RATE_LIMITS": "off", "SYNCKAIROS_LOG_LEVEL": "warning"}

#: Seconds to wait for GET /health to answer 200.
START_TIMEOUT_S = 30.0

#: Seconds to wait after SIGTERM before SIGKILL.
STOP_TIMEOUT_S = 10.0

#: Bytes of the child's log quoted in errors.
LOG_TAIL_BYTES = 4000

HOST = "127.0.0.1"

#: The line of ``synckairos dev``'s output that names its private Redis.
_REDIS_LINE = re.compile(rb"^private Redis\s+(redis://\S+)", re.MULTILINE)


class StackError(RuntimeError):
    """Raised by :class:`DevStack` when the stack does not start or dies early."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


class DevStack:
    """A running ``synckairos dev`` child process. Create it with :meth:`start`."""

    def __init__(
        self, command: list[str], process: subprocess.Popen[bytes], log: IO[bytes], port: int
    ) -> None:
        self.command = command
        self.process = process
        self.log = log
        """Temporary file receiving the child's stdout and stderr."""
        self.url = f"http://{HOST}:{port}"
        """Base URL of the HTTP server."""

    @property
    def pid(self) -> int:
        """Pid of the root of the stack's process tree."""
        return self.process.pid

    @classmethod
    def start(cls) -> DevStack:
        """Start ``synckairos dev`` (private Redis + server) and wait until it is healthy.

        Raises:
            StackError: the child exited or was not healthy within START_TIMEOUT_S.
        """
        return cls._start("dev", {})

    @classmethod
    def start_node(cls, redis_url: str) -> DevStack:
        """Start ``synckairos serve`` on ``redis_url`` and wait until it is healthy.

        The node shares the state (and the deadlines) of every other node on
        that Redis. Stop it before the stack that owns the Redis.

        Raises:
            StackError: the child exited or was not healthy within START_TIMEOUT_S.
        """
        return cls._start("serve", {"SYNCKAIROS_REDIS_URL": redis_url})

    @classmethod
    def _start(cls, subcommand: str, env: dict[str, str]) -> DevStack:
        port = _free_port()
        command = [sys.executable, "-m", "synckairos", subcommand, "--host", HOST]
        command += ["--port", str(port)]
        log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **CHILD_ENV, **env},
                start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        stack = cls(command, process, log, port)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(port):
            failure = None
            if process.poll() is not None:
                failure = stack.describe_failure(f"exited with {process.returncode}")
            elif time.monotonic() > deadline:
                failure = stack.describe_failure(f"was not healthy after {START_TIMEOUT_S:g} s")
            if failure is not None:
                stack.stop()
                raise StackError(failure)
            time.sleep(0.1)
        return stack

    def redis_url(self) -> str:
        """Return the URL of the private Redis that ``synckairos dev`` printed.

        Raises:
            StackError: the output names no private Redis (e.g. the environment
                already had ``SYNCKAIROS_REDIS_URL``, so ``dev`` used that one).
        """
        fd = self.log.fileno()
        head = os.pread(fd, 64 * 1024, 0)  # the banner comes first
        match = _REDIS_LINE.search(head)
        if match is None:
            explicit = os.environ.get("SYNCKAIROS_REDIS_URL")
            if explicit:
                return explicit
            raise StackError(self.describe_failure("printed no private Redis URL"))
        return match.group(1).decode()

    def log_tail(self) -> str:
        """Return the last LOG_TAIL_BYTES of the child's output."""
        fd = self.log.fileno()
        size = os.fstat(fd).st_size
        # pread: the child shares this file offset, so never seek.
        tail = os.pread(fd, LOG_TAIL_BYTES, max(0, size - LOG_TAIL_BYTES))
        return tail.decode(errors="replace")

    def describe_failure(self, what: str) -> str:
        """Return an error message naming the command, ``what`` happened and the log tail."""
        return f"{' '.join(self.command)} {what}; its output ends with:\n{self.log_tail()}"

    def stop(self) -> None:
        """SIGTERM the child and wait up to STOP_TIMEOUT_S for it to exit.

        Then SIGKILL whatever is left of its process group (the child itself if
        it did not exit, or descendants it failed to stop) and close the log.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def __enter__(self) -> DevStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        died = self.process.poll()
        failure = None if died is None else self.describe_failure(f"died with {died}")
        self.stop()
        if failure is not None and exc is None:
            raise StackError(failure)
