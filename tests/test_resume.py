"""``synckairos.resume`` driven directly: no socket, no store, no event loop.

The version filter (``classify``, ``VersionFilter.receive``), the
replay-or-full-sync decision (``plan_repair``) and a repair's life cycle
(``begin_repair`` → ``complete_repair`` → ``end_repair``), each from plain
values; then one property: whatever order, duplicates and losses the changes
arrive in, what a subscriber is sent is gap-free, duplicate-free and ends at
the session's last version.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synckairos import resume
from synckairos.resume import (
    FORGOTTEN,
    MAX_VERSION,
    FullSync,
    Missing,
    Plan,
    Position,
    ReconnectAck,
    Refused,
    RepairRequest,
    Replay,
    Verdict,
    VersionFilter,
    classify,
    plan_repair,
    read_from,
    refuses_epoch,
    replay_fits,
)
from synckairos.store import HistorySlice

#: A version after a restore: about the server clock in µs (docs/audit.md).
RESTORED = 1_800_000_000_000_000
STATE = b'{"status":"running"}'


@dataclass(frozen=True)
class Arrived:
    """A published change as the filter sees it (``ws_messages.Delivery``'s fields)."""

    version: int
    epoch: str = "A"
    deleted: bool = False
    text: str = "x" * 10


def deletion() -> Arrived:
    return Arrived(0, "", deleted=True)


def entry(version: int) -> tuple[int, bytes]:
    return version, b'{"version":%d}' % version


def history(
    version: int, epoch: str = "A", changes: Iterable[int] = (), state: bytes = STATE
) -> HistorySlice:
    """A store read: the state at ``version`` and the history entries ``changes``."""
    return HistorySlice(state, version, epoch, [entry(v) for v in changes])


GONE = HistorySlice(b"", 0, "", [])


def live(version: int, epoch: str = "A", **kwargs: int | None) -> VersionFilter[Arrived]:
    """A filter past its first sync, at ``version``/``epoch``, not buffering."""
    f: VersionFilter[Arrived] = VersionFilter(max_pending=kwargs.get("max_pending") or 100)
    f.max_pending_bytes = kwargs.get("max_pending_bytes")
    request = f.begin_repair(0, None, full=True)
    f.complete_repair(request, history(version, epoch))
    assert f.end_repair() == []
    return f


# ---------------------------------------------------------------- classify


def test_classify_sends_the_next_version_of_the_same_epoch():
    assert classify(Position(4, "A"), Arrived(5)) is Verdict.SEND


@pytest.mark.parametrize("version", [1, 3, 4])
def test_classify_drops_an_older_or_equal_version_of_the_same_epoch_as_a_duplicate(version):
    assert classify(Position(4, "A"), Arrived(version)) is Verdict.DUPLICATE


@pytest.mark.parametrize("version", [6, 7, 100, RESTORED])
def test_classify_sees_a_version_that_jumps_as_a_gap(version):
    assert classify(Position(4, "A"), Arrived(version)) is Verdict.GAP


@pytest.mark.parametrize("version", [1, 4, 5])
def test_classify_sees_any_version_of_another_epoch_as_a_gap(version):
    # Even version 5 (next in number) or 4 (equal): another incarnation's
    # versions are not comparable with this one's.
    assert classify(Position(4, "A"), Arrived(version, "B")) is Verdict.GAP


def test_classify_sends_version_one_of_any_epoch_when_nothing_was_sent():
    assert classify(Position(), Arrived(1, "B")) is Verdict.SEND
    assert classify(Position(), Arrived(2, "B")) is Verdict.GAP


def test_classify_after_held_changes_were_forgotten_sees_only_gaps():
    for version in (1, 2, 5):  # 0 is no change's version (a deletion's only)
        assert classify(Position(FORGOTTEN, "A"), Arrived(version)) is Verdict.GAP


def test_classify_delivers_a_deletion_whatever_the_position_or_token():
    for position in (Position(), Position(4, "A"), Position(FORGOTTEN, "A")):
        assert classify(position, deletion()) is Verdict.DELETED
        assert classify(position, deletion(), token_epoch="A") is Verdict.DELETED


def test_classify_refuses_a_change_of_another_incarnation_than_the_tokens():
    assert classify(Position(4, "A"), Arrived(5, "B"), token_epoch="A") is Verdict.REFUSED
    assert classify(Position(), Arrived(1, "B"), token_epoch="A") is Verdict.REFUSED
    # Before the duplicate check: an old copy of another incarnation is refused too.
    assert classify(Position(4, "B"), Arrived(3, "B"), token_epoch="A") is Verdict.REFUSED


def test_classify_with_a_matching_token_judges_as_without_one():
    assert classify(Position(4, "A"), Arrived(5), token_epoch="A") is Verdict.SEND
    assert classify(Position(4, "A"), Arrived(4), token_epoch="A") is Verdict.DUPLICATE


@pytest.mark.parametrize(
    ("token_epoch", "epoch", "refused"),
    [(None, "A", False), ("A", "A", False), ("A", "", False), ("A", "B", True), ("", "B", True)],
)
def test_refuses_epoch(token_epoch, epoch, refused):
    assert refuses_epoch(token_epoch, epoch) is refused


# ---------------------------------------------------------------- read_from, replay_fits


@pytest.mark.parametrize(
    ("since", "full", "expected"),
    [
        (7, False, 7),
        (0, False, 0),
        (-3, False, 0),
        (7, True, 0),
        (MAX_VERSION, False, MAX_VERSION),
        (MAX_VERSION + 1, False, MAX_VERSION),
        (10**30, False, MAX_VERSION),
        (2**64, False, MAX_VERSION),
    ],
)
def test_read_from_clamps_a_claimed_version_and_reads_everything_for_a_full_sync(
    since, full, expected
):
    assert read_from(since, full) == expected
    assert RepairRequest(since, None, full).read_from == expected


@pytest.mark.parametrize(
    ("since", "version", "size", "budget", "fits"),
    [
        (1, 10, 1_000, None, True),
        (1, 10, 1_000, 9_000, True),  # exactly the budget
        (1, 10, 1_000, 8_999, False),
        (9, 10, 350_000, 1_048_576, True),  # a 350 KB session replays 2 versions at most
        (7, 10, 350_000, 1_048_576, False),
        (10, 10, 350_000, 0, True),  # nothing missed weighs nothing
        (12, 10, 350_000, 0, True),
        (5, RESTORED, 2_000, 1_048_576, False),
    ],
)
def test_replay_fits_estimates_missed_versions_times_the_state_size(
    since, version, size, budget, fits
):
    assert replay_fits(since, version, size, budget) is fits


# ---------------------------------------------------------------- plan_repair


def _plan(
    since: int,
    read: HistorySlice,
    epoch: str | None = "A",
    *,
    full: bool = False,
    budget: int | None = None,
    token: str | None = None,
) -> Plan:
    return plan_repair(
        RepairRequest(since, epoch, full), read, replay_max_bytes=budget, token_epoch=token
    )


def test_plan_replays_every_missed_version_the_history_holds():
    plan = _plan(3, history(7, changes=range(4, 8)))
    assert plan == Replay(7, "A", [entry(v) for v in range(4, 8)])
    assert (plan.recovered, plan.replayed) == (True, 4)


def test_plan_for_a_client_already_current_replays_nothing():
    plan = _plan(7, history(7))
    assert plan == Replay(7, "A", [])
    assert (plan.recovered, plan.replayed) == (True, 0)


def test_plan_sends_the_state_when_the_history_is_shorter_than_the_gap():
    plan = _plan(3, history(70, changes=range(21, 71)))  # keeps the last 50
    assert plan == FullSync(70, "A", STATE)
    assert (plan.recovered, plan.replayed) == (False, 0)


def test_plan_sends_the_state_when_the_store_read_no_history():
    # What RedisStore answers when the replay is over budget: the state alone.
    assert _plan(3, history(7)) == FullSync(7, "A", STATE)


def test_plan_sends_the_state_when_the_history_stops_short_of_the_state():
    assert _plan(3, history(7, changes=range(4, 7))) == FullSync(7, "A", STATE)


def test_plan_sends_the_state_over_the_replay_budget_even_with_the_history_read():
    read = history(7, changes=range(4, 8), state=b"s" * 1_000)
    assert _plan(3, read, budget=3_999) == FullSync(7, "A", b"s" * 1_000)
    assert isinstance(_plan(3, read, budget=4_000), Replay)
    assert isinstance(_plan(3, read, budget=None), Replay)


@pytest.mark.parametrize("client_epoch", ["B", "0000000000000000"])
def test_plan_sends_the_state_to_a_client_of_another_epoch(client_epoch):
    assert _plan(3, history(7, changes=range(4, 8)), client_epoch) == FullSync(7, "A", STATE)
    assert _plan(7, history(7), client_epoch) == FullSync(7, "A", STATE)


@pytest.mark.parametrize("client_epoch", [None, ""])
def test_plan_does_not_check_an_absent_epoch(client_epoch):
    assert isinstance(_plan(3, history(7, changes=range(4, 8)), client_epoch), Replay)


def test_plan_sends_the_state_when_asked_for_a_full_sync_even_if_current():
    assert _plan(7, history(7), full=True) == FullSync(7, "A", STATE)
    assert _plan(3, history(7, changes=range(4, 8)), full=True) == FullSync(7, "A", STATE)


@pytest.mark.parametrize("since", [0, -1, -2])
def test_plan_sends_the_state_to_a_client_without_a_usable_version(since):
    assert _plan(since, history(7, changes=range(1, 8))) == FullSync(7, "A", STATE)


@pytest.mark.parametrize("since", [8, MAX_VERSION, 2**64, 10**30])
def test_plan_sends_the_state_to_a_client_claiming_a_future_version(since):
    assert _plan(since, history(7)) == FullSync(7, "A", STATE)


def test_plan_after_a_restore_jumped_the_version_sends_the_state():
    # Redis lost the session; the restore kept the epoch, wrote one change at
    # ~1.8e15 and the history starts there: versions 6..RESTORED-1 never existed.
    read = history(RESTORED, changes=[RESTORED])
    assert _plan(5, read) == FullSync(RESTORED, "A", STATE)
    assert _plan(5, read, budget=1_048_576) == FullSync(RESTORED, "A", STATE)
    # A client already at the restored version is current.
    assert _plan(RESTORED, history(RESTORED)) == Replay(RESTORED, "A", [])


def test_plan_after_a_restore_replays_later_changes_above_the_jump():
    read = history(RESTORED + 2, changes=[RESTORED + 1, RESTORED + 2])  # read after RESTORED
    plan = _plan(RESTORED, read)
    assert plan == Replay(RESTORED + 2, "A", [entry(RESTORED + 1), entry(RESTORED + 2)])


def test_plan_for_a_deleted_or_unknown_session_is_missing():
    for kwargs in ({}, {"full": True}, {"token": "B"}, {"budget": 0}):
        plan = _plan(7, GONE, **kwargs)
        assert plan == Missing()
        assert (plan.recovered, plan.replayed) == (False, 0)


def test_plan_refuses_another_incarnation_than_the_tokens_before_sending_anything():
    assert _plan(3, history(7, "B", changes=range(4, 8)), "B", token="A") == Refused("B")
    assert _plan(0, history(7, "B"), None, full=True, token="A") == Refused("B")
    assert isinstance(_plan(3, history(7, changes=range(4, 8)), token="A"), Replay)


# ---------------------------------------------------------------- VersionFilter: changes


def test_a_new_filter_holds_changes_until_its_first_sync():
    f: VersionFilter[Arrived] = VersionFilter(max_pending=10)
    assert f.buffering and f.position == Position() and f.missing
    assert f.receive(Arrived(3)) is Verdict.HELD
    assert f.pending == [Arrived(3)] and f.version == 0


def test_a_live_filter_sends_the_next_version_and_moves_its_position():
    f = live(4)
    assert f.receive(Arrived(5)) is Verdict.SEND
    assert f.position == Position(5, "A") and f.pending == []


def test_a_live_filter_drops_duplicates_without_moving():
    f = live(4)
    for version in (2, 4):
        assert f.receive(Arrived(version)) is Verdict.DUPLICATE
    assert f.position == Position(4, "A") and not f.buffering


def test_a_gap_holds_the_change_and_every_later_one_until_a_repair():
    f = live(4)
    assert f.receive(Arrived(6)) is Verdict.GAP
    assert f.buffering and f.pending == [Arrived(6)]
    assert f.receive(Arrived(7)) is Verdict.HELD
    assert f.receive(Arrived(5)) is Verdict.HELD  # late: held too, sorted at the end
    assert f.position == Position(4, "A")


def test_a_deletion_is_delivered_by_a_live_filter_and_held_during_a_repair():
    assert live(4).receive(deletion()) is Verdict.DELETED
    f = live(4)
    f.begin_repair()
    assert f.receive(deletion()) is Verdict.HELD
    f.complete_repair(RepairRequest(4, "A", False), GONE)
    assert f.end_repair() == [(deletion(), Verdict.DELETED)]


def test_a_token_for_another_incarnation_refuses_its_changes():
    f = live(4)
    f.token_epoch = "A"
    assert f.receive(Arrived(1, "B")) is Verdict.REFUSED
    assert f.position == Position(4, "A") and not f.buffering


def test_held_changes_beyond_the_count_bound_are_forgotten():
    f: VersionFilter[Arrived] = VersionFilter(max_pending=3)
    for version in (1, 2, 3):
        f.receive(Arrived(version))
    assert len(f.pending) == 3 and f.version == 0
    f.receive(Arrived(4))
    assert f.pending == [] and f.pending_bytes == 0 and f.version == FORGOTTEN


def test_held_changes_beyond_the_byte_bound_are_forgotten():
    # As tests/test_bounded_memory.py does through a SocketConnection.
    f: VersionFilter[Arrived] = VersionFilter(max_pending=1_024, max_pending_bytes=100_000)
    for version in (1, 2, 3):
        f.receive(Arrived(version, text="x" * 30_000))
    assert f.pending_bytes == 90_000
    f.receive(Arrived(4, text="x" * 30_000))
    assert f.pending == [] and f.pending_bytes == 0 and f.version == FORGOTTEN


def test_forgotten_changes_end_in_a_full_sync():
    f = live(4, max_pending=2)
    f.receive(Arrived(6))  # GAP
    f.receive(Arrived(7))
    f.receive(Arrived(8))  # over the bound: forgotten
    assert f.position == Position(FORGOTTEN, "A")
    request = f.begin_repair()
    assert request == RepairRequest(FORGOTTEN, "A", True) and request.read_from == 0
    plan = f.complete_repair(request, history(9, changes=range(1, 10)))
    assert plan == FullSync(9, "A", STATE)
    assert f.position == Position(9, "A")


def test_changes_forgotten_after_a_repairs_read_wait_for_the_next_change():
    """A known limitation, kept as it was: the repair's state predates them.

    The repair still sends the state it read; the forgotten changes are
    caught up by the repair the next change's gap starts (or a pub/sub
    re-subscription's), not at once.
    """
    f = live(4, max_pending=1)
    f.receive(Arrived(6))  # GAP: 5 is missing
    request = f.begin_repair()
    read = history(5, changes=[5])  # the store read, at version 5
    f.receive(Arrived(7))  # arrive after the read: over the bound, forgotten
    assert f.position == Position(FORGOTTEN, "A") and f.pending == []
    assert f.complete_repair(request, read) == Replay(5, "A", [entry(5)])
    assert f.end_repair() == [] and not f.buffering and f.position == Position(5, "A")
    assert f.receive(Arrived(8)) is Verdict.GAP  # 6 and 7 are caught up from here


def test_forget_pending_drops_the_held_changes_only():
    f: VersionFilter[Arrived] = VersionFilter(max_pending=10)
    f.receive(Arrived(1))
    f.forget_pending()
    assert f.pending == [] and f.pending_bytes == 0 and f.buffering and f.version == 0


# ---------------------------------------------------------------- VersionFilter: repairs


def test_the_first_sync_sends_the_state_then_only_newer_held_changes():
    f: VersionFilter[Arrived] = VersionFilter(max_pending=10)
    f.receive(Arrived(5))  # committed while the socket connected: in the state too
    request = f.begin_repair(0, None, full=True)
    assert request.read_from == 0
    f.receive(Arrived(6))  # committed after the read
    assert f.complete_repair(request, history(5)) == FullSync(5, "A", STATE)
    assert f.end_repair() == [(Arrived(5), Verdict.DUPLICATE), (Arrived(6), Verdict.SEND)]
    assert f.position == Position(6, "A") and not f.buffering


def test_the_first_sync_of_a_session_that_does_not_exist_yet_waits_for_its_creation():
    f: VersionFilter[Arrived] = VersionFilter(max_pending=10)
    plan = f.complete_repair(f.begin_repair(0, None, full=True), GONE)
    assert plan == Missing() and f.missing and f.end_repair() == []
    assert f.receive(Arrived(1, "N")) is Verdict.SEND  # session_created, any epoch
    assert f.position == Position(1, "N")


def test_out_of_order_arrivals_during_a_repair_are_sent_in_version_order():
    f = live(4)
    request = f.begin_repair(4, "A")
    for version in (8, 6, 7):
        assert f.receive(Arrived(version)) is Verdict.HELD
    assert f.complete_repair(request, history(5, changes=[5])) == Replay(5, "A", [entry(5)])
    assert f.end_repair() == [
        (Arrived(6), Verdict.SEND),
        (Arrived(7), Verdict.SEND),
        (Arrived(8), Verdict.SEND),
    ]
    assert f.position == Position(8, "A")


def test_duplicates_held_during_a_repair_are_dropped_once_it_ends():
    f = live(4)
    request = f.begin_repair(4, "A")
    for version in (5, 6, 6, 5):
        f.receive(Arrived(version))
    f.complete_repair(request, history(6, changes=[5, 6]))
    assert [verdict for _, verdict in f.end_repair()] == [Verdict.DUPLICATE] * 4
    assert f.position == Position(6, "A")


def test_a_gap_among_held_changes_holds_the_rest_for_the_next_repair():
    f = live(4)
    request = f.begin_repair(4, "A")
    for version in (10, 6, 9):
        f.receive(Arrived(version))
    f.complete_repair(request, history(5, changes=[5]))
    assert f.end_repair() == [
        (Arrived(6), Verdict.SEND),
        (Arrived(9), Verdict.GAP),
        (Arrived(10), Verdict.HELD),
    ]
    assert f.buffering and f.pending == [Arrived(9), Arrived(10)]
    assert f.position == Position(6, "A")


def test_a_background_repair_starts_from_the_filters_own_position():
    f = live(4)
    f.receive(Arrived(7))  # GAP: 5 and 6 were lost
    request = f.begin_repair()
    assert request == RepairRequest(4, "A", False) and request.read_from == 4
    plan = f.complete_repair(request, history(7, changes=range(5, 8)))
    assert plan == Replay(7, "A", [entry(5), entry(6), entry(7)])
    assert f.end_repair() == [(Arrived(7), Verdict.DUPLICATE)]
    assert f.position == Position(7, "A") and not f.buffering


def test_a_background_repair_with_nothing_sent_is_a_full_sync():
    f: VersionFilter[Arrived] = VersionFilter(max_pending=10)
    assert f.begin_repair() == RepairRequest(0, "", True)


def test_an_epoch_change_ends_in_a_state_sync_of_the_new_incarnation():
    f = live(7)
    assert f.receive(Arrived(1, "B")) is Verdict.GAP  # deleted and created again
    f.receive(Arrived(2, "B"))
    request = f.begin_repair()
    assert request == RepairRequest(7, "A", False)
    plan = f.complete_repair(request, history(2, "B", changes=[1, 2]))
    assert plan == FullSync(2, "B", STATE)
    assert f.end_repair() == [
        (Arrived(1, "B"), Verdict.DUPLICATE),
        (Arrived(2, "B"), Verdict.DUPLICATE),
    ]
    assert f.position == Position(2, "B")
    assert f.receive(Arrived(3, "B")) is Verdict.SEND


def test_a_restore_jump_ends_in_a_state_sync_then_flows_from_the_new_version():
    f = live(5)
    assert f.receive(Arrived(RESTORED)) is Verdict.GAP
    request = f.begin_repair()
    plan = f.complete_repair(request, history(RESTORED, changes=[RESTORED]), 1_048_576)
    assert plan == FullSync(RESTORED, "A", STATE)
    assert f.end_repair() == [(Arrived(RESTORED), Verdict.DUPLICATE)]
    assert f.receive(Arrived(RESTORED + 1)) is Verdict.SEND


def test_a_repair_that_finds_the_session_deleted_forgets_the_position():
    f = live(7)
    f.receive(Arrived(9))
    plan = f.complete_repair(f.begin_repair(), GONE)
    assert plan == Missing() and f.position == Position() and f.missing
    # The held change of the old incarnation is not the next of "nothing".
    assert f.end_repair() == [(Arrived(9), Verdict.GAP)]


def test_a_refused_repair_leaves_the_position():
    f = live(4)
    f.token_epoch = "A"
    plan = f.complete_repair(f.begin_repair(), history(1, "B"))
    assert plan == Refused("B") and f.position == Position(4, "A")


def test_a_failed_repair_still_releases_the_held_changes():
    f = live(4)
    f.begin_repair()
    f.receive(Arrived(5))
    f.receive(Arrived(6))
    # The store read raised: no complete_repair, but end_repair runs.
    assert f.end_repair() == [(Arrived(5), Verdict.SEND), (Arrived(6), Verdict.SEND)]
    assert not f.buffering


def test_request_repair_holds_changes_and_remembers_a_full_request_once():
    f = live(4)
    f.request_repair()
    assert f.buffering and f.take_full_request() is False
    f.request_repair(full=True)
    f.request_repair(full=False)  # does not cancel the full request
    assert f.take_full_request() is True
    assert f.take_full_request() is False
    assert f.receive(Arrived(5)) is Verdict.HELD


def test_a_full_repair_of_a_current_client_sends_the_state_again():
    f = live(4)
    f.request_repair(full=True)
    request = f.begin_repair(full=f.take_full_request())
    assert request == RepairRequest(4, "A", True)
    assert f.complete_repair(request, history(4)) == FullSync(4, "A", STATE)


# ---------------------------------------------------------------- RECONNECT_ACK


def test_the_ack_of_a_replay_names_what_was_replayed_and_the_position_after_the_flush():
    f = live(9)  # the greeting STATE_SYNC was at 9; the client knows 6
    request = f.begin_repair(6, "A")
    f.receive(Arrived(10))
    plan = f.complete_repair(request, history(9, changes=[7, 8, 9]))
    f.end_repair()
    assert f.ack(plan) == ReconnectAck(True, 3, 10, "A")


def test_the_ack_of_a_state_sync_is_not_recovered():
    f = live(9)
    plan = f.complete_repair(f.begin_repair(1, "A"), history(9, changes=range(5, 10)))
    f.end_repair()
    assert f.ack(plan) == ReconnectAck(False, 0, 9, "A")


def test_the_ack_for_a_session_that_does_not_exist_is_version_zero():
    f: VersionFilter[Arrived] = VersionFilter(max_pending=10)
    plan = f.complete_repair(f.begin_repair(3, "A"), GONE)
    f.end_repair()
    assert f.ack(plan) == ReconnectAck(False, 0, 0, "")


# ---------------------------------------------------------------- Sans-I/O


def test_the_resume_module_imports_nothing_that_does_io():
    tree = ast.parse(inspect.getsource(resume))
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "enum", "typing", "msgspec", "synckairos.store"}


# ---------------------------------------------------------------- property


@dataclass
class World:
    """A session's commits, its bounded history, and one subscriber's filter and screen."""

    keep: int
    budget: int | None
    max_pending: int
    committed: int = 0
    delivered: list[int] = field(default_factory=list)
    sent: list[tuple[str, int]] = field(default_factory=list)
    request: RepairRequest | None = None
    slice: HistorySlice | None = None
    repair_due: bool = True  # the first sync
    lost_after_read: bool = False

    def __post_init__(self) -> None:
        self.filter: VersionFilter[Arrived] = VersionFilter(max_pending=self.max_pending)

    def read(self, request: RepairRequest) -> HistorySlice:
        if self.committed == 0:
            return GONE
        since = request.read_from
        first = max(since + 1, self.committed - self.keep + 1, 1)
        return history(self.committed, changes=range(first, self.committed + 1), state=b"s" * 10)

    def act(self, arrival: Arrived, verdict: Verdict) -> None:
        if verdict is Verdict.SEND:
            self.sent.append(("update", arrival.version))
        elif verdict is Verdict.GAP:
            self.repair_due = True

    def deliver(self, version: int) -> None:
        self.delivered.append(version)
        verdict = self.filter.receive(Arrived(version))
        if verdict is Verdict.HELD and not self.filter.pending and self.slice is not None:
            # Forgotten after the repair's read: see
            # test_changes_forgotten_after_a_repairs_read_wait_for_the_next_change.
            self.lost_after_read = True
        self.act(Arrived(version), verdict)

    def begin(self) -> None:
        if self.request is None and self.repair_due:
            self.repair_due = False
            first = not self.sent and self.filter.version <= 0
            since = 0 if first else None
            self.request = self.filter.begin_repair(since, None, full=first)

    def read_store(self) -> None:
        if self.request is not None and self.slice is None:
            self.slice = self.read(self.request)

    def finish(self) -> None:
        if self.request is None:
            return
        self.read_store()
        assert self.slice is not None
        plan = self.filter.complete_repair(self.request, self.slice, self.budget)
        self.request = self.slice = None
        if isinstance(plan, Replay):
            self.sent += [("update", version) for version, _ in plan.changes]
        elif isinstance(plan, FullSync):
            self.sent.append(("sync", plan.version))
        for arrival, verdict in self.filter.end_repair():
            self.act(arrival, verdict)


STEPS = st.lists(
    st.sampled_from(
        ["commit", "commit", "commit", "lose", "duplicate", "swap", "begin", "read", "finish"]
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    steps=STEPS,
    keep=st.integers(1, 8),
    budget=st.sampled_from([None, 30, 1_000]),
    max_pending=st.integers(1, 6),
)
def test_whatever_arrives_the_subscriber_sees_every_version_once_in_order(
    steps, keep, budget, max_pending
):
    world = World(keep, budget, max_pending)
    for step in steps:
        if step in ("commit", "lose"):
            world.committed += 1
            if step == "commit":
                world.deliver(world.committed)
            else:
                world.filter.request_repair()  # pub/sub re-subscribed after a loss
                world.repair_due = True
        elif step == "duplicate" and world.delivered:
            world.deliver(world.delivered[-1])
        elif step == "swap":  # two commits arrive in reverse order
            world.committed += 2
            world.deliver(world.committed)
            world.deliver(world.committed - 1)
        elif step == "read":
            world.read_store()
        elif step == "begin":
            world.begin()
        elif step == "finish":
            world.finish()
    if world.lost_after_read:
        world.filter.request_repair()  # what the next change or a re-subscription does
        world.repair_due = True
    # Let every due repair run to the end.
    for _ in range(10):
        world.begin()
        world.finish()
    versions = [version for _, version in world.sent]
    assert versions == sorted(set(versions)), world.sent  # increasing, no duplicate
    for (_, before), (kind, version) in zip(world.sent, world.sent[1:], strict=False):
        assert kind == "sync" or version == before + 1, world.sent  # no gap
    assert world.filter.version == world.committed
    assert (versions[-1] if versions else 0) == world.committed
    assert world.filter.pending == [] and not world.filter.buffering
