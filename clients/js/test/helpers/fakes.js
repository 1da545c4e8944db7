// Test doubles for the clock: a virtual world with one true time, a client
// clock that is off by a chosen skew, a server clock with integer
// milliseconds, and a transport whose one-way delays are drawn at random.
// Everything runs in virtual time: an exchange "takes" its delays instantly.

/**
 * A seeded uniform PRNG in [0, 1) (mulberry32), so every run draws the same delays.
 *
 * @param {number} seed
 * @returns {() => number}
 */
export function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class VirtualWorld {
  /**
   * @param {{skewMs?: number, startMs?: number, monotonicOriginMs?: number}} [options]
   *   skewMs: client clock minus true time (the server runs true time);
   *   monotonicOriginMs: how far the client's monotonic clock is from its wall clock
   */
  constructor(options = {}) {
    /** True time, epoch ms (float). */
    this.time = options.startMs ?? 1_800_000_000_000.25;
    this.skewMs = options.skewMs ?? 0;
    this.monotonicOriginMs = options.monotonicOriginMs ?? 0;
    /** The client's local clock (a `ClockSource`). */
    this.clientClock = {
      now: () => this.time + this.skewMs + this.monotonicOriginMs,
      wall: () => this.time + this.skewMs,
    };
  }

  /** Server clock: true time, integer ms like the server's. */
  serverNow() {
    return Math.floor(this.time);
  }

  /** The true offset a client should estimate: server - client monotonic clock. */
  get trueOffsetMs() {
    return -(this.skewMs + this.monotonicOriginMs);
  }

  /** @param {number} ms */
  advance(ms) {
    this.time += ms;
  }

  /**
   * A time transport with random one-way delays.
   *
   * @param {{up: [number, number], down: [number, number], processing?: [number, number],
   *          random: () => number, name?: string, t1Equalst2?: boolean}} options
   */
  transport(options) {
    const draw = (/** @type {[number, number]} */ [low, high]) =>
      low + (high - low) * options.random();
    const world = this;
    const transport = {
      name: options.name ?? 'fake',
      exchanges: 0,
      /** @type {Array<{up: number, down: number}>} */
      delays: [],
      available: () => true,
      async exchange() {
        transport.exchanges += 1;
        const up = draw(options.up);
        const down = draw(options.down);
        transport.delays.push({ up, down });
        world.advance(up);
        const t1 = world.serverNow();
        world.advance(draw(options.processing ?? [0, 0.5]));
        const t2 = options.t1Equalst2 ? t1 : world.serverNow();
        world.advance(down);
        await Promise.resolve();
        return { t1, t2 };
      },
    };
    return transport;
  }
}

/**
 * A scripted WebSocket: the test plays the server. Instances are recorded on
 * the class (`FakeSocket.instances`); `FakeSocket.reset()` clears them.
 */
export class FakeSocket {
  /** @type {FakeSocket[]} */
  static instances = [];

  static reset() {
    FakeSocket.instances = [];
  }

  /** @param {string} url */
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    /** @type {any[]} */
    this.sent = [];
    /** @type {((e: any) => void) | null} */
    this.onopen = null;
    /** @type {((e: {data: any}) => void) | null} */
    this.onmessage = null;
    /** @type {((e: any) => void) | null} */
    this.onerror = null;
    /** @type {((e: {code: number, reason: string}) => void) | null} */
    this.onclose = null;
    /** @type {{code?: number, reason?: string} | null} */
    this.closedByClient = null;
    FakeSocket.instances.push(this);
  }

  /** Server side: accept the socket. */
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  /** Server side: send a message. @param {object} message */
  push(message) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }

  /** Server side (or network): the socket is gone. */
  drop(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** Client side. @param {string} data */
  send(data) {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(JSON.parse(data));
  }

  /** Client side. */
  close(code = 1000, reason = '') {
    this.closedByClient = { code, reason };
    this.readyState = 3;
  }
}
