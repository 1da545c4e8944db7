"""benchmarks.report: output paths, JSON, Markdown."""

from __future__ import annotations

import datetime
import json

from benchmarks.report import DEFAULT_OUT_DIR, encode_json, output_stem, render_markdown
from benchmarks.report import write_report as write
from benchmarks.result import Ratio, Report, TargetReport
from tests.benchmarks.helpers import result

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def _report(compare: bool = False) -> Report:
    runs = [result(100.0, 2.0, checks={"no_lost_update": True})]
    targets = {"A": TargetReport("http://a", runs, {"throughput_rps": 100.0})}
    comparison = None
    if compare:
        targets["B"] = TargetReport("http://b", runs, {"throughput_rps": 150.0})
        comparison = {"throughput_rps": Ratio(100.0, 150.0, 1.5)}
    return Report(
        scenario="switch",
        created_at="2026-01-02T03:04:05Z",
        command=["python", "-m", "benchmarks", "switch"],
        options={"sessions": 10},
        harness={"version": "2"},
        targets=targets,
        comparison=comparison,
        checks={"no_lost_update": True},
        warnings=["the harness was busy"],
    )


def test_default_output_is_the_results_directory_with_scenario_and_utc_time():
    assert output_stem(None, "baseline", NOW) == DEFAULT_OUT_DIR / "baseline-20260102-030405"


def test_a_trailing_slash_or_existing_directory_gets_the_default_name(tmp_path):
    assert output_stem(f"{tmp_path}/new/", "x", NOW) == tmp_path / "new" / "x-20260102-030405"
    assert output_stem(str(tmp_path), "x", NOW) == tmp_path / "x-20260102-030405"


def test_any_other_path_is_the_stem_without_json_or_md_suffix(tmp_path):
    assert output_stem(f"{tmp_path}/run1", "x", NOW) == tmp_path / "run1"
    assert output_stem(f"{tmp_path}/run1.json", "x", NOW) == tmp_path / "run1"
    assert output_stem(f"{tmp_path}/run1.md", "x", NOW) == tmp_path / "run1"


def test_json_keeps_every_run_with_the_subclass_fields():
    document = json.loads(encode_json(_report()))
    run = document["targets"]["A"]["runs"][0]
    assert run["ops"]["switch"]["latency_ms"]["p99"] == 2.0
    assert run["cpu"]["harness_percent"] == 10.0
    assert document["checks"] == {"no_lost_update": True}


def test_markdown_has_the_operations_table_checks_and_warnings():
    text = render_markdown(_report())
    assert "| `switch` (main) |" in text
    assert "PASS `no_lost_update`" in text
    assert "- the harness was busy" in text
    assert "B / A" not in text


def test_markdown_shows_the_ratios_when_comparing():
    text = render_markdown(_report(compare=True))
    assert "## B / A" in text
    assert "| `throughput_rps` | 100 | 150 | 1.500 |" in text


def test_write_report_writes_json_and_markdown(tmp_path):
    paths = write(_report(), tmp_path / "sub" / "stem")
    assert [p.name for p in paths] == ["stem.json", "stem.md"]
    assert json.loads(paths[0].read_text())["scenario"] == "switch"
