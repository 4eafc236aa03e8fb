#!/usr/bin/env bash
# Regenerates the Python code in packages/contracts/motcua from protos/.
# The output is committed (docs/adr/0003); `make check-generated` fails when it is stale.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$ROOT/packages/contracts}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
# motcua/topics.py is `make generate`' output (from contracts/topics.yaml, ADR 0078): kept.
KEEP="$(mktemp)"
trap 'rm -f "$KEEP"' EXIT
[[ -f "$OUT/motcua/topics.py" ]] && cp "$OUT/motcua/topics.py" "$KEEP"
rm -rf "$OUT/motcua"
mkdir -p "$OUT/motcua"
[[ -s "$KEEP" ]] && cp "$KEEP" "$OUT/motcua/topics.py"
cd "$ROOT/protos"
mapfile -t files < <(find motcua -name '*.proto' | LC_ALL=C sort)
PATH="$(dirname "$PY"):$PATH" "$PY" -m grpc_tools.protoc -I . \
  --python_out="$OUT" --grpc_python_out="$OUT" \
  --mypy_out="$OUT" --mypy_grpc_out="$OUT" \
  "${files[@]}" >/dev/null
# Every generated directory is a regular package so mypy and wheels see it.
find "$OUT/motcua" -type d -exec sh -c 'touch "$1/__init__.py"' _ {} \;
