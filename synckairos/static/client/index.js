// synckairos-client: the public API (plain ES modules, no build step).

export { SyncKairosClient } from './client.js';
export { RestClient, websocketUrl } from './rest.js';
export { LiveSession } from './live.js';
export { SyncedClock, httpTimeTransport, systemClock } from './clock.js';
export { estimateOffset, bracket } from './offset.js';
export { backoffDelay, DEFAULT_RECONNECT } from './backoff.js';
export { SyncKairosError } from './errors.js';
export { Emitter } from './emitter.js';
export {
  activeParticipant,
  cycleStartedMs,
  elapsedMs,
  isRunning,
  liveElapsedMs,
  msUntilNextChange,
  remainingMs,
  snapshot,
  turnElapsedMs,
} from './display.js';
