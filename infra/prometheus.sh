#!/usr/bin/env bash
# The Prometheus server for the alerting tests (tests/integration/test_prometheus_alerts.py),
# built from its Go module at the promtool release the Makefile pins, into a cache. The web UI's
# assets are not built (the tests use the HTTP API only) and `remove_all_sd` leaves out the
# cloud service discoveries: the tests scrape static loopback targets.
#
#   infra/prometheus.sh fetch   build $CACHE/prometheus/<version>/prometheus if not there yet
#   infra/prometheus.sh path    print the binary's path (exit 1 if it is not built)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { echo "prometheus.sh: error: $*" >&2; exit 1; }
say() { echo "prometheus.sh: $*" >&2; }
VERSION="$(sed -n 's/^PROMTOOL_VERSION ?= //p' "$HERE/../Makefile")"
[[ -n "$VERSION" ]] || die "PROMTOOL_VERSION not found in the Makefile"
PACKAGE=github.com/prometheus/prometheus/cmd/prometheus

source "$HERE/cache.sh"
source "$HERE/gobuild.sh"
BIN="$CACHE/prometheus/$VERSION/prometheus"

case "${1:-}" in
  fetch)
    cached_go_build "$BIN" "$HERE" install -trimpath -ldflags="-s -w" -tags remove_all_sd \
      "$PACKAGE@$VERSION"
    echo "$BIN" ;;
  path) [[ -x "$BIN" ]] || { say "not built: run infra/prometheus.sh fetch"; exit 1; }; echo "$BIN" ;;
  *) echo "usage: $0 fetch|path" >&2; exit 2 ;;
esac
