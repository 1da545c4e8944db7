// The one error type of the client.
//
//   SyncKairosError        code, message, status, details, retryAfterMs, rateLimited
//     server answers       code from the `{"error": {code, message, details}}` body
//                          (VALIDATION_ERROR, CONFLICT, SESSION_NOT_FOUND, ...)
//     client-side          NETWORK_ERROR (fetch failed), TIMEOUT (no answer in time),
//                          ABORTED (caller's signal), BAD_RESPONSE (not the
//                          protocol's JSON), CLOSED (the live session was closed)
//
// Raised by the REST methods, `LiveSession.ready()` and `SyncedClock.sync()`.

/** @import { ErrorCode } from './types.js' */

/**
 * Codes of a rate limit: `RATE_LIMIT_EXCEEDED` (this server and the Node.js
 * server) and `RATE_LIMITED` (older versions of this server).
 */
export const RATE_LIMIT_CODES = new Set(['RATE_LIMIT_EXCEEDED', 'RATE_LIMITED']);

/** HTTP statuses and codes after which the same request may be sent again. */
const RETRYABLE_CODES = new Set(['NETWORK_ERROR', 'TIMEOUT', 'UNAVAILABLE', ...RATE_LIMIT_CODES]);

export class SyncKairosError extends Error {
  /**
   * @param {ErrorCode} code machine-readable code (the server's, or a client-side one)
   * @param {string} message human-readable explanation
   * @param {{status?: number, details?: unknown, retryAfterMs?: number | null, cause?: unknown}} [options]
   */
  constructor(code, message, options = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SyncKairosError';
    /** Machine-readable code: the server's error code or a client-side one. */
    this.code = code;
    /** HTTP status of the answer; 0 when there was none. */
    this.status = options.status ?? 0;
    /** The server's `details` (a list of `{field, message, code}`, conflict versions, ...), or undefined. */
    this.details = options.details;
    /**
     * How long to wait before retrying, in milliseconds, when the server said:
     * its `Retry-After` header, else the 429 body's `details.retry_after_ms` or
     * `retry_after_seconds`; else null.
     */
    this.retryAfterMs = options.retryAfterMs ?? null;
    /**
     * True on a CONFLICT met by a retry after an attempt whose outcome is
     * unknown (503, timeout, lost connection): that attempt most likely applied
     * the change, so read the state instead of trying again.
     */
    this.afterUnknownOutcome = false;
  }

  /** True when sending the same request again may succeed (network, 429, 503). */
  get retryable() {
    return RETRYABLE_CODES.has(this.code);
  }

  /** True for a rate limit (429 `RATE_LIMIT_EXCEEDED`, or `RATE_LIMITED` from older servers). */
  get rateLimited() {
    return RATE_LIMIT_CODES.has(this.code);
  }
}

/**
 * Parse a `Retry-After` header (delay in seconds, or an HTTP date).
 *
 * @param {string | null} value
 * @param {number} nowMs wall clock, for the HTTP-date form
 * @returns {number | null} milliseconds, or null when absent or malformed
 */
export function parseRetryAfter(value, nowMs) {
  if (value == null || value.trim() === '') return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, Math.round(seconds * 1000));
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - nowMs);
}
