#!/usr/bin/env bash
# Jaeger v2 (all-in-one, in-memory storage) for the tracing tests: the binary is built from the
# Go module pinned in infra/jaeger/go.mod (through the ordinary module proxy) into a cache.
# tests/integration/jaeger_backend.py starts it with infra/jaeger/config.yaml on free ports.
#
#   infra/jaeger.sh fetch   build $CACHE/jaeger/<version>/jaeger if it is not there yet
#   infra/jaeger.sh path    print the binary's path (exit 1 if it is not built)
#
# CACHE is MOTCUA_CACHE, else MOTCUA_CACHE_DIR (infra/kafka.sh's), else $HOME/.cache/motcua.
# The build is infra/gobuild.sh's: niced, one at a time, never half-built (jaeger.time: wall).
set -euo pipefail

JAEGER_VERSION=v1.75.0   # github.com/jaegertracing/jaeger: its v1.x tags are the v2 binary
PACKAGE=github.com/jaegertracing/jaeger/cmd/jaeger

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODULE="$HERE/jaeger"
die() { echo "jaeger.sh: error: $*" >&2; exit 1; }
say() { echo "jaeger.sh: $*" >&2; }

source "$HERE/cache.sh"
source "$HERE/gobuild.sh"
DIR="$CACHE/jaeger/$JAEGER_VERSION"
BIN="$DIR/jaeger"

cmd_fetch() {
  [[ -x "$BIN" ]] && return 0
  grep -Eq "^[[:space:]]*github.com/jaegertracing/jaeger $JAEGER_VERSION( |$)" "$MODULE/go.mod" \
    || die "infra/jaeger/go.mod does not require github.com/jaegertracing/jaeger $JAEGER_VERSION"
  # -mod=readonly: the committed go.mod/go.sum are what is built, never rewritten.
  cached_go_build "$BIN" "$MODULE" build -mod=readonly -trimpath -ldflags="-s -w" -o {} "$PACKAGE"
}

case "${1:-}" in
  fetch) cmd_fetch; echo "$BIN" ;;
  path) [[ -x "$BIN" ]] || { say "not built: run infra/jaeger.sh fetch"; exit 1; }; echo "$BIN" ;;
  *)
    echo "usage: $0 fetch|path" >&2
    exit 2
    ;;
esac
