#!/usr/bin/env bash
# Manual check (not part of the test command): load the client in headless
# Chromium as plain ES modules, against a private `synckairos dev`: REST,
# a live session on the browser's WebSocket, TIME_SYNC, requestAnimationFrame
# ticking. Prints the page's JSON report. Needs Debian's chromium package.
# The page is served from another origin than the API, so the check runs
# Chromium with --disable-web-security (the server sends no CORS headers).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "chromium is not installed (apt-get install chromium)" >&2; exit 2; }
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
api=$(free_port); web=$(free_port); profile=$(mktemp -d)
SYNCKAIROS_RATE_LIMITS=off SYNCKAIROS_LOG_LEVEL=warning ../../.venv/bin/synckairos dev --port "$api" >"$profile/server.log" 2>&1 &
dev=$!
cleanup() { kill "$dev" 2>/dev/null; wait "$dev" 2>/dev/null || true; rm -rf "$profile"; }
trap cleanup EXIT
for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$api/ready" >/dev/null && break; sleep 0.2; done
node test/browser/serve.mjs "$web" &
page=$!
timeout 40 chromium --headless --no-sandbox --disable-gpu --disable-web-security \
  --user-data-dir="$profile/chromium" "http://127.0.0.1:$web/page.html?api=http://127.0.0.1:$api" \
  >"$profile/chromium.log" 2>&1 &
browser=$!
status=0
wait "$page" || status=$?
kill "$browser" 2>/dev/null || true
exit "$status"
