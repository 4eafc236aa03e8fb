#!/usr/bin/env bash
# Jaeger v2 (all-in-one, in-memory storage) for the tracing tests: the binary is built from the
# Go module pinned in infra/jaeger/go.mod (through the ordinary module proxy) into a cache.
# tests/integration/jaeger_backend.py starts it with infra/jaeger/config.yaml on free ports.
#
#   infra/jaeger.sh fetch   build $CACHE/jaeger/<version>/jaeger if it is not there yet
#   infra/jaeger.sh path    print the binary's path (exit 1 if it is not built)
#
# CACHE is MOTCUA_CACHE, else MOTCUA_CACHE_DIR (infra/kafka.sh's), else $HOME/.cache/motcua.
# The build runs under `nice -n 19` into a temporary file renamed when complete (an interrupted
# build never counts as built), one at a time (flock); its wall time is kept as jaeger.time.
set -euo pipefail

JAEGER_VERSION=v1.75.0   # github.com/jaegertracing/jaeger: its v1.x tags are the v2 binary
PACKAGE=github.com/jaegertracing/jaeger/cmd/jaeger

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODULE="$HERE/jaeger"
die() { echo "jaeger.sh: error: $*" >&2; exit 1; }
say() { echo "jaeger.sh: $*" >&2; }

source "$HERE/cache.sh"
DIR="$CACHE/jaeger/$JAEGER_VERSION"
BIN="$DIR/jaeger"

cmd_fetch() {
  [[ -x "$BIN" ]] && return 0
  command -v go >/dev/null || die "go not found on PATH (needed to build Jaeger $JAEGER_VERSION)"
  grep -Eq "^[[:space:]]*github.com/jaegertracing/jaeger $JAEGER_VERSION( |$)" "$MODULE/go.mod" \
    || die "infra/jaeger/go.mod does not require github.com/jaegertracing/jaeger $JAEGER_VERSION"
  mkdir -p "$DIR"
  exec 8>"$DIR/.build.lock"
  flock -w 1800 8 || die "timed out waiting for another build into $DIR"
  if [[ -x "$BIN" ]]; then exec 8>&-; return 0; fi
  say "building Jaeger $JAEGER_VERSION into $BIN (nice -n 19; takes minutes) ..."
  local tmp t0=$SECONDS
  tmp="$(mktemp "$DIR/jaeger.tmp.XXXXXX")"
  # -mod=readonly: the committed go.mod/go.sum are what is built, never rewritten.
  if ! (cd "$MODULE" && GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly" \
        nice -n 19 go build -trimpath -ldflags="-s -w" -o "$tmp" "$PACKAGE") >"$tmp.log" 2>&1; then
    tail -n 40 "$tmp.log" >&2
    rm -f "$tmp" "$tmp.log"
    die "go build $PACKAGE@$JAEGER_VERSION failed (output above)"
  fi
  rm -f "$tmp.log"
  mv "$tmp" "$BIN"
  echo "go build $PACKAGE@$JAEGER_VERSION: $((SECONDS - t0))s wall" >"$DIR/jaeger.time"
  say "built $BIN in $((SECONDS - t0))s"
  exec 8>&-
}

case "${1:-}" in
  fetch) cmd_fetch; echo "$BIN" ;;
  path) [[ -x "$BIN" ]] || { say "not built: run infra/jaeger.sh fetch"; exit 1; }; echo "$BIN" ;;
  *)
    echo "usage: $0 fetch|path" >&2
    exit 2
    ;;
esac
