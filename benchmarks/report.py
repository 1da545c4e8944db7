"""Writing a :class:`~benchmarks.result.Report`: output paths, JSON, Markdown.

- :func:`output_stem`: where the files of a run go (``<dir>/<scenario>-<UTC
  timestamp>``, or the stem the user gave).
- :func:`encode_json`: the report as indented JSON (msgspec).
- :func:`render_markdown`: a human summary: per target the median of the
  runs (operations table, CPU, scenario figures), the per-run headline, the
  ``--compare`` ratios, checks and warnings.
- :func:`write_report`: both files, returning their paths.

All pure except :func:`write_report`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from benchmarks.result import Ratio, Report, ScenarioResult

__all__ = [
    "DEFAULT_OUT_DIR",
    "encode_json",
    "output_stem",
    "render_markdown",
    "timestamp",
    "write_report",
]

#: Where results go by default (ignored by git: see ``results/.gitignore``).
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "results"

#: Figures shown in the "operations" table, in order, with their column titles.
_OP_COLUMNS = (
    ("count", "count"),
    ("ok", "ok"),
    ("throughput_rps", "ok/s"),
    ("latency_ms.p50", "p50 ms"),
    ("latency_ms.p95", "p95 ms"),
    ("latency_ms.p99", "p99 ms"),
    ("latency_ms.max", "max ms"),
)

_CPU_COLUMNS = (
    ("cpu.server_percent", "server CPU %"),
    ("cpu.harness_percent", "harness CPU %"),
    ("cpu.host_percent", "host CPU %"),
    ("cpu.others_percent", "others CPU %"),
)


def timestamp(now: datetime.datetime) -> str:
    """``20260101-120000`` for file names (UTC)."""
    return now.astimezone(datetime.UTC).strftime("%Y%m%d-%H%M%S")


def output_stem(out: str | None, scenario: str, now: datetime.datetime) -> Path:
    """Return the path without suffix of the result files.

    ``out`` None: :data:`DEFAULT_OUT_DIR`. A directory (existing, or written
    with a trailing slash): ``<out>/<scenario>-<timestamp>``. Anything else is
    the stem itself; a ``.json`` or ``.md`` suffix is dropped.
    """
    name = f"{scenario}-{timestamp(now)}"
    if out is None:
        return DEFAULT_OUT_DIR / name
    path = Path(out)
    if out.endswith(("/", "\\")) or path.is_dir():
        return path / name
    if path.suffix in (".json", ".md"):
        return path.with_suffix("")
    return path


def encode_json(report: Report) -> bytes:
    """The report as indented JSON with a trailing newline."""
    return msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n"


def _cell(value: float | str | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _ops(median: Mapping[str, float], result: ScenarioResult) -> list[str]:
    rows = []
    for op, stats in result.ops.items():
        row = [f"`{op}`" + (" (main)" if op == result.main_op else "")]
        row += [_cell(median.get(f"ops.{op}.{key}")) for key, _ in _OP_COLUMNS]
        errors = ", ".join(f"{kind}: {count}" for kind, count in sorted(stats.errors.items()))
        row.append(errors or "0")
        rows.append(row)
    return _table(["operation", *(title for _, title in _OP_COLUMNS), "errors (last run)"], rows)


def _other_figures(median: Mapping[str, float]) -> list[str]:
    skip = ("ops.", "cpu.", "throughput_rps", "duration_s")
    rows = [[f"`{key}`", _cell(value)] for key, value in median.items() if not key.startswith(skip)]
    return _table(["figure", "median"], rows) if rows else []


def render_markdown(report: Report) -> str:
    """Render the report as Markdown (medians first, then per-run headlines)."""
    lines = [f"# `{report.scenario}`: {report.created_at}", ""]
    lines.append(f"Command: `{' '.join(report.command)}`")
    lines.append("")
    options = ", ".join(f"`{key}={value}`" for key, value in report.options.items())
    lines += [f"Options: {options}", ""]
    for label, target in report.targets.items():
        runs = target.runs
        if not runs:
            continue
        last = runs[-1]
        median = target.median
        lines.append(f"## Target {label}: {target.url}")
        lines.append("")
        runs_text = "1 run" if len(runs) == 1 else f"median of {len(runs)} runs"
        lines.append(
            f"{runs_text}; measured window {_cell(median.get('duration_s'))} s; "
            f"headline throughput {_cell(median.get('throughput_rps'))} /s"
            + (f" (`{last.main_op}`)" if last.main_op else "")
        )
        lines.append("")
        if last.ops:
            lines += [*_ops(median, last), ""]
        cpu_row = [_cell(median.get(key)) for key, _ in _CPU_COLUMNS]
        lines += [*_table([title for _, title in _CPU_COLUMNS], [cpu_row]), ""]
        other = _other_figures(median)
        if other:
            lines += [*other, ""]
        if len(runs) > 1:
            rows = [
                [
                    str(i + 1),
                    _cell(run.throughput_rps),
                    *(_cell(_p(run, p)) for p in ("p50", "p99")),
                    _cell(None if run.cpu is None else run.cpu.harness_percent),
                ]
                for i, run in enumerate(runs)
            ]
            header = ["run", "throughput /s", "main p50 ms", "main p99 ms", "harness CPU %"]
            lines += [*_table(header, rows), ""]
    if report.comparison:
        lines += ["## B / A", ""]
        lines += [*_ratios(report.comparison), ""]
        lines.append("Throughput ratio above 1: B is faster; latency ratio below 1: B is faster.")
        lines.append("")
    if report.checks:
        lines += ["## Checks", ""]
        lines += [f"- {'PASS' if ok else 'FAIL'} `{name}`" for name, ok in report.checks.items()]
        lines.append("")
    if report.warnings:
        lines += ["## Warnings", ""]
        lines += [f"- {warning}" for warning in report.warnings]
        lines.append("")
    return "\n".join(lines)


def _p(result: ScenarioResult, p: str) -> float | None:
    op = result.ops.get(result.main_op or "")
    if op is None or op.latency_ms is None:
        return None
    value: float = getattr(op.latency_ms, p)
    return value


def _ratios(comparison: Mapping[str, Ratio]) -> list[str]:
    rows = [
        [f"`{key}`", _cell(r.a), _cell(r.b), "n/a" if r.ratio is None else f"{r.ratio:.3f}"]
        for key, r in comparison.items()
    ]
    return _table(["figure", "A (median)", "B (median)", "B / A"], rows)


def write_report(report: Report, stem: Path) -> list[Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` (creating the directory); return them."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path = stem.with_name(stem.name + ".json")
    md_path = stem.with_name(stem.name + ".md")
    json_path.write_bytes(encode_json(report))
    md_path.write_text(render_markdown(report))
    return [json_path, md_path]
