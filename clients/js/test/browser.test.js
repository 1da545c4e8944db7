// The package must load in a browser as plain ES modules (no bundler): every
// static import is relative, nothing imports a Node.js built-in, and the only
// package ever imported (`ws`, dynamically) is asked for only when the
// platform has no WebSocket.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src');

test('every module imports only relative .js files, and each exists', () => {
  const files = readdirSync(src).filter((f) => f.endsWith('.js'));
  assert.ok(files.length >= 10);
  for (const file of files) {
    const code = readFileSync(path.join(src, file), 'utf8');
    const specifiers = [...code.matchAll(/^\s*(?:import|export)\s[^'";]*?from\s+['"]([^'"]+)['"]/gm)].map(
      (m) => m[1],
    );
    for (const specifier of specifiers) {
      assert.match(specifier, /^\.\/[\w-]+\.js$/, `${file} imports ${specifier}`);
      const target = path.join(src, specifier);
      assert.ok(readdirSync(src).includes(path.basename(target)), `${file}: ${specifier} has no .js file`);
    }
    assert.doesNotMatch(code, /['"]node:/, `${file} uses a Node.js built-in`);
    assert.doesNotMatch(code, /\bprocess\.|\bBuffer\b|\brequire\(/, `${file} uses a Node.js global`);
  }
});

test('the platform WebSocket is used when there is one; ws is not imported then', async () => {
  const { resolveWebSocket } = await import('../src/socket.js');
  class Native {}
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket');
  Object.defineProperty(globalThis, 'WebSocket', { value: Native, configurable: true, writable: true });
  try {
    assert.equal(await resolveWebSocket(), Native);
  } finally {
    if (saved) Object.defineProperty(globalThis, 'WebSocket', saved);
    else delete (/** @type {any} */ (globalThis)).WebSocket;
  }
});

test('without a platform WebSocket the ws package is imported', async () => {
  const { resolveWebSocket } = await import('../src/socket.js');
  const { WebSocket: Ws } = await import('ws');
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket');
  delete (/** @type {any} */ (globalThis)).WebSocket;
  try {
    assert.equal(await resolveWebSocket(), Ws);
  } finally {
    if (saved) Object.defineProperty(globalThis, 'WebSocket', saved);
  }
});
