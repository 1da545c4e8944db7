#!/usr/bin/env bash
# A Redis Sentinel topology on loopback for development and tests:
# one primary and two replicas (AOF everysec) watched by three Sentinels.
#
#   deploy/sentinel/sentinel.sh start           start (or keep) the topology; prints its settings
#   deploy/sentinel/sentinel.sh stop            stop every process (by PID), keep the data
#   deploy/sentinel/sentinel.sh status          role and PID of every node
#   deploy/sentinel/sentinel.sh primary         host:port of the current primary (per Sentinel)
#   deploy/sentinel/sentinel.sh kill-primary    SIGKILL the primary; prints its port
#   deploy/sentinel/sentinel.sh restart PORT    restart a stopped data node as a replica of
#                                               the current primary
#   deploy/sentinel/sentinel.sh failover        SENTINEL FAILOVER (a manual switch-over)
#   deploy/sentinel/sentinel.sh wait-primary OLD wait until the Sentinels name a primary other
#                                               than OLD (host:port); prints it
#   deploy/sentinel/sentinel.sh env             the SYNCKAIROS_* lines that select this topology
#   deploy/sentinel/sentinel.sh destroy         stop and delete the directory
#
# Settings (environment; `start` records them in $SK_SENTINEL_DIR/topology.env,
# which the other commands read):
#   SK_SENTINEL_DIR        state directory           (default /tmp/synckairos-sentinel)
#   SK_REDIS_PORTS         ports of the data nodes   (default "6380 6381 6382"; first = primary)
#   SK_SENTINEL_PORTS      ports of the Sentinels    (default "26380 26381 26382")
#   SK_MASTER_NAME         monitored master name     (default synckairos)
#   SK_DOWN_AFTER_MS       down-after-milliseconds   (default 1000)
#   SK_FAILOVER_TIMEOUT_MS failover-timeout          (default 10000)
#
# Configs are generated anew at every start: Sentinel and Redis rewrite their
# config files at run time, and a node restarted from its old config would come
# back as an empty primary (for ~10 s, until Sentinel demotes it), which a second
# failover could promote, wiping the data. A node is therefore always started as a
# replica of the primary the Sentinels name now.
set -euo pipefail

DIR="${SK_SENTINEL_DIR:-/tmp/synckairos-sentinel}"
HOST=127.0.0.1

die() { echo "sentinel.sh: $*" >&2; exit 1; }
command -v redis-server >/dev/null || die "redis-server not found (Debian package redis-server)"
command -v redis-sentinel >/dev/null || die "redis-sentinel not found (Debian package redis-sentinel)"
command -v redis-cli >/dev/null || die "redis-cli not found (Debian package redis-tools)"

load_settings() {
  if [ -f "$DIR/topology.env" ]; then
    # shellcheck disable=SC1091
    . "$DIR/topology.env"
  fi
  REDIS_PORTS="${SK_REDIS_PORTS:-${REDIS_PORTS:-6380 6381 6382}}"
  SENTINEL_PORTS="${SK_SENTINEL_PORTS:-${SENTINEL_PORTS:-26380 26381 26382}}"
  MASTER="${SK_MASTER_NAME:-${MASTER:-synckairos}}"
  DOWN_AFTER="${SK_DOWN_AFTER_MS:-${DOWN_AFTER:-1000}}"
  FAILOVER_TIMEOUT="${SK_FAILOVER_TIMEOUT_MS:-${FAILOVER_TIMEOUT:-10000}}"
}

save_settings() {
  mkdir -p "$DIR"
  cat > "$DIR/topology.env" <<EOF
REDIS_PORTS="$REDIS_PORTS"
SENTINEL_PORTS="$SENTINEL_PORTS"
MASTER="$MASTER"
DOWN_AFTER="$DOWN_AFTER"
FAILOVER_TIMEOUT="$FAILOVER_TIMEOUT"
EOF
}

cli() { redis-cli -h "$HOST" -p "$1" "${@:2}" 2>/dev/null; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
node_pid() { echo "$DIR/redis-$1/redis.pid"; }
sentinel_pid() { echo "$DIR/sentinel-$1/sentinel.pid"; }

# The primary as the Sentinels see it ("port"), or empty.
sentinel_primary() {
  local port reply
  for port in $SENTINEL_PORTS; do
    reply=$(cli "$port" SENTINEL get-master-addr-by-name "$MASTER" | tr '\n' ' ') || continue
    set -- $reply
    if [ $# -eq 2 ]; then echo "$2"; return 0; fi
  done
  return 1
}

# The primary as recorded at the last stop, else the first data node.
recorded_primary() {
  local recorded=""
  [ -f "$DIR/primary" ] && recorded=$(cat "$DIR/primary")
  local port
  for port in $REDIS_PORTS; do
    if [ "$port" = "$recorded" ]; then echo "$port"; return; fi
  done
  set -- $REDIS_PORTS
  echo "$1"
}

write_node_config() {  # port, primary port ("" = start as primary)
  local port=$1 primary=$2 dir="$DIR/redis-$1"
  mkdir -p "$dir"
  {
    echo "port $port"
    echo "bind $HOST"
    echo "protected-mode no"
    echo "daemonize yes"
    echo "dir $dir"
    echo "pidfile $dir/redis.pid"
    echo "logfile $dir/redis.log"
    echo "appendonly yes"
    echo "appendfsync everysec"
    echo "save \"\""
    echo "replica-announce-ip $HOST"
    # A replica re-pointed at a new primary after a failover often needs a full
    # sync; do not wait 5 s (the default) for more replicas to join it.
    echo "repl-diskless-sync-delay 0"
    if [ -n "$primary" ]; then echo "replicaof $HOST $primary"; fi
  } > "$dir/redis.conf"
}

write_sentinel_config() {  # port, primary port
  local port=$1 primary=$2 dir="$DIR/sentinel-$1"
  mkdir -p "$dir"
  {
    echo "port $port"
    echo "bind $HOST"
    echo "protected-mode no"
    echo "daemonize yes"
    echo "dir $dir"
    echo "pidfile $dir/sentinel.pid"
    echo "logfile $dir/sentinel.log"
    echo "sentinel announce-ip $HOST"
    echo "sentinel monitor $MASTER $HOST $primary 2"
    echo "sentinel down-after-milliseconds $MASTER $DOWN_AFTER"
    echo "sentinel failover-timeout $MASTER $FAILOVER_TIMEOUT"
    echo "sentinel parallel-syncs $MASTER 1"
  } > "$dir/sentinel.conf"
}

wait_until() {  # seconds, description, command...
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${limit}s waiting for $what"
    sleep 0.1
  done
}

answers_ping() { [ "$(cli "$1" PING)" = "PONG" ]; }
replica_linked() { cli "$1" INFO replication | grep -q "master_link_status:up"; }
sentinel_ready() {  # knows the master, both replicas and the two other Sentinels
  local info
  info=$(cli "$1" SENTINEL master "$MASTER" | tr '\n' ' ')
  [[ $info == *"num-slaves 2 "* && $info == *"num-other-sentinels 2 "* ]]
}

start_node() {  # port, primary port ("" = primary)
  write_node_config "$1" "$2"
  redis-server "$DIR/redis-$1/redis.conf"
  wait_until 10 "redis $1 to answer" answers_ping "$1"
}

cmd_start() {
  load_settings
  local all_up=1 port
  for port in $REDIS_PORTS; do alive "$(node_pid "$port")" || all_up=0; done
  for port in $SENTINEL_PORTS; do alive "$(sentinel_pid "$port")" || all_up=0; done
  if [ "$all_up" -eq 1 ]; then
    echo "topology already running in $DIR" >&2
    cmd_env
    return
  fi
  cmd_stop >/dev/null 2>&1 || true
  save_settings
  local primary
  primary=$(recorded_primary)
  start_node "$primary" ""
  for port in $REDIS_PORTS; do
    [ "$port" = "$primary" ] || start_node "$port" "$primary"
  done
  for port in $REDIS_PORTS; do
    [ "$port" = "$primary" ] || wait_until 20 "replica $port to sync" replica_linked "$port"
  done
  for port in $SENTINEL_PORTS; do
    write_sentinel_config "$port" "$primary"
    redis-sentinel "$DIR/sentinel-$port/sentinel.conf"
  done
  for port in $SENTINEL_PORTS; do
    wait_until 30 "sentinel $port to discover the topology" sentinel_ready "$port"
  done
  echo "topology up in $DIR: primary $HOST:$primary" >&2
  cmd_env
}

stop_pidfile() {
  local file=$1 pid
  alive "$file" || return 0
  pid=$(cat "$file")
  kill -TERM "$pid" 2>/dev/null || return 0
  local deadline=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.05
  done
}

cmd_stop() {
  load_settings
  local primary port
  if primary=$(sentinel_primary); then echo "$primary" > "$DIR/primary"; fi
  for port in $SENTINEL_PORTS; do stop_pidfile "$(sentinel_pid "$port")"; done
  for port in $REDIS_PORTS; do stop_pidfile "$(node_pid "$port")"; done
  echo "topology stopped ($DIR kept)" >&2
}

cmd_status() {
  load_settings
  local port role
  for port in $REDIS_PORTS; do
    if alive "$(node_pid "$port")"; then
      role=$(cli "$port" ROLE | head -1)
      echo "redis    $HOST:$port  pid $(cat "$(node_pid "$port")")  ${role:-unknown}"
    else
      echo "redis    $HOST:$port  down"
    fi
  done
  for port in $SENTINEL_PORTS; do
    if alive "$(sentinel_pid "$port")"; then
      echo "sentinel $HOST:$port  pid $(cat "$(sentinel_pid "$port")")"
    else
      echo "sentinel $HOST:$port  down"
    fi
  done
  echo "primary  $HOST:$(sentinel_primary || echo '?')"
}

cmd_primary() {
  load_settings
  local port
  port=$(sentinel_primary) || die "no Sentinel answers"
  echo "$HOST:$port"
}

cmd_kill_primary() {
  load_settings
  local port pidfile
  port=$(sentinel_primary) || die "no Sentinel answers"
  pidfile=$(node_pid "$port")
  alive "$pidfile" || die "primary $port is not running"
  kill -KILL "$(cat "$pidfile")"
  echo "$port"
}

cmd_restart() {
  load_settings
  local port=${1:-} primary
  [ -n "$port" ] || die "usage: sentinel.sh restart PORT"
  [[ " $REDIS_PORTS " == *" $port "* ]] || die "$port is not a data node of this topology"
  alive "$(node_pid "$port")" && die "redis $port is running"
  primary=$(sentinel_primary) || die "no Sentinel answers"
  [ "$primary" != "$port" ] || die "the Sentinels still name $port primary; wait for the failover"
  start_node "$port" "$primary"
  wait_until 30 "replica $port to sync" replica_linked "$port"
  echo "redis $port restarted as a replica of $HOST:$primary" >&2
}

cmd_failover() {
  load_settings
  local port
  for port in $SENTINEL_PORTS; do
    if [ "$(cli "$port" SENTINEL failover "$MASTER")" = "OK" ]; then
      echo "failover started by sentinel $port" >&2
      return 0
    fi
  done
  die "no Sentinel accepted SENTINEL FAILOVER"
}

cmd_wait_primary() {
  load_settings
  local old=${1:-} port
  [ -n "$old" ] || die "usage: sentinel.sh wait-primary OLD_HOST:PORT"
  primary_moved() { port=$(sentinel_primary) && [ "$HOST:$port" != "$old" ]; }
  wait_until 60 "a new primary" primary_moved
  echo "$HOST:$port"
}

cmd_env() {
  load_settings
  local list="" port
  for port in $SENTINEL_PORTS; do list="${list:+$list,}$HOST:$port"; done
  echo "SYNCKAIROS_REDIS_SENTINELS=$list"
  echo "SYNCKAIROS_REDIS_SENTINEL_MASTER=$MASTER"
}

cmd_destroy() {
  cmd_stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  primary) cmd_primary ;;
  kill-primary) cmd_kill_primary ;;
  restart) cmd_restart "${2:-}" ;;
  failover) cmd_failover ;;
  wait-primary) cmd_wait_primary "${2:-}" ;;
  env) cmd_env ;;
  destroy) cmd_destroy ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
