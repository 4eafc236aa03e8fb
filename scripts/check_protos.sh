#!/usr/bin/env bash
# Fails when packages/contracts/motcua differs from what protos/ generate (docs/adr/0003).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
OUT="$TMP" bash "$ROOT/scripts/gen_protos.sh"
# topics.py is not protoc's: `make check-generated` guards it (ADR 0078).
if ! diff -r -x __pycache__ -x topics.py "$ROOT/packages/contracts/motcua" "$TMP/motcua"; then
  echo "generated code is stale: run 'make generate' and commit the result" >&2
  exit 1
fi
echo "generated code is current"
