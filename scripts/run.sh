#!/usr/bin/env bash
# `make run`: a real Kafka broker, the services on SQLite, and a demo dossier. Ctrl-C stops all
# and exits 0 (so make does not report "Error 130"). Runs again on the same .state/, also after
# an interrupted run: the demo stops what a killed run left behind, by the PIDs it recorded.
#
# Environment (defaults): MOTCUA_STATE_DIR=<repo>/.state, KAFKA_PORT=9092,
#   KAFKA_CONTROLLER_PORT=9093, KAFKA_STATE_DIR=$MOTCUA_STATE_DIR/kafka,
#   MOTCUA_DEMO_ONCE=1 (stop after the demo, as CI does), MOTCUA_DEMO_FREE_PORTS=1.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export MOTCUA_STATE_DIR="${MOTCUA_STATE_DIR:-$ROOT/.state}"
export KAFKA_PORT="${KAFKA_PORT:-9092}" KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
export KAFKA_STATE_DIR="${KAFKA_STATE_DIR:-$MOTCUA_STATE_DIR/kafka}"
mkdir -p "$MOTCUA_STATE_DIR"
# Present while a broker this script started runs: a killed run's broker is adopted and stopped.
KAFKA_MARK="$MOTCUA_STATE_DIR/run.kafka"

interrupted=0 started_kafka=0 demo_pid=""
on_signal() {
  interrupted=1
  # The demo runs in the background (it ignores SIGINT there): tell it by PID, it stops its own.
  if [[ -n "$demo_pid" ]]; then kill -TERM "$demo_pid" 2>/dev/null || true; fi
}
cleanup() {
  if ((started_kafka)); then
    bash infra/kafka.sh stop || true
    rm -f "$KAFKA_MARK"
  fi
}
trap on_signal INT TERM
trap cleanup EXIT

if ! bash infra/kafka.sh status >/dev/null 2>&1; then
  started_kafka=1
  touch "$KAFKA_MARK"
  bash infra/kafka.sh start || { ((interrupted)) && exit 0; exit 1; }
elif [[ -f "$KAFKA_MARK" ]]; then
  started_kafka=1  # left running by an interrupted run of this script: ours to stop
fi
((interrupted)) && exit 0

.venv/bin/python scripts/demo.py --kafka "127.0.0.1:$KAFKA_PORT" "$@" &
demo_pid=$!
status=0
while :; do
  # wait returns early (status > 128) when a trapped signal arrives; wait again until it exits.
  wait "$demo_pid" && status=0 || status=$?
  kill -0 "$demo_pid" 2>/dev/null || break
done
((interrupted)) && exit 0
exit "$status"
