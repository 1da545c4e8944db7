#!/usr/bin/env bash
# Test the JavaScript client: install its dev dependencies when they are
# missing or package-lock.json changed (idempotent), type-check the sources
# against their declarations, then run every node --test suite (the server
# suites start their own `synckairos dev` from ../../.venv).
#   clients/js/scripts/test.sh [extra node --test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[synckairos-client]\033[0m %s\n' "$*" >&2; }

command -v node >/dev/null 2>&1 || { log "node is not installed (Node.js >= 20 is needed)"; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  log "Node.js $(node --version) is too old: >= 20 is needed"
  exit 1
fi

stamp=node_modules/.synckairos-lock
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -d node_modules ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

log "tsc --noEmit"
./node_modules/.bin/tsc --noEmit -p tsconfig.json

# Node.js 20-21 have a WebSocket behind a flag: use it, so the live suites run
# on the platform WebSocket (the browsers' API) as on Node.js >= 22; the suites
# that need `ws` (to kill a socket abruptly) import it themselves.
if [ "$major" -lt 22 ]; then
  export NODE_OPTIONS="${NODE_OPTIONS:-} --experimental-websocket --no-warnings=ExperimentalWarning"
fi

log "node --test"
exec node --test --test-timeout=60000 "$@" test/*.test.js
