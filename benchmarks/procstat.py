"""CPU accounting from ``/proc`` (Linux) for the server and the load generator.

Take a :func:`sample` when a measured window opens and another when it closes;
:func:`usage` turns the pair into percentages of one core (200 % = two cores
fully busy).

The server's CPU is that of a whole process tree: the root pid and all its
live descendants (e.g. ``synckairos dev`` with its redis-server and workers),
each counted as utime + stime + cutime + cstime, so the time of children that
exited and were reaped inside the tree is still counted. Without ``/proc`` or
without a server pid the server figure is ``None``.

The load generator's CPU is :func:`time.process_time` of this process.

The machine's CPU (:func:`host_cpu_seconds`) is the busy time of all cores
from ``/proc/stat``: what the server, the load generator and any neighbour
used together. On a shared box, host - server - client is the neighbours'.

Memory: :func:`server_pids` picks the server's own processes out of its tree
(everything but Redis, PostgreSQL and the audit worker) and :func:`total_rss_kb` sums their
``VmRSS`` from ``/proc/PID/status``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CLIENT_BOUND_PERCENT",
    "CpuSample",
    "CpuUsage",
    "host_cpu_seconds",
    "is_server_process",
    "process_name",
    "rss_kb",
    "sample",
    "server_pids",
    "total_rss_kb",
    "tree_cpu_seconds",
    "tree_pids",
    "usage",
]

#: Load-generator CPU (percent of one core) above which its own speed may limit results.
CLIENT_BOUND_PERCENT = 85.0

_PROC = "/proc"


def _read_stat(pid: int) -> tuple[int, int] | None:
    """Return (ppid, CPU ticks incl. reaped children) of ``pid``, or None if gone."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after "(comm)", which may itself contain spaces and parentheses:
    # state ppid ... utime(14) stime(15) cutime(16) cstime(17), numbered from 1.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]), sum(int(tick) for tick in fields[11:15])


def _tree(root_pid: int) -> dict[int, int] | None:
    """Return {pid: CPU ticks} of ``root_pid`` and its live descendants, or None."""
    root = _read_stat(root_pid)
    if root is None:
        return None
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {root_pid: root[1]}
    for entry in os.listdir(_PROC):
        if entry.isdigit() and (stat := _read_stat(int(entry))) is not None:
            children.setdefault(stat[0], []).append(int(entry))
            ticks[int(entry)] = stat[1]
    members: dict[int, int] = {}
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        members[pid] = ticks.get(pid, 0)
        pending.extend(children.get(pid, ()))
    return members


def tree_cpu_seconds(root_pid: int) -> float | None:
    """Return the CPU seconds used so far by ``root_pid`` and its live descendants.

    Returns ``None`` if the root process does not exist or ``/proc`` is unavailable.
    """
    members = _tree(root_pid)
    if members is None:
        return None
    return sum(members.values()) / os.sysconf("SC_CLK_TCK")


def host_cpu_seconds() -> float | None:
    """Return the CPU seconds all cores spent busy since boot, or None without ``/proc``.

    Busy is user + nice + system + irq + softirq (not idle, iowait or steal).
    """
    try:
        with open(f"{_PROC}/stat", "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def tree_pids(root_pid: int) -> list[int]:
    """Return ``root_pid`` and its live descendants (empty if the root is gone)."""
    return list(_tree(root_pid) or ())


def process_name(pid: int) -> str | None:
    """Return the ``comm`` name of ``pid`` (e.g. ``"redis-server"``), or None if gone."""
    try:
        with open(f"{_PROC}/{pid}/comm", "rb") as f:
            return f.read().decode(errors="replace").strip()
    except OSError:
        return None


def _cmdline(pid: int) -> list[str]:
    """Return the arguments of ``pid`` (empty if gone or a kernel thread)."""
    try:
        with open(f"{_PROC}/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


#: ``comm`` prefixes of the processes of a server tree that are not the server.
NOT_SERVER_PREFIXES = ("redis", "postgres")


def is_server_process(pid: int) -> bool:
    """True unless ``pid`` is a Redis, a PostgreSQL or a ``synckairos worker`` process."""
    name = process_name(pid)
    if name is None or name.startswith(NOT_SERVER_PREFIXES):
        return False
    args = _cmdline(pid)
    return not any(
        arg.endswith("synckairos") and args[i + 1 : i + 2] == ["worker"]
        for i, arg in enumerate(args)
    )


def server_pids(root_pid: int) -> list[int]:
    """Return the members of the server's tree that serve requests.

    Left out: Redis and PostgreSQL servers and the audit worker
    (``synckairos worker``), which ``synckairos dev`` runs as its children.
    For ``synckairos dev`` that leaves the uvicorn process itself; for
    ``synckairos serve --workers N`` the supervisor and its workers; for a
    Node.js server, the node process.
    """
    return [pid for pid in tree_pids(root_pid) if is_server_process(pid)]


def rss_kb(pid: int) -> int | None:
    """Return the resident set size (``VmRSS``) of ``pid`` in KiB, or None if gone."""
    try:
        with open(f"{_PROC}/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def total_rss_kb(pids: list[int]) -> int:
    """Return the summed ``VmRSS`` of ``pids`` in KiB (processes gone count 0)."""
    return sum(rss_kb(pid) or 0 for pid in pids)


@dataclass(frozen=True, slots=True)
class CpuSample:
    """Clocks read at one instant."""

    wall_ns: int
    """:func:`time.perf_counter_ns` at the sample."""
    own_cpu_s: float
    """:func:`time.process_time` of this process."""
    server_cpu_s: float | None
    """:func:`tree_cpu_seconds` of the server, or None if unknown."""
    host_cpu_s: float | None = None
    """:func:`host_cpu_seconds`: all processes of the machine, or None if unknown."""


@dataclass(frozen=True, slots=True)
class CpuUsage:
    """CPU use over the window between two samples, in percent of one core."""

    wall_s: float
    client_percent: float
    server_percent: float | None
    host_percent: float | None = None
    """Busy time of the whole machine (all cores, all processes)."""

    @property
    def others_percent(self) -> float | None:
        """``host - server - client``: what other processes used, if both are known."""
        if self.host_percent is None or self.server_percent is None:
            return None
        return round(max(0.0, self.host_percent - self.server_percent - self.client_percent), 1)

    @property
    def client_bound(self) -> bool:
        """True when the load generator was busy enough to be the bottleneck."""
        return self.client_percent > CLIENT_BOUND_PERCENT


def sample(server_pid: int | Sequence[int] | None) -> CpuSample:
    """Read the wall clock, this process's CPU time and the server's CPU time.

    ``server_pid`` is the root of the server's process tree, or several roots
    (e.g. one per node) whose trees are summed; the server figure is ``None``
    when there is none or any of them is gone.
    """
    roots = [server_pid] if isinstance(server_pid, int) else list(server_pid or ())
    server: float | None = None
    if roots:
        trees = [tree_cpu_seconds(root) for root in roots]
        server = None if None in trees else sum(t for t in trees if t is not None)
    return CpuSample(time.perf_counter_ns(), time.process_time(), server, host_cpu_seconds())


def usage(start: CpuSample, end: CpuSample) -> CpuUsage:
    """Return CPU use between two samples (``end`` taken after ``start``)."""
    wall_s = (end.wall_ns - start.wall_ns) / 1e9
    server = None
    if start.server_cpu_s is not None and end.server_cpu_s is not None and wall_s > 0:
        server = round((end.server_cpu_s - start.server_cpu_s) / wall_s * 100, 1)
    client = round((end.own_cpu_s - start.own_cpu_s) / wall_s * 100, 1) if wall_s > 0 else 0.0
    host = None
    if start.host_cpu_s is not None and end.host_cpu_s is not None and wall_s > 0:
        host = round((end.host_cpu_s - start.host_cpu_s) / wall_s * 100, 1)
    return CpuUsage(wall_s, client, server, host)
