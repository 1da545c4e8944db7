// SyncedClock: the server's clock, estimated locally.
//
// `now()` is a local monotonic clock plus an offset measured by four-timestamp
// exchanges (see offset.js): `TIME_SYNC` over an open live socket first, then
// `GET /v1/time` as the fallback. Between syncs nothing but the monotonic
// clock is read, so a wall-clock step (NTP, the user changing the time) never
// moves what is displayed.
//
// A new estimate close to the applied offset (|delta| <= maxSlewMs) is slewed
// in: the applied offset moves towards it linearly at `slewRate` ms per ms, so
// `now()` never jumps and never runs backwards (it advances at 1 +/- slewRate).
// A larger correction, or the first one, is stepped.
//
// `uncertaintyMs` bounds |now() - true server time|: the estimate's bracket
// half-width, plus what is left to slew, plus the allowed drift since the sync.

import { Emitter } from './emitter.js';
import { SyncKairosError } from './errors.js';
import { estimateOffset } from './offset.js';

/**
 * @import {
 *   ClockSample, ClockSource, ClockSyncEvent, SyncedClockEvents,
 *   SyncedClockOptions, SyncEstimate, TimeTransport
 * } from './index.js'
 */

/**
 * The default local clock: monotonic `performance.now()` on the epoch scale, and `Date.now()`.
 *
 * @type {ClockSource}
 */
export const systemClock = {
  now: () => performance.timeOrigin + performance.now(),
  wall: () => Date.now(),
};

/**
 * @param {any} timer
 * @returns {any}
 */
function unref(timer) {
  // Node: a resync timer alone must not keep the process alive.
  if (timer && typeof timer.unref === 'function') timer.unref();
  return timer;
}

/** @extends {Emitter<SyncedClockEvents>} */
export class SyncedClock extends Emitter {
  /** @type {TimeTransport[]} */
  #transports = [];
  /** @type {SyncEstimate | null} */
  #estimate = null;
  // Applied offset: moves linearly from #from to #to over [#slewStart, #slewEnd].
  #from = 0;
  #to = 0;
  #slewStart = 0;
  #slewEnd = 0;
  /** @type {Promise<SyncEstimate> | null} */
  #inflight = null;
  /** @type {any} */
  #timer = null;
  #running = false;
  #failures = 0;
  #skewWarned = false;

  /** @param {SyncedClockOptions} [options] */
  constructor(options = {}) {
    super();
    /** The local clock (injectable for tests). */
    this.clock = options.clock ?? systemClock;
    /** Exchanges per sync. */
    this.samples = options.samples ?? 8;
    /** Fraction of the exchanges kept, lowest RTT first. */
    this.keep = options.keep ?? 0.5;
    /** Milliseconds one exchange may take before it is abandoned. */
    this.sampleTimeoutMs = options.sampleTimeoutMs ?? 2_000;
    /** Milliseconds between syncs once `start()` was called. */
    this.resyncIntervalMs = options.resyncIntervalMs ?? 60_000;
    /** Largest correction slewed rather than stepped. */
    this.maxSlewMs = options.maxSlewMs ?? 1_000;
    /** Slew speed: milliseconds of correction per millisecond (0 < slewRate < 1). */
    this.slewRate = options.slewRate ?? 0.1;
    /** Timestamp granularity added to each bracket bound. */
    this.resolutionMs = options.resolutionMs ?? 1;
    /** Relative drift allowed between the two clocks, in parts per million. */
    this.driftPpm = options.driftPpm ?? 100;
    /** |server - local wall clock| above which a `skew` warning is raised. */
    this.skewWarningMs = options.skewWarningMs ?? 60_000;
    /** Called with the skew warning's text (default `console.warn`; null: silent). */
    this.onWarning = options.onWarning === undefined ? defaultWarn : options.onWarning;
    if (!(this.slewRate > 0 && this.slewRate < 1)) {
      throw new RangeError('SyncedClock: slewRate must be in (0, 1)');
    }
    for (const transport of options.transports ?? []) this.addTransport(transport);
  }

  // ------------------------------------------------------------ reading

  /** Estimated server time, epoch ms (the local clock until the first sync). */
  now() {
    const local = this.clock.now();
    return local + this.#applied(local);
  }

  /** Offset currently applied: `now()` minus the local monotonic clock. */
  get offsetMs() {
    return this.#applied(this.clock.now());
  }

  /** The last estimate (null before the first successful sync). */
  get estimate() {
    return this.#estimate;
  }

  /** True once a sync succeeded. */
  get synced() {
    return this.#estimate !== null;
  }

  /** Bound on |now() - server time| right now (Infinity before the first sync). */
  get uncertaintyMs() {
    const estimate = this.#estimate;
    if (estimate === null) return Infinity;
    const local = this.clock.now();
    const slewLeft = Math.abs(this.#to - this.#applied(local));
    const drift = (Math.max(0, local - estimate.at) * this.driftPpm) / 1e6;
    return estimate.uncertaintyMs + slewLeft + drift;
  }

  /** Server time minus the local wall clock (`Date.now()`), as of now. */
  get skewMs() {
    return this.now() - this.clock.wall();
  }

  // ------------------------------------------------------------ transports

  /**
   * Use `transport` for exchanges; transports added with `primary` are tried first.
   *
   * @param {TimeTransport} transport
   * @param {{primary?: boolean}} [options]
   * @returns {() => void} removes the transport
   */
  addTransport(transport, options = {}) {
    if (!this.#transports.includes(transport)) {
      if (options.primary) this.#transports.unshift(transport);
      else this.#transports.push(transport);
    }
    return () => this.removeTransport(transport);
  }

  /** @param {TimeTransport} transport */
  removeTransport(transport) {
    this.#transports = this.#transports.filter((t) => t !== transport);
  }

  // ------------------------------------------------------------ syncing

  /**
   * Measure the offset now (one round of exchanges) and apply it.
   * Concurrent calls share one round.
   *
   * @returns {Promise<SyncEstimate>}
   * @throws {SyncKairosError} code NETWORK_ERROR when no transport answered
   */
  sync() {
    if (this.#inflight === null) {
      this.#inflight = this.#round().finally(() => {
        this.#inflight = null;
      });
    }
    return this.#inflight;
  }

  /** Sync now and every `resyncIntervalMs` (sooner after a failure) until `stop()`. */
  start() {
    if (this.#running) return;
    this.#running = true;
    this.#loop();
  }

  /** Stop periodic syncing. */
  stop() {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** True between `start()` and `stop()`. */
  get running() {
    return this.#running;
  }

  #loop() {
    if (!this.#running) return;
    this.sync().then(
      () => {
        this.#failures = 0;
        this.#schedule(this.resyncIntervalMs);
      },
      (error) => {
        this.#failures += 1;
        this.emit('error', error);
        this.#schedule(Math.min(this.resyncIntervalMs, 500 * 2 ** Math.min(this.#failures, 10)));
      },
    );
  }

  /** @param {number} delayMs */
  #schedule(delayMs) {
    if (!this.#running) return;
    clearTimeout(this.#timer);
    this.#timer = unref(setTimeout(() => this.#loop(), delayMs));
  }

  /** @returns {Promise<SyncEstimate>} */
  async #round() {
    /** @type {ClockSample[]} */
    const samples = [];
    /** @type {string[]} */
    const sources = [];
    /** @type {unknown} */
    let lastError = null;
    // Each exchange takes the first available transport that has not failed
    // in this round, so a socket that opens mid-round takes over from HTTP.
    /** @type {Set<TimeTransport>} */
    const failed = new Set();
    while (samples.length < this.samples) {
      const transport = this.#transports.find(
        (t) => !failed.has(t) && (t.available ? t.available() : true),
      );
      if (transport === undefined) break;
      try {
        samples.push(await this.#exchange(transport));
        if (!sources.includes(transport.name)) sources.push(transport.name);
      } catch (error) {
        lastError = error;
        failed.add(transport); // the next transport completes the round
      }
    }
    if (samples.length === 0) {
      throw new SyncKairosError('NETWORK_ERROR', 'clock sync: no transport answered', {
        cause: lastError ?? undefined,
      });
    }
    const estimate = estimateOffset(samples, {
      keep: this.keep,
      resolutionMs: this.resolutionMs,
    });
    return this.#apply({ ...estimate, at: this.clock.now(), source: sources.join('+') });
  }

  /**
   * @param {TimeTransport} transport
   * @returns {Promise<ClockSample>}
   */
  async #exchange(transport) {
    const t0 = this.clock.now();
    /** @type {any} */
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new SyncKairosError('TIMEOUT', `${transport.name}: no time answer`)),
        this.sampleTimeoutMs,
      );
    });
    try {
      const { t1, t2 } = await Promise.race([transport.exchange(t0), timeout]);
      const t3 = this.clock.now();
      if (!Number.isFinite(t1) || !Number.isFinite(t2)) {
        throw new SyncKairosError('BAD_RESPONSE', `${transport.name}: malformed time answer`);
      }
      return { t0, t1, t2, t3 };
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * @param {SyncEstimate} estimate
   * @returns {SyncEstimate}
   */
  #apply(estimate) {
    const local = this.clock.now();
    const current = this.#applied(local);
    const first = this.#estimate === null;
    const deltaMs = estimate.offsetMs - current;
    const stepped = first || Math.abs(deltaMs) > this.maxSlewMs;
    if (stepped) {
      this.#from = this.#to = estimate.offsetMs;
      this.#slewStart = this.#slewEnd = local;
    } else {
      this.#from = current;
      this.#to = estimate.offsetMs;
      this.#slewStart = local;
      this.#slewEnd = local + Math.abs(deltaMs) / this.slewRate;
    }
    this.#estimate = estimate;
    /** @type {ClockSyncEvent} */
    const event = { estimate, deltaMs: first ? 0 : deltaMs, stepped: !first && stepped };
    this.emit('sync', event);
    this.#checkSkew();
    return estimate;
  }

  #checkSkew() {
    const skewMs = this.skewMs;
    if (Math.abs(skewMs) <= this.skewWarningMs) {
      this.#skewWarned = false;
      return;
    }
    this.emit('skew', { skewMs });
    if (!this.#skewWarned && this.onWarning) {
      this.#skewWarned = true;
      const seconds = Math.round(skewMs / 1000);
      this.onWarning(
        `synckairos: this device's clock is ${Math.abs(seconds)} s ${seconds > 0 ? 'behind' : 'ahead of'} ` +
          'the server; timers are shown in server time, but check the device clock',
      );
    }
  }

  /**
   * The offset applied at local time `local`.
   *
   * @param {number} local
   */
  #applied(local) {
    if (local >= this.#slewEnd) return this.#to;
    if (local <= this.#slewStart) return this.#from;
    const progress = (local - this.#slewStart) / (this.#slewEnd - this.#slewStart);
    return this.#from + (this.#to - this.#from) * progress;
  }
}

/** @param {string} message */
function defaultWarn(message) {
  console.warn(message);
}

/**
 * A `TimeTransport` over `GET /v1/time` (one server timestamp: t1 = t2).
 *
 * @param {{getTime(options?: {timeoutMs?: number}): Promise<{timestamp_ms: number}>}} rest
 * @returns {TimeTransport}
 */
export function httpTimeTransport(rest) {
  return {
    name: 'http',
    available: () => true,
    async exchange() {
      const { timestamp_ms: ts } = await rest.getTime();
      return { t1: ts, t2: ts };
    },
  };
}
