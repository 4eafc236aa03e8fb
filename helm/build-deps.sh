#!/usr/bin/env bash
# Packages helm/motcua-lib into every chart that depends on it (file:// dependencies), so that
# `helm lint` / `helm template` / `helm install` see the current library. Run it after any
# change under helm/motcua-lib. The resulting charts/*.tgz files are not committed (.gitignore).
#
# Every chart in the tree must carry the same library: Helm template names are global, so a
# stale copy in one chart would silently replace the templates of another.
set -euo pipefail
HELM_BIN="${HELM:-$(command -v helm || echo /root/go/bin/helm)}"
ROOT="$(cd "$(dirname "$0")" && pwd)"
for svc in dossier notify payment audit; do
  "$HELM_BIN" dependency build --skip-refresh "$ROOT/motcua/charts/$svc" >/dev/null
done
"$HELM_BIN" dependency build --skip-refresh "$ROOT/motcua" >/dev/null
echo "motcua-lib packaged into the umbrella chart and its four service charts"
