#!/usr/bin/env bash
# Browser tests of /inspector and /docs: headless Chromium (Debian's
# /usr/bin/chromium, driven by playwright-core) against real SyncKairos nodes
# started from ../../.venv on a private redis-server. Screenshots are written
# to tests/browser/artifacts/ (SYNCKAIROS_ARTIFACTS overrides) and their paths
# printed.
#   bash tests/browser/run.sh [extra node --test arguments]
set -euo pipefail
cd "$(dirname "$0")"
chromium="${SYNCKAIROS_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "no Chromium at $chromium: apt-get install chromium chromium-driver (bash scripts/run.sh test does)" >&2
  exit 1
fi
bash install.sh
rm -f artifacts/*.png
exec node --test --test-timeout=60000 "$@" ./*.test.js
