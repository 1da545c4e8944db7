#!/usr/bin/env bash
# Install the browser suite's npm packages (playwright-core, swagger-ui-dist)
# when they are missing or package-lock.json changed; idempotent. Install
# scripts are not run: nothing here needs one (playwright-core never downloads
# a browser; the suite drives Debian's /usr/bin/chromium).
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null 2>&1 || { echo "node is not installed (Node.js >= 20 is needed)" >&2; exit 1; }
stamp=node_modules/.synckairos-lock
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -d node_modules ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  printf '\033[1m[browser tests]\033[0m %s\n' "installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
  echo "$want" >"$stamp"
fi
