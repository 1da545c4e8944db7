// SyncKairosClient: the REST methods, one synced clock, and live sessions.

import { SyncedClock, httpTimeTransport } from './clock.js';
import { LiveSession } from './live.js';
import { RestClient, websocketUrl } from './rest.js';

/** @import { ClientOptions, SubscribeOptions } from './index.js' */

export class SyncKairosClient extends RestClient {
  /** @type {Set<LiveSession>} */
  #sessions = new Set();

  /** @param {ClientOptions} options */
  constructor(options) {
    super(options);
    /** The `/ws` URL derived from `baseUrl` (or `options.wsUrl`). */
    this.wsUrl = options.wsUrl ?? websocketUrl(this.baseUrl);
    /** Options given to every `subscribe`. */
    this.liveDefaults = {
      WebSocket: options.WebSocket,
      reconnect: options.reconnect,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs,
    };
    /**
     * The server's clock, estimated: TIME_SYNC over any open live socket,
     * `GET /v1/time` otherwise. Started by the first `subscribe`.
     */
    this.clock = new SyncedClock(options.clockSync ?? {});
    this.clock.addTransport(httpTimeTransport(this));
  }

  /**
   * Follow a session live: a socket kept open with reconnection, gap-free
   * resume and the display helpers. Starts the periodic clock sync.
   *
   * @param {string} sessionId
   * @param {SubscribeOptions} [options]
   * @returns {LiveSession}
   */
  subscribe(sessionId, options = {}) {
    const session = new LiveSession({
      ...this.liveDefaults,
      ...options,
      reconnect: { ...(this.liveDefaults.reconnect ?? {}), ...(options.reconnect ?? {}) },
      sessionId,
      url: this.wsUrl,
      token: this.token,
      clock: this.clock,
    });
    this.#sessions.add(session);
    session.on('connection', ({ status }) => {
      if (status === 'closed') this.#sessions.delete(session);
    });
    this.clock.start();
    return session;
  }

  /** Close every live session and stop the clock sync. */
  close() {
    for (const session of [...this.#sessions]) session.close();
    this.#sessions.clear();
    this.clock.stop();
  }
}
