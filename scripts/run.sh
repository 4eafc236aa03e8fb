#!/usr/bin/env bash
# `make run`: a real Kafka broker, the services on SQLite, and a demo dossier. Ctrl-C stops all.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export KAFKA_PORT="${KAFKA_PORT:-9092}" KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
export KAFKA_STATE_DIR="${KAFKA_STATE_DIR:-$ROOT/.state/kafka}"
started_kafka=0
if ! bash infra/kafka.sh status >/dev/null 2>&1; then
  bash infra/kafka.sh start
  started_kafka=1
fi
cleanup() { if ((started_kafka)); then bash infra/kafka.sh stop || true; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM
.venv/bin/python scripts/demo.py --kafka "127.0.0.1:$KAFKA_PORT" "$@"
