"""Load-test harness for SyncKairos over its public HTTP + WebSocket protocol.

Run it with ``python -m benchmarks <scenario>`` or ``synckairos bench
<scenario>`` (both call :func:`benchmarks.cli.main`); see
``benchmarks/README.md``. The JSON report goes to stdout and, with the
Markdown summary, to ``benchmarks/results/``; progress goes to stderr.

Layout: :mod:`benchmarks.cli` (command line), :mod:`benchmarks.registry`
(scenario specs), :mod:`benchmarks.runner` (stack, runs, A/B rounds,
medians), :mod:`benchmarks.context` / :mod:`benchmarks.monitor` /
:mod:`benchmarks.stats` (what a run measures with), :mod:`benchmarks.result`
/ :mod:`benchmarks.aggregate` / :mod:`benchmarks.report` /
:mod:`benchmarks.plot` (what comes out), the protocol clients
(:mod:`benchmarks.httpclient`, :mod:`benchmarks.wsclient`,
:mod:`benchmarks.sessions`, :mod:`benchmarks.phases`,
:mod:`benchmarks.pacer`), :mod:`benchmarks.stack` and
:mod:`benchmarks.procstat`, and one module per scenario in
:mod:`benchmarks.scenarios`. :mod:`benchmarks.sentinel_topology` drives
``deploy/sentinel/sentinel.sh`` for the ``failover`` scenario and the tests.

The harness runs from a source checkout only: the wheel installs the
``synckairos`` package and nothing else.
"""
