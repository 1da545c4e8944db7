// LiveSession: one session followed over `/ws`, kept open across drops.
//
// Theory of operation
// -------------------
// The session holds the newest state it applied, with its `version` and
// history `epoch`. Versions only compare within one epoch (the epoch changes
// when the session is deleted and created again; a restore after Redis lost it
// keeps the epoch and jumps the version forward, so it arrives as a newer
// STATE_SYNC).
//
// * STATE_UPDATE with the same epoch and version + 1: applied (a `state`
//   event with what changed). An older or equal version is a duplicate and is
//   dropped. A gap, or another epoch, is never applied: the client asks for a
//   repair with RECONNECT {last_known_version, epoch} and the server answers
//   with the missed versions in order (`recovered: true`) or a STATE_SYNC.
// * STATE_SYNC (the full state): applied when it is newer, or of another
//   epoch; never over a newer version of the same epoch.
// * After a drop the socket is reopened with exponential backoff and jitter.
//   The server greets every new socket with a STATE_SYNC of the current
//   state; the client, which knows (version, epoch), sends RECONNECT at once and
//   holds that greeting until RECONNECT_ACK: the missed versions arrive first,
//   one by one, so a listener sees every version with no gap, then the held
//   STATE_SYNC is applied only if it is still newer (it is not, when the replay
//   succeeded) or of another epoch (`recovered: false`: a full sync).
// * A RECONNECT_ACK of version 0 means the session no longer exists (deleted
//   while the client was away): the same as SESSION_DELETED.
// * SESSION_DELETED (then close 1000) and close 1008 (bad session id, auth)
//   end the session for good; every other close reconnects, a 1008 for a rate
//   limit after the "retry after N s" its reason gives.
// * A socket that hears nothing for `heartbeatIntervalMs` gets a PING; if
//   nothing at all arrives `heartbeatTimeoutMs` later it is dropped and reopened.
//
// The session also lends its socket to a `SyncedClock` as its preferred
// time transport (TIME_SYNC exchanges).

import { backoffDelay, DEFAULT_RECONNECT } from './backoff.js';
import * as display from './display.js';
import { Emitter } from './emitter.js';
import { SyncKairosError } from './errors.js';
import { dropSocket, OPEN, resolveWebSocket } from './socket.js';

/**
 * @import { ChangeEvent, ClientMessage, ServerMessage, StateSyncMessage, StateUpdateMessage, SyncState } from './types.js'
 * @import {
 *   ConnectionStatus, DisplaySnapshot, LiveSessionEvents, LiveSessionOptions, ReconnectOptions,
 *   TickOptions, TimeTransport, WebSocketLike
 * } from './index.js'
 */

const CLOSE_NORMAL = 1000;
const CLOSE_POLICY = 1008;

/** Change events that mean a timer reached zero. */
const TIMEOUT_EVENTS = new Set(['participant_timeout', 'session_expired', 'session_completed']);

/**
 * @param {ChangeEvent | null | undefined} event
 * @returns {boolean}
 */
function isTimeout(event) {
  if (!event || !TIMEOUT_EVENTS.has(event.type)) return false;
  return event.type === 'participant_timeout' || event.reason === 'timeout';
}

/** @param {any} timer */
function unref(timer) {
  if (timer && typeof timer.unref === 'function') timer.unref();
  return timer;
}

/** @extends {Emitter<LiveSessionEvents>} */
export class LiveSession extends Emitter {
  /** @type {SyncState | null} */
  #state = null;
  #version = 0;
  #epoch = '';
  /** @type {ConnectionStatus} */
  #status = 'connecting';
  /** @type {WebSocketLike | null} */
  #socket = null;
  #attempt = 0;
  #closed = false;
  #everOpened = false;
  // Between RECONNECT and its ACK: greetings are held, gaps are not repaired twice.
  #resuming = false;
  /** @type {StateSyncMessage | null} */
  #heldSync = null;
  /** @type {any} */
  #resumeTimer = null;
  /** @type {any} */
  #retryTimer = null;
  /** @type {any} */
  #connectTimer = null;
  /** @type {any} */
  #heartbeatTimer = null;
  #lastHeard = 0;
  #pingSentAt = 0;
  #timeSyncSupported = true;
  /** @type {Map<number, {resolve: (v: {t1: number, t2: number}) => void, reject: (e: unknown) => void}>} */
  #timeRequests = new Map();
  /** @type {Array<{resolve: (s: SyncState) => void, reject: (e: unknown) => void}>} */
  #waiters = [];
  /** @type {(() => void) | null} */
  #detachClock = null;

  /** @param {LiveSessionOptions} options */
  constructor(options) {
    super();
    if (!options || !options.sessionId || !options.url) {
      throw new TypeError('LiveSession: sessionId and url are required');
    }
    /** The followed session. */
    this.sessionId = options.sessionId;
    /** The `/ws` URL, without query. */
    this.url = options.url;
    this.token = options.token ?? null;
    /** @type {Omit<ReconnectOptions, 'random'>} */
    this.reconnect = { ...DEFAULT_RECONNECT, ...(options.reconnect ?? {}) };
    this.random = options.reconnect?.random ?? Math.random;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 15_000;
    this.heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 10_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.resumeTimeoutMs = options.resumeTimeoutMs ?? 5_000;
    /**
     * The synced clock used by the display helpers (null: the local clock).
     * @type {import('./index.js').SyncedClock | null}
     */
    this.clock = options.clock ?? null;
    this.WebSocket = options.WebSocket;
    if (options.since) {
      this.#version = options.since.version;
      this.#epoch = options.since.epoch;
    }
    /** This socket as a time transport (TIME_SYNC), for a `SyncedClock`. */
    /** @type {TimeTransport} */
    this.timeTransport = {
      name: 'websocket',
      available: () => this.#timeSyncSupported && this.#socket?.readyState === OPEN,
      exchange: (t0) => this.#timeExchange(t0),
    };
    if (this.clock) this.#detachClock = this.clock.addTransport(this.timeTransport, { primary: true });
    this.#connect();
  }

  // ------------------------------------------------------------ public state

  /** The newest applied state (null until the first one arrives). */
  get state() {
    return this.#state;
  }

  /** Version of `state` (0 before the first one). */
  get version() {
    return this.#version;
  }

  /** History epoch of `state` ("" before the first one). */
  get epoch() {
    return this.#epoch;
  }

  /** connecting, open, reconnecting or closed. */
  get status() {
    return this.#status;
  }

  /**
   * Resolve with the state once there is one.
   *
   * @param {number} [timeoutMs] default 10,000
   * @returns {Promise<SyncState>}
   * @throws {SyncKairosError} TIMEOUT, or CLOSED once the session is closed or deleted
   */
  ready(timeoutMs = 10_000) {
    if (this.#closed) {
      return Promise.reject(new SyncKairosError('CLOSED', `live session ${this.sessionId} is closed`));
    }
    if (this.#state !== null) return Promise.resolve(this.#state);
    return new Promise((resolve, reject) => {
      const waiter = {
        /** @param {SyncState} state */
        resolve: (state) => {
          clearTimeout(timer);
          resolve(state);
        },
        /** @param {unknown} error */
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new SyncKairosError('TIMEOUT', `no state of ${this.sessionId} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /** Stop following the session: close the socket, no reconnection. */
  close() {
    this.#finish('closed by client', null);
  }

  // ------------------------------------------------------------ display

  /** Server time now: the synced clock's, or the local clock before any sync. */
  serverNow() {
    return this.clock ? this.clock.now() : Date.now();
  }

  /**
   * See `display.remainingMs`; null before the first state.
   *
   * @param {string} [participantId]
   * @returns {number | null}
   */
  remainingMs(participantId) {
    return this.#state === null
      ? null
      : display.remainingMs(this.#state, this.serverNow(), participantId);
  }

  /**
   * See `display.elapsedMs`; 0 before the first state.
   *
   * @param {string} [participantId]
   * @returns {number}
   */
  elapsedMs(participantId) {
    return this.#state === null ? 0 : display.elapsedMs(this.#state, this.serverNow(), participantId);
  }

  /** True while a timer of the session runs. */
  get isRunning() {
    return this.#state !== null && display.isRunning(this.#state);
  }

  /**
   * Every display value for this instant; null before the first state.
   *
   * @returns {DisplaySnapshot | null}
   */
  snapshot() {
    return this.#state === null ? null : display.snapshot(this.#state, this.serverNow());
  }

  /**
   * Call `render` with a fresh snapshot on every frame (`requestAnimationFrame`
   * where there is one), or every `intervalMs`, or, with `stepMs`, just after
   * the shown value changes; and at once on every state change. Nothing is
   * counted: each call computes from the state and the synced clock.
   *
   * @param {(snapshot: DisplaySnapshot | null) => void} render
   * @param {TickOptions} [options]
   * @returns {() => void} stops the ticking
   */
  tick(render, options = {}) {
    let stopped = false;
    /** @type {any} */
    let handle = null;
    const raf = /** @type {any} */ (globalThis).requestAnimationFrame;
    const caf = /** @type {any} */ (globalThis).cancelAnimationFrame;
    const useFrames = options.intervalMs == null && options.stepMs == null && typeof raf === 'function';
    const draw = () => {
      if (!stopped) render(this.snapshot());
    };
    const schedule = () => {
      if (stopped) return;
      if (useFrames) {
        handle = raf(() => {
          draw();
          schedule();
        });
        return;
      }
      let delay = options.intervalMs ?? 100;
      if (options.intervalMs == null && this.#state !== null) {
        const step = options.stepMs ?? 1000;
        const next = display.msUntilNextChange(this.#state, this.serverNow(), step);
        delay = Math.min(step, next) + 1;
      }
      handle = setTimeout(() => {
        draw();
        schedule();
      }, delay);
    };
    const offState = this.on('state', () => {
      draw();
      if (!useFrames) {
        clearTimeout(handle);
        schedule();
      }
    });
    draw();
    schedule();
    return () => {
      stopped = true;
      offState();
      if (useFrames) caf?.(handle);
      else clearTimeout(handle);
    };
  }

  // ------------------------------------------------------------ connection

  async #connect() {
    if (this.#closed) return;
    /** @type {any} */
    let Ctor;
    try {
      Ctor = await resolveWebSocket(this.WebSocket);
    } catch (error) {
      this.emit('error', new SyncKairosError('NETWORK_ERROR', String(error), { cause: error }));
      this.#finish('no WebSocket implementation', null);
      return;
    }
    if (this.#closed) return;
    if (!this.#everOpened && this.#attempt === 0) this.#setStatus('connecting', { attempt: 0 });
    const url = new URL(this.url);
    url.searchParams.set('sessionId', this.sessionId);
    if (this.token) url.searchParams.set('token', this.token);
    /** @type {WebSocketLike} */
    let socket;
    try {
      socket = new Ctor(url.toString());
    } catch (error) {
      this.#lost(1006, `cannot open socket: ${error}`);
      return;
    }
    this.#socket = socket;
    this.#connectTimer = unref(
      setTimeout(() => this.#abandon(socket, 'connect timeout'), this.connectTimeoutMs),
    );
    socket.onopen = () => this.#onOpen(socket);
    socket.onmessage = (event) => this.#onMessage(socket, event.data);
    socket.onerror = () => {
      // the close event follows and decides
    };
    socket.onclose = (event) => {
      if (this.#socket === socket) this.#lost(event.code, event.reason);
    };
  }

  /** @param {WebSocketLike} socket */
  #onOpen(socket) {
    if (this.#socket !== socket) return;
    clearTimeout(this.#connectTimer);
    this.#everOpened = true;
    this.#lastHeard = performance.now();
    this.#setStatus('open', { attempt: this.#attempt });
    this.#startHeartbeat();
    if (this.#epoch !== '' && this.#version > 0) this.#requestRepair();
    if (this.clock && !this.clock.synced) {
      this.clock.sync().catch((/** @type {unknown} */ error) => this.emit('error', asError(error)));
    }
  }

  /**
   * @param {WebSocketLike} socket
   * @param {unknown} data
   */
  #onMessage(socket, data) {
    if (this.#socket !== socket) return;
    this.#lastHeard = performance.now();
    this.#pingSentAt = 0;
    /** @type {ServerMessage} */
    let message;
    try {
      message = JSON.parse(String(data));
    } catch {
      this.emit('error', new SyncKairosError('BAD_RESPONSE', 'server sent a message that is not JSON'));
      return;
    }
    switch (message.type) {
      case 'STATE_UPDATE':
        this.#onUpdate(message);
        break;
      case 'STATE_SYNC':
        if (this.#resuming) this.#heldSync = newer(this.#heldSync, message);
        else this.#applySync(message);
        break;
      case 'RECONNECT_ACK':
        if (message.version === 0 && this.#version > 0) {
          // The server has no such session any more: it was deleted while we were away.
          this.emit('deleted', { sessionId: this.sessionId });
          this.#finish('session deleted', new SyncKairosError('CLOSED', 'session deleted'));
          break;
        }
        this.#onAck(message.recovered, message.replayed);
        break;
      case 'SESSION_DELETED':
        this.emit('deleted', { sessionId: this.sessionId });
        this.#finish('session deleted', new SyncKairosError('CLOSED', 'session deleted'));
        break;
      case 'TIME_SYNC': {
        const request = message.t0 == null ? undefined : this.#timeRequests.get(message.t0);
        if (request && message.t0 != null) {
          this.#timeRequests.delete(message.t0);
          request.resolve({ t1: message.t1, t2: message.t2 });
        }
        break;
      }
      case 'ERROR':
        if (message.code === 'UNKNOWN_MESSAGE_TYPE' && this.#timeRequests.size > 0) {
          // A server without TIME_SYNC (the reference): the clock falls back to HTTP.
          this.#timeSyncSupported = false;
          this.#rejectTimeRequests(new SyncKairosError('UNKNOWN_MESSAGE_TYPE', message.message));
        }
        this.emit('error', new SyncKairosError(message.code, message.message));
        break;
      default:
        break; // CONNECTED, PONG, and types of later versions
    }
  }

  /** @param {StateUpdateMessage} message */
  #onUpdate(message) {
    const version = message.version;
    const baseline = this.#state === null && this.#version === 0;
    if (!baseline) {
      if (message.epoch !== this.#epoch) {
        this.#requestRepair(); // another epoch: the server answers with a STATE_SYNC
        return;
      }
      if (version <= this.#version) return; // duplicate
      if (version !== this.#version + 1) {
        this.#requestRepair(); // a gap: never skip a version silently
        return;
      }
    }
    this.#apply(message.state, version, message.epoch, 'update', message.event ?? null);
  }

  /** @param {StateSyncMessage} message */
  #applySync(message) {
    const sameEpoch = message.epoch === this.#epoch;
    if (this.#state !== null && sameEpoch && message.version <= this.#version) return;
    this.#apply(message.state, message.version, message.epoch, 'sync', null);
  }

  /**
   * @param {boolean} recovered
   * @param {number} replayed
   */
  #onAck(recovered, replayed) {
    clearTimeout(this.#resumeTimer);
    this.#resuming = false;
    const held = this.#heldSync;
    this.#heldSync = null;
    if (held) this.#applySync(held);
    this.emit('resumed', { recovered, replayed, version: this.#version, epoch: this.#epoch });
    this.#attempt = 0;
  }

  /**
   * @param {SyncState} state
   * @param {number} version
   * @param {string} epoch
   * @param {'sync' | 'update'} kind
   * @param {ChangeEvent | null} event
   */
  #apply(state, version, epoch, kind, event) {
    const previousVersion = this.#version;
    this.#state = state;
    this.#version = version;
    this.#epoch = epoch;
    if (!this.#resuming) this.#attempt = 0;
    this.emit('state', { state, version, epoch, kind, event, previousVersion });
    if (isTimeout(event)) {
      this.emit('timeout', {
        participantId: event?.participant_id ?? null,
        event: /** @type {ChangeEvent} */ (event),
        state,
      });
    }
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter.resolve(state);
  }

  /** Ask the server for what this client misses (replay, or a STATE_SYNC). */
  #requestRepair() {
    if (this.#resuming) return;
    /** @type {ClientMessage} */
    const message = {
      type: 'RECONNECT',
      last_known_version: this.#version,
      epoch: this.#epoch,
      reconnect_attempt: this.#attempt,
    };
    if (!this.#send(message)) return;
    this.#resuming = true;
    clearTimeout(this.#resumeTimer);
    // A server that never acknowledges (the reference) still sent a STATE_SYNC.
    this.#resumeTimer = unref(
      setTimeout(() => {
        if (this.#resuming) this.#onAck(false, 0);
      }, this.resumeTimeoutMs),
    );
  }

  /**
   * @param {ClientMessage} message
   * @returns {boolean} sent
   */
  #send(message) {
    const socket = this.#socket;
    if (socket === null || socket.readyState !== OPEN) return false;
    try {
      socket.send(JSON.stringify(message));
      return true;
    } catch {
      return false;
    }
  }

  #startHeartbeat() {
    clearInterval(this.#heartbeatTimer);
    const period = Math.max(50, Math.min(this.heartbeatIntervalMs, this.heartbeatTimeoutMs) / 2);
    this.#heartbeatTimer = unref(
      setInterval(() => {
        const socket = this.#socket;
        if (socket === null) return;
        const now = performance.now();
        if (this.#pingSentAt && now - this.#pingSentAt > this.heartbeatTimeoutMs) {
          this.#abandon(socket, 'heartbeat timeout');
        } else if (!this.#pingSentAt && now - this.#lastHeard > this.heartbeatIntervalMs) {
          this.#pingSentAt = now;
          this.#send({ type: 'PING', t0: now });
        }
      }, period),
    );
  }

  /**
   * Give up on `socket` now (no close handshake awaited) and reconnect.
   *
   * @param {WebSocketLike} socket
   * @param {string} reason
   */
  #abandon(socket, reason) {
    if (this.#socket !== socket) return;
    detach(socket);
    dropSocket(socket, { hard: true, code: 4000, reason });
    this.#lost(1006, reason);
  }

  /**
   * The socket is gone: reconnect, or stop for good.
   *
   * @param {number} code
   * @param {string} reason
   */
  #lost(code, reason) {
    this.#teardownSocket();
    if (this.#closed) return;
    // 1008 is final (bad session id, auth), unless it is a rate limit.
    const rateLimited = code === CLOSE_POLICY && /rate limit/i.test(reason);
    if (code === CLOSE_POLICY && !rateLimited) {
      const error = new SyncKairosError('FORBIDDEN', `server refused the socket: ${reason || code}`);
      this.emit('error', error);
      this.#finish(reason || 'policy violation', error);
      return;
    }
    this.#attempt += 1;
    const limit = this.reconnect.maxAttempts ?? Infinity;
    if (this.#attempt > limit) {
      this.#finish(
        'too many reconnection attempts',
        new SyncKairosError('NETWORK_ERROR', `gave up after ${limit} reconnection attempts`),
      );
      return;
    }
    let delayMs = backoffDelay(this.#attempt, this.reconnect, this.random);
    if (rateLimited) {
      const retryAfter = /retry after (\d+(?:\.\d+)?) ?s/i.exec(reason);
      const waitMs = retryAfter ? Number(retryAfter[1]) * 1000 : this.reconnect.maxDelayMs ?? 0;
      delayMs = Math.max(delayMs, waitMs);
      this.emit('error', new SyncKairosError('RATE_LIMIT_EXCEEDED', reason, { retryAfterMs: waitMs }));
    }
    this.#setStatus(this.#everOpened ? 'reconnecting' : 'connecting', {
      attempt: this.#attempt,
      delayMs,
      code,
      reason,
    });
    this.#retryTimer = setTimeout(() => this.#connect(), delayMs);
  }

  #teardownSocket() {
    clearTimeout(this.#connectTimer);
    clearInterval(this.#heartbeatTimer);
    clearTimeout(this.#resumeTimer);
    this.#resuming = false;
    this.#heldSync = null;
    this.#pingSentAt = 0;
    this.#rejectTimeRequests(new SyncKairosError('CLOSED', 'socket closed'));
    const socket = this.#socket;
    this.#socket = null;
    if (socket) detach(socket);
  }

  /**
   * End for good: close the socket, reject waiters, status `closed`.
   *
   * @param {string} reason
   * @param {SyncKairosError | null} error
   */
  #finish(reason, error) {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    const socket = this.#socket;
    this.#teardownSocket();
    if (socket) dropSocket(socket, { code: CLOSE_NORMAL, reason: '' });
    this.#detachClock?.();
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) {
      waiter.reject(error ?? new SyncKairosError('CLOSED', `live session closed: ${reason}`));
    }
    this.#setStatus('closed', { attempt: this.#attempt, reason });
  }

  /**
   * @param {ConnectionStatus} status
   * @param {{attempt: number, delayMs?: number, code?: number, reason?: string}} details
   */
  #setStatus(status, details) {
    const changed = status !== this.#status;
    this.#status = status;
    if (changed || status === 'reconnecting' || status === 'connecting') {
      this.emit('connection', { status, ...details });
    }
  }

  // ------------------------------------------------------------ time transport

  /**
   * @param {number} t0
   * @returns {Promise<{t1: number, t2: number}>}
   */
  #timeExchange(t0) {
    // Exchanges are sequential: an older request still waiting was abandoned.
    this.#rejectTimeRequests(new SyncKairosError('TIMEOUT', 'superseded'));
    return new Promise((resolve, reject) => {
      this.#timeRequests.set(t0, { resolve, reject });
      if (!this.#send({ type: 'TIME_SYNC', t0 })) {
        this.#timeRequests.delete(t0);
        reject(new SyncKairosError('CLOSED', 'socket not open'));
      }
    });
  }

  /** @param {unknown} error */
  #rejectTimeRequests(error) {
    const requests = [...this.#timeRequests.values()];
    this.#timeRequests.clear();
    for (const request of requests) request.reject(error);
  }
}

/**
 * The newer of two STATE_SYNC messages (another epoch counts as newer).
 *
 * @param {StateSyncMessage | null} held
 * @param {StateSyncMessage} incoming
 */
function newer(held, incoming) {
  if (held === null || held.epoch !== incoming.epoch) return incoming;
  return incoming.version >= held.version ? incoming : held;
}

/** @param {WebSocketLike} socket */
function detach(socket) {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onclose = null;
  // Keep an error handler: `ws` throws an 'error' event that has no listener
  // (closing a socket still connecting emits one).
  socket.onerror = () => {};
}

/** @param {unknown} error */
function asError(error) {
  return error instanceof SyncKairosError
    ? error
    : new SyncKairosError('NETWORK_ERROR', String(error), { cause: error });
}
