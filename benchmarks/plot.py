"""``--plot``: PNG latency histograms and a timeline chart (matplotlib, optional).

matplotlib is the optional extra ``plot`` (``pip install -e '.[plot]'``). It
is imported only when plots are asked for; :func:`require_matplotlib` raises
:class:`PlotUnavailable` with the install hint when it is missing, so the
runner can fail before a long run rather than after it.

:func:`write_plots` writes, next to the report:

- ``<stem>-latency.png``: one histogram per operation (log-scaled counts),
  targets overlaid, p50 and p99 marked;
- ``<stem>-timeline.png``: per timeline window the main operation's
  throughput, its p50 and p99, and the server RSS when known, per target.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.result import TimelineWindow
from benchmarks.stats import LatencyRecorder, percentile

__all__ = ["PlotData", "PlotUnavailable", "require_matplotlib", "write_plots"]


class PlotUnavailable(RuntimeError):
    """Raised when ``--plot`` is asked for but matplotlib is not installed."""


class PlotData:
    """What one target's last run leaves for plotting."""

    def __init__(
        self, url: str, recorders: Mapping[str, LatencyRecorder], timeline: list[TimelineWindow]
    ) -> None:
        self.url = url
        self.recorders = dict(recorders)
        self.timeline = timeline


def require_matplotlib() -> ModuleType:
    """Import ``matplotlib.pyplot`` on the non-interactive Agg backend.

    Raises:
        PlotUnavailable: matplotlib is not installed.
    """
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: pip install -e '.[plot]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def write_plots(stem: Path, data: Mapping[str, PlotData]) -> list[Path]:
    """Write the latency histograms and the timeline of each target; return the paths.

    Raises:
        PlotUnavailable: matplotlib is not installed.
    """
    plt = require_matplotlib()
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    histogram = stem.with_name(stem.name + "-latency.png")
    if _histograms(plt, histogram, data):
        paths.append(histogram)
    timeline = stem.with_name(stem.name + "-timeline.png")
    if _timeline(plt, timeline, data):
        paths.append(timeline)
    return paths


def _histograms(plt: Any, path: Path, data: Mapping[str, PlotData]) -> bool:
    ops: list[str] = []
    for target in data.values():
        ops.extend(op for op, rec in target.recorders.items() if rec.ok and op not in ops)
    if not ops:
        return False
    figure, axes = plt.subplots(len(ops), 1, figsize=(9, 2.8 * len(ops)), squeeze=False)
    for row, op in enumerate(ops):
        ax = axes[row][0]
        for label, target in data.items():
            recorder = target.recorders.get(op)
            if recorder is None or not recorder.ok:
                continue
            samples = sorted(recorder.latencies_ms())
            p50, p99 = percentile(samples, 50), percentile(samples, 99)
            top = percentile(samples, 99.9)
            ax.hist(
                [s for s in samples if s <= top],
                bins=100,
                alpha=0.6,
                label=f"{label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms (n={len(samples):,})",
            )
            ax.axvline(p99, linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_title(f"{op} latency (up to p99.9)")
        ax.set_xlabel("ms")
        ax.set_ylabel("count")
        ax.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def _timeline(plt: Any, path: Path, data: Mapping[str, PlotData]) -> bool:
    if not any(target.timeline for target in data.values()):
        return False
    has_rss = any(w.server_rss_mb is not None for t in data.values() for w in t.timeline)
    rows = 3 if has_rss else 2
    figure, axes = plt.subplots(rows, 1, figsize=(9, 2.8 * rows), sharex=True, squeeze=False)
    for label, target in data.items():
        t = [w.t_s for w in target.timeline]
        axes[0][0].plot(t, [w.throughput_rps for w in target.timeline], ".-", label=label)
        axes[1][0].plot(t, [w.p50_ms for w in target.timeline], ".-", label=f"{label} p50")
        axes[1][0].plot(t, [w.p99_ms for w in target.timeline], ".--", label=f"{label} p99")
        if has_rss:
            axes[2][0].plot(t, [w.server_rss_mb for w in target.timeline], ".-", label=label)
    axes[0][0].set_ylabel("ok / s")
    axes[0][0].set_title("throughput of the main operation")
    axes[1][0].set_ylabel("ms")
    axes[1][0].set_title("latency of the main operation")
    if has_rss:
        axes[2][0].set_ylabel("MiB")
        axes[2][0].set_title("server RSS")
    axes[rows - 1][0].set_xlabel("seconds into the measured window")
    for row in axes:
        row[0].legend(fontsize="small")
        row[0].grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
