#!/usr/bin/env bash
# A minimal OpenTelemetry Collector (infra/otelcol: kafkametrics receiver + Prometheus exporter)
# that reports each consumer group's lag from the broker itself, as a platform team's collector
# or Strimzi's Kafka Exporter does. Built from the Go module pinned in infra/otelcol/go.mod.
#
#   infra/otelcol.sh fetch   build $CACHE/otelcol/<version>/otelcol-motcua if not there yet
#   infra/otelcol.sh path    print the binary's path (exit 1 if it is not built)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODULE="$HERE/otelcol"
die() { echo "otelcol.sh: error: $*" >&2; exit 1; }
say() { echo "otelcol.sh: $*" >&2; }
VERSION="$(sed -n 's#^[[:space:]]*go.opentelemetry.io/collector/otelcol \(v[0-9.]*\).*#\1#p' "$MODULE/go.mod")"
[[ -n "$VERSION" ]] || die "infra/otelcol/go.mod requires no go.opentelemetry.io/collector/otelcol"

source "$HERE/cache.sh"
source "$HERE/gobuild.sh"
BIN="$CACHE/otelcol/$VERSION/otelcol-motcua"

case "${1:-}" in
  fetch)
    # -mod=readonly: the committed go.mod/go.sum are what is built, never rewritten.
    cached_go_build "$BIN" "$MODULE" build -mod=readonly -trimpath -ldflags="-s -w" -o {} .
    echo "$BIN" ;;
  path) [[ -x "$BIN" ]] || { say "not built: run infra/otelcol.sh fetch"; exit 1; }; echo "$BIN" ;;
  *) echo "usage: $0 fetch|path" >&2; exit 2 ;;
esac
