#!/usr/bin/env bash
# `make helm-check`: everything that can be checked about the charts without a cluster.
#
#   1. helm/build-deps.sh packages motcua-lib into the umbrella chart (works on a fresh clone)
#   2. helm lint --strict, for each values set, monitoring objects off and forced on
#   3. helm template for each values set, with the Prometheus Operator API (monitoring on) and
#      without it (off), for each Kubernetes version in KUBE_VERSIONS
#   4. strict schema validation of every rendered object for its Kubernetes version
#      (helm/tools/validate_rendered.py: every error of every object; an unknown kind/apiVersion
#      fails; the allowed custom resources are checked against their projects' published CRDs,
#      vendored in helm/tools/crds/)
#   5. yamllint (helm/.yamllint) over the values files, the Chart.yaml files and the output
#   6. the chart tests: pytest tests/helm
#
# Every step runs even when an earlier one failed, so one run shows every problem; the exit
# status is 1 when any step failed.
#
# Environment:
#   HELM                       helm binary (default /root/go/bin/helm; `make` sets it)
#   PYTHON                     Python with kubernetes-validate, yamllint, pytest
#                              (default: .venv/bin/python at the repository root)
#   HELM_CHECK_VALUES          values sets to check, space-separated; a set is one file or
#                              several joined by commas (given as -f in that order)
#                              (default: helm/motcua/values-dev.yaml helm/motcua/values-prod.yaml
#                              helm/motcua/values-prod.yaml,helm/motcua/values-openshift.yaml
#                              helm/motcua/values-prod.yaml,helm/tools/check-values/alternatives.yaml:
#                              KEDA instead of the HPA, Strimzi v1beta2)
#   HELM_CHECK_KUBE_VERSIONS   default: 1.30 1.31 ... 1.37 (MAJOR.MINOR; one kubernetes-validate
#                              has no schemas for is refused up front, exit status 2)
#   HELM_CHECK_PYTEST          0 skips step 6 (tests/helm runs this script itself)
#   HELM_CHECK_OUT             keep the rendered manifests in this directory
#   MOTCUA_ROOT                the repository (default: the parent of this script's directory)
set -uo pipefail

HELM_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="${MOTCUA_ROOT:-$(cd "$HELM_DIR/.." && pwd)}"
HELM="${HELM:-/root/go/bin/helm}"
HELM="$(command -v "$HELM" || echo "$HELM")"   # a bare name means the one on PATH
PY="${PYTHON:-$ROOT/.venv/bin/python}"
CHART="$HELM_DIR/motcua"
KUBE_VERSIONS="${HELM_CHECK_KUBE_VERSIONS:-1.30 1.31 1.32 1.33 1.34 1.35 1.36 1.37}"
VALUES="${HELM_CHECK_VALUES:-$CHART/values-dev.yaml $CHART/values-prod.yaml $CHART/values-prod.yaml,$CHART/values-openshift.yaml $CHART/values-prod.yaml,$HELM_DIR/tools/check-values/alternatives.yaml}"
RELEASE=motcua
NAMESPACE=motcua
MONITORING_API=monitoring.coreos.com/v1
STRIMZI_API=kafka.strimzi.io/v1,kafka.strimzi.io/v1beta2
LINT_KUBE_VERSION="${KUBE_VERSIONS%% *}.0"

for tool in "$HELM" "$PY"; do
  if [[ ! -x "$tool" ]]; then
    echo "helm-check: $tool not found or not executable (make setup tools)" >&2
    exit 2
  fi
done

# A Kubernetes version without schemas would only fail late, once per values set: refuse it now.
if ! supported="$("$PY" "$HELM_DIR/tools/validate_rendered.py" --supported-versions)"; then
  echo "helm-check: helm/tools/validate_rendered.py --supported-versions failed" >&2
  exit 2
fi
for kube in $KUBE_VERSIONS; do
  if [[ " $supported " != *" $kube "* ]]; then
    echo "helm-check: HELM_CHECK_KUBE_VERSIONS: Kubernetes $kube is not supported: the installed kubernetes-validate has schemas for ${supported%% *} to ${supported##* } (MAJOR.MINOR)" >&2
    exit 2
  fi
done

if [[ -n "${HELM_CHECK_OUT:-}" ]]; then
  OUT="$HELM_CHECK_OUT"
  mkdir -p "$OUT"
else
  OUT="$(mktemp -d)"
  trap 'rm -rf "$OUT"' EXIT
fi

failed=()
# values_args SET: "-f file" for each comma-separated file of a values set.
values_args() {
  local IFS=, file
  for file in $1; do printf '%s\0' -f "$file"; done
}
step() { echo; echo "=== helm-check: $* ==="; }
# run DESCRIPTION COMMAND...: run it, remember a failure, go on.
run() {
  local what="$1"
  shift
  if ! "$@"; then
    echo "helm-check: FAILED: $what" >&2
    failed+=("$what")
  fi
}

step "package motcua-lib into the umbrella chart"
if ! HELM="$HELM" bash "$HELM_DIR/build-deps.sh"; then
  echo "helm-check: helm/build-deps.sh failed; nothing else can be checked" >&2
  exit 1
fi

step "helm lint --strict"
for values in $VALUES; do
  mapfile -d '' vargs < <(values_args "$values")
  run "lint $values" "$HELM" lint "$CHART" --strict --quiet \
    --kube-version "$LINT_KUBE_VERSION" "${vargs[@]}"
  # Lint cannot be given --api-versions: force the monitoring objects on instead.
  run "lint $values (monitoring on)" "$HELM" lint "$CHART" --strict --quiet \
    --kube-version "$LINT_KUBE_VERSION" "${vargs[@]}" \
    --set global.monitoring.serviceMonitor.enabled=true \
    --set global.monitoring.prometheusRule.enabled=true
done

step "helm template + strict Kubernetes schemas ($KUBE_VERSIONS)"
rendered=()
for kube in $KUBE_VERSIONS; do
  files=()
  for values in $VALUES; do
    mapfile -d '' vargs < <(values_args "$values")
    name="$(basename "${values##*,}" .yaml)"
    for monitoring in on off; do
      api=(--api-versions "$STRIMZI_API")  # prod values refuse to render without Strimzi
      [[ "$monitoring" == on ]] && api+=(--api-versions "$MONITORING_API")
      out="$OUT/$name-monitoring-$monitoring-k$kube.rendered.yaml"
      if "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" \
        --kube-version "$kube.0" "${vargs[@]}" "${api[@]}" >"$out"; then
        files+=("$out")
      else
        echo "helm-check: FAILED: helm template $values (monitoring $monitoring, Kubernetes $kube)" >&2
        failed+=("template $name monitoring-$monitoring k$kube")
      fi
    done
  done
  if ((${#files[@]})); then
    run "kubernetes-validate $kube" "$PY" "$HELM_DIR/tools/validate_rendered.py" \
      --kube-version "$kube" "${files[@]}"
    rendered+=("${files[@]}")
  fi
done

step "yamllint"
# The output rarely differs between Kubernetes versions: lint each distinct file once.
first_kube="${KUBE_VERSIONS%% *}"
distinct=()
for f in "${rendered[@]}"; do
  twin="$(sed -E "s/-k[0-9.]+\.rendered\.yaml\$/-k$first_kube.rendered.yaml/" <<<"$f")"
  if [[ "$f" == "$twin" || ! -f "$twin" ]] || ! cmp -s "$f" "$twin"; then
    distinct+=("$f")
  fi
done
lint_files=("$CHART"/values*.yaml "$CHART/Chart.yaml" "$HELM_DIR/motcua-lib/Chart.yaml"
  "$HELM_DIR/motcua-lib/values.yaml")
for values in ${VALUES//,/ }; do
  [[ " ${lint_files[*]} " == *" $values "* ]] || lint_files+=("$values")
done
run "yamllint" "$PY" -m yamllint --strict -c "$HELM_DIR/.yamllint" "${lint_files[@]}" "${distinct[@]}"

if [[ "${HELM_CHECK_PYTEST:-1}" != 0 ]]; then
  step "chart tests (pytest tests/helm)"
  run "pytest tests/helm" bash -c 'cd "$1" && HELM="$2" "$3" -m pytest tests/helm -q -p no:cacheprovider' \
    _ "$ROOT" "$HELM" "$PY"
fi

echo
if ((${#failed[@]})); then
  echo "helm-check: ${#failed[@]} step(s) failed:" >&2
  printf '  - %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "helm-check: all checks passed"
