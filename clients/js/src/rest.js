// HTTP API of docs/protocol.md: one method per endpoint.
//
// Bodies and answers are the wire's own objects (snake_case); options of the
// methods are camelCase. Every failure becomes a `SyncKairosError`: the
// server's `{"error": {code, message, details}}`, or a client-side code when
// there was no usable answer (NETWORK_ERROR, TIMEOUT, ABORTED, BAD_RESPONSE).

import { SyncKairosError, parseRetryAfter } from './errors.js';

/**
 * @import {
 *   CreateSessionRequest, HealthResponse, ReadyResponse, SwitchResult, SyncState,
 *   TimeResponse, Uuid
 * } from './types.js'
 * @import { CommandOptions, RequestOptions, RestOptions, SwitchOptions } from './index.js'
 */

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Turn `http://host:port/prefix` into the WebSocket URL of `/ws`.
 *
 * @param {string} baseUrl
 * @returns {string}
 */
export function websocketUrl(baseUrl) {
  const url = new URL(baseUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/ws`;
  url.search = '';
  url.hash = '';
  return url.toString();
}

/** Retries of a command carrying a precondition, by default. */
const DEFAULT_COMMAND_RETRIES = 2;
/** First pause before retrying a command without a `Retry-After`, doubled each time. */
const RETRY_BASE_MS = 250;

/**
 * Wait `ms`, or until `signal` aborts (then reject with ABORTED).
 *
 * @param {number} ms
 * @param {AbortSignal | undefined} signal
 * @returns {Promise<void>}
 */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new SyncKairosError('ABORTED', 'request aborted'));
      return;
    }
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(new SyncKairosError('ABORTED', 'request aborted'));
      },
      { once: true },
    );
  });
}

export class RestClient {
  /** @type {typeof fetch} */
  #fetch;

  /** @param {RestOptions} options */
  constructor(options) {
    if (!options || typeof options.baseUrl !== 'string') {
      throw new TypeError('RestClient: options.baseUrl is required');
    }
    /** Base URL of the server, without a trailing slash. */
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    /** Bearer token sent as `Authorization` (HTTP) and `token` (WebSocket), if any. */
    this.token = options.token ?? null;
    /** Milliseconds before a request fails with TIMEOUT. */
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    /** Extra headers sent with every request. */
    this.headers = { ...(options.headers ?? {}) };
    /** Retries of a command that carries a precondition (see `#command`). */
    this.commandRetries = options.commandRetries ?? DEFAULT_COMMAND_RETRIES;
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') {
      throw new TypeError('RestClient: no fetch available; pass options.fetch');
    }
    this.#fetch = fetchImpl.bind(globalThis);
  }

  // ------------------------------------------------------------ sessions

  /**
   * `POST /v1/sessions`.
   *
   * @param {CreateSessionRequest} body
   * @param {RequestOptions} [options]
   * @returns {Promise<SyncState>}
   */
  async createSession(body, options) {
    return this.#data('POST', '/v1/sessions', { ...options, body });
  }

  /**
   * `GET /v1/sessions/{id}`.
   *
   * @param {Uuid} sessionId
   * @param {RequestOptions} [options]
   * @returns {Promise<SyncState>}
   */
  async getSession(sessionId, options) {
    return this.#data('GET', sessionPath(sessionId), options);
  }

  /**
   * `DELETE /v1/sessions/{id}` (204). `expectedVersion` is sent as `If-Match`.
   *
   * @param {Uuid} sessionId
   * @param {CommandOptions} [options]
   * @returns {Promise<void>}
   */
  async deleteSession(sessionId, options) {
    const { expectedVersion, ...rest } = options ?? {};
    await this.#request('DELETE', sessionPath(sessionId), {
      ...rest,
      headers: ifMatch(expectedVersion, rest.headers),
    });
  }

  /**
   * `POST /v1/sessions/{id}/start`.
   *
   * @param {Uuid} sessionId
   * @param {CommandOptions} [options]
   * @returns {Promise<SyncState>}
   */
  async startSession(sessionId, options) {
    return this.#command(sessionId, 'start', options);
  }

  /**
   * `POST /v1/sessions/{id}/switch`: end the active turn, activate the next
   * participant (rotation order, or `nextParticipantId`).
   *
   * Send `currentParticipantId` from a game UI: a double click or a replayed
   * request then answers 409 CONFLICT instead of advancing two turns.
   *
   * @param {Uuid} sessionId
   * @param {SwitchOptions} [options]
   * @returns {Promise<SwitchResult>}
   */
  async switchCycle(sessionId, options) {
    const { nextParticipantId, ...rest } = options ?? {};
    /** @type {Record<string, unknown>} */
    const extra = {};
    if (nextParticipantId != null) extra.next_participant_id = nextParticipantId;
    return this.#command(sessionId, 'switch', rest, extra);
  }

  /**
   * `POST /v1/sessions/{id}/pause`.
   *
   * @param {Uuid} sessionId
   * @param {CommandOptions} [options]
   * @returns {Promise<SyncState>}
   */
  async pauseSession(sessionId, options) {
    return this.#command(sessionId, 'pause', options);
  }

  /**
   * `POST /v1/sessions/{id}/resume`.
   *
   * @param {Uuid} sessionId
   * @param {CommandOptions} [options]
   * @returns {Promise<SyncState>}
   */
  async resumeSession(sessionId, options) {
    return this.#command(sessionId, 'resume', options);
  }

  /**
   * `POST /v1/sessions/{id}/complete`.
   *
   * @param {Uuid} sessionId
   * @param {CommandOptions} [options]
   * @returns {Promise<SyncState>}
   */
  async completeSession(sessionId, options) {
    return this.#command(sessionId, 'complete', options);
  }

  /**
   * `POST /v1/sessions/{id}/cancel` (ext).
   *
   * @param {Uuid} sessionId
   * @param {CommandOptions} [options]
   * @returns {Promise<SyncState>}
   */
  async cancelSession(sessionId, options) {
    return this.#command(sessionId, 'cancel', options);
  }

  // ------------------------------------------------------------ service

  /**
   * `GET /v1/time`: the server clock. Prefer `SyncedClock` to use it.
   *
   * @param {RequestOptions} [options]
   * @returns {Promise<TimeResponse>}
   */
  async getTime(options) {
    return /** @type {Promise<TimeResponse>} */ (this.#json('GET', '/v1/time', options));
  }

  /**
   * `GET /health`.
   *
   * @param {RequestOptions} [options]
   * @returns {Promise<HealthResponse>}
   */
  async health(options) {
    return /** @type {Promise<HealthResponse>} */ (this.#json('GET', '/health', options));
  }

  /**
   * `GET /ready`: returns the body for 200 and 503 alike (`status` tells).
   *
   * @param {RequestOptions} [options]
   * @returns {Promise<ReadyResponse>}
   */
  async ready(options) {
    const response = await this.#request('GET', '/ready', { ...options, accept: [503] });
    return /** @type {ReadyResponse} */ (await readJson(response));
  }

  /**
   * `GET /metrics`: Prometheus text.
   *
   * @param {RequestOptions} [options]
   * @returns {Promise<string>}
   */
  async metrics(options) {
    const response = await this.#request('GET', '/metrics', options);
    return response.text();
  }

  /**
   * `GET /openapi.json` (ext): the OpenAPI 3.1 document.
   *
   * @param {RequestOptions} [options]
   * @returns {Promise<Record<string, unknown>>}
   */
  async openapi(options) {
    return /** @type {Promise<Record<string, unknown>>} */ (
      this.#json('GET', '/openapi.json', options)
    );
  }

  // ------------------------------------------------------------ plumbing

  /**
   * @param {Uuid} sessionId
   * @param {string} name
   * @param {CommandOptions | undefined} options
   * @param {Record<string, unknown>} [extra]
   * @returns {Promise<any>}
   */
  async #command(sessionId, name, options, extra = {}) {
    const { expectedVersion, currentParticipantId, retries, ...rest } = options ?? {};
    /** @type {Record<string, unknown>} */
    const body = { ...extra };
    if (expectedVersion != null) body.expected_version = expectedVersion;
    if (currentParticipantId != null) body.current_participant_id = currentParticipantId;
    const path = `${sessionPath(sessionId)}/${name}`;
    // A retry is safe only with a precondition: if an attempt whose outcome is
    // unknown (503, timeout, lost connection) did apply, the retry meets a 409
    // instead of applying the change a second time.
    const guarded = expectedVersion != null || currentParticipantId != null;
    const attempts = 1 + (guarded ? Math.max(0, retries ?? this.commandRetries) : 0);
    let outcomeUnknown = false;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#data('POST', path, { ...rest, body });
      } catch (error) {
        if (!(error instanceof SyncKairosError)) throw error;
        if (error.code === 'CONFLICT' && outcomeUnknown) error.afterUnknownOutcome = true;
        if (attempt >= attempts || !error.retryable) throw error;
        outcomeUnknown ||= !error.rateLimited; // a 429 changed nothing
        await sleep(error.retryAfterMs ?? RETRY_BASE_MS * 2 ** (attempt - 1), rest.signal);
      }
    }
  }

  /**
   * A request whose answer is `{"data": ...}`; returns the data.
   *
   * @param {string} method
   * @param {string} path
   * @param {RequestOptions & {body?: unknown}} [options]
   * @returns {Promise<any>}
   */
  async #data(method, path, options) {
    const payload = await this.#json(method, path, options);
    if (payload === null || typeof payload !== 'object' || !('data' in payload)) {
      throw new SyncKairosError('BAD_RESPONSE', `${method} ${path}: answer has no "data"`);
    }
    return payload.data;
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {RequestOptions & {body?: unknown}} [options]
   * @returns {Promise<any>}
   */
  async #json(method, path, options) {
    return readJson(await this.#request(method, path, options));
  }

  /**
   * Send one request; resolve with a 2xx response (or a status in `accept`).
   *
   * @param {string} method
   * @param {string} path
   * @param {RequestOptions & {body?: unknown, accept?: number[]}} [options]
   * @returns {Promise<Response>}
   */
  async #request(method, path, options = {}) {
    /** @type {Record<string, string>} */
    const headers = { accept: 'application/json', ...this.headers, ...(options.headers ?? {}) };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    /** @type {string | undefined} */
    let body;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const controller = new AbortController();
    const outer = options.signal;
    const onAbort = () => controller.abort(outer?.reason);
    if (outer?.aborted) onAbort();
    else outer?.addEventListener('abort', onAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    try {
      const response = await this.#fetch(this.baseUrl + path, {
        method,
        headers,
        body,
        signal: controller.signal,
      });
      if (response.ok || options.accept?.includes(response.status)) {
        // Read the body under the same timeout: keep the timer until then.
        return await bufferBody(response);
      }
      throw await errorFromResponse(method, path, response);
    } catch (error) {
      if (error instanceof SyncKairosError) throw error;
      if (timedOut) {
        throw new SyncKairosError('TIMEOUT', `${method} ${path}: no answer in ${timeoutMs} ms`, {
          cause: error,
        });
      }
      if (outer?.aborted) {
        throw new SyncKairosError('ABORTED', `${method} ${path}: aborted`, { cause: error });
      }
      throw new SyncKairosError('NETWORK_ERROR', `${method} ${path}: ${describe(error)}`, {
        cause: error,
      });
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onAbort);
    }
  }
}

/** @param {Uuid} sessionId */
function sessionPath(sessionId) {
  return `/v1/sessions/${encodeURIComponent(sessionId)}`;
}

/**
 * @param {number | undefined} expectedVersion
 * @param {Record<string, string> | undefined} headers
 * @returns {Record<string, string>}
 */
function ifMatch(expectedVersion, headers) {
  return expectedVersion == null
    ? { ...(headers ?? {}) }
    : { ...(headers ?? {}), 'if-match': `"${expectedVersion}"` };
}

/**
 * Read the whole body now, so a stalled body is covered by the request timeout.
 *
 * @param {Response} response
 * @returns {Promise<Response>}
 */
async function bufferBody(response) {
  const text = await response.text();
  return new Response(response.status === 204 ? null : text, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/**
 * @param {Response} response
 * @returns {Promise<unknown>}
 */
async function readJson(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new SyncKairosError('BAD_RESPONSE', `answer is not JSON (status ${response.status})`, {
      status: response.status,
    });
  }
}

/**
 * @param {string} method
 * @param {string} path
 * @param {Response} response
 * @returns {Promise<SyncKairosError>}
 */
async function errorFromResponse(method, path, response) {
  const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), Date.now());
  const text = await response.text();
  /** @type {any} */
  let payload = null;
  try {
    payload = JSON.parse(text);
  } catch {
    // not JSON: handled below
  }
  const error = payload && typeof payload === 'object' ? payload.error : null;
  if (error && typeof error.code === 'string') {
    return new SyncKairosError(error.code, String(error.message ?? error.code), {
      status: response.status,
      details: error.details,
      // Retry-After may be hidden from a page on another origin (a server that
      // does not expose it): the 429 body says it too.
      retryAfterMs: retryAfterMs ?? bodyRetryAfterMs(error),
    });
  }
  return new SyncKairosError(
    response.status >= 500 ? 'UNAVAILABLE' : 'BAD_RESPONSE',
    `${method} ${path}: HTTP ${response.status}`,
    { status: response.status, retryAfterMs, details: text.slice(0, 500) || undefined },
  );
}

/**
 * The wait a 429 body gives: `details.retry_after_ms` (this server), else
 * `retry_after_seconds` (this server and the Node.js server).
 *
 * @param {any} error the body's `error` object
 * @returns {number | null}
 */
function bodyRetryAfterMs(error) {
  const ms = error.details?.retry_after_ms;
  if (Number.isFinite(ms) && ms >= 0) return Math.round(ms);
  const seconds = error.retry_after_seconds;
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);
  return null;
}

/** @param {unknown} error */
function describe(error) {
  if (error instanceof Error) {
    const cause = /** @type {{cause?: unknown}} */ (error).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}
