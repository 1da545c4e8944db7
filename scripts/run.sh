#!/usr/bin/env bash
# Install what SyncKairos needs (idempotent), then run one of:
#   dev    the whole stack on embedded defaults (private Redis and PostgreSQL), until Ctrl-C
#   test   lint, type check and the whole test suite (what CI runs)
#   bench  a benchmark scenario: scripts/run.sh bench switch --clients 64
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[synckairos]\033[0m %s\n' "$*" >&2; }

# SyncKairos runs its own PostgreSQL clusters (synckairos/dev/embedded.py) on free
# ports; while postgresql-15 is installed this drop-in keeps the package from
# creating (and starting) the system cluster "15/main" on port 5432.
NO_MAIN_CLUSTER=/etc/postgresql-common/createcluster.d/synckairos-no-main-cluster.conf

install_system_packages() {
  local missing=() postgres=0
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
  # The browser tests (tests/browser/) drive Debian's Chromium.
  [ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
  if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
    missing+=(postgresql-15)
    postgres=1
  fi
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  if [ "$postgres" -eq 1 ] && [ ! -e "$NO_MAIN_CLUSTER" ]; then
    $sudo mkdir -p "$(dirname "$NO_MAIN_CLUSTER")"
    echo "create_main_cluster = false" | $sudo tee "$NO_MAIN_CLUSTER" >/dev/null
  else
    postgres=0  # the drop-in is not ours to remove
  fi
  local status=0
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || status=$?
  if [ "$postgres" -eq 1 ]; then
    $sudo rm -f "$NO_MAIN_CLUSTER"
    $sudo rmdir --ignore-fail-on-non-empty "$(dirname "$NO_MAIN_CLUSTER")"
    # Should a cluster of version 15 have been started anyway, stop it: nothing
    # of 15 ran before this install, and we never use it.
    local cluster
    for cluster in $(pg_lsclusters -h 2>/dev/null | awk '$1 == "15" && $4 == "online" { print $2 }'); do
      log "stopping the system PostgreSQL cluster 15/$cluster (SyncKairos runs its own)"
      $sudo pg_ctlcluster 15 "$cluster" stop || true
    done
  fi
  return "$status"
}

install_python_packages() {
  local python="${PYTHON:-python3}"
  if [ ! -x .venv/bin/python ]; then
    log "creating virtualenv .venv"
    "$python" -m venv .venv
  fi
  local stamp=.venv/.synckairos-installed
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing Python packages into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
    echo "$want" > "$stamp"
  fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  dev)
    install_system_packages
    install_python_packages
    exec .venv/bin/synckairos dev "$@"
    ;;
  test)
    install_system_packages
    install_python_packages
    log "ruff"
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    log "mypy"
    .venv/bin/mypy
    log "javascript client"
    bash clients/js/scripts/test.sh
    log "browser tests (/inspector, /docs in headless Chromium)"
    bash tests/browser/run.sh
    log "pytest"
    exec .venv/bin/python -m pytest "$@"
    ;;
  bench)
    install_system_packages
    install_python_packages
    exec .venv/bin/python -m benchmarks "$@"
    ;;
  *)
    echo "usage: scripts/run.sh dev|test|bench [args...]" >&2
    exit 2
    ;;
esac
