// Start a real SyncKairos for a test file, through the project's launcher
// (`synckairos dev`: private Redis and PostgreSQL, migrations, audit worker,
// server), and stop it afterwards.
//
// SYNCKAIROS_TEST_URL=http://host:port runs the tests against a server that is
// already up instead.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Root of the repository: clients/js/test/helpers → ../../../.. */
export const REPO_ROOT = path.resolve(here, '../../../..');

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

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

/** The `synckairos` console script of the project's virtualenv. */
export function launcher() {
  const candidates = [
    process.env.SYNCKAIROS_BIN,
    path.join(REPO_ROOT, '.venv', 'bin', 'synckairos'),
    path.join(REPO_ROOT, '.venv', 'Scripts', 'synckairos.exe'),
  ].filter(Boolean);
  const found = candidates.find((candidate) => existsSync(/** @type {string} */ (candidate)));
  if (!found) {
    throw new Error(
      `no synckairos launcher (looked for ${candidates.join(', ')}); run "bash scripts/run.sh test" once, or set SYNCKAIROS_BIN`,
    );
  }
  return /** @type {string} */ (found);
}

/**
 * @param {number} ms
 * @returns {Promise<void>}
 */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A child process whose output is kept (last 20 kB) and which is killed when
 * the test process exits, whatever happens (also used by tests/browser).
 *
 * @param {string} command
 * @param {string[]} args
 * @param {Record<string, string | undefined>} [env]
 * @param {number} [stopTimeoutMs] how long `stop()` waits after SIGTERM before SIGKILL
 */
export function keptChild(command, args, env = {}, stopTimeoutMs = STOP_TIMEOUT_MS) {
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
      const timer = setTimeout(() => proc.kill('SIGKILL'), stopTimeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Start `synckairos dev` on a free port and wait until `/ready` answers 200.
 *
 * @param {{env?: Record<string, string>}} [options]
 * @returns {Promise<{baseUrl: string, stop: () => Promise<void>, log: () => string}>}
 */
export async function startServer(options = {}) {
  if (process.env.SYNCKAIROS_TEST_URL) {
    return { baseUrl: process.env.SYNCKAIROS_TEST_URL, stop: async () => {}, log: () => '' };
  }
  const port = await freePort();
  const env = {
    ...process.env,
    SYNCKAIROS_HOST: '127.0.0.1',
    SYNCKAIROS_PORT: String(port),
    SYNCKAIROS_RATE_LIMITS: 'off',
    SYNCKAIROS_LOG_LEVEL: 'warning',
    ...(options.env ?? {}),
  };
  const server = keptChild(launcher(), ['dev', '--host', '127.0.0.1', '--port', String(port)], env);
  const stop = () => server.stop();

  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (server.exitCode() !== null) {
      throw new Error(
        `synckairos dev exited with ${server.exitCode()} before it was ready:\n${server.output()}`,
      );
    }
    try {
      const response = await fetch(`${baseUrl}/ready`, { signal: AbortSignal.timeout(1_000) });
      await response.arrayBuffer();
      if (response.status === 200) return { baseUrl, stop, log: server.output };
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  await stop();
  throw new Error(`synckairos dev not ready in ${START_TIMEOUT_MS} ms:\n${server.output()}`);
}

/** @returns {string} a random UUID */
export function uuid() {
  return crypto.randomUUID();
}

/**
 * A valid create request.
 *
 * @param {{mode?: import('../../src/types.js').SyncMode, participants?: number, budgetMs?: number,
 *          extra?: Record<string, unknown>}} [options]
 * @returns {import('../../src/types.js').CreateSessionRequest}
 */
export function sessionBody(options = {}) {
  const count = options.participants ?? 2;
  const budget = options.budgetMs ?? 60_000;
  const participants = Array.from({ length: count }, (_, i) => ({
    participant_id: uuid(),
    participant_index: i,
    total_time_ms: budget,
  }));
  return {
    session_id: uuid(),
    sync_mode: options.mode ?? 'per_participant',
    participants,
    total_time_ms: budget,
    ...(options.extra ?? {}),
  };
}

/**
 * Resolve when `predicate()` is true (checked every 10 ms), or reject after `timeoutMs`.
 *
 * @param {() => boolean} predicate
 * @param {number} [timeoutMs]
 * @param {string} [what]
 */
export async function until(predicate, timeoutMs = 5_000, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}
