// Helpers of the browser suite: a private redis-server, SyncKairos nodes on
// it (`synckairos serve`, restartable on the same port), headless Chromium
// through playwright-core, and screenshots saved as test artifacts.

import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { freePort, keptChild } from '../../clients/js/test/helpers/server.js';

export { freePort };

const here = path.dirname(fileURLToPath(import.meta.url));
/** Root of the repository (tests/browser → ../..). */
export const REPO_ROOT = path.resolve(here, '../..');
/** Where screenshots go (gitignored); SYNCKAIROS_ARTIFACTS overrides. */
export const ARTIFACTS = path.resolve(process.env.SYNCKAIROS_ARTIFACTS ?? path.join(here, 'artifacts'));
/** Debian's Chromium; playwright-core never downloads a browser here. */
export const CHROMIUM = process.env.SYNCKAIROS_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

/** @param {number} ms */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));



/** A private redis-server (no persistence) in a temporary directory. */
export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'synckairos-browser-redis-'));
  const server = keptChild('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
  ], {}, STOP_TIMEOUT_MS);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!/Ready to accept connections/.test(server.output())) {
    if (server.exitCode() !== null || Date.now() > deadline) {
      await server.stop();
      throw new Error(`redis-server did not start:\n${server.output()}`);
    }
    await sleep(20);
  }
  return {
    url: `redis://127.0.0.1:${port}/0`,
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The `synckairos` console script of the project's virtualenv (or SYNCKAIROS_BIN). */
function launcher() {
  const found = [process.env.SYNCKAIROS_BIN, path.join(REPO_ROOT, '.venv', 'bin', 'synckairos')]
    .filter(Boolean)
    .find((candidate) => existsSync(/** @type {string} */ (candidate)));
  if (!found) throw new Error('no .venv/bin/synckairos: run "bash scripts/run.sh test" once');
  return /** @type {string} */ (found);
}

/**
 * One SyncKairos node (`synckairos serve`) on the given Redis; `stop()` sends
 * SIGTERM (sockets get 1001), `start()` starts it again on the same port.
 *
 * @param {{redisUrl: string, keyPrefix: string, env?: Record<string, string>}} options
 */
export async function node(options) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  /** @type {ReturnType<typeof child> | null} */
  let server = null;
  const handle = {
    url,
    port,
    log: () => server?.output() ?? '',
    async start() {
      server = keptChild(launcher(), ['serve', '--host', '127.0.0.1', '--port', String(port)], {
        SYNCKAIROS_REDIS_URL: options.redisUrl,
        SYNCKAIROS_KEY_PREFIX: options.keyPrefix,
        SYNCKAIROS_RATE_LIMITS: 'off',
        SYNCKAIROS_LOG_LEVEL: 'warning',
        SYNCKAIROS_DATABASE_URL: undefined,
        ...(options.env ?? {}),
      }, STOP_TIMEOUT_MS);
      const deadline = Date.now() + START_TIMEOUT_MS;
      for (;;) {
        if (server.exitCode() !== null) throw new Error(`synckairos serve exited:\n${server.output()}`);
        if (Date.now() > deadline) throw new Error(`synckairos serve not ready:\n${server.output()}`);
        try {
          const response = await fetch(`${url}/ready`, { signal: AbortSignal.timeout(1_000) });
          await response.arrayBuffer();
          if (response.status === 200) return;
        } catch {
          // not listening yet
        }
        await sleep(50);
      }
    },
    async stop() {
      await server?.stop();
    },
  };
  await handle.start();
  return handle;
}

/**
 * Headless Chromium and one page that records its errors, CSP violations
 * and any request that leaves `origin`.
 *
 * @param {string} origin
 */
export async function openBrowser(origin) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  /** @type {string[]} */
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.stack ?? error}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(origin) && !url.startsWith(origin.replace(/^http/, 'ws')) && !url.startsWith('data:')) {
      problems.push(`request outside the server: ${url}`);
    }
  });
  return { browser, page, problems };
}

/**
 * Save a full-page screenshot under ARTIFACTS and return its path.
 *
 * @param {import('playwright-core').Page} page
 * @param {string} name file name without extension
 */
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${path.relative(REPO_ROOT, file)}`);
  return file;
}

/**
 * `fetch` a JSON endpoint; returns `{status, body}`.
 *
 * @param {string} url
 * @param {RequestInit & {json?: unknown}} [init]
 */
export async function call(url, init = {}) {
  const { json, ...rest } = init;
  const response = await fetch(url, {
    ...rest,
    headers: { 'content-type': 'application/json', ...(rest.headers ?? {}) },
    body: json === undefined ? rest.body : JSON.stringify(json),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}
