#!/usr/bin/env bash
# Install what SyncKairos needs (idempotent), then run one of:
#   dev    the whole stack on embedded defaults (private Redis), until Ctrl-C
#   test   lint, type check and the whole test suite (what CI runs)
#   bench  a benchmark scenario: scripts/run.sh bench switch --clients 64
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[synckairos]\033[0m %s\n' "$*" >&2; }

install_system_packages() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
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
