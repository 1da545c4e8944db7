// Reconnection delays: exponential, capped, with jitter (pure).

/** @import { ReconnectOptions } from './index.js' */

/** @type {Required<Omit<ReconnectOptions, 'random'>>} */
export const DEFAULT_RECONNECT = {
  initialDelayMs: 250,
  maxDelayMs: 10_000,
  factor: 2,
  jitter: 0.5,
  maxAttempts: Infinity,
};

/**
 * Delay before reconnection attempt `attempt` (1 for the first retry).
 *
 * The un-jittered delay is `initialDelayMs * factor^(attempt-1)`, capped at
 * `maxDelayMs`; jitter then removes a random fraction of up to `jitter` of it
 * (so many clients dropped at once do not come back in lockstep, and the cap
 * still holds).
 *
 * @param {number} attempt 1, 2, ...
 * @param {Omit<ReconnectOptions, 'random'>} options
 * @param {() => number} [random] uniform in [0, 1)
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, options, random = Math.random) {
  const o = { ...DEFAULT_RECONNECT, ...options };
  const exponent = Math.max(0, attempt - 1);
  const base = Math.min(o.maxDelayMs, o.initialDelayMs * o.factor ** exponent);
  const jitter = Math.min(1, Math.max(0, o.jitter));
  return Math.round(base * (1 - jitter * random()));
}
