#!/bin/sh
# The image's entrypoint: "python -m motcua_$MOTCUA_SERVICE <args>", with a container's
# defaults for the settings a laptop's defaults get wrong (listen on all interfaces, the
# image's ports). A value already in the environment (the chart sets them all) wins.
# "healthcheck" asks the metrics port's /healthz instead.
set -eu
svc="${MOTCUA_SERVICE:?MOTCUA_SERVICE is not set (build the image with --build-arg SERVICE=...)}"
prefix="MOTCUA_$(printf '%s' "$svc" | tr '[:lower:]' '[:upper:]')_"

default() { # default NAME VALUE: export ${prefix}NAME=VALUE unless it is set
  eval "[ -n \"\${${prefix}$1+set}\" ] || export ${prefix}$1=\"\$2\""
}
default BIND_HOST 0.0.0.0
default GRPC_PORT 50051
default METRICS_PORT 9100
case "$svc" in
  payment) default CALLBACK_PORT 8080 ;;
  notify) default RECEIPTS_PORT 8080 ;;
esac

if [ "${1:-}" = healthcheck ]; then
  eval "port=\${${prefix}METRICS_PORT}"
  exec python -c "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % sys.argv[1], timeout=3)" "$port"
fi
exec python -m "motcua_$svc" "$@"
