// Helpers of the browser suite: a private redis-server, SyncKairos nodes on
// it (`synckairos serve`, restartable on the same port), headless Chromium
// through playwright-core, and screenshots saved as test artifacts.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

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

/** @returns {Promise<number>} a TCP port free right now on 127.0.0.1 */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A child process whose output is kept (last 20 kB) and which is killed when
 * the test process exits, whatever happens.
 *
 * @param {string} command
 * @param {string[]} args
 * @param {Record<string, string | undefined>} [env]
 */
function child(command, args, env = {}) {
  /** @type {Record<string, string>} */
  const merged = {};
  for (const [key, value] of Object.entries({ ...process.env, ...env })) {
    if (value !== undefined) merged[key] = value;
  }
  const proc = spawn(command, args, {
    cwd: REPO_ROOT,
    env: merged,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (/** @type {Buffer} */ chunk) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  /** @type {number | null} */
  let exitCode = null;
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      exitCode = code ?? (signal ? 128 : 0);
      resolve(undefined);
    });
  });
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);
  return {
    proc,
    output: () => output,
    exitCode: () => exitCode,
    /** SIGTERM (SIGKILL after a while); resolves once the process is gone. */
    async stop() {
      process.off('exit', killOnExit);
      if (exitCode !== null) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A private redis-server (no persistence) in a temporary directory. */
export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'synckairos-browser-redis-'));
  const server = child('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
  ]);
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
      server = child(launcher(), ['serve', '--host', '127.0.0.1', '--port', String(port)], {
        SYNCKAIROS_REDIS_URL: options.redisUrl,
        SYNCKAIROS_KEY_PREFIX: options.keyPrefix,
        SYNCKAIROS_RATE_LIMITS: 'off',
        SYNCKAIROS_LOG_LEVEL: 'warning',
        SYNCKAIROS_DATABASE_URL: undefined,
        ...(options.env ?? {}),
      });
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
