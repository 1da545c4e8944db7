// REST round trips against a real server (synckairos dev).

import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';

import { RestClient, SyncKairosClient, SyncKairosError } from '../src/index.js';
import { sessionBody, startServer, uuid } from './helpers/server.js';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {RestClient} */
let api;

before(async () => {
  server = await startServer();
  api = new RestClient({ baseUrl: server.baseUrl, timeoutMs: 5_000 });
});

after(async () => {
  await server?.stop();
});

/**
 * Run `call` and return the SyncKairosError it must throw.
 *
 * @param {() => Promise<unknown>} call
 * @returns {Promise<SyncKairosError>}
 */
async function failure(call) {
  try {
    await call();
  } catch (error) {
    assert.ok(error instanceof SyncKairosError, `expected a SyncKairosError, got ${error}`);
    return error;
  }
  assert.fail('expected the call to fail');
}

describe('sessions', () => {
  test('a session goes through create, start, switch, pause, resume, complete with one version per change', async () => {
    const body = sessionBody({ extra: { increment_ms: 2_000, metadata: { table: 7 } } });
    const [a, b] = body.participants.map((p) => p.participant_id);
    const created = await api.createSession(body);
    assert.equal(created.session_id, body.session_id);
    assert.equal(created.status, 'pending');
    assert.equal(created.version, 1);
    assert.deepEqual(created.metadata, { table: 7 });

    const started = await api.startSession(body.session_id);
    assert.equal(started.status, 'running');
    assert.equal(started.active_participant_id, a);
    assert.equal(started.version, 2);
    assert.equal(typeof started.deadline_ms, 'number');

    const switched = await api.switchCycle(body.session_id, { currentParticipantId: a });
    assert.equal(switched.active_participant_id, b);
    assert.equal(switched.version, 3);
    const bankA = switched.participants.find((p) => p.participant_id === a);
    assert.ok(bankA && bankA.time_remaining_ms > 60_000, 'Fischer increment granted to a');

    const paused = await api.pauseSession(body.session_id, { expectedVersion: 3 });
    assert.equal(paused.status, 'paused');
    assert.equal(paused.deadline_ms, null);
    const resumed = await api.resumeSession(body.session_id);
    assert.equal(resumed.status, 'running');
    const completed = await api.completeSession(body.session_id);
    assert.equal(completed.status, 'completed');
    assert.equal(completed.version, 6);

    const fetched = await api.getSession(body.session_id);
    assert.deepEqual(fetched.version, 6);
    assert.equal(fetched.status, 'completed');
  });

  test('switch to a named participant and cancel', async () => {
    const body = sessionBody({ participants: 3 });
    const [, , c] = body.participants.map((p) => p.participant_id);
    await api.createSession(body);
    await api.startSession(body.session_id);
    const switched = await api.switchCycle(body.session_id, { nextParticipantId: c });
    assert.equal(switched.active_participant_id, c);
    const cancelled = await api.cancelSession(body.session_id);
    assert.equal(cancelled.status, 'cancelled');
  });

  test('delete answers 204, and a GET right after it is 404 SESSION_NOT_FOUND', async () => {
    const body = sessionBody();
    await api.createSession(body);
    await new Promise((resolve) => setTimeout(resolve, 300)); // the create reaches PostgreSQL
    assert.equal(await api.deleteSession(body.session_id, { expectedVersion: 1 }), undefined);
    // The deletion may not be in PostgreSQL yet: the server's tombstone keeps a
    // read from restoring the session from its last snapshot there.
    const error = await failure(() => api.getSession(body.session_id));
    assert.equal(error.code, 'SESSION_NOT_FOUND');
    assert.equal(error.status, 404);
    // Deleting again is idempotent (204), as on the Node.js server.
    assert.equal(await api.deleteSession(body.session_id), undefined);
  });
});

describe('errors carry code, status and details', () => {
  test('a malformed create is a VALIDATION_ERROR listing the field', async () => {
    const body = sessionBody({ budgetMs: 10 });
    const error = await failure(() => api.createSession(body));
    assert.equal(error.code, 'VALIDATION_ERROR');
    assert.equal(error.status, 400);
    assert.ok(Array.isArray(error.details));
    const details = /** @type {Array<{field: string, message: string, code: string}>} */ (error.details);
    assert.equal(details[0].field, 'participants.0.total_time_ms', JSON.stringify(details));
    assert.equal(details[0].code, 'too_small');
  });

  test('a stale expectedVersion is a CONFLICT with both versions, and changes nothing', async () => {
    const body = sessionBody();
    await api.createSession(body);
    await api.startSession(body.session_id);
    const error = await failure(() => api.pauseSession(body.session_id, { expectedVersion: 1 }));
    assert.equal(error.code, 'CONFLICT');
    assert.equal(error.status, 409);
    assert.deepEqual(error.details, { expected_version: 1, actual_version: 2 });
    assert.equal((await api.getSession(body.session_id)).status, 'running');
  });

  test('a switch naming the wrong current participant is a CONFLICT', async () => {
    const body = sessionBody();
    const [, b] = body.participants.map((p) => p.participant_id);
    await api.createSession(body);
    await api.startSession(body.session_id);
    const error = await failure(() => api.switchCycle(body.session_id, { currentParticipantId: b }));
    assert.equal(error.code, 'CONFLICT');
  });

  test('a delete with a stale If-Match is a CONFLICT', async () => {
    const body = sessionBody();
    await api.createSession(body);
    await api.startSession(body.session_id);
    const error = await failure(() => api.deleteSession(body.session_id, { expectedVersion: 1 }));
    assert.equal(error.code, 'CONFLICT');
  });

  test('creating an existing id is SESSION_EXISTS; an illegal command is INVALID_STATE_TRANSITION', async () => {
    const body = sessionBody();
    await api.createSession(body);
    assert.equal((await failure(() => api.createSession(body))).code, 'SESSION_EXISTS');
    const error = await failure(() => api.pauseSession(body.session_id));
    assert.equal(error.code, 'INVALID_STATE_TRANSITION');
    assert.equal(error.status, 400);
  });

  test('an unknown session is SESSION_NOT_FOUND; a bad id is a VALIDATION_ERROR', async () => {
    assert.equal((await failure(() => api.startSession(uuid()))).code, 'SESSION_NOT_FOUND');
    assert.equal((await failure(() => api.getSession('not-a-uuid'))).code, 'VALIDATION_ERROR');
  });

  test('an unreachable server is a NETWORK_ERROR; a silent one a TIMEOUT', async () => {
    const { freePort } = await import('./helpers/server.js');
    const closed = new RestClient({ baseUrl: `http://127.0.0.1:${await freePort()}` });
    const refused = await failure(() => closed.health());
    assert.equal(refused.code, 'NETWORK_ERROR');
    assert.equal(refused.retryable, true);
    const slow = new RestClient({
      baseUrl: server.baseUrl,
      timeoutMs: 20,
      fetch: (_input, init) =>
        new Promise((_, reject) => {
          init?.signal?.addEventListener('abort', () => reject(new Error('aborted')));
        }),
    });
    assert.equal((await failure(() => slow.health())).code, 'TIMEOUT');
  });
});

describe('a page on another origin (synckairos dev allows any)', () => {
  const origin = 'https://game.example';

  test('a preflight answers 204, and answers carry Access-Control-Allow-Origin', async () => {
    const preflight = await fetch(`${server.baseUrl}/v1/sessions`, {
      method: 'OPTIONS',
      headers: {
        Origin: origin,
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization, content-type',
      },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), '*');
    assert.match(String(preflight.headers.get('access-control-allow-methods')), /POST/);
    assert.equal(preflight.headers.get('access-control-allow-headers'), 'authorization, content-type');
    const created = await fetch(`${server.baseUrl}/v1/sessions`, {
      method: 'POST',
      headers: { Origin: origin, 'content-type': 'application/json' },
      body: JSON.stringify(sessionBody()),
    });
    assert.equal(created.status, 201);
    assert.equal(created.headers.get('access-control-allow-origin'), '*');
    assert.match(String(created.headers.get('access-control-expose-headers')), /Retry-After/);
  });

  test('a WebSocket upgrade from another origin is accepted (101)', async () => {
    const body = sessionBody();
    await api.createSession(body);
    const url = new URL(`/ws?sessionId=${body.session_id}`, server.baseUrl);
    const status = await new Promise((resolve, reject) => {
      const req = request(url, {
        headers: {
          Origin: origin,
          Connection: 'Upgrade',
          Upgrade: 'websocket',
          'Sec-WebSocket-Version': '13',
          'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        },
      });
      req.on('upgrade', (response, socket) => {
        socket.destroy();
        resolve(response.statusCode);
      });
      req.on('response', (response) => {
        response.resume();
        resolve(response.statusCode);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 101);
  });
});

describe('service endpoints', () => {
  test('time, health, ready, metrics and openapi answer', async () => {
    const before = Date.now();
    const time = await api.getTime();
    assert.ok(Math.abs(time.timestamp_ms - before) < 5_000);
    assert.equal(time.server_version, '2.0.0'); // the API version, as the Node.js server reports it
    assert.equal(typeof time.server_build, 'string');
    assert.equal(typeof time.drift_tolerance_ms, 'number');
    assert.deepEqual(await api.health(), { status: 'ok' });
    assert.equal((await api.ready()).status, 'ready');
    assert.match(await api.metrics(), /synckairos_/);
    const doc = await api.openapi();
    assert.equal(typeof doc.openapi, 'string');
  });

  test('the clock syncs over GET /v1/time when no socket is open', async (t) => {
    const client = new SyncKairosClient({ baseUrl: server.baseUrl });
    const estimate = await client.clock.sync();
    assert.equal(estimate.source, 'http');
    // Same machine: the true offset is ~0 (up to the two processes' clock reads).
    assert.ok(Math.abs(estimate.offsetMs) <= estimate.uncertaintyMs + 2, JSON.stringify(estimate));
    assert.ok(estimate.uncertaintyMs < 50, JSON.stringify(estimate));
    t.diagnostic(
      `http clock sync: offset ${estimate.offsetMs.toFixed(2)} ms, uncertainty ±${estimate.uncertaintyMs.toFixed(2)} ms, best rtt ${estimate.rttMs.toFixed(2)} ms`,
    );
    client.close();
  });
});
