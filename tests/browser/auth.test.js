// /inspector on a node with auth on (SYNCKAIROS_API_KEYS and
// SYNCKAIROS_TOKEN_SECRET): the token field takes an API key (the page mints a
// controller token for the socket) or a session token; refusals are shown.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { call, node, openBrowser, screenshot, startRedis } from './helpers.js';

const API_KEY = 'inspector-browser-test-key';

/** @type {Awaited<ReturnType<typeof startRedis>>} */
let redis;
/** @type {Awaited<ReturnType<typeof node>>} */
let server;
/** @type {Awaited<ReturnType<typeof openBrowser>>} */
let chrome;
/** @type {import('playwright-core').Page} */
let page;
let sessionId = '';

before(async () => {
  redis = await startRedis();
  server = await node({
    redisUrl: redis.url,
    keyPrefix: `auth${Date.now()}`,
    env: {
      SYNCKAIROS_API_KEYS: API_KEY,
      SYNCKAIROS_TOKEN_SECRET: 'browser-test-secret-0123456789abcdef0123456789',
    },
  });
  chrome = await openBrowser(server.url);
  page = chrome.page;
  await page.goto(`${server.url}/inspector`);
  await page.waitForSelector('body[data-ready=true]');
});

after(async () => {
  await chrome?.browser.close();
  await server?.stop();
  await redis?.stop();
});

const bearer = { authorization: `Bearer ${API_KEY}` };

/** @param {string} text */
const statusIs = (text) =>
  page.waitForFunction((t) => document.getElementById('f-status')?.textContent === t, text, { timeout: 5_000 });
/** @param {string} text */
const socketIs = (text) =>
  page.waitForFunction((t) => document.getElementById('s-status')?.textContent === t, text, { timeout: 5_000 });
/** @param {RegExp} re */
const noticeMatches = (re) =>
  page.waitForFunction((source) => new RegExp(source).test(String(document.getElementById('notice')?.textContent)), re.source, {
    timeout: 5_000,
  });

describe('/inspector with auth on', () => {
  test('without a credential, a refused creation is shown', async () => {
    await page.fill('#token-input', '');
    await page.click('#demo-create');
    await noticeMatches(/^create: UNAUTHORIZED: /);
    assert.ok(await page.$('#log tbody tr[data-what="create: UNAUTHORIZED"]'));
  });

  test('with an API key: creates, follows on a minted controller token, and controls', async () => {
    await page.fill('#token-input', API_KEY);
    await page.click('#demo-create');
    await statusIs('pending');
    sessionId = await page.inputValue('#session-input');
    await page.waitForSelector('#log tbody tr[data-what="token minted"]');
    await socketIs('open');
    await page.click('button[data-command=start]');
    await statusIs('running');
    const { body } = await call(`${server.url}/v1/sessions/${sessionId}`, { headers: bearer });
    assert.equal(body.data.status, 'running');
  });

  test('with a spectator token: watches live, and a command answers 403', async () => {
    const { status, body } = await call(`${server.url}/v1/sessions/${sessionId}/tokens`, {
      method: 'POST',
      headers: bearer,
      json: { role: 'spectator' },
    });
    assert.equal(status, 201);
    await page.fill('#token-input', body.data.token);
    await page.click('#follow-button');
    await socketIs('open');
    await statusIs('running');
    assert.equal(await page.$('#log tbody tr[data-what="token minted"]'), null);
    await page.click('button[data-command=pause]');
    await noticeMatches(/^pause: FORBIDDEN: /);
    const { body: after } = await call(`${server.url}/v1/sessions/${sessionId}`, { headers: bearer });
    assert.equal(after.data.status, 'running');
    // A change made elsewhere still shows up.
    await call(`${server.url}/v1/sessions/${sessionId}/pause`, { method: 'POST', headers: bearer });
    await statusIs('paused');
    await screenshot(page, 'inspector-auth-spectator');
  });

  test('an invalid token: the socket is refused and the page says why', async () => {
    await page.fill('#token-input', 'not.a.token');
    await page.click('#follow-button');
    await socketIs('closed');
    assert.ok(await page.$('#log tbody tr[data-what="socket: FORBIDDEN"]'));
  });

  test('nothing was loaded from elsewhere', () => {
    assert.deepEqual(
      chrome.problems.filter((p) => p.startsWith('request outside') || p.startsWith('page error')),
      [],
    );
  });
});
