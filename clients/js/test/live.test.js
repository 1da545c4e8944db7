// Live sessions against a real server (synckairos dev): updates, a forced
// disconnect with gap-free resume, a wrong epoch, a recreated session, a
// deleted session, a server-side timeout, and TIME_SYNC over the socket.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import { WebSocket as WsSocket } from 'ws';

import { SyncKairosClient } from '../src/index.js';
import { sessionBody, startServer, until } from './helpers/server.js';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;

before(async () => {
  server = await startServer();
});

/** @type {SyncKairosClient[]} */
const clients = [];

afterEach(() => {
  // Also after a failed assertion: an open client would keep reconnecting.
  for (const client of clients.splice(0)) client.close();
});

after(async () => {
  await server?.stop();
});

/** A `ws` WebSocket that remembers its instances, so a test can kill one. */
function recordingWebSocket() {
  /** @type {WsSocket[]} */
  const sockets = [];
  class Recording extends WsSocket {
    /** @param {string} url */
    constructor(url) {
      super(url);
      sockets.push(this);
    }
  }
  return { Recording, sockets };
}

/**
 * A client whose sessions record every event they emit.
 *
 * @param {import('../src/index.js').ClientOptions extends infer O ? Partial<O> : never} [options]
 */
function newClient(options = {}) {
  const client = new SyncKairosClient({
    baseUrl: server.baseUrl,
    timeoutMs: 5_000,
    clockSync: { onWarning: null },
    ...options,
  });
  clients.push(client);
  return client;
}

/** @param {import('../src/index.js').LiveSession} session */
function record(session) {
  /** @type {{states: import('../src/index.js').StateEvent[], connection: string[], resumed: import('../src/index.js').ResumedEvent[], timeouts: import('../src/index.js').TimeoutEvent[], deleted: number, errors: unknown[]}} */
  const log = { states: [], connection: [], resumed: [], timeouts: [], deleted: 0, errors: [] };
  session.on('state', (e) => log.states.push(e));
  session.on('connection', (e) => log.connection.push(e.status));
  session.on('resumed', (e) => log.resumed.push(e));
  session.on('timeout', (e) => log.timeouts.push(e));
  session.on('deleted', () => (log.deleted += 1));
  session.on('error', (e) => log.errors.push(e));
  return log;
}

/** @param {import('../src/index.js').StateEvent[]} states */
function versions(states) {
  return states.map((s) => s.version);
}

describe('live session', () => {
  test('gets the state at once, then every change in order, with what changed', async () => {
    const client = newClient();
    const body = sessionBody();
    const [a, b] = body.participants.map((p) => p.participant_id);
    await client.createSession(body);
    const live = client.subscribe(body.session_id);
    const log = record(live);
    const first = await live.ready(5_000);
    assert.equal(first.version, 1);
    assert.equal(live.status, 'open');
    assert.deepEqual(log.connection, ['connecting', 'open']);

    await client.startSession(body.session_id);
    await client.switchCycle(body.session_id, { currentParticipantId: a });
    await client.pauseSession(body.session_id);
    await until(() => live.version === 4, 5_000, 'version 4');

    assert.deepEqual(versions(log.states), [1, 2, 3, 4]);
    assert.deepEqual(
      log.states.map((s) => s.kind),
      ['sync', 'update', 'update', 'update'],
    );
    assert.deepEqual(
      log.states.slice(1).map((s) => s.event?.type),
      ['session_started', 'cycle_switched', 'session_paused'],
    );
    assert.equal(live.state?.active_participant_id, b);
    assert.equal(live.isRunning, false);
    client.close();
    assert.equal(live.status, 'closed');
  });

  test('display helpers follow the synced clock and never count locally', async () => {
    const client = newClient();
    const body = sessionBody({ budgetMs: 60_000 });
    const [a, b] = body.participants.map((p) => p.participant_id);
    await client.createSession(body);
    const live = client.subscribe(body.session_id);
    await live.ready(5_000);
    await client.clock.sync();
    await client.startSession(body.session_id);
    await until(() => live.version === 2, 5_000, 'start');
    assert.equal(live.isRunning, true);
    const t1 = performance.now();
    const r1 = /** @type {number} */ (live.remainingMs(a));
    await new Promise((resolve) => setTimeout(resolve, 120));
    const r2 = /** @type {number} */ (live.remainingMs(a));
    const waited = performance.now() - t1;
    // Slewing may bend the clock by at most 10 %; nothing else moves it.
    assert.ok(Math.abs(r1 - r2 - waited) <= waited * 0.1 + 2, `remaining went ${r1} → ${r2} in ${waited} ms`);
    assert.equal(live.remainingMs(b), 60_000);
    // What the client shows matches the server's own accounting.
    const state = /** @type {import('../src/index.js').SyncState} */ (live.state);
    const server = (state.deadline_ms ?? 0) - client.clock.now();
    assert.ok(Math.abs(/** @type {number} */ (live.remainingMs()) - server) < 5);
    const snap = live.snapshot();
    assert.equal(snap?.activeParticipantId, a);
    assert.equal(snap?.participants.length, 2);

    await client.pauseSession(body.session_id);
    await until(() => live.version === 3, 5_000, 'pause');
    const p1 = live.remainingMs(a);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(live.remainingMs(a), p1, 'a paused clock does not move');
    client.close();
  });

  test('a forced disconnect is followed by a gap-free resume (RECONNECT replay)', async () => {
    const { Recording, sockets } = recordingWebSocket();
    const client = newClient({
      WebSocket: Recording,
      reconnect: { initialDelayMs: 1_000, jitter: 0 },
    });
    const body = sessionBody({ participants: 3 });
    await client.createSession(body);
    await client.startSession(body.session_id);
    const live = client.subscribe(body.session_id);
    const log = record(live);
    await live.ready(5_000);
    assert.equal(live.version, 2);

    sockets[0].terminate(); // abrupt: no close frame
    await until(() => live.status === 'reconnecting', 2_000, 'reconnecting');
    for (let i = 0; i < 5; i += 1) await client.switchCycle(body.session_id);
    await until(() => log.resumed.length === 1 && live.version === 7, 5_000, 'resume');

    assert.equal(sockets.length, 2);
    assert.deepEqual(log.connection, ['connecting', 'open', 'reconnecting', 'open']);
    assert.deepEqual(log.resumed[0], {
      recovered: true,
      replayed: 5,
      version: 7,
      epoch: live.epoch,
    });
    assert.deepEqual(versions(log.states), [2, 3, 4, 5, 6, 7], 'every version, once, in order');
    assert.ok(log.states.slice(1).every((s) => s.kind === 'update' && s.event?.type === 'cycle_switched'));
    for (const [i, s] of log.states.entries()) {
      if (i > 0) assert.equal(s.previousVersion, log.states[i - 1].version);
    }
    // The same state as the server's (GET stamps its own server_time_ms).
    const { server_time_ms: _, ...fetched } = await client.getSession(body.session_id);
    const { server_time_ms: __, ...shown } = /** @type {import('../src/index.js').SyncState} */ (
      live.state
    );
    assert.deepEqual(shown, fetched);
    client.close();
  });

  test('a RECONNECT with a wrong epoch gets a full sync', async () => {
    const client = newClient();
    const body = sessionBody();
    await client.createSession(body);
    await client.startSession(body.session_id);
    await client.switchCycle(body.session_id);
    const live = client.subscribe(body.session_id, {
      since: { version: 1, epoch: '0000000000000000' },
    });
    const log = record(live);
    await until(() => log.resumed.length === 1, 5_000, 'RECONNECT_ACK');
    assert.equal(log.resumed[0].recovered, false);
    assert.deepEqual(versions(log.states), [3]);
    assert.equal(log.states[0].kind, 'sync');
    assert.notEqual(live.epoch, '0000000000000000');
    assert.equal(live.state?.version, 3);
    client.close();
  });

  test('a session recreated while the client was away comes back as a full sync of the new epoch', async () => {
    const { Recording, sockets } = recordingWebSocket();
    const client = newClient({ WebSocket: Recording, reconnect: { initialDelayMs: 1_000, jitter: 0 } });
    const body = sessionBody();
    await client.createSession(body);
    await client.startSession(body.session_id);
    await client.switchCycle(body.session_id);
    const live = client.subscribe(body.session_id);
    const log = record(live);
    await live.ready(5_000);
    const oldEpoch = live.epoch;
    assert.equal(live.version, 3);

    sockets[0].terminate();
    await until(() => live.status === 'reconnecting', 2_000, 'reconnecting');
    await client.deleteSession(body.session_id);
    await client.createSession(body);
    await until(() => log.resumed.length === 1, 5_000, 'resume');

    assert.equal(log.resumed[0].recovered, false);
    assert.notEqual(live.epoch, oldEpoch);
    assert.equal(live.version, 1, 'a lower version of a new epoch replaces the old one');
    assert.equal(live.state?.status, 'pending');
    assert.deepEqual(versions(log.states), [3, 1]);
    assert.equal(log.deleted, 0);
    client.close();
  });

  test('a deleted session emits deleted, closes, and does not reconnect', async () => {
    const { Recording, sockets } = recordingWebSocket();
    const client = newClient({ WebSocket: Recording, reconnect: { initialDelayMs: 20 } });
    const body = sessionBody();
    await client.createSession(body);
    const live = client.subscribe(body.session_id);
    const log = record(live);
    await live.ready(5_000);
    await client.deleteSession(body.session_id);
    await until(() => live.status === 'closed', 5_000, 'closed');
    assert.equal(log.deleted, 1);
    assert.deepEqual(log.connection, ['connecting', 'open', 'closed']);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(sockets.length, 1, 'no reconnection after a deletion');
    await assert.rejects(live.ready(100), { code: 'CLOSED' });
    client.close();
  });

  test('a session deleted while the client was away is reported as deleted after the reconnection', async () => {
    const { Recording, sockets } = recordingWebSocket();
    const client = newClient({ WebSocket: Recording, reconnect: { initialDelayMs: 1_000, jitter: 0 } });
    const body = sessionBody();
    await client.createSession(body);
    const live = client.subscribe(body.session_id);
    const log = record(live);
    await live.ready(5_000);
    sockets[0].terminate();
    await until(() => live.status === 'reconnecting', 2_000, 'reconnecting');
    await client.deleteSession(body.session_id);
    await until(() => live.status === 'closed', 5_000, 'closed');
    assert.equal(log.deleted, 1);
    assert.equal(sockets.length, 2);
  });

  test('a timer that runs out on the server emits timeout', async () => {
    const client = newClient();
    const body = sessionBody({ budgetMs: 1_000 });
    const [a] = body.participants.map((p) => p.participant_id);
    await client.createSession(body);
    const live = client.subscribe(body.session_id);
    const log = record(live);
    await live.ready(5_000);
    await client.startSession(body.session_id);
    await until(() => log.timeouts.length === 1, 5_000, 'timeout');
    assert.equal(log.timeouts[0].participantId, a);
    assert.equal(log.timeouts[0].event.type, 'session_expired');
    assert.equal(live.state?.status, 'expired');
    assert.equal(live.remainingMs(a), 0);
    assert.equal(live.isRunning, false);
    client.close();
  });

  test("the README's exam countdown: one global timer, repainted once a second, frozen by a pause", async () => {
    const client = newClient();
    const examId = crypto.randomUUID();
    const room = crypto.randomUUID();
    await client.createSession({
      session_id: examId,
      sync_mode: 'global',
      total_time_ms: 90 * 60_000,
      participants: [{ participant_id: room, total_time_ms: 90 * 60_000 }],
      metadata: { course: 'MATH 101', room: 'B-204' },
    });
    const live = client.subscribe(examId);
    /** @type {Array<import('../src/index.js').DisplaySnapshot>} */
    const frames = [];
    const stop = live.tick((snap) => snap && frames.push(snap), { stepMs: 1000 });
    await live.ready(5_000);
    assert.equal(frames.at(-1)?.remainingMs, 90 * 60_000, 'before the start: the whole exam');
    await client.startSession(examId);
    await until(() => frames.some((f) => f.isRunning), 5_000, 'running frame');
    const running = /** @type {number} */ (frames.at(-1)?.remainingMs);
    assert.ok(running <= 90 * 60_000 && running > 90 * 60_000 - 2_000, String(running));
    await client.pauseSession(examId);
    await until(() => frames.at(-1)?.status === 'paused', 5_000, 'paused frame');
    const frozen = live.remainingMs();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(live.remainingMs(), frozen);
    assert.equal(live.elapsedMs(), 90 * 60_000 - /** @type {number} */ (frozen));
    stop();
  });

  test('the clock syncs with TIME_SYNC over the open socket', async (t) => {
    const client = newClient();
    const body = sessionBody();
    await client.createSession(body);
    const live = client.subscribe(body.session_id);
    await live.ready(5_000);
    // The round started by subscribe() may have begun over HTTP; the next one is the socket's.
    await until(() => client.clock.synced, 5_000, 'first sync');
    const estimate = await client.clock.sync();
    assert.equal(estimate.source, 'websocket');
    assert.equal(estimate.samples, 8);
    // Same machine: the true offset is ~0.
    assert.ok(Math.abs(estimate.offsetMs) <= estimate.uncertaintyMs + 2, JSON.stringify(estimate));
    assert.ok(estimate.uncertaintyMs < 20, JSON.stringify(estimate));
    t.diagnostic(
      `websocket clock sync: offset ${estimate.offsetMs.toFixed(2)} ms, uncertainty ±${estimate.uncertaintyMs.toFixed(2)} ms, best rtt ${estimate.rttMs.toFixed(2)} ms`,
    );
    client.close();
  });
});
