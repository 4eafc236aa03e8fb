#!/usr/bin/env bash
# Local throwaway PostgreSQL cluster for make run, make test and CI.
# Listens on 127.0.0.1 only; never touches the distribution's default cluster.
# See infra/README.md.
#
#   infra/postgres.sh start    install PostgreSQL if missing, initdb once, start,
#                              wait until ready, create PG_DATABASES if missing
#                              (idempotent: exits 0 if already running)
#   infra/postgres.sh stop     pg_ctl stop -m fast (falls back to the PID in
#                              postmaster.pid)
#   infra/postgres.sh status   exit 0 if running, 1 if not
#   infra/postgres.sh url      print postgresql+psycopg://postgres@127.0.0.1:$PG_PORT
#   infra/postgres.sh roles [svc ...]
#                              run infra/postgres-roles.sql for each service (default
#                              PG_ROLE_SERVICES): database motcua_<svc>, roles
#                              motcua_<svc>_migrator (schema owner) and motcua_<svc>_app
#                              (rows only); the server must be running
#
# Environment (defaults):
#   PG_PORT=5433   PG_STATE_DIR=/tmp/motcua-pg-$PG_PORT
#   PG_DATABASES="motcua_dossier motcua_audit motcua_notify motcua_payment"
#   PG_BINDIR=<newest /usr/lib/postgresql/*/bin>
#   PG_ROLE_SERVICES="dossier notify payment audit"
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034  # not needed here; kept for symmetry with kafka.sh
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

die() { echo "postgres.sh: error: $*" >&2; exit 1; }
say() { echo "postgres.sh: $*"; }

PG_PORT="${PG_PORT:-5433}"
[[ "$PG_PORT" =~ ^[0-9]+$ ]] || die "PG_PORT must be a number (got '$PG_PORT')"
# Default outside the checkout: the postgres OS user must be able to reach it.
PG_STATE_DIR="${PG_STATE_DIR:-/tmp/motcua-pg-$PG_PORT}"
case "$PG_STATE_DIR" in /*) ;; *) PG_STATE_DIR="$PWD/$PG_STATE_DIR" ;; esac
PG_STATE_DIR="${PG_STATE_DIR%/}"
[[ "$PG_STATE_DIR" != *"'"* ]] || die "PG_STATE_DIR must not contain a quote"
PG_DATABASES="${PG_DATABASES-motcua_dossier motcua_audit motcua_notify motcua_payment}"

if [[ -n "${PG_BINDIR:-}" && ! -x "${PG_BINDIR:-}/initdb" ]]; then
  die "PG_BINDIR=$PG_BINDIR has no initdb"
fi

DATA_DIR="$PG_STATE_DIR/data"
LOG_FILE="$PG_STATE_DIR/postgres.log"
SOCKET_DIR="$PG_STATE_DIR"
URL="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT"

IS_ROOT=0
[[ "$(id -u)" == 0 ]] && IS_ROOT=1

# ---------------------------------------------------------------- helpers

find_bindir() {
  if [[ -n "${PG_BINDIR:-}" ]]; then
    echo "$PG_BINDIR"
    return 0
  fi
  local initdb
  initdb="$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)"
  [[ -x "$initdb" ]] || return 1   # no match leaves the pattern itself
  dirname "$initdb"
}

ensure_server() {
  if BINDIR="$(find_bindir)"; then return 0; fi
  if ((!IS_ROOT)) || ! command -v apt-get >/dev/null; then
    die "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb); install the 'postgresql' package (needs root) or set PG_BINDIR"
  fi
  say "installing PostgreSQL with apt-get ..."
  local log
  log="$(mktemp /tmp/motcua-pg-apt.XXXXXX)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } \
         >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -f "$log"
    die "apt-get install postgresql failed"
  fi
  rm -f "$log"
  BINDIR="$(find_bindir)" || die "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
}

# Run a server-side command as the postgres OS user (root) or as ourselves.
# cd / : the caller's cwd may not be readable by postgres.
as_pg() {
  if ((IS_ROOT)); then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

pg_running() { postmaster_pid >/dev/null; }

# Live (not zombie) process?  kill -0 and pg_ctl status succeed for zombies,
# and a SIGKILLed postmaster may stay a zombie for a while (reparented).
proc_alive() {
  local st
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# PID of the live postmaster serving DATA_DIR, from postmaster.pid.
postmaster_pid() {
  [[ -f "$DATA_DIR/postmaster.pid" ]] || return 1
  local pid
  pid="$(head -n1 "$DATA_DIR/postmaster.pid" | tr -dc '0-9')"
  [[ -n "$pid" ]] && proc_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DATA_DIR" || return 1
  echo "$pid"
}

# Old postmaster still a zombie (e.g. right after a SIGKILL): postgres would
# refuse to start while that PID exists, so give init a moment to reap it.
wait_stale_pid_gone() {
  [[ -f "$DATA_DIR/postmaster.pid" ]] || return 0
  local pid deadline=$((SECONDS + 30))
  pid="$(head -n1 "$DATA_DIR/postmaster.pid" | tr -dc '0-9')"
  [[ -n "$pid" ]] || return 0
  while kill -0 "$pid" 2>/dev/null && ! proc_alive "$pid"; do
    ((SECONDS < deadline)) || die "old postmaster (pid $pid) is still a zombie; cannot start yet"
    sleep 0.2
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

psql_q() {
  "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" \
    -U postgres -d postgres -tA "$@"
}

lock_state() {
  exec 9>"$PG_STATE_DIR/.lock"
  flock -w 120 9 || die "another infra/postgres.sh is busy with $PG_STATE_DIR"
}

prepare_state_dir() {
  if ((IS_ROOT)); then
    id postgres >/dev/null 2>&1 || die "OS user 'postgres' does not exist (install the postgresql package)"
  fi
  mkdir -p "$PG_STATE_DIR" || die "cannot create $PG_STATE_DIR"
  if ((IS_ROOT)); then
    chown postgres:postgres "$PG_STATE_DIR"
    as_pg test -w "$PG_STATE_DIR" -a -x "$PG_STATE_DIR" \
      || die "the postgres OS user cannot use $PG_STATE_DIR (a parent directory is not traversable); set PG_STATE_DIR elsewhere, e.g. under /tmp"
  else
    [[ -w "$PG_STATE_DIR" ]] || die "$PG_STATE_DIR is not writable by $(id -un)"
  fi
  # Unix socket paths are limited to 107 bytes.
  local sock="$SOCKET_DIR/.s.PGSQL.$PG_PORT"
  ((${#sock} <= 107)) || die "PG_STATE_DIR too long for a unix socket path ($sock); use a shorter one"
}

init_cluster() {
  if [[ -f "$DATA_DIR/PG_VERSION" ]]; then
    local have want
    have="$(cat "$DATA_DIR/PG_VERSION")"
    want="$("$BINDIR/pg_ctl" --version | sed -n 's/.* \([0-9][0-9]*\).*/\1/p')"
    [[ "$have" == "$want" ]] \
      || die "$DATA_DIR was made by PostgreSQL $have but $BINDIR is $want; stop it and remove $PG_STATE_DIR"
    return 0
  fi
  rm -rf "$DATA_DIR"   # leftovers of an interrupted initdb
  local locale=C
  if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then locale=C.UTF-8; fi
  if ! as_pg "$BINDIR/initdb" -D "$DATA_DIR" -U postgres --auth=trust \
        -E UTF8 --locale="$locale" --no-sync --no-instructions \
        >"$PG_STATE_DIR/initdb.log" 2>&1; then
    tail -n 30 "$PG_STATE_DIR/initdb.log" >&2
    rm -rf "$DATA_DIR"
    die "initdb failed (log above)"
  fi
}

write_conf() {
  # Regenerated on every start; postgresql.conf includes it once.
  local conf="$DATA_DIR/motcua.conf"
  cat >"$conf" <<EOF
# Generated by infra/postgres.sh on every start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$SOCKET_DIR'
max_connections = 200
shared_buffers = 128MB
# Throwaway cluster: skip fsync (committed data still survives a killed
# server, only not an OS crash).
fsync = off
log_checkpoints = off
log_min_messages = warning
EOF
  ((IS_ROOT)) && chown postgres:postgres "$conf"
  if ! grep -q "^include_if_exists = 'motcua.conf'" "$DATA_DIR/postgresql.conf"; then
    printf "\n# infra/postgres.sh\ninclude_if_exists = 'motcua.conf'\n" >>"$DATA_DIR/postgresql.conf"
  fi
}

wait_ready() {
  local deadline=$((SECONDS + 60))
  until "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres; do
    if ((SECONDS >= deadline)); then
      tail -n 30 "$LOG_FILE" >&2 2>/dev/null || true
      die "PostgreSQL on 127.0.0.1:$PG_PORT not ready after 60s (log above: $LOG_FILE)"
    fi
    sleep 0.3
  done
}

create_databases() {
  local db
  for db in $PG_DATABASES; do
    [[ "$db" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad database name in PG_DATABASES: '$db'"
    if [[ -z "$(psql_q -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]]; then
      psql_q -c "CREATE DATABASE \"$db\"" >/dev/null || die "could not create database $db"
    fi
  done
}

# ---------------------------------------------------------------- commands

cmd_start() {
  ensure_server
  prepare_state_dir
  lock_state
  init_cluster
  write_conf

  local pid
  if pg_running; then
    wait_ready
    create_databases
    pid="$(postmaster_pid || echo '?')"
    say "already running (pid $pid) on 127.0.0.1:$PG_PORT"
    return 0
  fi
  wait_stale_pid_gone
  if port_open "$PG_PORT"; then
    die "port 127.0.0.1:$PG_PORT is already in use by another process; set PG_PORT"
  fi

  local t0=$SECONDS
  # 9>&- : the server must not inherit (and hold) our lock.
  if ! as_pg "$BINDIR/pg_ctl" start -D "$DATA_DIR" -l "$LOG_FILE" -w -t 60 -s 9>&- \
        >"$PG_STATE_DIR/pg_ctl.out" 2>&1; then
    cat "$PG_STATE_DIR/pg_ctl.out" >&2
    tail -n 30 "$LOG_FILE" >&2 2>/dev/null || true
    die "PostgreSQL did not start (log above: $LOG_FILE)"
  fi
  wait_ready
  create_databases
  pid="$(postmaster_pid || echo '?')"
  say "started (pid $pid) on 127.0.0.1:$PG_PORT in $((SECONDS - t0))s; databases: ${PG_DATABASES:-none}"
}

cmd_stop() {
  BINDIR="$(find_bindir)" || { say "not running"; return 0; }
  [[ -d "$PG_STATE_DIR" ]] || { say "not running"; return 0; }
  lock_state
  local pid
  if ! pid="$(postmaster_pid)"; then
    say "not running"
    return 0
  fi
  if as_pg "$BINDIR/pg_ctl" stop -D "$DATA_DIR" -m fast -w -t 30 -s >/dev/null 2>&1; then
    say "stopped (pid $pid)"
    return 0
  fi
  # Fallback: signal the postmaster directly (SIGINT = fast shutdown).
  kill -INT "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 15))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && die "postmaster pid $pid survived SIGKILL"
  fi
  say "stopped (pid $pid, by signal)"
}

cmd_roles() {
  BINDIR="$(find_bindir)" || die "no PostgreSQL server binaries; run '$0 start' first"
  [[ -d "$PG_STATE_DIR" ]] && pg_running || die "not running on 127.0.0.1:$PG_PORT; run '$0 start' first"
  local svc services=("$@")
  ((${#services[@]})) || read -r -a services <<<"${PG_ROLE_SERVICES:-dossier notify payment audit}"
  for svc in "${services[@]}"; do
    [[ "$svc" =~ ^[a-z][a-z0-9_]*$ ]] || die "bad service name: '$svc'"
    psql_q -v svc="$svc" -f "$SCRIPT_DIR/postgres-roles.sql" >/dev/null \
      || die "infra/postgres-roles.sql failed for $svc"
  done
  say "roles ready for: ${services[*]} (motcua_<svc>_migrator owns the schema, motcua_<svc>_app reads and writes rows)"
}

cmd_status() {
  if BINDIR="$(find_bindir)" && [[ -d "$PG_STATE_DIR" ]] && pg_running; then
    say "running (pid $(postmaster_pid || echo '?')) on 127.0.0.1:$PG_PORT"
    return 0
  fi
  say "not running"
  return 1
}

BINDIR=""
case "${1:-}" in
  start)  cmd_start ;;
  stop)   cmd_stop ;;
  status) cmd_status ;;
  url)    echo "$URL" ;;
  roles)  shift; cmd_roles "$@" ;;
  *)
    echo "usage: $0 start|stop|status|url|roles [svc ...]" >&2
    exit 2
    ;;
esac
