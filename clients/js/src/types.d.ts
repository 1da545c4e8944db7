// Wire types of the SyncKairos protocol (v1): HTTP bodies and WebSocket
// messages, mirrored from the server (synckairos/wire.py, core/model.py,
// ws_messages.py). Field names are the wire's own (snake_case, plus the
// reference's camelCase `sessionId`/`timestamp` in WebSocket envelopes).
// Declarations only: this file has no runtime counterpart.

/** A UUID in canonical text form. */
export type Uuid = string;

export type SyncMode = 'per_participant' | 'per_cycle' | 'per_group' | 'global' | 'count_up';

export type SessionStatus = 'pending' | 'running' | 'paused' | 'expired' | 'completed' | 'cancelled';

export type TimeoutActionType = 'expire_session' | 'skip_cycle' | 'complete_session' | 'notify';

/** (ext) What the server does when a running timer reaches zero. */
export interface TimeoutAction {
  type: TimeoutActionType;
}

/** A participant as given in a create request. */
export interface NewParticipant {
  participant_id: Uuid;
  /** 1,000–86,400,000 ms. */
  total_time_ms: number;
  participant_index?: number;
  /** Required in `per_group` mode. */
  group_id?: Uuid;
}

/** Body of `POST /v1/sessions`. */
export interface CreateSessionRequest {
  session_id: Uuid;
  sync_mode: SyncMode;
  /** 1–1000 participants with unique ids. */
  participants: NewParticipant[];
  /** 1,000–86,400,000 ms. */
  total_time_ms: number;
  /** Required in `per_cycle`; optional turn limit in `global`. */
  time_per_cycle_ms?: number;
  /** Fischer increment, 0–60,000 ms (`per_participant`, `per_group`). */
  increment_ms?: number;
  /** Cap of a `count_up` session, 1,000–86,400,000 ms. */
  max_time_ms?: number;
  /** Any JSON object, at most 10 KB serialized. */
  metadata?: Record<string, unknown>;
  /** (ext) */
  auto_advance?: boolean;
  /** (ext) */
  action_on_timeout?: TimeoutAction;
}

/** A participant in a session state. */
export interface Participant {
  participant_id: Uuid;
  participant_index: number;
  /** In the bank modes, the bank's current size (= `time_remaining_ms`). */
  total_time_ms: number;
  /** Time charged as of the last change (`cycle_started_ms`). */
  time_used_ms: number;
  /** Time left as of the last change (`cycle_started_ms`). */
  time_remaining_ms: number;
  cycle_count: number;
  is_active: boolean;
  has_expired: boolean;
  /** Absent when the participant has no group; older servers sent null. */
  group_id?: Uuid | null;
}

/** (ext) A pool of time drained while one of its members is active. */
export interface Bank {
  budget_ms: number;
  remaining_ms: number;
  used_ms: number;
  increments_ms: number;
}

/** The full state of a session (`SyncState`), SyncKairos fields plus extensions. */
export interface SyncState {
  session_id: Uuid;
  sync_mode: SyncMode;
  status: SessionStatus;
  /** 1 at creation, +1 per change. */
  version: number;
  participants: Participant[];
  active_participant_id: Uuid | null;
  total_time_ms: number;
  time_per_cycle_ms: number | null;
  /** ISO 8601 UTC with milliseconds, or null. */
  cycle_started_at: string | null;
  session_started_at: string | null;
  session_completed_at: string | null;
  increment_ms: number;
  /** Absent when unset (count_up without a cap); older servers sent null. */
  max_time_ms?: number | null;
  created_at: string;
  updated_at: string;
  /** (ext) Server clock (epoch ms) when the state was produced. */
  server_time_ms?: number;
  /** (ext) Server time (epoch ms) at which the running timer reaches zero; null when none runs. */
  deadline_ms?: number | null;
  /** (ext) `cycle_started_at` in epoch ms. */
  cycle_started_ms?: number | null;
  /** (ext) Time the current turn used before `cycle_started_ms` (pause/resume within a turn). */
  turn_used_ms?: number;
  metadata?: Record<string, unknown> | null;
  action_on_timeout?: TimeoutAction;
  auto_advance?: boolean;
  /** (ext) True once the state was restored from the audit store. */
  recovered?: boolean;
  /** (ext) Banks by key: participant id, group id or `"session"`. */
  banks?: Record<string, Bank>;
}

/** Body of a switch answer; the server returns the whole state plus `expired_participant_id`. */
export interface SwitchResult extends SyncState {
  expired_participant_id?: Uuid;
}

/** Body of `GET /v1/time`. */
export interface TimeResponse {
  timestamp_ms: number;
  /** The API version ("2.0.0", as the Node.js server reports it). */
  server_version: string;
  drift_tolerance_ms: number;
  /** (ext) This server's package version. */
  server_build?: string;
}

export interface HealthResponse {
  status: 'ok';
}

/** Body of `GET /ready` (200 or 503: both are returned, never thrown). */
export interface ReadyResponse {
  status: 'ready' | 'not_ready';
  redis: string;
  pubsub: string;
  audit: string;
}

/** `details` of a 400 VALIDATION_ERROR. */
export interface FieldError {
  /** Dot path of the field (`participants.0.total_time_ms`), `body`, or a header name. */
  field: string;
  message: string;
  /** Short snake-case code: `too_small`, `too_big`, `invalid_type`, `invalid_format`,
   * `invalid_value`, `required`, `duplicate`, `unrecognized`, `invalid_json`. */
  code?: string;
}

/** `details` of a 409 CONFLICT. */
export interface ConflictDetails {
  expected_version?: number;
  actual_version?: number;
  expected_participant_id?: string;
  actual_participant_id?: string;
}

export type ServerErrorCode =
  | 'VALIDATION_ERROR'
  | 'INVALID_STATE_TRANSITION'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'SESSION_NOT_FOUND'
  | 'CONFLICT'
  | 'SESSION_EXISTS'
  | 'PAYLOAD_TOO_LARGE'
  | 'RATE_LIMIT_EXCEEDED'
  /** The code of a 429 from older versions of this server. */
  | 'RATE_LIMITED'
  | 'UNAVAILABLE'
  | 'INTERNAL_ERROR';

/** Codes the client raises itself (no server answer to go by). */
export type ClientErrorCode = 'NETWORK_ERROR' | 'TIMEOUT' | 'BAD_RESPONSE' | 'ABORTED' | 'CLOSED';

export type ErrorCode = ServerErrorCode | ClientErrorCode | (string & {});

/** What a committed change did (`STATE_UPDATE.event`). */
export interface ChangeEvent {
  type:
    | 'session_created'
    | 'session_started'
    | 'cycle_switched'
    | 'session_paused'
    | 'session_resumed'
    | 'session_completed'
    | 'session_cancelled'
    | 'participant_timeout'
    | 'session_expired'
    | 'session_recovered'
    | (string & {});
  participant_id?: Uuid;
  next_participant_id?: Uuid;
  expired_participant_id?: Uuid;
  reason?: string;
}

// ------------------------------------------------------------ WebSocket

export interface ConnectedMessage {
  type: 'CONNECTED';
  sessionId: Uuid;
  timestamp: number;
}

export interface StateUpdateMessage {
  type: 'STATE_UPDATE';
  sessionId: Uuid;
  timestamp: number;
  version: number;
  epoch: string;
  event: ChangeEvent;
  state: SyncState;
  /** Commit time (server epoch ms). */
  ts?: number;
}

export interface StateSyncMessage {
  type: 'STATE_SYNC';
  sessionId: Uuid;
  timestamp: number;
  version: number;
  epoch: string;
  state: SyncState;
}

export interface SessionDeletedMessage {
  type: 'SESSION_DELETED';
  sessionId: Uuid;
  timestamp: number;
}

export interface PongMessage {
  type: 'PONG';
  timestamp: number;
  t0?: number;
}

export interface ErrorMessage {
  type: 'ERROR';
  code: string;
  message: string;
}

export interface ReconnectAckMessage {
  type: 'RECONNECT_ACK';
  success: boolean;
  /** True: the missed versions were replayed (or none were missed). */
  recovered: boolean;
  replayed: number;
  version: number;
  epoch: string;
}

export interface TimeSyncMessage {
  type: 'TIME_SYNC';
  t0: number | null;
  t1: number;
  t2: number;
}

export type ServerMessage =
  | ConnectedMessage
  | StateUpdateMessage
  | StateSyncMessage
  | SessionDeletedMessage
  | PongMessage
  | ErrorMessage
  | ReconnectAckMessage
  | TimeSyncMessage;

export type ClientMessage =
  | { type: 'PING'; t0?: number }
  | { type: 'TIME_SYNC'; t0: number }
  | { type: 'RECONNECT'; last_known_version?: number; epoch?: string; reconnect_attempt?: number };
