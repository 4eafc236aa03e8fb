#!/usr/bin/env bash
# Packages helm/motcua-lib into the umbrella chart (its one file:// dependency), so that
# `helm lint` / `helm template` / `helm install` see the current library. Run it after a
# checkout and after any change under helm/motcua-lib. The resulting
# helm/motcua/charts/motcua-lib-*.tgz is not committed (.gitignore).
set -euo pipefail
HELM_BIN="${HELM:-$(command -v helm || echo /root/go/bin/helm)}"
ROOT="$(cd "$(dirname "$0")" && pwd)"
"$HELM_BIN" dependency build --skip-refresh "$ROOT/motcua" >/dev/null
echo "motcua-lib packaged into the umbrella chart"
