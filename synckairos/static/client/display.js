// What a screen shows, computed from a state and the server's time (pure).
//
// "Calculate, don't count": every value is a function of the last committed
// state (`time_remaining_ms` and `time_used_ms` as of `cycle_started_ms`,
// `deadline_ms`) and `serverNowMs` from a synced clock. Nothing is decremented
// locally, so a value computed on any frame, after any pause of the page, on any
// device, is the same.
//
// Time runs only for the active participant, and only while the session is
// `running`, the active participant has not expired, and the timer has not
// reached `deadline_ms` (the server commits the timeout; until it arrives the
// values stay at zero rather than going negative).

/** @import { Participant, SyncState, SyncMode } from './types.js' */
/** @import { DisplaySnapshot } from './index.js' */

/**
 * The active participant, or null.
 *
 * @param {SyncState} state
 * @returns {Participant | null}
 */
export function activeParticipant(state) {
  const id = state.active_participant_id;
  if (id == null) return null;
  return state.participants.find((p) => p.participant_id === id) ?? null;
}

/**
 * Start of the running turn, epoch ms (server clock), or null.
 *
 * @param {SyncState} state
 * @returns {number | null}
 */
export function cycleStartedMs(state) {
  if (state.cycle_started_ms != null) return state.cycle_started_ms;
  if (state.cycle_started_at == null) return null;
  const parsed = Date.parse(state.cycle_started_at);
  return Number.isNaN(parsed) ? null : parsed;
}

/**
 * True while a timer runs: status `running`, a turn started, and its
 * participant not expired (a `notify` timeout leaves the session running with
 * the timer stopped at zero).
 *
 * @param {SyncState} state
 * @returns {boolean}
 */
export function isRunning(state) {
  if (state.status !== 'running' || cycleStartedMs(state) == null) return false;
  const active = activeParticipant(state);
  return active !== null && !active.has_expired;
}

/**
 * Time the running turn has used since `cycle_started_ms`, stopped at
 * `deadline_ms`; 0 when no timer runs.
 *
 * @param {SyncState} state
 * @param {number} serverNowMs
 * @returns {number}
 */
export function liveElapsedMs(state, serverNowMs) {
  if (!isRunning(state)) return 0;
  const start = /** @type {number} */ (cycleStartedMs(state));
  const end = state.deadline_ms != null ? Math.min(serverNowMs, state.deadline_ms) : serverNowMs;
  return Math.max(0, end - start);
}

/**
 * @param {SyncMode} mode
 * @param {Participant} p
 * @param {Participant} active
 */
function sharesBank(mode, p, active) {
  if (p.participant_id === active.participant_id) return true;
  if (mode === 'global' || mode === 'count_up') return true;
  if (mode === 'per_group') return p.group_id != null && p.group_id === active.group_id;
  return false;
}

/**
 * @param {SyncState} state
 * @param {string} participantId
 * @returns {Participant}
 */
function participant(state, participantId) {
  const found = state.participants.find((p) => p.participant_id === participantId);
  if (found === undefined) {
    throw new RangeError(`unknown participant ${participantId} in session ${state.session_id}`);
  }
  return found;
}

/** @param {SyncState} state */
function uncappedCountUp(state) {
  return state.sync_mode === 'count_up' && state.max_time_ms == null;
}

/**
 * Time left in the turn as of the last change (no live part): the smaller of
 * the active participant's bank and the turn limit.
 *
 * @param {SyncState} state
 * @returns {number | null}
 */
function staticTimeLeft(state) {
  const active = activeParticipant(state) ?? firstParticipant(state);
  if (active === null || uncappedCountUp(state)) return null;
  let left = active.time_remaining_ms;
  const limit = state.time_per_cycle_ms;
  if (state.sync_mode === 'global' && limit != null && state.active_participant_id != null) {
    left = Math.min(left, limit - (state.turn_used_ms ?? 0));
  }
  return Math.max(0, left);
}

/** @param {SyncState} state */
function firstParticipant(state) {
  let first = null;
  for (const p of state.participants) {
    if (first === null || p.participant_index < first.participant_index) first = p;
  }
  return first;
}

/**
 * Milliseconds left, never negative.
 *
 * Without `participantId`: the running timer (`deadline_ms - now`, turn limit
 * included), or while nothing runs, what it would start from (the active
 * participant's, or before the start the first participant's, time left).
 * With `participantId`: that participant's bank (per_cycle: its turn budget),
 * draining while its bank is the active one (its own; its group's in
 * per_group; the session's in global and count_up).
 * Null when nothing limits the time (count_up without `max_time_ms`).
 *
 * @param {SyncState} state
 * @param {number} serverNowMs
 * @param {string} [participantId]
 * @returns {number | null}
 */
export function remainingMs(state, serverNowMs, participantId) {
  if (uncappedCountUp(state)) return null;
  const running = isRunning(state);
  if (participantId == null) {
    if (running && state.deadline_ms != null) return Math.max(0, state.deadline_ms - serverNowMs);
    const left = staticTimeLeft(state);
    return left === null ? null : Math.max(0, left - liveElapsedMs(state, serverNowMs));
  }
  const p = participant(state, participantId);
  const active = activeParticipant(state);
  const draining = running && active !== null && sharesBank(state.sync_mode, p, active);
  const live = draining ? liveElapsedMs(state, serverNowMs) : 0;
  return Math.max(0, p.time_remaining_ms - live);
}

/**
 * Milliseconds used.
 *
 * With `participantId`: that participant's `time_used_ms`, growing while it is
 * active and running. Without: the session's running clock; in `global` and
 * `count_up` the whole session's time used (a stopwatch, an exam), in the other
 * modes the current turn's (`turnElapsedMs`).
 *
 * @param {SyncState} state
 * @param {number} serverNowMs
 * @param {string} [participantId]
 * @returns {number}
 */
export function elapsedMs(state, serverNowMs, participantId) {
  const live = liveElapsedMs(state, serverNowMs);
  if (participantId != null) {
    const p = participant(state, participantId);
    return p.time_used_ms + (p.participant_id === state.active_participant_id ? live : 0);
  }
  if (state.sync_mode === 'global' || state.sync_mode === 'count_up') {
    const bank = state.banks?.session;
    const used = bank ? bank.used_ms : state.participants.reduce((s, p) => s + p.time_used_ms, 0);
    return used + live;
  }
  return turnElapsedMs(state, serverNowMs);
}

/**
 * Milliseconds used by the current turn (pauses excluded); 0 with no active participant.
 *
 * @param {SyncState} state
 * @param {number} serverNowMs
 * @returns {number}
 */
export function turnElapsedMs(state, serverNowMs) {
  if (state.active_participant_id == null) return 0;
  return (state.turn_used_ms ?? 0) + liveElapsedMs(state, serverNowMs);
}

/**
 * Milliseconds until a value shown at `stepMs` resolution changes (countdowns
 * round up, stopwatches down): schedule the next repaint with it instead of a
 * fast interval. Infinity when nothing runs.
 *
 * @param {SyncState} state
 * @param {number} serverNowMs
 * @param {number} [stepMs] default 1000
 * @returns {number}
 */
export function msUntilNextChange(state, serverNowMs, stepMs = 1000) {
  if (!isRunning(state)) return Infinity;
  const left = remainingMs(state, serverNowMs);
  if (left !== null) {
    if (left <= 0) return Infinity;
    const r = left % stepMs;
    return r === 0 ? stepMs : r;
  }
  const used = elapsedMs(state, serverNowMs);
  return stepMs - (used % stepMs);
}

/**
 * Every display value at once, for one frame.
 *
 * @param {SyncState} state
 * @param {number} serverNowMs
 * @returns {DisplaySnapshot}
 */
export function snapshot(state, serverNowMs) {
  return {
    serverNowMs,
    sessionId: state.session_id,
    version: state.version,
    status: state.status,
    isRunning: isRunning(state),
    activeParticipantId: state.active_participant_id,
    remainingMs: remainingMs(state, serverNowMs),
    elapsedMs: elapsedMs(state, serverNowMs),
    participants: state.participants.map((p) => ({
      participantId: p.participant_id,
      remainingMs: uncappedCountUp(state) ? null : remainingMs(state, serverNowMs, p.participant_id),
      elapsedMs: elapsedMs(state, serverNowMs, p.participant_id),
      isActive: p.participant_id === state.active_participant_id,
      hasExpired: p.has_expired,
    })),
  };
}
