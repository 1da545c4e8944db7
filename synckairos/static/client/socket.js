// Where the WebSocket class comes from: the platform's (browsers, Deno, Bun,
// Node.js >= 22), or the `ws` package on older Node.js, imported only then so
// a browser never asks for it.

/** @import { WebSocketLike, WebSocketConstructor } from './index.js' */

/** @type {Promise<WebSocketConstructor> | null} */
let resolved = null;

/**
 * Return a WebSocket constructor: `override`, else `globalThis.WebSocket`, else `ws`.
 *
 * @param {WebSocketConstructor} [override]
 * @returns {Promise<WebSocketConstructor>}
 */
export function resolveWebSocket(override) {
  if (override) return Promise.resolve(override);
  const native = /** @type {any} */ (globalThis).WebSocket;
  if (typeof native === 'function') return Promise.resolve(native);
  resolved ??= importWs();
  return resolved;
}

/** @returns {Promise<WebSocketConstructor>} */
async function importWs() {
  const name = 'ws'; // a variable: bundlers and browsers must not resolve it eagerly
  try {
    const module = await import(/* @vite-ignore */ /* webpackIgnore: true */ name);
    return module.WebSocket ?? module.default;
  } catch (error) {
    resolved = null;
    throw new Error(
      'synckairos-client: this platform has no WebSocket; on Node.js < 22 install the "ws" package',
      { cause: error },
    );
  }
}

/** WebSocket readyState values (the same on every implementation). */
export const OPEN = 1;

/**
 * Close a socket without waiting for it: `terminate()` (no closing handshake)
 * where the implementation has it (`ws`) and `hard` is set, else `close()`.
 * Errors of an already closed socket are ignored.
 *
 * @param {WebSocketLike} socket
 * @param {{hard?: boolean, code?: number, reason?: string}} [options]
 */
export function dropSocket(socket, options = {}) {
  try {
    const terminate = /** @type {any} */ (socket).terminate;
    if (options.hard && typeof terminate === 'function') terminate.call(socket);
    else socket.close(options.code ?? 1000, options.reason ?? '');
  } catch {
    // already closing or closed
  }
}
