// SyncedClock and the offset estimator, in virtual time: an injected client
// clock off by a known skew, and an injected transport with random one-way
// delays. Each scenario runs over many seeds; the worst error and the largest
// uncertainty are printed as diagnostics.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { SyncedClock, SyncKairosError, bracket, estimateOffset } from '../src/index.js';
import { VirtualWorld, seededRandom } from './helpers/fakes.js';

const SEEDS = 200;

/**
 * Sync a fresh clock in a fresh world per seed; return the worst figures.
 *
 * @param {{skewMs: number, up: [number, number], down: [number, number]}} scenario
 */
async function measure({ skewMs, up, down }) {
  let worstError = 0;
  let maxUncertainty = 0;
  let minUncertainty = Infinity;
  let sumError = 0;
  let outside = 0;
  for (let seed = 1; seed <= SEEDS; seed += 1) {
    const world = new VirtualWorld({ skewMs, monotonicOriginMs: (seed % 7) * 0.137 });
    const clock = new SyncedClock({ clock: world.clientClock, onWarning: null });
    clock.addTransport(world.transport({ up, down, random: seededRandom(seed) }));
    const estimate = await clock.sync();
    const error = Math.abs(estimate.offsetMs - world.trueOffsetMs);
    // What the clock shows right now is the server's time within the same bound.
    const shownError = Math.abs(clock.now() - world.time);
    worstError = Math.max(worstError, error, shownError);
    sumError += error;
    maxUncertainty = Math.max(maxUncertainty, estimate.uncertaintyMs);
    minUncertainty = Math.min(minUncertainty, estimate.uncertaintyMs);
    if (error > estimate.uncertaintyMs || shownError > clock.uncertaintyMs) outside += 1;
  }
  return { worstError, meanError: sumError / SEEDS, maxUncertainty, minUncertainty, outside };
}

/**
 * @param {import('node:test').TestContext} t
 * @param {string} name
 * @param {Awaited<ReturnType<typeof measure>>} m
 */
function report(t, name, m) {
  t.diagnostic(
    `${name}: |error| worst ${m.worstError.toFixed(2)} ms, mean ${m.meanError.toFixed(2)} ms; ` +
      `uncertainty ${m.minUncertainty.toFixed(2)}–${m.maxUncertainty.toFixed(2)} ms; ` +
      `${m.outside}/${SEEDS} outside the uncertainty`,
  );
}

describe('offset estimate', () => {
  test('a client 5 s ahead, symmetric 5–15 ms delays: within 10 ms and within the uncertainty', async (t) => {
    const m = await measure({ skewMs: 5_000, up: [5, 15], down: [5, 15] });
    report(t, '+5 s, symmetric 5–15 ms', m);
    assert.equal(m.outside, 0);
    assert.ok(m.worstError <= 10, `worst error ${m.worstError}`);
  });

  test('a client 5 s behind, symmetric 5–15 ms delays: within 10 ms and within the uncertainty', async (t) => {
    const m = await measure({ skewMs: -5_000, up: [5, 15], down: [5, 15] });
    report(t, '-5 s, symmetric 5–15 ms', m);
    assert.equal(m.outside, 0);
    assert.ok(m.worstError <= 10, `worst error ${m.worstError}`);
  });

  test('symmetric but wide 20–80 ms delays: within the uncertainty', async (t) => {
    const m = await measure({ skewMs: 5_000, up: [20, 80], down: [20, 80] });
    report(t, '+5 s, symmetric 20–80 ms', m);
    assert.equal(m.outside, 0);
  });

  test('asymmetric delays (20–80 ms up, 5–15 ms down): within the uncertainty', async (t) => {
    const m = await measure({ skewMs: 5_000, up: [20, 80], down: [5, 15] });
    report(t, '+5 s, asymmetric 20–80 up / 5–15 down', m);
    assert.equal(m.outside, 0);
  });

  test('asymmetric delays the other way (5–15 ms up, 20–80 ms down): within the uncertainty', async (t) => {
    const m = await measure({ skewMs: -5_000, up: [5, 15], down: [20, 80] });
    report(t, '-5 s, asymmetric 5–15 up / 20–80 down', m);
    assert.equal(m.outside, 0);
  });

  test('one exchange brackets the offset by its round trip', () => {
    // Client 100 ms behind the server; 10 ms up, 30 ms down, 2 ms at the server.
    const b = bracket({ t0: 1_000, t1: 1_110, t2: 1_112, t3: 1_042 }, 0);
    assert.deepEqual(b, { low: 70, high: 110, rtt: 40, offset: 90 });
  });

  test('the intersection takes the fastest way up and the fastest way down', () => {
    const truth = 100;
    const sample = (/** @type {number} */ t0, /** @type {number} */ up, /** @type {number} */ down) => ({
      t0,
      t1: t0 + up + truth,
      t2: t0 + up + truth,
      t3: t0 + up + down,
    });
    const e = estimateOffset([sample(0, 5, 40), sample(100, 40, 5), sample(200, 30, 30)], {
      keep: 1,
      resolutionMs: 0,
    });
    assert.equal(e.consistent, true);
    assert.equal(e.offsetMs, truth);
    assert.equal(e.uncertaintyMs, 5);
  });

  test('high-RTT exchanges are discarded', () => {
    const samples = [
      { t0: 0, t1: 105, t2: 105, t3: 10 },
      { t0: 100, t1: 205, t2: 205, t3: 110 },
      { t0: 200, t1: 900, t2: 900, t3: 1_000 },
      { t0: 1_000, t1: 1_600, t2: 1_600, t3: 1_900 },
    ];
    const e = estimateOffset(samples, { keep: 0.5, resolutionMs: 0 });
    assert.equal(e.used, 2);
    assert.equal(e.rttMs, 10);
    assert.equal(e.offsetMs, 100);
  });

  test('brackets that do not intersect fall back to the median with a covering uncertainty', () => {
    const e = estimateOffset(
      [
        { t0: 0, t1: 102, t2: 102, t3: 4 }, // offset in [98, 102]
        { t0: 10, t1: 212, t2: 212, t3: 14 }, // offset in [198, 202]
      ],
      { keep: 1, resolutionMs: 0 },
    );
    assert.equal(e.consistent, false);
    assert.equal(e.offsetMs, 150);
    assert.ok(e.uncertaintyMs >= 52);
  });

  test('no sample is an error', () => {
    assert.throws(() => estimateOffset([]), RangeError);
  });
});

describe('SyncedClock', () => {
  test('a small correction is slewed: now() never jumps and never runs backwards', async () => {
    const world = new VirtualWorld({ skewMs: 0 });
    const clock = new SyncedClock({ clock: world.clientClock, onWarning: null, slewRate: 0.1 });
    let serverAhead = 0;
    clock.addTransport({
      name: 'exact',
      async exchange() {
        const t = Math.floor(world.time) + serverAhead;
        return { t1: t, t2: t };
      },
    });
    await clock.sync();
    serverAhead = 200; // the server's clock now reads 200 ms later
    /** @type {import('../src/index.js').ClockSyncEvent[]} */
    const events = [];
    clock.on('sync', (e) => events.push(e));
    await clock.sync();
    assert.equal(events[0].stepped, false);
    assert.ok(Math.abs(events[0].deltaMs - 200) <= 2);
    let previous = clock.now();
    for (let i = 0; i < 300; i += 1) {
      world.advance(10);
      const now = clock.now();
      const step = now - previous;
      assert.ok(step >= 10 * 0.9 - 1e-9 && step <= 10 * 1.1 + 1e-9, `step ${step}`);
      previous = now;
    }
    // 200 ms at 0.1 ms/ms: done after 2 s; 3 s have passed.
    assert.ok(Math.abs(clock.now() - (world.time + 200)) <= 2);
    assert.ok(clock.uncertaintyMs < 5);
  });

  test('a correction larger than maxSlewMs is stepped', async () => {
    const world = new VirtualWorld();
    const clock = new SyncedClock({ clock: world.clientClock, onWarning: null, maxSlewMs: 500 });
    let serverAhead = 0;
    clock.addTransport({
      name: 'exact',
      async exchange() {
        const t = Math.floor(world.time) + serverAhead;
        return { t1: t, t2: t };
      },
    });
    await clock.sync();
    serverAhead = 3_000;
    /** @type {import('../src/index.js').ClockSyncEvent[]} */
    const events = [];
    clock.on('sync', (e) => events.push(e));
    await clock.sync();
    assert.equal(events[0].stepped, true);
    assert.ok(Math.abs(clock.now() - (world.time + 3_000)) <= 2);
  });

  test('between syncs only the monotonic clock counts: a wall-clock step changes nothing shown', async () => {
    const world = new VirtualWorld({ skewMs: 0 });
    const clock = new SyncedClock({ clock: world.clientClock, onWarning: null });
    clock.addTransport(world.transport({ up: [1, 2], down: [1, 2], random: seededRandom(1) }));
    await clock.sync();
    const before = clock.now();
    // The user sets the wall clock one hour ahead; the monotonic clock does not move.
    world.skewMs += 3_600_000;
    world.monotonicOriginMs -= 3_600_000;
    assert.equal(clock.now(), before);
    assert.ok(clock.skewMs < -3_500_000);
  });

  test('a clock off by more than a minute is warned about once, and emits skew', async () => {
    const world = new VirtualWorld({ skewMs: -120_000 });
    /** @type {string[]} */
    const warnings = [];
    const clock = new SyncedClock({ clock: world.clientClock, onWarning: (m) => warnings.push(m) });
    /** @type {number[]} */
    const skews = [];
    clock.on('skew', (e) => skews.push(e.skewMs));
    clock.addTransport(world.transport({ up: [1, 2], down: [1, 2], random: seededRandom(2) }));
    await clock.sync();
    await clock.sync();
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /120 s behind/);
    assert.equal(skews.length, 2);
    assert.ok(Math.abs(skews[0] - 120_000) < 10);
  });

  test('a clock off by 5 s is not warned about', async () => {
    const world = new VirtualWorld({ skewMs: 5_000 });
    /** @type {string[]} */
    const warnings = [];
    const clock = new SyncedClock({ clock: world.clientClock, onWarning: (m) => warnings.push(m) });
    clock.addTransport(world.transport({ up: [1, 2], down: [1, 2], random: seededRandom(3) }));
    await clock.sync();
    assert.deepEqual(warnings, []);
  });

  test('a transport that does not answer is abandoned for the fallback', async () => {
    const world = new VirtualWorld({ skewMs: 1_000 });
    const clock = new SyncedClock({
      clock: world.clientClock,
      onWarning: null,
      sampleTimeoutMs: 30,
    });
    let asked = 0;
    clock.addTransport({
      name: 'silent',
      exchange() {
        asked += 1;
        return new Promise(() => {});
      },
    });
    clock.addTransport(world.transport({ name: 'http', up: [1, 3], down: [1, 3], random: seededRandom(4) }));
    const estimate = await clock.sync();
    assert.equal(asked, 1);
    assert.equal(estimate.source, 'http');
    assert.ok(Math.abs(estimate.offsetMs - world.trueOffsetMs) <= estimate.uncertaintyMs);
  });

  test('an unavailable primary transport is skipped; no transport at all is a NETWORK_ERROR', async () => {
    const world = new VirtualWorld();
    const clock = new SyncedClock({ clock: world.clientClock, onWarning: null });
    const fallback = world.transport({ name: 'http', up: [1, 2], down: [1, 2], random: seededRandom(5) });
    clock.addTransport(fallback);
    clock.addTransport(
      { name: 'websocket', available: () => false, exchange: () => Promise.reject(new Error('no')) },
      { primary: true },
    );
    assert.equal((await clock.sync()).source, 'http');
    clock.removeTransport(fallback);
    await assert.rejects(clock.sync(), (error) => {
      assert.ok(error instanceof SyncKairosError);
      assert.equal(error.code, 'NETWORK_ERROR');
      return true;
    });
  });

  test('start() re-syncs periodically until stop()', async () => {
    const world = new VirtualWorld();
    const clock = new SyncedClock({
      clock: world.clientClock,
      onWarning: null,
      resyncIntervalMs: 20,
      samples: 2,
    });
    const transport = world.transport({ up: [1, 2], down: [1, 2], random: seededRandom(6) });
    clock.addTransport(transport);
    let syncs = 0;
    clock.on('sync', () => (syncs += 1));
    clock.start();
    await new Promise((resolve) => setTimeout(resolve, 150));
    clock.stop();
    const counted = syncs;
    assert.ok(counted >= 3, `${counted} syncs`);
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(syncs, counted, 'no sync after stop()');
  });

  test('the uncertainty grows with the allowed drift after a sync', async () => {
    const world = new VirtualWorld();
    const clock = new SyncedClock({ clock: world.clientClock, onWarning: null, driftPpm: 100 });
    assert.equal(clock.uncertaintyMs, Infinity);
    clock.addTransport(world.transport({ up: [1, 2], down: [1, 2], random: seededRandom(7) }));
    const estimate = await clock.sync();
    world.advance(60_000);
    assert.ok(Math.abs(clock.uncertaintyMs - (estimate.uncertaintyMs + 6)) < 0.01);
  });

  test('concurrent sync() calls share one round', async () => {
    const world = new VirtualWorld();
    const clock = new SyncedClock({ clock: world.clientClock, onWarning: null, samples: 4 });
    const transport = world.transport({ up: [1, 2], down: [1, 2], random: seededRandom(8) });
    clock.addTransport(transport);
    const [a, b] = await Promise.all([clock.sync(), clock.sync()]);
    assert.equal(a, b);
    assert.equal(transport.exchanges, 4);
  });
});
