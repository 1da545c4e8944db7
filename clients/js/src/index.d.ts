// Public API of synckairos-client (hand-written declarations of the .js modules
// beside this file; test/types/conformance.ts checks that they match).

import type {
  ChangeEvent,
  CreateSessionRequest,
  ErrorCode,
  HealthResponse,
  ReadyResponse,
  SessionStatus,
  SwitchResult,
  SyncState,
  TimeResponse,
  Uuid,
} from './types.js';

export * from './types.js';

// ------------------------------------------------------------ errors

/**
 * The one error type of the client: the server's `{"error": {code, message,
 * details}}`, or a client-side code (NETWORK_ERROR, TIMEOUT, ABORTED,
 * BAD_RESPONSE, CLOSED).
 */
export declare class SyncKairosError extends Error {
  constructor(
    code: ErrorCode,
    message: string,
    options?: { status?: number; details?: unknown; retryAfterMs?: number | null; cause?: unknown },
  );
  /** Machine-readable code: the server's error code or a client-side one. */
  code: ErrorCode;
  /** HTTP status of the answer; 0 when there was none. */
  status: number;
  /** The server's `details`: `FieldError[]` for VALIDATION_ERROR, `ConflictDetails` for CONFLICT, ... */
  details: unknown;
  /**
   * How long to wait before retrying, in milliseconds, when the server said:
   * its `Retry-After` header, else the 429 body's `details.retry_after_ms` or
   * `retry_after_seconds`; else null.
   */
  retryAfterMs: number | null;
  /**
   * True on a CONFLICT met by a retry after an attempt whose outcome is unknown
   * (a 503, a timeout or a lost connection): that attempt most likely applied
   * the change. Read the state instead of trying again.
   */
  afterUnknownOutcome: boolean;
  /** True when sending the same request again may succeed (network, 429, 503). */
  readonly retryable: boolean;
  /** True for a rate limit (429 `RATE_LIMIT_EXCEEDED`, or `RATE_LIMITED` from older servers). */
  readonly rateLimited: boolean;
}

// ------------------------------------------------------------ events

export declare class Emitter<Events extends Record<string, unknown>> {
  /** Call `listener` with every `name` event; returns the unsubscribe function. */
  on<K extends keyof Events>(name: K, listener: (payload: Events[K]) => void): () => void;
  /** Call `listener` with the next `name` event only. */
  once<K extends keyof Events>(name: K, listener: (payload: Events[K]) => void): () => void;
  off<K extends keyof Events>(name: K, listener: (payload: Events[K]) => void): void;
  removeAllListeners(): void;
}

// ------------------------------------------------------------ REST

export interface RequestOptions {
  /** Milliseconds before the request fails with TIMEOUT (default: the client's `timeoutMs`). */
  timeoutMs?: number;
  /** Abort the request (fails with ABORTED). */
  signal?: AbortSignal;
  /** Extra headers for this request. */
  headers?: Record<string, string>;
}

export interface CommandOptions extends RequestOptions {
  /** Apply only if the session is at this version (else 409 CONFLICT). */
  expectedVersion?: number;
  /** Apply only if this participant is the active one (else 409 CONFLICT). */
  currentParticipantId?: Uuid;
  /**
   * Retries after a 503, 429, timeout or network error (default: the client's
   * `commandRetries`, 2). Only commands that carry `expectedVersion` or
   * `currentParticipantId` are retried: a precondition makes a retry unable to
   * apply the change twice when the first attempt's outcome is unknown.
   */
  retries?: number;
}

export interface SwitchOptions extends CommandOptions {
  /** Activate this participant instead of the next in rotation order. */
  nextParticipantId?: Uuid;
}

export interface RestOptions {
  /** `http(s)://host:port`, optionally with a path prefix. */
  baseUrl: string;
  /** Bearer token (auth enabled on the server). */
  token?: string | null;
  /** Default request timeout, ms (10,000). */
  timeoutMs?: number;
  /** Headers sent with every request. */
  headers?: Record<string, string>;
  /** A `fetch` implementation (default: `globalThis.fetch`). */
  fetch?: typeof fetch;
  /** Retries of a command carrying a precondition (default 2; see `CommandOptions.retries`). */
  commandRetries?: number;
}

/** The HTTP endpoints of the protocol, one method each. */
export declare class RestClient {
  constructor(options: RestOptions);
  readonly baseUrl: string;
  token: string | null;
  timeoutMs: number;
  headers: Record<string, string>;
  createSession(body: CreateSessionRequest, options?: RequestOptions): Promise<SyncState>;
  getSession(sessionId: Uuid, options?: RequestOptions): Promise<SyncState>;
  /** `expectedVersion` is sent as `If-Match`. */
  deleteSession(sessionId: Uuid, options?: CommandOptions): Promise<void>;
  startSession(sessionId: Uuid, options?: CommandOptions): Promise<SyncState>;
  switchCycle(sessionId: Uuid, options?: SwitchOptions): Promise<SwitchResult>;
  pauseSession(sessionId: Uuid, options?: CommandOptions): Promise<SyncState>;
  resumeSession(sessionId: Uuid, options?: CommandOptions): Promise<SyncState>;
  completeSession(sessionId: Uuid, options?: CommandOptions): Promise<SyncState>;
  cancelSession(sessionId: Uuid, options?: CommandOptions): Promise<SyncState>;
  getTime(options?: RequestOptions): Promise<TimeResponse>;
  health(options?: RequestOptions): Promise<HealthResponse>;
  /** Returns the body of 200 and 503 alike. */
  ready(options?: RequestOptions): Promise<ReadyResponse>;
  /** Prometheus text. */
  metrics(options?: RequestOptions): Promise<string>;
  openapi(options?: RequestOptions): Promise<Record<string, unknown>>;
}

/** `http://host:port/prefix` → `ws://host:port/prefix/ws`. */
export declare function websocketUrl(baseUrl: string): string;

// ------------------------------------------------------------ clock

/** One four-timestamp exchange: client send, server receive, server send, client receive. */
export interface ClockSample {
  t0: number;
  t1: number;
  t2: number;
  t3: number;
}

export interface OffsetEstimate {
  /** Server clock minus local clock, ms. */
  offsetMs: number;
  /** Hard bound on |offsetMs - true offset| (half-width of the intersected brackets). */
  uncertaintyMs: number;
  /** Smallest round-trip time among the exchanges used. */
  rttMs: number;
  /** Exchanges made. */
  samples: number;
  /** Exchanges kept (lowest RTT). */
  used: number;
  /** False when the kept brackets did not intersect (fallback: median). */
  consistent: boolean;
}

export interface SyncEstimate extends OffsetEstimate {
  /** Local monotonic time of the estimate. */
  at: number;
  /** Transport(s) used: "websocket", "http", or both joined by "+". */
  source: string;
}

/** A local clock: `now` monotonic on the epoch scale, `wall` the settable wall clock. */
export interface ClockSource {
  now(): number;
  wall(): number;
}

/** Carries one exchange: sends `t0`, resolves with the server's receive and send times. */
export interface TimeTransport {
  readonly name: string;
  available?(): boolean;
  exchange(t0: number): Promise<{ t1: number; t2: number }>;
}

export interface SyncedClockOptions {
  /** Local clock (default `systemClock`). */
  clock?: ClockSource;
  transports?: TimeTransport[];
  /** Exchanges per sync (8). */
  samples?: number;
  /** Fraction kept, lowest RTT first (0.5). */
  keep?: number;
  /** Milliseconds per exchange before it is abandoned (2,000). */
  sampleTimeoutMs?: number;
  /** Milliseconds between syncs after `start()` (60,000). */
  resyncIntervalMs?: number;
  /** Largest correction slewed instead of stepped, ms (1,000). */
  maxSlewMs?: number;
  /** Correction speed while slewing, ms per ms, in (0, 1) (0.1). */
  slewRate?: number;
  /** Timestamp granularity added to each bound, ms (1). */
  resolutionMs?: number;
  /** Drift allowed between the clocks, ppm, added to `uncertaintyMs` over time (100). */
  driftPpm?: number;
  /** |server - wall clock| beyond which `skew` is raised, ms (60,000). */
  skewWarningMs?: number;
  /** Receives the skew warning (default `console.warn`; null: silent). */
  onWarning?: ((message: string) => void) | null;
}

export interface ClockSyncEvent {
  estimate: SyncEstimate;
  /** New estimate minus the offset applied before it. */
  deltaMs: number;
  /** True when the correction was stepped (larger than `maxSlewMs`), not slewed. */
  stepped: boolean;
}

export type SyncedClockEvents = {
  sync: ClockSyncEvent;
  skew: { skewMs: number };
  error: unknown;
};

/** The local monotonic clock and `Date.now()`. */
export declare const systemClock: ClockSource;

/** The server's clock, estimated from exchanges and slewed; monotonic between syncs. */
export declare class SyncedClock extends Emitter<SyncedClockEvents> {
  constructor(options?: SyncedClockOptions);
  clock: ClockSource;
  samples: number;
  keep: number;
  sampleTimeoutMs: number;
  resyncIntervalMs: number;
  maxSlewMs: number;
  slewRate: number;
  resolutionMs: number;
  driftPpm: number;
  skewWarningMs: number;
  onWarning: ((message: string) => void) | null;
  /** Estimated server time, epoch ms (the local clock until the first sync). */
  now(): number;
  /** Offset applied now (`now()` minus the local clock). */
  readonly offsetMs: number;
  readonly estimate: SyncEstimate | null;
  readonly synced: boolean;
  /** Bound on |now() - server time| (Infinity before the first sync). */
  readonly uncertaintyMs: number;
  /** Server time minus `Date.now()`. */
  readonly skewMs: number;
  readonly running: boolean;
  addTransport(transport: TimeTransport, options?: { primary?: boolean }): () => void;
  removeTransport(transport: TimeTransport): void;
  /** One round of exchanges; concurrent calls share it. Rejects with NETWORK_ERROR when no transport answered. */
  sync(): Promise<SyncEstimate>;
  /** Sync now and every `resyncIntervalMs`. */
  start(): void;
  stop(): void;
}

/** A `TimeTransport` over `GET /v1/time`. */
export declare function httpTimeTransport(rest: {
  getTime(options?: { timeoutMs?: number }): Promise<{ timestamp_ms: number }>;
}): TimeTransport;

/** Pure estimator: intersect the exchanges' brackets (see offset.js). */
export declare function estimateOffset(
  samples: readonly ClockSample[],
  options?: { keep?: number; resolutionMs?: number },
): OffsetEstimate;

export declare function bracket(
  sample: ClockSample,
  resolutionMs: number,
): { low: number; high: number; rtt: number; offset: number };

// ------------------------------------------------------------ live sessions

export interface ReconnectOptions {
  /** First retry delay, ms (250). */
  initialDelayMs?: number;
  /** Cap of the delay, ms (10,000). */
  maxDelayMs?: number;
  /** Growth per attempt (2). */
  factor?: number;
  /** Fraction of the delay removed at random, 0..1 (0.5). */
  jitter?: number;
  /** Give up (status `closed`) after this many failed attempts in a row (Infinity). */
  maxAttempts?: number;
  /** Uniform random source in [0, 1) (tests). */
  random?: () => number;
}

export declare const DEFAULT_RECONNECT: Required<Omit<ReconnectOptions, 'random'>>;

/** Delay before attempt `attempt` (1, 2, ...): exponential, capped, jittered. */
export declare function backoffDelay(
  attempt: number,
  options: Omit<ReconnectOptions, 'random'>,
  random?: () => number,
): number;

/** What `WebSocket` implementations have in common (browsers, Node >= 22, `ws`). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onerror: ((event: any) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export type ConnectionStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ConnectionEvent {
  status: ConnectionStatus;
  /** Reconnection attempt (0 for the first connection). */
  attempt: number;
  /** Wait before the next attempt (connecting/reconnecting after a drop). */
  delayMs?: number;
  /** Close code of the socket that was lost. */
  code?: number;
  reason?: string;
}

export interface StateEvent {
  state: SyncState;
  version: number;
  epoch: string;
  /** `update`: the next version (with `event`); `sync`: a full state (first, or after a gap the history could not fill). */
  kind: 'sync' | 'update';
  event: ChangeEvent | null;
  previousVersion: number;
}

export interface TimeoutEvent {
  /** Whose time ran out. */
  participantId: Uuid | null;
  /** `participant_timeout`, or `session_expired`/`session_completed` with reason `timeout`. */
  event: ChangeEvent;
  state: SyncState;
}

export interface ResumedEvent {
  /** True: every missed version was replayed (or none was missed); false: full sync. */
  recovered: boolean;
  replayed: number;
  version: number;
  epoch: string;
}

export type LiveSessionEvents = {
  state: StateEvent;
  timeout: TimeoutEvent;
  deleted: { sessionId: Uuid };
  connection: ConnectionEvent;
  resumed: ResumedEvent;
  error: SyncKairosError;
};

export interface SubscribeOptions {
  reconnect?: ReconnectOptions;
  /** Resume from a version known earlier (e.g. stored across a page reload). */
  since?: { version: number; epoch: string };
  /** Send a PING after this long without a message, ms (15,000). */
  heartbeatIntervalMs?: number;
  /** Drop the socket when nothing arrives this long after a PING, ms (10,000). */
  heartbeatTimeoutMs?: number;
  /** Give up on a socket that does not open in this long, ms (10,000). */
  connectTimeoutMs?: number;
  /** Wait this long for RECONNECT_ACK before applying a held STATE_SYNC, ms (5,000). */
  resumeTimeoutMs?: number;
  /** WebSocket class (default: the platform's, else `ws`). */
  WebSocket?: WebSocketConstructor;
}

export interface LiveSessionOptions extends SubscribeOptions {
  sessionId: Uuid;
  /** The `/ws` URL. */
  url: string;
  token?: string | null;
  clock?: SyncedClock | null;
}

export interface TickOptions {
  /** Render every `intervalMs` instead of every animation frame. */
  intervalMs?: number;
  /** Render just after the value shown at this resolution changes (e.g. 1000 for seconds). */
  stepMs?: number;
}

export interface ParticipantSnapshot {
  participantId: Uuid;
  remainingMs: number | null;
  elapsedMs: number;
  isActive: boolean;
  hasExpired: boolean;
}

export interface DisplaySnapshot {
  serverNowMs: number;
  sessionId: Uuid;
  version: number;
  status: SessionStatus;
  isRunning: boolean;
  activeParticipantId: Uuid | null;
  /** The running timer (see `remainingMs`). */
  remainingMs: number | null;
  /** The session's running clock (see `elapsedMs`). */
  elapsedMs: number;
  participants: ParticipantSnapshot[];
}

/** One session followed live; see live.js for the theory of operation. */
export declare class LiveSession extends Emitter<LiveSessionEvents> {
  constructor(options: LiveSessionOptions);
  readonly sessionId: Uuid;
  readonly url: string;
  token: string | null;
  clock: SyncedClock | null;
  /** This socket as a TIME_SYNC transport. */
  readonly timeTransport: TimeTransport;
  readonly state: SyncState | null;
  readonly version: number;
  readonly epoch: string;
  readonly status: ConnectionStatus;
  /** Resolves with the first state; rejects with TIMEOUT or CLOSED. */
  ready(timeoutMs?: number): Promise<SyncState>;
  /** Stop following: close the socket, no reconnection. */
  close(): void;
  serverNow(): number;
  remainingMs(participantId?: Uuid): number | null;
  elapsedMs(participantId?: Uuid): number;
  readonly isRunning: boolean;
  snapshot(): DisplaySnapshot | null;
  /** Render on every frame / interval / value change and on every state; returns stop. */
  tick(render: (snapshot: DisplaySnapshot | null) => void, options?: TickOptions): () => void;
}

// ------------------------------------------------------------ client

export interface ClientOptions extends RestOptions {
  /** `/ws` URL (default: derived from `baseUrl`). */
  wsUrl?: string;
  WebSocket?: WebSocketConstructor;
  reconnect?: ReconnectOptions;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  clockSync?: SyncedClockOptions;
}

/** REST methods, one synced clock, live sessions. */
export declare class SyncKairosClient extends RestClient {
  constructor(options: ClientOptions);
  readonly wsUrl: string;
  /** TIME_SYNC over any open live socket, `GET /v1/time` otherwise. */
  readonly clock: SyncedClock;
  subscribe(sessionId: Uuid, options?: SubscribeOptions): LiveSession;
  /** Close every live session and stop the clock sync. */
  close(): void;
}

// ------------------------------------------------------------ display (pure)

export declare function activeParticipant(state: SyncState): SyncState['participants'][number] | null;
export declare function cycleStartedMs(state: SyncState): number | null;
/** Status running, a turn started, its participant not expired. */
export declare function isRunning(state: SyncState): boolean;
/** Time the running turn used since `cycle_started_ms`, stopped at `deadline_ms`. */
export declare function liveElapsedMs(state: SyncState, serverNowMs: number): number;
/**
 * Without `participantId`: the running timer (`deadline_ms - now`), or what it
 * would start from. With it: that participant's bank, draining while active.
 * Null for count_up without a cap. Never negative.
 */
export declare function remainingMs(
  state: SyncState,
  serverNowMs: number,
  participantId?: Uuid,
): number | null;
/**
 * With `participantId`: its time used. Without: the whole session's in global
 * and count_up, the current turn's otherwise.
 */
export declare function elapsedMs(state: SyncState, serverNowMs: number, participantId?: Uuid): number;
export declare function turnElapsedMs(state: SyncState, serverNowMs: number): number;
/** Milliseconds until the value shown at `stepMs` resolution changes; Infinity when nothing runs. */
export declare function msUntilNextChange(state: SyncState, serverNowMs: number, stepMs?: number): number;
export declare function snapshot(state: SyncState, serverNowMs: number): DisplaySnapshot;
