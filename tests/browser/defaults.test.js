// /docs and /inspector on a node with rate limits on (create and socket limits
// lowered to 5/min so they are met): the API reference renders every endpoint of
// /openapi.json from the vendored Swagger UI, and the inspector reports 429s
// and refused sockets instead of breaking. Screenshots go to artifacts/.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { call, node, openBrowser, screenshot, startRedis } from './helpers.js';

/** @type {Awaited<ReturnType<typeof startRedis>>} */
let redis;
/** @type {Awaited<ReturnType<typeof node>>} */
let server;
/** @type {Awaited<ReturnType<typeof openBrowser>>} */
let chrome;

before(async () => {
  redis = await startRedis();
  server = await node({
    redisUrl: redis.url,
    keyPrefix: `defaults${Date.now()}`,
    // Limits far below the defaults (which let a crowd of 500 behind one
    // address in), so the page meets a refusal within a few clicks.
    env: {
      SYNCKAIROS_RATE_LIMITS: 'on',
      SYNCKAIROS_RATE_LIMIT_CREATE: '5/min',
      SYNCKAIROS_RATE_LIMIT_WS_CONNECT: '5/min',
    },
  });
  chrome = await openBrowser(server.url);
});

after(async () => {
  await chrome?.browser.close();
  await server?.stop();
  await redis?.stop();
});

describe('/docs', () => {
  test('renders the endpoint list of /openapi.json', async () => {
    const { body: spec } = await call(`${server.url}/openapi.json`);
    /** @type {string[]} */
    const operations = [];
    for (const [route, methods] of Object.entries(spec.paths)) {
      for (const method of Object.keys(methods)) {
        if (['get', 'post', 'put', 'delete', 'patch'].includes(method)) {
          operations.push(`${method.toUpperCase()} ${route}`);
        }
      }
    }
    assert.ok(operations.length >= 10, `${operations.length} operations`);
    const { page } = chrome;
    await page.goto(`${server.url}/docs`);
    await page.waitForSelector('.opblock', { timeout: 10_000 });
    const shown = await page.$$eval('.opblock .opblock-summary', (blocks) =>
      blocks.map((block) => {
        const method = block.querySelector('.opblock-summary-method')?.textContent ?? '';
        const route = block.querySelector('.opblock-summary-path')?.getAttribute('data-path') ?? '';
        return `${method.trim()} ${route.trim()}`;
      }),
    );
    assert.deepEqual([...shown].sort(), [...operations].sort());
    assert.match(String(await page.textContent('.info .title')), /SyncKairos/);
    await screenshot(chrome.page, 'docs');
  });
});

describe('/inspector with rate limits on', () => {
  test('reports a 429 and a refused socket, and keeps following', async () => {
    const { page } = chrome;
    await page.goto(`${server.url}/inspector`);
    await page.waitForSelector('body[data-ready=true]');
    // SYNCKAIROS_RATE_LIMIT_CREATE is 5/min per client here: the sixth creation is refused.
    /** @type {string[]} */
    const created = [];
    for (let i = 0; i < 6; i += 1) {
      const before = await page.inputValue('#session-input');
      await page.click('#demo-create');
      await page.waitForFunction(
        (old) =>
          /** @type {HTMLInputElement} */ (document.getElementById('session-input')).value !== old ||
          /rate limited/.test(String(document.getElementById('notice')?.textContent)),
        before,
        { timeout: 5_000 },
      );
      const id = await page.inputValue('#session-input');
      if (id !== before) created.push(id);
    }
    assert.equal(created.length, 5);
    assert.match(String(await page.textContent('#notice')), /^create: rate limited \(429\); retry in \d+ s$/);
    assert.ok(await page.$('#log tbody tr[data-what="create: RATE_LIMIT_EXCEEDED"]'));
    // The page still follows the fifth session on an open socket.
    await page.waitForFunction(() => document.getElementById('s-status')?.textContent === 'open');
    assert.equal(await page.textContent('#f-status'), 'pending');

    // SYNCKAIROS_RATE_LIMIT_WS_CONNECT is 5/min per IP here: a sixth socket is closed
    // with 1008 "rate limit"; the client waits the retry-after, the page says so.
    await page.fill('#session-input', created[0]);
    await page.click('#follow-button');
    await page.waitForSelector('#log tbody tr[data-what="socket: RATE_LIMIT_EXCEEDED"]', { timeout: 5_000 });
    await page.waitForFunction(() =>
      ['connecting', 'reconnecting'].includes(String(document.getElementById('s-status')?.textContent)),
    );
    const retry = await page.textContent('#log tbody tr[data-what="cannot connect"], #log tbody tr[data-what="socket lost"]');
    assert.match(String(retry), /code 1008 \(connection rate limit exceeded; retry after \d+ s\)/);
    await screenshot(page, 'inspector-rate-limited');
  });

  test('nothing was loaded from elsewhere and no unexpected error was logged', () => {
    // Expected here: the refused creation (429) and the refused socket.
    const expected = [/status of 429/, /WebSocket connection to .* failed/];
    assert.deepEqual(
      chrome.problems.filter((p) => !expected.some((re) => re.test(p))),
      [],
    );
  });
});
