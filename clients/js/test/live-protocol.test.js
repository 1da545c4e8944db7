// LiveSession against a scripted socket (the test plays the server): version
// ordering, gap repair, resume, epochs, close codes, backoff, heartbeat,
// TIME_SYNC, ticking.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';

import { LiveSession, SyncedClock } from '../src/index.js';
import { FakeSocket, VirtualWorld } from './helpers/fakes.js';
import { until } from './helpers/server.js';

const SID = '00000000-0000-4000-8000-000000000001';
const EPOCH = 'e1e1e1e1e1e1e1e1';

/** @type {LiveSession[]} */
let sessions = [];

beforeEach(() => FakeSocket.reset());
afterEach(() => {
  for (const s of sessions.splice(0)) s.close();
});

/** @param {Partial<import('../src/index.js').LiveSessionOptions>} [options] */
function live(options = {}) {
  const session = new LiveSession({
    sessionId: SID,
    url: 'ws://server.test/ws',
    WebSocket: /** @type {any} */ (FakeSocket),
    reconnect: { initialDelayMs: 5, maxDelayMs: 20, jitter: 0 },
    ...options,
  });
  sessions.push(session);
  /** @type {{states: import('../src/index.js').StateEvent[], connection: import('../src/index.js').ConnectionEvent[], resumed: import('../src/index.js').ResumedEvent[], errors: any[]}} */
  const log = { states: [], connection: [], resumed: [], errors: [] };
  session.on('state', (e) => log.states.push(e));
  session.on('connection', (e) => log.connection.push(e));
  session.on('resumed', (e) => log.resumed.push(e));
  session.on('error', (e) => log.errors.push(e));
  return { session, log };
}

/** The n-th socket, once the session created it. @param {number} n */
async function socket(n) {
  await until(() => FakeSocket.instances.length > n, 2_000, `socket ${n}`);
  return FakeSocket.instances[n];
}

/** @param {number} version @param {string} [epoch] */
function stateOf(version, epoch = EPOCH) {
  return { session_id: SID, version, status: 'running', participants: [], epoch_hint: epoch };
}

/** @param {number} version @param {string} [epoch] */
function update(version, epoch = EPOCH) {
  return {
    type: 'STATE_UPDATE',
    sessionId: SID,
    timestamp: 0,
    version,
    epoch,
    event: { type: 'cycle_switched' },
    state: stateOf(version, epoch),
  };
}

/** @param {number} version @param {string} [epoch] */
function sync(version, epoch = EPOCH) {
  return { type: 'STATE_SYNC', sessionId: SID, timestamp: 0, version, epoch, state: stateOf(version, epoch) };
}

/** @param {boolean} recovered @param {number} replayed @param {number} version @param {string} [epoch] */
function ack(recovered, replayed, version, epoch = EPOCH) {
  return { type: 'RECONNECT_ACK', success: true, recovered, replayed, version, epoch };
}

describe('versions', () => {
  test('the URL carries the session id and the token', async () => {
    live({ token: 'secret' });
    const ws = await socket(0);
    const url = new URL(ws.url);
    assert.equal(url.searchParams.get('sessionId'), SID);
    assert.equal(url.searchParams.get('token'), 'secret');
  });

  test('duplicates and older versions are dropped; the next one is applied', async () => {
    const { session, log } = live();
    const ws = await socket(0);
    ws.open();
    ws.push({ type: 'CONNECTED', sessionId: SID, timestamp: 0 });
    ws.push(sync(3));
    ws.push(update(3));
    ws.push(update(2));
    ws.push(update(4));
    ws.push(sync(4));
    assert.deepEqual(log.states.map((s) => [s.kind, s.version]), [['sync', 3], ['update', 4]]);
    assert.equal(session.version, 4);
    assert.deepEqual(ws.sent, []);
  });

  test('a gap is never applied: RECONNECT asks for the missed versions', async () => {
    const { session, log } = live();
    const ws = await socket(0);
    ws.open();
    ws.push(sync(3));
    ws.push(update(6)); // 4 and 5 are missing
    assert.equal(session.version, 3);
    assert.deepEqual(ws.sent, [{ type: 'RECONNECT', last_known_version: 3, epoch: EPOCH, reconnect_attempt: 0 }]);
    ws.push(update(7)); // still a gap, no second RECONNECT
    assert.equal(ws.sent.length, 1);
    for (const v of [4, 5, 6, 7]) ws.push(update(v));
    ws.push(ack(true, 4, 7));
    assert.deepEqual(log.states.map((s) => s.version), [3, 4, 5, 6, 7]);
  });

  test('an update of another epoch is not applied; the repair brings the new epoch', async () => {
    const { session, log } = live();
    const ws = await socket(0);
    ws.open();
    ws.push(sync(5));
    ws.push(update(1, 'e2e2e2e2e2e2e2e2'));
    assert.equal(session.version, 5);
    assert.equal(ws.sent[0].type, 'RECONNECT');
    ws.push(sync(1, 'e2e2e2e2e2e2e2e2'));
    ws.push(ack(false, 0, 1, 'e2e2e2e2e2e2e2e2'));
    assert.equal(session.epoch, 'e2e2e2e2e2e2e2e2');
    assert.equal(session.version, 1);
    assert.deepEqual(log.resumed.map((r) => r.recovered), [false]);
  });

  test('a session created after subscribing: its first update is the baseline', async () => {
    const { session } = live();
    const ws = await socket(0);
    ws.open();
    ws.push(update(1));
    assert.equal(session.version, 1);
    assert.equal((await session.ready(100)).version, 1);
  });
});

describe('resume', () => {
  test('after a drop: RECONNECT at once, replay before the held greeting, attempts reset', async () => {
    const { session, log } = live();
    const first = await socket(0);
    first.open();
    first.push(sync(2));
    first.drop(1006);
    assert.equal(session.status, 'reconnecting');
    const second = await socket(1);
    second.open();
    assert.deepEqual(second.sent, [{ type: 'RECONNECT', last_known_version: 2, epoch: EPOCH, reconnect_attempt: 1 }]);
    second.push({ type: 'CONNECTED', sessionId: SID, timestamp: 0 });
    second.push(sync(5)); // the greeting: held until the ACK
    assert.equal(session.version, 2);
    for (const v of [3, 4, 5]) second.push(update(v));
    second.push(ack(true, 3, 5));
    second.push(update(6));
    assert.deepEqual(log.states.map((s) => [s.kind, s.version]), [
      ['sync', 2],
      ['update', 3],
      ['update', 4],
      ['update', 5],
      ['update', 6],
    ]);
    assert.deepEqual(log.resumed, [{ recovered: true, replayed: 3, version: 5, epoch: EPOCH }]);
    assert.deepEqual(log.connection.map((c) => c.status), ['connecting', 'open', 'reconnecting', 'open']);
    // A later drop starts the backoff from the first attempt again.
    second.drop(1001);
    assert.equal(log.connection.at(-1)?.attempt, 1);
  });

  test('resuming from a stored version: a wrong epoch applies the full sync', async () => {
    const { session, log } = live({ since: { version: 9, epoch: 'stale' } });
    const ws = await socket(0);
    ws.open();
    assert.equal(ws.sent[0].last_known_version, 9);
    ws.push(sync(4));
    ws.push(sync(4));
    ws.push(ack(false, 0, 4));
    assert.deepEqual(log.states.map((s) => [s.kind, s.version, s.epoch]), [['sync', 4, EPOCH]]);
    assert.equal(session.epoch, EPOCH);
  });

  test('resuming from a stored version that is current: the greeting gives the state', async () => {
    const { session } = live({ since: { version: 4, epoch: EPOCH } });
    const ws = await socket(0);
    ws.open();
    ws.push(sync(4));
    ws.push(ack(true, 0, 4));
    assert.equal(session.state?.version, 4);
  });

  test('a server that never acknowledges (the reference): the held STATE_SYNC applies after resumeTimeoutMs', async () => {
    const { session } = live({ since: { version: 2, epoch: EPOCH }, resumeTimeoutMs: 30 });
    const ws = await socket(0);
    ws.open();
    ws.push(sync(7));
    assert.equal(session.state, null);
    await until(() => session.version === 7, 1_000, 'held sync');
  });
});

describe('closing', () => {
  test('SESSION_DELETED ends the session: deleted, closed, no reconnection', async () => {
    const { session, log } = live();
    let deleted = 0;
    session.on('deleted', () => (deleted += 1));
    const ws = await socket(0);
    ws.open();
    ws.push(sync(1));
    ws.push({ type: 'SESSION_DELETED', sessionId: SID, timestamp: 0 });
    ws.drop(1000, 'session deleted');
    assert.equal(deleted, 1);
    assert.equal(session.status, 'closed');
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(FakeSocket.instances.length, 1);
    assert.equal(log.connection.at(-1)?.status, 'closed');
  });

  test('a RECONNECT_ACK of version 0 (no such session any more) ends the session as deleted', async () => {
    const { session } = live();
    let deleted = 0;
    session.on('deleted', () => (deleted += 1));
    const first = await socket(0);
    first.open();
    first.push(sync(3));
    first.drop(1006);
    const second = await socket(1);
    second.open();
    second.push({ type: 'CONNECTED', sessionId: SID, timestamp: 0 });
    second.push(ack(false, 0, 0, ''));
    assert.equal(deleted, 1);
    assert.equal(session.status, 'closed');
  });

  test('close 1008 (policy) ends the session with an error', async () => {
    const { session, log } = live();
    const ws = await socket(0);
    ws.open();
    ws.drop(1008, 'Invalid sessionId format');
    assert.equal(session.status, 'closed');
    assert.equal(log.errors[0].code, 'FORBIDDEN');
    await assert.rejects(session.ready(50), { code: 'CLOSED' });
  });

  test('close 1008 for a rate limit is not final: it reconnects after the retry-after', async () => {
    const { session, log } = live();
    const ws = await socket(0);
    ws.open();
    ws.drop(1008, 'connection rate limit exceeded; retry after 0.05 s');
    assert.equal(session.status, 'reconnecting');
    assert.equal(log.connection.at(-1)?.delayMs, 50);
    assert.equal(log.errors[0].code, 'RATE_LIMIT_EXCEEDED');
    assert.equal(log.errors[0].rateLimited, true);
    await socket(1);
  });

  test('reconnection waits follow the backoff and stop after maxAttempts', async () => {
    const { session, log } = live({
      reconnect: { initialDelayMs: 4, factor: 2, maxDelayMs: 10, jitter: 0, maxAttempts: 3 },
    });
    for (let n = 0; n < 4; n += 1) (await socket(n)).drop(1006);
    await until(() => session.status === 'closed', 1_000, 'closed');
    assert.deepEqual(
      log.connection.filter((c) => c.delayMs !== undefined).map((c) => c.delayMs),
      [4, 8, 10],
    );
    assert.deepEqual(log.connection.map((c) => c.status), ['connecting', 'connecting', 'connecting', 'connecting', 'closed']);
  });

  test('a silent socket gets a PING, then is dropped and reopened', async () => {
    const { session } = live({ heartbeatIntervalMs: 30, heartbeatTimeoutMs: 30 });
    const ws = await socket(0);
    ws.open();
    ws.push(sync(1));
    await until(() => ws.sent.some((m) => m.type === 'PING'), 1_000, 'PING');
    await until(() => FakeSocket.instances.length === 2, 1_000, 'reopened');
    assert.equal(session.status, 'reconnecting');
  });

  test('close() stops everything, and is idempotent', async () => {
    const { session } = live();
    const ws = await socket(0);
    ws.open();
    session.close();
    session.close();
    assert.equal(ws.closedByClient?.code, 1000);
    assert.equal(session.status, 'closed');
  });
});

describe('clock and display', () => {
  test('the socket is a TIME_SYNC transport of the clock', async () => {
    const world = new VirtualWorld({ skewMs: 2_000 });
    const clock = new SyncedClock({ clock: world.clientClock, onWarning: null, samples: 2 });
    const { session } = live({ clock });
    const ws = await socket(0);
    ws.open();
    assert.equal(session.timeTransport.available?.(), true);
    const answering = setInterval(() => {
      for (const m of ws.sent.splice(0)) {
        if (m.type === 'TIME_SYNC') {
          const t = Math.floor(world.time);
          ws.push({ type: 'TIME_SYNC', t0: m.t0, t1: t, t2: t });
        }
      }
    }, 1);
    try {
      const estimate = await clock.sync();
      assert.equal(estimate.source, 'websocket');
      assert.ok(Math.abs(estimate.offsetMs + 2_000) <= estimate.uncertaintyMs);
    } finally {
      clearInterval(answering);
    }
  });

  test('a server without TIME_SYNC answers UNKNOWN_MESSAGE_TYPE: the socket stops offering it', async () => {
    const world = new VirtualWorld();
    const clock = new SyncedClock({ clock: world.clientClock, onWarning: null, samples: 2 });
    const { session } = live({ clock });
    const ws = await socket(0);
    ws.open();
    const exchange = session.timeTransport.exchange(1);
    ws.push({ type: 'ERROR', code: 'UNKNOWN_MESSAGE_TYPE', message: "unknown message type 'TIME_SYNC'" });
    await assert.rejects(exchange, { code: 'UNKNOWN_MESSAGE_TYPE' });
    assert.equal(session.timeTransport.available?.(), false);
  });

  test('tick() renders on its interval and at once on every state, until stopped', async () => {
    const { session } = live();
    const ws = await socket(0);
    ws.open();
    /** @type {Array<number | null>} */
    const frames = [];
    const stop = session.tick((snap) => frames.push(snap ? snap.version : null), { intervalMs: 10 });
    assert.deepEqual(frames, [null]);
    ws.push({ ...sync(1), state: { ...stateOf(1), status: 'paused', active_participant_id: null } });
    assert.deepEqual(frames, [null, 1]);
    await until(() => frames.length >= 4, 1_000, 'frames');
    stop();
    const count = frames.length;
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(frames.length, count);
  });
});
