"""The registered scenarios, in the order ``--help`` lists them.

Each module declares its :class:`~benchmarks.registry.Scenario` value(s);
add a new one to :data:`ALL`.
"""

from __future__ import annotations

from benchmarks.registry import Scenario
from benchmarks.scenarios.audit import SCENARIO as AUDIT
from benchmarks.scenarios.deadlines import SCENARIO as DEADLINES
from benchmarks.scenarios.failover import SCENARIO as FAILOVER
from benchmarks.scenarios.fanout import SCENARIO as FANOUT
from benchmarks.scenarios.sessions_load import BASELINE, SESSIONS_1K, SESSIONS_10K
from benchmarks.scenarios.sustained import SCENARIO as SUSTAINED
from benchmarks.scenarios.switch import SCENARIO as SWITCH
from benchmarks.scenarios.switch_hot import SCENARIO as SWITCH_HOT
from benchmarks.scenarios.ws_idle import SCENARIO as WS_IDLE
from benchmarks.scenarios.ws_stress import SCENARIO as WS_STRESS

__all__ = ["ALL"]

#: Every scenario, in display order.
ALL: tuple[Scenario, ...] = (
    BASELINE,
    SESSIONS_1K,
    SESSIONS_10K,
    SWITCH_HOT,
    SWITCH,
    WS_STRESS,
    SUSTAINED,
    FANOUT,
    WS_IDLE,
    DEADLINES,
    AUDIT,
    FAILOVER,
)
