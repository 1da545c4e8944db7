// Display helpers: pure functions of a state and the server's time.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  elapsedMs,
  isRunning,
  msUntilNextChange,
  remainingMs,
  snapshot,
  turnElapsedMs,
  backoffDelay,
} from '../src/index.js';

const T0 = 1_800_000_000_000;
const A = '00000000-0000-4000-8000-00000000000a';
const B = '00000000-0000-4000-8000-00000000000b';
const C = '00000000-0000-4000-8000-00000000000c';

/**
 * A state shaped like the server's.
 *
 * @param {Partial<import('../src/index.js').SyncState>} fields
 * @param {Array<Partial<import('../src/index.js').Participant>>} [people]
 * @returns {import('../src/index.js').SyncState}
 */
function state(fields, people) {
  const participants = (people ?? [{ participant_id: A }, { participant_id: B }]).map((p, i) => ({
    participant_id: A,
    participant_index: i,
    total_time_ms: 60_000,
    time_used_ms: 0,
    time_remaining_ms: 60_000,
    cycle_count: 0,
    is_active: false,
    has_expired: false,
    // group_id is absent when unset (the server omits it, as the Node.js server does)
    ...p,
  }));
  return {
    session_id: '00000000-0000-4000-8000-000000000001',
    sync_mode: 'per_participant',
    status: 'running',
    version: 2,
    participants,
    active_participant_id: A,
    total_time_ms: 60_000,
    time_per_cycle_ms: null,
    cycle_started_at: new Date(T0).toISOString(),
    session_started_at: new Date(T0).toISOString(),
    session_completed_at: null,
    increment_ms: 0,
    // max_time_ms is absent when unset
    created_at: new Date(T0).toISOString(),
    updated_at: new Date(T0).toISOString(),
    server_time_ms: T0,
    deadline_ms: T0 + 60_000,
    cycle_started_ms: T0,
    turn_used_ms: 0,
    ...fields,
  };
}

describe('per_participant (chess clock)', () => {
  const s = state({}, [
    { participant_id: A, is_active: true },
    { participant_id: B, time_remaining_ms: 42_000, time_used_ms: 18_000 },
  ]);

  test('only the active bank drains, computed from the cycle start', () => {
    assert.equal(isRunning(s), true);
    assert.equal(remainingMs(s, T0 + 1_500, A), 58_500);
    assert.equal(remainingMs(s, T0 + 1_500, B), 42_000);
    assert.equal(remainingMs(s, T0 + 1_500), 58_500);
    assert.equal(elapsedMs(s, T0 + 1_500, A), 1_500);
    assert.equal(elapsedMs(s, T0 + 1_500, B), 18_000);
    assert.equal(turnElapsedMs(s, T0 + 1_500), 1_500);
  });

  test('values stop at the deadline and never go negative', () => {
    assert.equal(remainingMs(s, T0 + 90_000, A), 0);
    assert.equal(remainingMs(s, T0 + 90_000), 0);
    assert.equal(elapsedMs(s, T0 + 90_000, A), 60_000);
  });

  test('a clock read before the cycle start shows the full bank', () => {
    assert.equal(remainingMs(s, T0 - 50, A), 60_000);
  });

  test('paused: nothing moves', () => {
    const paused = state(
      { status: 'paused', deadline_ms: null, cycle_started_ms: null, cycle_started_at: null },
      [{ participant_id: A, is_active: true, time_remaining_ms: 50_000 }, { participant_id: B }],
    );
    assert.equal(isRunning(paused), false);
    assert.equal(remainingMs(paused, T0 + 99_999, A), 50_000);
    assert.equal(remainingMs(paused, T0 + 99_999), 50_000);
    assert.equal(msUntilNextChange(paused, T0), Infinity);
  });

  test('an unknown participant is a RangeError', () => {
    assert.throws(() => remainingMs(s, T0, C), RangeError);
  });

  test('cycle_started_at is used when the extension field is missing', () => {
    const reference = state({ cycle_started_ms: undefined, deadline_ms: undefined }, [
      { participant_id: A, is_active: true },
      { participant_id: B },
    ]);
    assert.equal(remainingMs(reference, T0 + 2_000, A), 58_000);
    assert.equal(remainingMs(reference, T0 + 2_000), 58_000);
  });
});

describe('other modes', () => {
  test('per_group: the active group shares one draining bank', () => {
    const s = state({ sync_mode: 'per_group' }, [
      { participant_id: A, is_active: true, group_id: 'g1' },
      { participant_id: B, group_id: 'g2' },
      { participant_id: C, group_id: 'g1' },
    ]);
    assert.equal(remainingMs(s, T0 + 1_000, C), 59_000);
    assert.equal(remainingMs(s, T0 + 1_000, B), 60_000);
    assert.equal(elapsedMs(s, T0 + 1_000, C), 0);
  });

  test('global with a turn limit: the running timer is the nearer of bank and turn', () => {
    const s = state(
      { sync_mode: 'global', time_per_cycle_ms: 10_000, turn_used_ms: 0, deadline_ms: T0 + 10_000 },
      [
        { participant_id: A, is_active: true, time_remaining_ms: 300_000 },
        { participant_id: B, time_remaining_ms: 300_000, time_used_ms: 5_000 },
      ],
    );
    assert.equal(remainingMs(s, T0 + 4_000), 6_000);
    assert.equal(remainingMs(s, T0 + 4_000, B), 296_000, 'the session bank drains for all');
    assert.equal(elapsedMs(s, T0 + 4_000), 9_000, 'global: the session has used 5 s + 4 s');
  });

  test('global exam, not started yet: the whole budget', () => {
    const s = state(
      {
        sync_mode: 'global',
        status: 'pending',
        active_participant_id: null,
        deadline_ms: null,
        cycle_started_ms: null,
        cycle_started_at: null,
      },
      [{ participant_id: A, time_remaining_ms: 5_400_000 }],
    );
    assert.equal(remainingMs(s, T0), 5_400_000);
    assert.equal(elapsedMs(s, T0), 0);
  });

  test('count_up without a cap: a stopwatch with no remaining time', () => {
    const s = state(
      { sync_mode: 'count_up', deadline_ms: null, banks: { session: { budget_ms: 0, remaining_ms: 0, used_ms: 7_000, increments_ms: 0 } } },
      [{ participant_id: A, is_active: true, time_used_ms: 7_000, time_remaining_ms: 0 }],
    );
    assert.equal(remainingMs(s, T0 + 500), null);
    assert.equal(elapsedMs(s, T0 + 500), 7_500);
    assert.equal(msUntilNextChange(s, T0 + 500, 1_000), 500);
    assert.equal(snapshot(s, T0 + 500).participants[0].remainingMs, null);
  });

  test('count_up without a cap from an older server (max_time_ms: null, group_id: null) reads the same', () => {
    const s = state(
      { sync_mode: 'count_up', max_time_ms: null, deadline_ms: null, banks: { session: { budget_ms: 0, remaining_ms: 0, used_ms: 7_000, increments_ms: 0 } } },
      [{ participant_id: A, is_active: true, time_used_ms: 7_000, time_remaining_ms: 0, group_id: null }],
    );
    assert.equal(remainingMs(s, T0 + 500), null);
    assert.equal(elapsedMs(s, T0 + 500), 7_500);
  });

  test('a notify timeout leaves the session running with the timer stopped', () => {
    const s = state({ deadline_ms: null }, [
      { participant_id: A, is_active: true, has_expired: true, time_remaining_ms: 0 },
      { participant_id: B },
    ]);
    assert.equal(isRunning(s), false);
    assert.equal(remainingMs(s, T0 + 5_000, A), 0);
  });
});

describe('repainting', () => {
  test('msUntilNextChange points at the next displayed second of a countdown', () => {
    const s = state({}, [{ participant_id: A, is_active: true }, { participant_id: B }]);
    // 58,700 ms left shows "59 s" until 58,000 ms are left: 700 ms from now.
    assert.equal(msUntilNextChange(s, T0 + 1_300, 1_000), 700);
    assert.equal(msUntilNextChange(s, T0 + 1_000, 1_000), 1_000);
    assert.equal(msUntilNextChange(s, T0 + 60_000, 1_000), Infinity);
  });

  test('snapshot gathers every value for one frame', () => {
    const s = state({}, [{ participant_id: A, is_active: true }, { participant_id: B }]);
    const snap = snapshot(s, T0 + 250);
    assert.equal(snap.remainingMs, 59_750);
    assert.equal(snap.isRunning, true);
    assert.deepEqual(
      snap.participants.map((p) => [p.participantId, p.remainingMs, p.isActive]),
      [
        [A, 59_750, true],
        [B, 60_000, false],
      ],
    );
  });
});

describe('reconnection backoff', () => {
  const options = { initialDelayMs: 100, maxDelayMs: 1_000, factor: 2, jitter: 0.5 };

  test('grows exponentially up to the cap', () => {
    const delays = [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, options, () => 0));
    assert.deepEqual(delays, [100, 200, 400, 800, 1_000, 1_000]);
  });

  test('jitter removes at most its fraction, never adds', () => {
    assert.equal(backoffDelay(3, options, () => 0.999999), 200);
    for (let i = 0; i < 100; i += 1) {
      const d = backoffDelay(10, options);
      assert.ok(d >= 500 && d <= 1_000, String(d));
    }
  });
});
