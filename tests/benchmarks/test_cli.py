"""benchmarks.cli and the pieces it assembles: parsing, options, registry, schedule."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import pytest

from benchmarks import cli, plot
from benchmarks.monitor import MonitorSample, cpu_report
from benchmarks.options import add_options, from_namespace, option
from benchmarks.registry import scenarios
from benchmarks.runner import schedule
from benchmarks.scenarios import failover

EXPECTED = {
    "baseline",
    "sessions-1k",
    "sessions-10k",
    "switch-hot",
    "ws-stress",
    "deadlines",
    "sustained",
    "failover",
    "switch",
    "fanout",
    "ws-idle",
    "audit",
}


def test_every_scenario_of_the_brief_is_registered():
    assert set(scenarios()) == EXPECTED


def test_every_scenario_builds_its_options_from_the_defaults():
    parser = cli.build_parser()
    for name, scenario in scenarios().items():
        args = parser.parse_args([name])
        options = from_namespace(scenario.options_type, args)
        assert dataclasses.is_dataclass(options)
        assert scenario.validate(options) is None


def test_scenarios_sharing_options_have_their_own_defaults():
    parser = cli.build_parser()
    small = parser.parse_args(["baseline"])
    large = parser.parse_args(["sessions-10k", "--clients", "7"])
    assert (small.sessions, small.clients) == (100, 10)
    assert (large.sessions, large.clients, large.switches) == (10_000, 7, 10)


def test_harness_options_are_parsed_after_the_scenario():
    args = cli.build_parser().parse_args(
        ["switch", "--url", "http://h:1", "--compare", "http://h:2/p", "--runs", "3", "--plot"]
    )
    config = cli.harness_config(args, scenarios()["switch"], ["x"])
    assert [str(u) for u in config.urls] == ["http://h:1"]
    assert str(config.compare) == "http://h:2/p"
    assert (config.runs, config.rounds, config.plot, config.save) == (3, 3, True, True)


@pytest.mark.parametrize(
    "argv",
    [
        ["switch", "--server-pid", "12"],
        ["switch", "--url", "http://h:1", "--url", "http://h:2"],
        ["switch", "--compare-server-pid", "3"],
        ["deadlines", "--url", "http://h:1", "--url", "http://h:2", "--compare", "http://h:3"],
    ],
)
def test_inconsistent_harness_options_are_refused(argv):
    args = cli.build_parser().parse_args(argv)
    with pytest.raises(ValueError):
        cli.harness_config(args, scenarios()[argv[0]], argv)


def test_deadlines_accepts_one_url_per_node():
    argv = ["deadlines", "--url", "http://h:1", "--url", "http://h:2"]
    args = cli.build_parser().parse_args(argv)
    assert len(cli.harness_config(args, scenarios()["deadlines"], argv).urls) == 2


def test_main_returns_2_on_bad_arguments(capsys):
    assert cli.main(["switch", "--clients", "0"]) == 2
    assert cli.main(["no-such-scenario"]) == 2
    assert cli.main(["deadlines", "--lead-s", "86400", "--window-s", "10"]) == 2
    assert "error" in capsys.readouterr().err


def test_main_help_returns_0(capsys):
    assert cli.main(["--help"], prog="synckairos bench") == 0
    assert "synckairos bench" in capsys.readouterr().out


def test_failover_without_sentinel_exits_4_with_the_reason(monkeypatch, capsys):
    monkeypatch.setattr(failover, "sentinel_script", lambda: None)
    assert cli.main(["failover"]) == cli.EXIT_UNAVAILABLE
    assert "needs deploy/sentinel (issue 6)" in capsys.readouterr().err


def test_unreachable_url_exits_1(capsys):
    argv = ["switch", "--url", "http://127.0.0.1:9", "--duration", "0.1", "--no-save"]
    assert cli.main([*argv, "--warmup", "0"]) == cli.EXIT_ERROR
    assert "ConnectionRefusedError" in capsys.readouterr().err


def test_schedule_alternates_which_target_goes_first():
    assert schedule(2, 3, compare=False) == ["A", "A"]
    assert schedule(1, 3, compare=True) == ["A", "B", "B", "A", "A", "B"]
    assert schedule(2, 1, compare=True) == ["A", "A", "B", "B"]


def test_options_become_flags_with_bounds():
    @dataclasses.dataclass(frozen=True)
    class Options:
        sessions_per_node: int = option(3, "n", low=1)
        ratio: float | None = option(None, "r")
        flag: bool = option(False, "f")
        where: Path | None = option(None, "p")  # noqa: RUF009

    parser = argparse.ArgumentParser()
    add_options(parser, Options)
    args = parser.parse_args(["--sessions-per-node", "5", "--flag", "--where", "/x"])
    assert from_namespace(Options, args) == Options(5, None, True, Path("/x"))
    with pytest.raises(SystemExit):
        parser.parse_args(["--sessions-per-node", "0"])


def test_an_unsupported_option_type_is_a_programming_error():
    @dataclasses.dataclass(frozen=True)
    class Options:
        values: list[int] = option(None, "no")  # noqa: RUF009

    with pytest.raises(TypeError):
        add_options(argparse.ArgumentParser(), Options)


def _sample(wall_s: float, harness: float, server: float | None) -> MonitorSample:
    return MonitorSample(round(wall_s * 1e9), harness, server, None, None, {})


def test_the_harness_is_the_bottleneck_when_busy_and_the_server_is_not():
    assert cpu_report(_sample(0, 0, 0), _sample(1, 0.9, 0.3)).harness_bound
    assert not cpu_report(_sample(0, 0, 0), _sample(1, 0.9, 0.95)).harness_bound
    assert cpu_report(_sample(0, 0, None), _sample(1, 0.9, None)).harness_bound
    report = cpu_report(_sample(0, 0, 0), _sample(2, 0.5, 1.0))
    assert (report.harness_percent, report.server_percent, report.harness_bound) == (
        25.0,
        50.0,
        False,
    )


def test_plot_without_matplotlib_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(plot.PlotUnavailable, match="pip install"):
        plot.require_matplotlib()


def test_baseline_smoke_run_on_a_private_stack(capsys, tmp_path):
    """The one test that starts a server: a tiny baseline through the harness's stack code."""
    argv = ["baseline", "--sessions", "5", "--clients", "2", "--switches", "2"]
    assert cli.main([*argv, "--out", str(tmp_path / "run")]) == 0
    document = json.loads(capsys.readouterr().out)
    run = document["targets"]["A"]["runs"][0]
    assert run["ops"]["switch"]["ok"] == 10
    assert run["ops"]["create"]["ok"] == run["ops"]["complete"]["ok"] == 5
    assert run["cpu"]["server_percent"] is not None
    assert (tmp_path / "run.json").is_file() and (tmp_path / "run.md").is_file()
