"""Private servers for ``synckairos dev``, the tests and the benchmarks.

Part of the development stack (:mod:`synckairos.dev`): no runtime command
imports it.

``EmbeddedRedis`` starts a ``redis-server`` on a free loopback port with a
temporary data directory and stops it (and removes the directory) on exit.

``EmbeddedPostgres`` does the same for PostgreSQL 15 (the audit trail), and can
also be stopped (or killed) and started again on the same data and port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TypeVar

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "EmbeddedServerError", "free_port", "reserve_port"]


class EmbeddedServerError(RuntimeError):
    """Raised when a private server cannot be started (binary missing, no answer)."""


#: Ports this process has promised to something else (``reserve_port``).
_reserved: set[int] = set()


def reserve_port(port: int) -> None:
    """Keep ``free_port`` from handing out ``port`` (e.g. the server's, bound later)."""
    _reserved.add(port)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now and not reserved."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _reserved:
            return port


def _set_parent_death_signal(signum: int) -> None:
    """In the child: ask Linux to send ``signum`` when its parent dies (PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signum)
    except (OSError, AttributeError):
        pass


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM it when its parent dies (PR_SET_PDEATHSIG)."""
    _set_parent_death_signal(signal.SIGTERM)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """A private ``redis-server`` process on 127.0.0.1.

    Use as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(self, binary: str = "redis-server", *, appendonly: bool = False) -> None:
        self.binary = binary
        self.appendonly = appendonly
        self.port = 0
        """Port the server listens on, once started."""
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of the running server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING.

        Raises:
            EmbeddedServerError: the binary is missing or the server never answered.
        """
        path = shutil.which(self.binary)
        if path is None:
            raise EmbeddedServerError(
                f"{self.binary} not found: install the Debian package redis-server "
                "(the README's commands do it for you)"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="synckairos-redis-"))
        self.port = free_port()
        args = [
            path,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self._dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                self.stop()
                raise EmbeddedServerError(f"redis-server exited at start: {err.strip()}")
            if _answers_ping(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedServerError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its data directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


#: Where the Debian package ``postgresql-15`` installs ``initdb`` and ``postgres``
#: (searched first; then ``PATH``).
POSTGRES_BIN_DIRS = ("/usr/lib/postgresql/15/bin",)

_MISSING_POSTGRES = "install the Debian package postgresql-15 (the README's commands do it for you)"


def _postgres_child_setup() -> None:
    """In a PostgreSQL child: fast shutdown (SIGINT) if our process dies.

    Runs after ``Popen`` switched to the server's user: a change of user clears
    the parent-death signal, so it is set here, not before.
    """
    _set_parent_death_signal(signal.SIGINT)


_T = TypeVar("_T")
_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def _in_lasting_thread(fn: Callable[[], _T]) -> _T:
    """Call ``fn`` in the main thread or in one that lives as long as the process.

    The parent-death signal fires when the *thread* that forked the child ends:
    a server started from a short-lived thread (``threading.Timer``, a one-off
    executor) would be shut down as soon as that thread returned.
    """
    global _spawner
    if threading.current_thread() is threading.main_thread():
        return fn()
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synckairos-spawner")
        spawner = _spawner
    return spawner.submit(fn).result()


def _server_identity() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as, or None to run as ourselves.

    PostgreSQL refuses to run as root; as root we run it as the ``postgres``
    user that the Debian package creates.
    """
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise EmbeddedServerError(
            "PostgreSQL does not run as root and there is no postgres user to run it as: "
            + _MISSING_POSTGRES
        ) from None
    return entry.pw_uid, entry.pw_gid


def _find_tool(name: str, directory: Path | None) -> str | None:
    if directory is not None and (directory / name).is_file():
        return str(directory / name)
    return shutil.which(name)


class EmbeddedPostgres:
    """A private PostgreSQL server on 127.0.0.1 with its cluster in a temporary directory.

    ``start()`` creates the cluster (``initdb``), runs the server on a free port
    and creates the database ``synckairos``. ``stop()`` (fast shutdown) and
    ``kill()`` (SIGKILL, a crash) keep the data directory and the port:
    ``start_again()`` runs the server on them again. ``close()`` stops the
    server and removes the directory. As a context manager: ``start()`` then
    ``close()``.

    When we run as root, the directory belongs to the ``postgres`` user and
    ``initdb`` and ``postgres`` run as that user; otherwise as ourselves. The
    server gets SIGINT (fast shutdown) if our process dies.
    """

    def __init__(
        self,
        bin_dir: str | Path | None = None,
        *,
        database: str = "synckairos",
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.bin_dir = Path(bin_dir) if bin_dir is not None else None
        """Directory of ``initdb`` and ``postgres``; None: ``POSTGRES_BIN_DIRS``, then PATH."""
        self.database = database
        """Database created at start; ``url`` points to it."""
        self.settings = dict(settings or {})
        """Extra server settings, passed as ``-c name=value``."""
        self.port = 0
        """Port the server listens on, once started (kept across ``start_again()``)."""
        self.process: subprocess.Popen[bytes] | None = None
        """The postmaster, while it runs."""
        self._base: Path | None = None
        self._tools: dict[str, str] = {}
        self._identity: tuple[int, int] | None = None

    @property
    def url(self) -> str:
        """``postgresql://`` URL of the database ``synckairos`` (as user ``postgres``)."""
        return self.dsn(self.database)

    def dsn(self, database: str) -> str:
        """``postgresql://`` URL of another database of this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def directory(self) -> Path | None:
        """The temporary directory (``data/``, ``run/`` for the socket, ``postgres.log``)."""
        return self._base

    @property
    def running(self) -> bool:
        """True while the postmaster process is alive."""
        return self.process is not None and self.process.poll() is None

    # -- life cycle -------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> EmbeddedPostgres:
        """Create the cluster, run the server and create the database.

        On a cluster that already exists (after ``stop()``), same as ``start_again()``.

        Raises:
            EmbeddedServerError: the binaries are missing, initdb failed or the
                server never accepted connections.
        """
        if self._base is not None:
            return self.start_again(timeout)
        deadline = time.monotonic() + timeout
        try:
            self._create_cluster(timeout)
            for attempt in range(3):
                self.port = free_port()
                error = self._launch(deadline)
                if error is None:
                    break
                port_taken = "could not bind" in error or "could not create any TCP/IP" in error
                if not port_taken or attempt == 2:
                    raise EmbeddedServerError(f"postgres exited at start: {error}")
            self.create_database(self.database)
        except BaseException:
            self.close()
            raise
        return self

    def start_again(self, timeout: float = 60.0) -> EmbeddedPostgres:
        """Run the server again on the same data directory and port.

        After ``kill()`` this includes crash recovery; a start refused because the
        killed server's processes are still going away is retried until ``timeout``.

        Raises:
            EmbeddedServerError: no cluster (``start()`` was never called, or
                ``close()`` was), or the server did not come up in time.
        """
        if self._base is None:
            raise EmbeddedServerError("start_again() needs the cluster that start() creates")
        if self.running:
            return self
        deadline = time.monotonic() + timeout
        while True:
            error = self._launch(deadline)
            if error is None:
                return self
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(f"postgres exited at start: {error}")
            time.sleep(0.2)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGINT: fast shutdown; SIGKILL after ``timeout``).

        The data directory and the port are kept for ``start_again()``.
        """
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_group(process)
        self.process = None

    def kill(self) -> None:
        """Crash the server: SIGKILL to the postmaster and every backend.

        Committed transactions survive (``fsync=on``); ``start_again()`` recovers.
        """
        process = self.process
        if process is None:
            return
        self._kill_group(process)
        self.process = None

    def close(self) -> None:
        """Stop the server and remove the cluster's directory."""
        self.stop()
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- SQL --------------------------------------------------------------------------

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE name`` (a plain identifier) on the running server."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
            raise ValueError(f"not a plain database name: {name!r}")
        self.psql(f'CREATE DATABASE "{name}"')

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with ``psql`` over the server's Unix socket; return its output.

        Raises:
            EmbeddedServerError: the server is not running or the statement failed.
        """
        if not self.running or self._base is None:
            raise EmbeddedServerError("postgres is not running")
        # fmt: off
        args = [
            self._tools["psql"], "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", str(self._base / "run"), "-p", str(self.port), "-U", "postgres",
            "-d", database, "-c", sql,
        ]
        # fmt: on
        result = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def log_tail(self, max_chars: int = 4000) -> str:
        """The end of the server's log (``postgres.log`` in the directory)."""
        if self._base is None:
            return ""
        try:
            text = (self._base / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""
        return text[-max_chars:]

    # -- internals --------------------------------------------------------------------

    def _find_tools(self) -> dict[str, str]:
        if self.bin_dir is not None:
            directories: list[Path] = [self.bin_dir]
        else:
            directories = [Path(d) for d in POSTGRES_BIN_DIRS]
            initdb = shutil.which("initdb")
            if initdb is not None:
                directories.append(Path(initdb).parent)
        for directory in directories:
            if (directory / "initdb").is_file() and (directory / "postgres").is_file():
                tools = {
                    "initdb": str(directory / "initdb"),
                    "postgres": str(directory / "postgres"),
                }
                for name in ("pg_isready", "psql"):
                    path = _find_tool(name, directory)
                    if path is None:
                        raise EmbeddedServerError(f"{name} not found: {_MISSING_POSTGRES}")
                    tools[name] = path
                return tools
        where = str(self.bin_dir) if self.bin_dir is not None else POSTGRES_BIN_DIRS[0]
        raise EmbeddedServerError(
            f"PostgreSQL 15 (initdb, postgres) not found in {where} nor on PATH: "
            + _MISSING_POSTGRES
        )

    def _env(self) -> dict[str, str]:
        """Our environment without ``PG*`` variables (they would redirect the tools)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    @property
    def _uid(self) -> int | None:
        return self._identity[0] if self._identity is not None else None

    @property
    def _gid(self) -> int | None:
        return self._identity[1] if self._identity is not None else None

    @property
    def _extra_groups(self) -> list[int] | None:
        return [] if self._identity is not None else None

    def _create_cluster(self, timeout: float) -> None:
        self._tools = self._find_tools()
        self._identity = _server_identity()
        # As root the directory must be reachable by postgres: /tmp (mode 1777),
        # whatever TMPDIR says; the directory itself is 0700 and postgres's.
        parent = "/tmp" if self._identity is not None else None
        base = Path(tempfile.mkdtemp(prefix="synckairos-pg-", dir=parent))
        self._base = base
        (base / "run").mkdir(mode=0o700)
        if self._identity is not None:
            for path in (base, base / "run"):
                os.chown(path, *self._identity)
        # fmt: off
        args = [
            self._tools["initdb"], "-D", str(base / "data"), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--locale=C",
        ]
        # fmt: on
        try:
            result = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                cwd=base,
                env=self._env(),
                timeout=max(timeout, 30.0),
                check=False,
                user=self._uid,
                group=self._gid,
                extra_groups=self._extra_groups,
            )
        except subprocess.TimeoutExpired:
            raise EmbeddedServerError("initdb did not finish in time") from None
        if result.returncode != 0:
            output = (result.stderr.strip() or result.stdout.strip())[-4000:]
            raise EmbeddedServerError(f"initdb failed: {output}")

    def _launch(self, deadline: float) -> str | None:
        """Run the postmaster and wait until it accepts connections.

        Returns None once it does, or the log it wrote if it exited first.
        Raises EmbeddedServerError (after killing it) when ``deadline`` passes.
        """
        assert self._base is not None
        base = self._base
        options: list[str] = []
        server_settings = {"listen_addresses": "127.0.0.1", "fsync": "on", **self.settings}
        for name, value in server_settings.items():
            options += ["-c", f"{name}={value}"]
        # fmt: off
        args = [
            self._tools["postgres"], "-D", str(base / "data"), "-p", str(self.port),
            "-k", str(base / "run"), *options,
        ]
        # fmt: on
        with open(base / "postgres.log", "ab") as log:
            offset = log.tell()

            def spawn() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=base,
                    env=self._env(),
                    start_new_session=True,
                    preexec_fn=_postgres_child_setup,
                    user=self._uid,
                    group=self._gid,
                    extra_groups=self._extra_groups,
                )

            self.process = process = _in_lasting_thread(spawn)
        while True:
            if process.poll() is not None:
                self.process = None
                return self._log_since(offset) or f"exit status {process.returncode}"
            if self._accepts_connections():
                return None
            if time.monotonic() >= deadline:
                self._kill_group(process)
                self.process = None
                raise EmbeddedServerError(
                    f"postgres did not accept connections on port {self.port}: "
                    + self._log_since(offset)
                )
            time.sleep(0.05)

    def _accepts_connections(self) -> bool:
        """pg_isready over our Unix socket: only our server can answer there."""
        assert self._base is not None
        # fmt: off
        args = [
            self._tools["pg_isready"], "-q", "-h", str(self._base / "run"),
            "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-t", "2",
        ]
        # fmt: on
        try:
            result = subprocess.run(
                args, stdin=subprocess.DEVNULL, capture_output=True, env=self._env(), timeout=5
            )
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def _log_since(self, offset: int) -> str:
        assert self._base is not None
        try:
            with open(self._base / "postgres.log", "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace").strip()[-4000:]
        except OSError:
            return ""

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the postmaster's process group (it and its backends), reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
