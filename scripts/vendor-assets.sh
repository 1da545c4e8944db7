#!/usr/bin/env bash
# Refresh the browser assets the server ships as package data (synckairos/static/):
#   client/      a link to the JavaScript client's modules (clients/js/src),
#                served at /static/client/ and used by /inspector; a wheel
#                holds the files themselves
#   vendor/swagger-ui/  the API docs renderer of /docs, from the swagger-ui-dist
#                npm package pinned in tests/browser/package.json
# Run it after changing that pin, and commit the result: tests/browser/test_pages.py
# fails while the copy differs from its source.
#   bash scripts/vendor-assets.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[vendor-assets]\033[0m %s\n' "$*" >&2; }

static=synckairos/static

log "client: $static/client -> clients/js/src (link)"
rm -rf "$static/client"
ln -s ../../clients/js/src "$static/client"

bash tests/browser/install.sh
dist=tests/browser/node_modules/swagger-ui-dist
version=$(node -p "require('./$dist/package.json').version")
out="$static/vendor/swagger-ui"
log "swagger-ui-dist $version -> $out/"
rm -rf "$out"
mkdir -p "$out"
# The bundles end with a sourceMappingURL comment; the maps are not shipped.
for file in swagger-ui-bundle.js swagger-ui.css; do
  sed '/^\/[*/]# sourceMappingURL=/d' "$dist/$file" >"$out/$file"
done
cp "$dist/LICENSE" "$dist/NOTICE" "$dist/swagger-ui-bundle.js.LICENSE.txt" "$out/"
echo "$version" >"$out/VERSION"
du -sh "$static/client" "$out" >&2
