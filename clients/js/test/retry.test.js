// Command retries: only with a precondition, and a 409 after an unknown outcome says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { RestClient, SyncKairosError } from '../src/index.js';

const SID = '6f1d3b9e-9a57-4c7e-8f55-0e6c0a9d1a11';

/**
 * A fetch that answers from `script` in order and records the bodies it got.
 *
 * @param {Array<{status: number, body: unknown, headers?: Record<string, string>}>} script
 */
function scriptedFetch(script) {
  /** @type {unknown[]} */
  const bodies = [];
  /** @type {typeof fetch} */
  const fetchImpl = async (_url, init) => {
    bodies.push(init?.body ? JSON.parse(String(init.body)) : null);
    const next = script.shift();
    if (!next) throw new Error('unexpected request');
    return new Response(JSON.stringify(next.body), {
      status: next.status,
      headers: { 'content-type': 'application/json', ...(next.headers ?? {}) },
    });
  };
  return { fetchImpl, bodies };
}

const unavailable = {
  status: 503,
  headers: { 'retry-after': '0' },
  body: { error: { code: 'UNAVAILABLE', message: 'store', details: { outcome: 'unknown' } } },
};
const ok = { status: 200, body: { data: { session_id: SID, version: 8 } } };
const conflict = { status: 409, body: { error: { code: 'CONFLICT', message: 'moved on' } } };

test('a command with expected_version is retried after a 503 and succeeds', async () => {
  const { fetchImpl, bodies } = scriptedFetch([unavailable, ok]);
  const api = new RestClient({ baseUrl: 'http://x', fetch: fetchImpl });
  const state = await api.switchCycle(SID, { expectedVersion: 7 });
  assert.equal(state.version, 8);
  assert.equal(bodies.length, 2);
  assert.deepEqual(bodies[1], { expected_version: 7 }); // the same precondition again
});

test('a command without a precondition is never retried', async () => {
  const { fetchImpl, bodies } = scriptedFetch([unavailable, ok]);
  const api = new RestClient({ baseUrl: 'http://x', fetch: fetchImpl });
  const error = await api.switchCycle(SID).then(
    () => assert.fail('resolved'),
    (e) => e,
  );
  assert.ok(error instanceof SyncKairosError);
  assert.equal(error.code, 'UNAVAILABLE');
  assert.deepEqual(error.details, { outcome: 'unknown' });
  assert.equal(bodies.length, 1);
});

test('a 409 met by a retry after an unknown outcome is flagged', async () => {
  const { fetchImpl } = scriptedFetch([unavailable, conflict]);
  const api = new RestClient({ baseUrl: 'http://x', fetch: fetchImpl });
  const error = await api
    .switchCycle(SID, { currentParticipantId: SID })
    .then(() => assert.fail('resolved'), (e) => e);
  assert.equal(error.code, 'CONFLICT');
  assert.equal(error.afterUnknownOutcome, true);
  const plain = scriptedFetch([conflict]);
  const direct = await new RestClient({ baseUrl: 'http://x', fetch: plain.fetchImpl })
    .switchCycle(SID, { expectedVersion: 3 })
    .then(() => assert.fail('resolved'), (e) => e);
  assert.equal(direct.afterUnknownOutcome, false);
});

test('retries stop after the configured number', async () => {
  const { fetchImpl, bodies } = scriptedFetch([unavailable, unavailable, ok]);
  const api = new RestClient({ baseUrl: 'http://x', fetch: fetchImpl, commandRetries: 1 });
  const error = await api
    .pauseSession(SID, { expectedVersion: 2 })
    .then(() => assert.fail('resolved'), (e) => e);
  assert.equal(error.code, 'UNAVAILABLE');
  assert.equal(bodies.length, 2);
});

// A 429 as this server sends it (Retry-After, the Node.js server's
// `retry_after_seconds`, ours in `details`), as the Node.js server sends it
// (no Retry-After a page on another origin could read), and as older versions
// of this server sent it (`RATE_LIMITED`).
const limited = {
  status: 429,
  headers: { 'retry-after': '0' },
  body: {
    error: {
      code: 'RATE_LIMIT_EXCEEDED',
      message: 'rate limit of 10 per 1 s exceeded',
      retry_after_seconds: 1,
      details: { limit: 'switch', retry_after_ms: 40 },
    },
  },
};
const nodeLimited = {
  status: 429,
  body: {
    error: {
      code: 'RATE_LIMIT_EXCEEDED',
      message: 'Too many requests, please try again later',
      retry_after_seconds: 0,
    },
  },
};
const oldLimited = {
  status: 429,
  body: { error: { code: 'RATE_LIMITED', message: 'slow down', details: { retry_after_ms: 5 } } },
};

test('a 429 is a rate limit, retried after its wait and never an unknown outcome', async () => {
  for (const answer of [limited, nodeLimited, oldLimited]) {
    const { fetchImpl, bodies } = scriptedFetch([answer, conflict]);
    const api = new RestClient({ baseUrl: 'http://x', fetch: fetchImpl });
    const error = await api
      .switchCycle(SID, { expectedVersion: 3 })
      .then(() => assert.fail('resolved'), (e) => e);
    assert.equal(bodies.length, 2, answer.body.error.code); // retried once
    assert.equal(error.code, 'CONFLICT');
    assert.equal(error.afterUnknownOutcome, false); // the 429 changed nothing
  }
});

test('a 429 error says rateLimited and how long to wait, from the header or the body', async () => {
  /** @param {typeof limited} answer */
  const refused = async (answer) => {
    const { fetchImpl } = scriptedFetch([answer]);
    const api = new RestClient({ baseUrl: 'http://x', fetch: fetchImpl });
    return api.getSession(SID).then(() => assert.fail('resolved'), (e) => e);
  };
  const ours = await refused(limited);
  assert.ok(ours instanceof SyncKairosError);
  assert.equal(ours.code, 'RATE_LIMIT_EXCEEDED');
  assert.equal(ours.rateLimited, true);
  assert.equal(ours.retryable, true);
  assert.equal(ours.status, 429);
  assert.equal(ours.retryAfterMs, 0); // Retry-After first
  assert.deepEqual(ours.details, { limit: 'switch', retry_after_ms: 40 });
  const node = await refused({ ...nodeLimited, body: { error: { ...nodeLimited.body.error, retry_after_seconds: 60 } } });
  assert.equal(node.rateLimited, true);
  assert.equal(node.retryAfterMs, 60_000); // no header: the Node.js body field
  const old = await refused(oldLimited);
  assert.equal(old.code, 'RATE_LIMITED');
  assert.equal(old.rateLimited, true);
  assert.equal(old.retryable, true);
  assert.equal(old.retryAfterMs, 5);
  assert.equal(new SyncKairosError('CONFLICT', 'x').rateLimited, false);
});
