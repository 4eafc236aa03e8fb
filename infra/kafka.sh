#!/usr/bin/env bash
# Local single-node Kafka (KRaft, combined broker+controller) for make run,
# make test and CI. Listens on 127.0.0.1 only. See infra/README.md.
#
#   infra/kafka.sh start    fetch jars if missing, format storage once, start
#                           the broker in the background and wait until it
#                           answers (idempotent: exits 0 if already running)
#   infra/kafka.sh stop     SIGTERM, wait up to KAFKA_STOP_TIMEOUT s, SIGKILL
#   infra/kafka.sh kill     SIGKILL at once (fault drills); data is kept
#   infra/kafka.sh status   exit 0 if running, 1 if not
#   infra/kafka.sh fetch    resolve the broker jars into the cache if missing
#
# Environment (defaults):
#   KAFKA_PORT=9092  KAFKA_CONTROLLER_PORT=9093
#   KAFKA_STATE_DIR=<repo>/.state/kafka   MOTCUA_CACHE_DIR=$HOME/.cache/motcua
#   KAFKA_HEAP_OPTS="-Xms128m -Xmx512m"   KAFKA_START_TIMEOUT=90
#   KAFKA_STOP_TIMEOUT=30                 KAFKA_VERSION=<kafka.version in pom>
#
# Secured mode (KAFKA_SECURITY=sasl_ssl; the default, plaintext, is as above): the client
# listener is SASL_SSL with SCRAM-SHA-512 users, and the KRaft StandardAuthorizer runs with
# allow.everyone.if.no.acl.found=false (ADR 0084). It also needs:
#   KAFKA_SSL_CERT_FILE   PEM: the broker certificate (chain), SAN IP:127.0.0.1
#   KAFKA_SSL_KEY_FILE    PEM: its private key, PKCS#8, unencrypted
#   KAFKA_SSL_CA_FILE     PEM: the CA that signed it (the broker trusts it for itself)
#   KAFKA_ADMIN_USER=admin  KAFKA_ADMIN_PASSWORD  the super user; its SCRAM credential is
#                         written when the storage is formatted (the first start only)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"
LOG4J_CONF="$SCRIPT_DIR/kafka/log4j2.properties"

die() { echo "kafka.sh: error: $*" >&2; exit 1; }
say() { echo "kafka.sh: $*"; }

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_STATE_DIR="${KAFKA_STATE_DIR:-$REPO_ROOT/.state/kafka}"
if [[ -z "${MOTCUA_CACHE_DIR:-}" ]]; then
  [[ -n "${HOME:-}" ]] || die "HOME is not set; set MOTCUA_CACHE_DIR"
  MOTCUA_CACHE_DIR="$HOME/.cache/motcua"
fi
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
if [[ -z "${KAFKA_VERSION:-}" ]]; then
  KAFKA_VERSION="$(sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$POM" | head -n1)"
  [[ -n "$KAFKA_VERSION" ]] || die "cannot read <kafka.version> from $POM"
fi

for v in KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_START_TIMEOUT KAFKA_STOP_TIMEOUT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a number (got '${!v}')"
done
[[ "$KAFKA_PORT" != "$KAFKA_CONTROLLER_PORT" ]] \
  || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"
KAFKA_SECURITY="${KAFKA_SECURITY:-plaintext}"
KAFKA_ADMIN_USER="${KAFKA_ADMIN_USER:-admin}"
case "$KAFKA_SECURITY" in
  plaintext) ;;
  sasl_ssl)
    for v in KAFKA_SSL_CERT_FILE KAFKA_SSL_KEY_FILE KAFKA_SSL_CA_FILE; do
      [[ -n "${!v:-}" && -r "${!v}" ]] || die "KAFKA_SECURITY=sasl_ssl needs $v (a readable PEM file)"
      case "${!v}" in /*) ;; *) printf -v "$v" '%s' "$PWD/${!v}" ;; esac
    done
    [[ -n "${KAFKA_ADMIN_PASSWORD:-}" ]] || die "KAFKA_SECURITY=sasl_ssl needs KAFKA_ADMIN_PASSWORD"
    # Both go into a JAAS line and a --add-scram argument: keep them plain.
    [[ "$KAFKA_ADMIN_USER" =~ ^[A-Za-z0-9._-]+$ ]] \
      || die "KAFKA_ADMIN_USER may hold only letters, digits, '.', '_' and '-'"
    [[ "$KAFKA_ADMIN_PASSWORD" =~ ^[A-Za-z0-9._~+-]+$ ]] \
      || die "KAFKA_ADMIN_PASSWORD may hold only letters, digits and . _ ~ + -"
    ;;
  *) die "KAFKA_SECURITY must be plaintext or sasl_ssl (got '$KAFKA_SECURITY')" ;;
esac
case "$KAFKA_STATE_DIR" in /*) ;; *) KAFKA_STATE_DIR="$PWD/$KAFKA_STATE_DIR" ;; esac
case "$MOTCUA_CACHE_DIR" in /*) ;; *) MOTCUA_CACHE_DIR="$PWD/$MOTCUA_CACHE_DIR" ;; esac

VERSION_DIR="$MOTCUA_CACHE_DIR/kafka-$KAFKA_VERSION"
LIBS="$VERSION_DIR/libs"
PID_FILE="$KAFKA_STATE_DIR/kafka.pid"
PROPS="$KAFKA_STATE_DIR/server.properties"
DATA_DIR="$KAFKA_STATE_DIR/data"
LOG_DIR="$KAFKA_STATE_DIR/logs"
SERVER_LOG="$LOG_DIR/server.log"   # written by log4j (infra/kafka/log4j2.properties)
OUT_LOG="$LOG_DIR/kafka.out"       # JVM stdout/stderr
STARTED_MSG="Kafka Server started"
SECURED_NOTE=""
[[ "$KAFKA_SECURITY" == plaintext ]] || SECURED_NOTE=" (SASL_SSL, ACLs)"

# ---------------------------------------------------------------- helpers

apt_install() {
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    die "$* missing and cannot be installed (need root and apt-get); install it first"
  fi
  say "installing $* with apt-get ..."
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
    || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
    || die "apt-get install $* failed"
}

ensure_java() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  local line major
  line="$(java -version 2>&1 | head -n1)"
  major="$(sed -n 's/.*version "\([0-9]*\).*/\1/p' <<<"$line")"
  [[ -n "$major" && "$major" -ge 17 ]] \
    || die "Java 17+ required on PATH; found: ${line:-nothing}"
}

ensure_mvn() {
  command -v mvn >/dev/null || apt_install maven
}

tail_logs() {
  local f
  for f in "$@"; do
    [[ -s "$f" ]] || continue
    echo "---- last lines of $f ----" >&2
    tail -n 40 "$f" >&2
  done
}

# PID recorded in the pid file if it is a live broker of THIS state dir.
running_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [[ -n "$pid" ]] && pid_is_ours "$pid" || return 1
  echo "$pid"
}

pid_is_ours() {
  kill -0 "$1" 2>/dev/null || return 1
  # Guards against PID reuse and zombies (empty cmdline).
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "kafka.Kafka $PROPS"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Wait until PID is gone; returns 1 if still there after $2 seconds.
wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while pid_is_ours "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

lock_state() {
  mkdir -p "$KAFKA_STATE_DIR"
  exec 9>"$KAFKA_STATE_DIR/.lock"
  flock -w 150 9 || die "another infra/kafka.sh is busy with $KAFKA_STATE_DIR"
}

# ---------------------------------------------------------------- commands

cmd_fetch() {
  local stamp
  stamp="kafka $KAFKA_VERSION pom $(sha256sum "$POM" | cut -d' ' -f1)"
  if [[ -f "$LIBS/.complete" && "$(cat "$LIBS/.complete")" == "$stamp" ]]; then
    return 0
  fi
  ensure_mvn
  mkdir -p "$VERSION_DIR"
  exec 8>"$VERSION_DIR/.fetch.lock"
  flock -w 600 8 || die "timed out waiting for another fetch into $VERSION_DIR"
  if [[ -f "$LIBS/.complete" && "$(cat "$LIBS/.complete")" == "$stamp" ]]; then
    exec 8>&-
    return 0
  fi
  say "fetching Kafka $KAFKA_VERSION jars into $LIBS ..."
  local tmp
  tmp="$(mktemp -d "$VERSION_DIR/libs.tmp.XXXXXX")"
  if ! mvn -B -q -f "$POM" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
    tail_logs "$tmp.log"
    rm -rf "$tmp" "$tmp.log"
    die "mvn could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see output above)"
  fi
  rm -f "$tmp.log"
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] \
    || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after mvn"; }
  echo "$stamp" >"$tmp/.complete"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  exec 8>&-
}

write_props() {
  if [[ "$KAFKA_SECURITY" == sasl_ssl ]]; then
    write_secured_listeners
  else
    cat >"$PROPS" <<EOF
# Generated by infra/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
EOF
  fi
  cat >>"$PROPS" <<EOF
log.dirs=$DATA_DIR

# Topics
auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=3
default.replication.factor=1
min.insync.replicas=1

# Internal topics: single replica, fewer partitions (faster first start)
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Fast start / small footprint (2-core dev and CI machines)
group.initial.rebalance.delay.ms=0
# After a SIGKILL the controller keeps the dead incarnation registered until
# its session times out (default 9 s); shorter => faster restart after kill.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=2
num.replica.fetchers=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
EOF
}

# The secured listeners (KAFKA_SECURITY=sasl_ssl), ADR 0084:
#   SASL_SSL   clients and the broker itself (inter-broker), SCRAM-SHA-512, TLS from the PEM
#              key and certificate; the broker trusts the CA for its own connections
#   CONTROLLER SASL_PLAINTEXT on loopback, PLAIN with the admin user of this file (SCRAM
#              cannot authenticate controller connections: its credentials live in the
#              metadata the controller serves)
# Every principal but the super user needs an ACL for each resource it touches.
write_secured_listeners() {
  local pem="$KAFKA_STATE_DIR/broker-keystore.pem"
  ( umask 077; cat "$KAFKA_SSL_KEY_FILE" "$KAFKA_SSL_CERT_FILE" >"$pem" )
  local u="$KAFKA_ADMIN_USER" pw="$KAFKA_ADMIN_PASSWORD"
  ( umask 077; cat >"$PROPS" <<EOF
# Generated by infra/kafka.sh on every start; edits are overwritten. Holds a password.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL

# SASL: SCRAM-SHA-512 for clients and the broker itself, PLAIN on the controller listener
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$u" password="$pw";
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$u" password="$pw" user_$u="$pw";

# TLS from PEM files (no keytool)
ssl.keystore.type=PEM
ssl.keystore.location=$pem
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_SSL_CA_FILE
ssl.client.auth=none
ssl.endpoint.identification.algorithm=https

# ACLs live in the KRaft metadata; a resource without an ACL is open to super users only
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$u
EOF
  )
}

cmd_start() {
  lock_state
  local pid
  if pid="$(running_pid)"; then
    say "already running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
    return 0
  fi
  rm -f "$PID_FILE"

  ensure_java
  cmd_fetch

  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "port 127.0.0.1:$p is already in use by another process (not the broker recorded in $PID_FILE); set KAFKA_PORT/KAFKA_CONTROLLER_PORT"
    fi
  done

  mkdir -p "$DATA_DIR" "$LOG_DIR"
  write_props

  local jvm_common=(
    -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$LOG4J_CONF"
    "-Dkafka.logs.dir=$LOG_DIR"
  )

  # Format once; the data dir (and its topics/offsets) survives restarts.
  if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
    local cid=""
    while [[ -z "$cid" || "$cid" == -* ]]; do
      cid="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    local scram=()
    if [[ "$KAFKA_SECURITY" == sasl_ssl ]]; then
      scram=(--add-scram "SCRAM-SHA-512=[name=$KAFKA_ADMIN_USER,password=$KAFKA_ADMIN_PASSWORD]")
    fi
    if ! java -Xmx256m "${jvm_common[@]}" -cp "$LIBS/*" kafka.tools.StorageTool \
          format --config "$PROPS" --cluster-id "$cid" --ignore-formatted "${scram[@]}" \
          >"$LOG_DIR/format.log" 2>&1; then
      tail_logs "$LOG_DIR/format.log"
      die "formatting $DATA_DIR failed"
    fi
  fi

  # Only log lines written after this offset count as "started".
  local offset=0
  [[ -f "$SERVER_LOG" ]] && offset="$(stat -c %s "$SERVER_LOG")"
  echo "==== $(date '+%F %T') start (pid follows in $PID_FILE)" >>"$OUT_LOG"

  local t0=$SECONDS
  # The inner bash writes its own PID and then execs java, so the pid file
  # holds the JVM's PID. setsid: not killed with the caller's process group.
  # shellcheck disable=SC2086,SC2016
  setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    java -server $KAFKA_HEAP_OPTS \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
      "${jvm_common[@]}" \
      -cp "$LIBS/*" kafka.Kafka "$PROPS" \
    </dev/null >>"$OUT_LOG" 2>&1 8>&- 9>&- &

  local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  pid=""
  while ((SECONDS < deadline)); do
    sleep 0.5
    if [[ -z "$pid" ]]; then
      [[ -s "$PID_FILE" ]] && pid="$(tr -dc '0-9' <"$PID_FILE")"
      [[ -n "$pid" ]] || continue
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      tail_logs "$SERVER_LOG" "$OUT_LOG"
      die "broker exited during startup (logs above; state in $KAFKA_STATE_DIR)"
    fi
    local size=0
    [[ -f "$SERVER_LOG" ]] && size="$(stat -c %s "$SERVER_LOG")"
    ((size >= offset)) || offset=0   # log was rolled meanwhile
    if tail -c "+$((offset + 1))" "$SERVER_LOG" 2>/dev/null | grep -qF "$STARTED_MSG" \
        && port_open "$KAFKA_PORT"; then
      say "started (pid $pid) on 127.0.0.1:$KAFKA_PORT$SECURED_NOTE in $((SECONDS - t0))s"
      return 0
    fi
  done

  tail_logs "$SERVER_LOG" "$OUT_LOG"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || true
  fi
  rm -f "$PID_FILE"
  die "broker did not answer on 127.0.0.1:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s (killed it; logs above)"
}

cmd_stop() {
  lock_state
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    say "not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$KAFKA_STOP_TIMEOUT"; then
    say "pid $pid still alive after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
  fi
  rm -f "$PID_FILE"
  say "stopped (pid $pid)"
}

cmd_kill() {
  # No lock: must work even while another kafka.sh waits on the broker.
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    say "not running"
    return 0
  fi
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
  rm -f "$PID_FILE"
  say "killed (pid $pid)"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    say "running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
    return 0
  fi
  say "not running"
  return 1
}

case "${1:-}" in
  start)  cmd_start ;;
  stop)   cmd_stop ;;
  kill)   cmd_kill ;;
  status) cmd_status ;;
  fetch)  ensure_java; cmd_fetch ;;
  *)
    echo "usage: $0 start|stop|kill|status|fetch" >&2
    exit 2
    ;;
esac
