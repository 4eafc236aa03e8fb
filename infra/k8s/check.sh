#!/usr/bin/env bash
# make k8s-check: installs helm/motcua into a real Kubernetes control plane on loopback and
# checks what only a real API server can: admission (PodSecurity "restricted"), RBAC, API
# validation, the CRDs' schemas, hook Jobs run to completion by the Job controller, Helm's
# install/test/upgrade/rollback/uninstall and what uninstall leaves behind. See infra/k8s/README.md.
#
# Runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (simulated nodes
# and pod lifecycles; no container runs) from the binaries infra/k8s/build.sh builds, on free
# 127.0.0.1 ports, with certificates and data in a temporary directory. Everything it starts is
# stopped by PID and the directory removed on exit.
#
# Environment: K8S_CHECK_HELM_TIMEOUT (5m) for each helm operation, K8S_CHECK_TIMEOUT (120)
# seconds for each wait of its own, K8S_CHECK_KEEP=1 keeps the temporary directory (logs).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CHART="$ROOT/helm/motcua"
CRDS="$ROOT/helm/tools/crds"
HELM_TIMEOUT="${K8S_CHECK_HELM_TIMEOUT:-5m}"
WAIT="${K8S_CHECK_TIMEOUT:-120}"
HELM_BIN="${HELM:-$(command -v helm || echo "$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin/helm")}"
FAKE_NODES=(kwok-node-0 kwok-node-1 kwok-node-2)
DEV_NS=motcua-dev DEV_REL=motcua-dev
PROD_NS=motcua PROD_REL=motcua
PRIV_NS=motcua-priv PRIV_REL=motcua-priv
INSTANCE=app.kubernetes.io/instance
STARTED=$SECONDS
STEP=0

# fds 3 and 4: the script's stdout and stderr, also where a predicate's output is discarded.
exec 3>&1 4>&2
say() { echo "k8s-check: $*"; }
die() { echo "k8s-check: FAILED: $*" >&4; exit 1; }
step() { STEP=$((STEP + 1)); echo; echo "=== k8s-check [$STEP] $* ($((SECONDS - STARTED)) s) ==="; }
ok() { echo "  ok: $*"; }

# wait_for <what> <seconds> <command...>: run the command every 0.5 s until it succeeds.
wait_for() {
  local what="$1" limit="$2"; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      "$@" >&4 2>&4 || true   # once more, visibly
      die "timed out after ${limit}s waiting for $what"
    fi
    sleep 0.5
  done
}

for tool in openssl curl python3; do command -v "$tool" >/dev/null || die "$tool not found"; done
[[ -x "$HELM_BIN" ]] || die "helm not found (make tools)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/motcua-k8s-check.XXXXXX")"
PIDS=()
NAMES=()
cleanup() {
  local rc=$? i pid deadline
  trap - EXIT INT TERM
  exec 1>&3 2>&4
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid="${PIDS[i]}"
    kill -TERM "$pid" 2>/dev/null || continue
    deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if ((rc != 0)); then
    for i in "${!NAMES[@]}"; do
      echo "--- last lines of ${NAMES[i]}.log ---" >&2
      tail -n 15 "$TMP/logs/${NAMES[i]}.log" >&2 2>/dev/null || true
    done
  fi
  if [[ "${K8S_CHECK_KEEP:-0}" == 1 ]]; then
    echo "k8s-check: kept $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  if ((rc == 0)); then echo; echo "k8s-check: PASSED in $((SECONDS - STARTED)) s"
  else echo "k8s-check: FAILED (exit $rc) after $((SECONDS - STARTED)) s" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$TMP/pki" "$TMP/logs" "$TMP/helm" "$TMP/kwok"

# start <name> <command...>: in the background, output to logs/<name>.log, PID remembered.
start() {
  local name="$1"; shift
  "$@" >"$TMP/logs/$name.log" 2>&1 &
  PIDS+=("$!"); NAMES+=("$name")
  say "started $name (pid $!)"
}
alive() { # the last started process still runs
  kill -0 "${PIDS[-1]}" 2>/dev/null || die "${NAMES[-1]} exited; see its log above"
}

# ---------------------------------------------------------------------------------------------
step "binaries (infra/k8s/build.sh; cached) and the chart's library (helm/build-deps.sh)"
eval "$(bash "$HERE/build.sh")"
KUBE_APISERVER="$KUBE_BIN/kube-apiserver" KCM="$KUBE_BIN/kube-controller-manager"
SCHEDULER="$KUBE_BIN/kube-scheduler" KUBECTL="$KUBE_BIN/kubectl"
ETCD="$ETCD_BIN/etcd" KWOK="$KWOK_BIN/kwok"
HELM="$HELM_BIN" bash "$ROOT/helm/build-deps.sh"
"$KUBECTL" version --client | sed 's/^/  /'
"$HELM_BIN" version --short | sed 's/^/  helm /'

# ---------------------------------------------------------------------------------------------
step "certificates: CA, API server serving cert, client certs, service-account keys (openssl)"
read -r P_ETCD P_PEER P_API P_KCM P_SCHED P_KWOK < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
PKI="$TMP/pki"
openssl_q() { openssl "$@" 2>/dev/null; }
openssl_q req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=motcua-k8s-check-ca" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  || die "openssl: CA"
# leaf <name> <subject> <extendedKeyUsage> [subjectAltName]
leaf() {
  local name="$1" subj="$2" eku="$3" san="${4:-}"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -z "$san" ]] || echo "subjectAltName=$san"
  } >"$PKI/$name.ext"
  openssl_q req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subj" \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" || die "openssl: $name key"
  openssl_q x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 8)" -days 1 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" \
    || die "openssl: $name certificate"
}
# 10.96.0.1: the `kubernetes` Service's ClusterIP (first address of --service-cluster-ip-range)
leaf apiserver "/CN=kube-apiserver" serverAuth \
  "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
leaf loopback-serving "/CN=127.0.0.1" serverAuth "IP:127.0.0.1,DNS:localhost"   # KCM, scheduler
leaf admin "/O=system:masters/CN=motcua-k8s-check-admin" clientAuth
leaf kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
leaf kube-scheduler "/CN=system:kube-scheduler" clientAuth
openssl_q genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" || die "openssl: sa.key"
openssl_q pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" || die "openssl: sa.pub"
API="https://127.0.0.1:$P_API"
kubeconfig() { # <user>: kubeconfig with that client certificate
  cat >"$TMP/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: loopback
  cluster: {server: "$API", certificate-authority: "$PKI/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$PKI/$1.crt", client-key: "$PKI/$1.key"}
contexts:
- name: $1
  context: {cluster: loopback, user: $1}
current-context: $1
EOF
}
for u in admin kube-controller-manager kube-scheduler; do kubeconfig "$u"; done
export KUBECONFIG="$TMP/admin.kubeconfig"
export HELM_CONFIG_HOME="$TMP/helm/config" HELM_CACHE_HOME="$TMP/helm/cache" HELM_DATA_HOME="$TMP/helm/data"
k() { "$KUBECTL" "$@"; }
helm() { "$HELM_BIN" "$@"; }
ok "ports: etcd $P_ETCD/$P_PEER, apiserver $P_API, controller-manager $P_KCM, scheduler $P_SCHED, kwok $P_KWOK"

# ---------------------------------------------------------------------------------------------
step "etcd on 127.0.0.1:$P_ETCD"
start etcd "$ETCD" --name k8s-check --data-dir "$TMP/etcd" \
  --listen-client-urls "http://127.0.0.1:$P_ETCD" --advertise-client-urls "http://127.0.0.1:$P_ETCD" \
  --listen-peer-urls "http://127.0.0.1:$P_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$P_PEER" \
  --initial-cluster "k8s-check=http://127.0.0.1:$P_PEER" --unsafe-no-fsync --log-level warn
etcd_healthy() { alive; curl -fsS "http://127.0.0.1:$P_ETCD/health" | grep -q '"health":"true"'; }
wait_for "etcd /health" "$WAIT" etcd_healthy
ok "$("$ETCD" --version | head -n1), healthy"

# ---------------------------------------------------------------------------------------------
step "kube-apiserver on $API (RBAC+Node, admission incl. PodSecurity)"
# --endpoint-reconciler-type=none: the reconciler of the `kubernetes` Service's endpoints refuses
# a loopback --advertise-address ("may not be in the loopback range"); nothing here needs them.
# --allow-privileged=true as on real clusters, so that a privileged pod is refused by PodSecurity
# (checked below), not by the API server's validation.
start kube-apiserver "$KUBE_APISERVER" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$P_API" \
  --etcd-servers="http://127.0.0.1:$P_ETCD" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --service-account-issuer="https://kubernetes.default.svc" \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 --endpoint-reconciler-type=none \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction,PodSecurity \
  --allow-privileged=true \
  --profiling=false
apiserver_ready() {
  alive
  [[ "$(curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$API/readyz")" == ok ]]
}
wait_for "kube-apiserver /readyz" "$WAIT" apiserver_ready
server_version="$(curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$API/version" \
  | python3 -c 'import json, sys; v = json.load(sys.stdin); print(v["gitVersion"], v["major"] + "." + v["minor"])')"
ok "/readyz ok; /version: $server_version"
plugins="$(grep -o 'Loaded [0-9]* validating admission controller(s) successfully in the following order: [^"]*' \
  "$TMP/logs/kube-apiserver.log" | head -n1 || true)"
[[ "$plugins" == *PodSecurity* ]] || die "PodSecurity is not among the validating admission plugins: '$plugins'"
ok "validating admission: ${plugins#*order: }"
mutating="$(grep -o 'Loaded [0-9]* mutating admission controller(s) successfully in the following order: [^"]*' \
  "$TMP/logs/kube-apiserver.log" | head -n1 || true)"
[[ "$mutating" == *NodeRestriction* ]] || die "NodeRestriction is not among the mutating admission plugins: '$mutating'"
ok "mutating admission: ${mutating#*order: }"

# ---------------------------------------------------------------------------------------------
step "kube-controller-manager, kube-scheduler, kwok; ${#FAKE_NODES[@]} simulated nodes"
start kube-controller-manager "$KCM" \
  --kubeconfig="$TMP/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="$TMP/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="$TMP/kube-controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$P_KCM" \
  --tls-cert-file="$PKI/loopback-serving.crt" --tls-private-key-file="$PKI/loopback-serving.key" \
  --leader-elect=false --controllers='*' --use-service-account-credentials \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --profiling=false
healthz() { alive; [[ "$(curl -fsS --cacert "$PKI/ca.crt" "https://127.0.0.1:$1/healthz")" == ok ]]; }
wait_for "kube-controller-manager /healthz" "$WAIT" healthz "$P_KCM"
ok "kube-controller-manager /healthz ok"
start kube-scheduler "$SCHEDULER" \
  --kubeconfig="$TMP/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig="$TMP/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="$TMP/kube-scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$P_SCHED" \
  --tls-cert-file="$PKI/loopback-serving.crt" --tls-private-key-file="$PKI/loopback-serving.key" \
  --leader-elect=false --profiling=false
wait_for "kube-scheduler /healthz" "$WAIT" healthz "$P_SCHED"
ok "kube-scheduler /healthz ok"
# kwok has no built-in stages: build.sh installs the ones kwok ships (node-initialize,
# node-heartbeat-with-lease, pod-ready, pod-complete for Job pods, pod-delete) as stages.yaml.
# One stage of our own: kwok's pod-complete finishes only pods owned by a Job; `helm test` waits
# for its test Pods (annotation helm.sh/hook: test, no owner) to succeed. The probe cannot run
# here (no container runs), so once Running they are reported as exited 0.
cat >"$TMP/kwok/helm-test-stage.yaml" <<'EOF'
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: motcua-helm-test-pod-succeeded
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchAnnotations: {helm.sh/hook: test}
    matchExpressions:
    - {key: .metadata.deletionTimestamp, operator: DoesNotExist}
    - {key: .status.phase, operator: In, values: [Running]}
  next:
    statusTemplate: |
      {{ $now := Now }}
      phase: Succeeded
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: false
        started: false
        restartCount: 0
        state:
          terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}
      {{ end }}
EOF
start kwok env KWOK_WORKDIR="$TMP/kwok" "$KWOK" \
  --kubeconfig="$TMP/admin.kubeconfig" --config="$KWOK_BIN/stages.yaml" --config="$TMP/kwok/helm-test-stage.yaml" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds=40 --cidr=10.244.0.0/16 \
  --server-address="127.0.0.1:$P_KWOK"
kwok_healthy() { alive; curl -fsS "http://127.0.0.1:$P_KWOK/healthz" | grep -q ok; }
wait_for "kwok /healthz" "$WAIT" kwok_healthy
ok "kwok /healthz ok"
zones=(zone-a zone-b zone-c)
for i in "${!FAKE_NODES[@]}"; do
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: ${FAKE_NODES[i]}
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: ${FAKE_NODES[i]}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: ${zones[i % 3]}
    type: kwok
EOF
done
nodes_ready() {
  [[ "$(k get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
    | grep -c True)" == "${#FAKE_NODES[@]}" ]]
}
wait_for "${#FAKE_NODES[@]} Ready nodes" "$WAIT" nodes_ready
ok "nodes Ready: $(k get nodes -o jsonpath='{.items[*].metadata.name}')"

# ---------------------------------------------------------------------------------------------
step "CRDs the chart uses (helm/tools/crds), server-side apply"
mapfile -t crd_files < <(ls "$CRDS"/*.yaml)
for f in "${crd_files[@]}"; do
  k apply --server-side --field-manager=k8s-check -f "$f" | sed 's/^/  /'
done
mapfile -t crd_names < <(k get crd -o name)
((${#crd_names[@]} == ${#crd_files[@]})) || die "expected ${#crd_files[@]} CRDs, found ${#crd_names[@]}"
k wait --for=condition=Established --timeout="${WAIT}s" "${crd_names[@]}" | sed 's/^/  /'

# ---------------------------------------------------------------------------------------------
step "namespaces (pod-security.kubernetes.io/enforce=restricted) and the Secrets the chart names"
k create namespace kafka >/dev/null   # values-prod.yaml: kafkaTopics.namespace
for ns in "$DEV_NS" "$PROD_NS" "$PRIV_NS"; do
  k create namespace "$ns" >/dev/null
  k label namespace "$ns" pod-security.kubernetes.io/enforce=restricted \
    pod-security.kubernetes.io/enforce-version=latest pod-security.kubernetes.io/warn=restricted >/dev/null
done
S="$TMP/secrets"; mkdir -p "$S"
openssl_q genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$S/jwt.key"
openssl_q pkey -in "$S/jwt.key" -pubout -out "$S/public.pem"
openssl_q genpkey -algorithm ED25519 -out "$S/ed25519.pem"
printf 'subscriptions: []\n' >"$S/subscriptions.yaml"
secret() { k create secret generic "$@" >/dev/null; }
for ns in "$DEV_NS" "$PROD_NS" "$PRIV_NS"; do
  secret -n "$ns" motcua-jwt-public-key --from-file=public.pem="$S/public.pem"
  secret -n "$ns" motcua-payment-gateway --from-literal=hash-secret="$(openssl rand -hex 16)"
  for svc in dossier notify payment audit; do
    secret -n "$ns" "motcua-$svc-db" \
      --from-literal=url="postgresql+psycopg://motcua_$svc:check@postgres.invalid:5432/motcua_$svc"
  done
done
# values-prod.yaml: SASL_SSL with one KafkaUser per service, the Kafka cluster CA, mTLS, the audit
# signing key, notify's provider credentials and webhooks, the Ingresses' certificates.
secret -n "$PROD_NS" motcua-kafka-cluster-ca-cert --from-file=ca.crt="$PKI/ca.crt"
secret -n "$PROD_NS" motcua-audit-signing-key --from-file=ed25519.pem="$S/ed25519.pem"
secret -n "$PROD_NS" motcua-notify-providers --from-literal=smtp-password=check \
  --from-literal=sms-a-key=check --from-literal=sms-b-key=check --from-literal=zalo-token=check
secret -n "$PROD_NS" motcua-notify-webhooks --from-file=subscriptions.yaml="$S/subscriptions.yaml"
for svc in dossier notify payment audit; do
  secret -n "$PROD_NS" "motcua-$svc" --from-literal=password="$(openssl rand -hex 16)"
  leaf "tls-$svc" "/CN=motcua-$svc" "serverAuth,clientAuth" "DNS:$PROD_REL-$svc.$PROD_NS.svc"
  secret -n "$PROD_NS" "motcua-$svc-tls" --from-file=tls.crt="$PKI/tls-$svc.crt" \
    --from-file=tls.key="$PKI/tls-$svc.key" --from-file=ca.crt="$PKI/ca.crt"
done
for name in motcua-receipts-tls motcua-pay-tls; do
  k create secret tls -n "$PROD_NS" "$name" --cert="$PKI/loopback-serving.crt" --key="$PKI/loopback-serving.key" >/dev/null
done
# The migration Jobs run as the namespace's default ServiceAccount (the controller-manager makes it).
# It and the ConfigMap kube-root-ca.crt belong to the baseline of each namespace.
for ns in "$DEV_NS" "$PROD_NS" "$PRIV_NS" kafka; do
  wait_for "ServiceAccount $ns/default" "$WAIT" k get serviceaccount -n "$ns" default
  wait_for "ConfigMap $ns/kube-root-ca.crt" "$WAIT" k get configmap -n "$ns" kube-root-ca.crt
done
ok "namespaces $DEV_NS $PROD_NS $PRIV_NS (restricted) and kafka; $(k get secrets -A --no-headers | wc -l) Secrets"

# Every namespaced type that can be listed; <ns> snapshot: all its objects but Events.
mapfile -t NS_TYPES < <(k api-resources --namespaced=true --verbs=list -o name | grep -v '^events')
mapfile -t CLUSTER_TYPES < <(k api-resources --namespaced=false --verbs=list -o name)
# kget <args>: kubectl get -o name, sorted; fails on any error (deprecation warnings are no error).
kget() {
  local out err
  out="$(k get "$@" -o name 2>"$TMP/kget.err")" || { cat "$TMP/kget.err" >&2; return 1; }
  err="$(grep -v '^Warning: ' "$TMP/kget.err" || true)"
  [[ -z "$err" ]] || { echo "$err" >&2; return 1; }
  [[ -z "$out" ]] || sort <<<"$out"
}
snapshot() { kget "$(IFS=,; echo "${NS_TYPES[*]}")" -n "$1"; }
declare -A BASELINE
for ns in "$DEV_NS" "$PROD_NS" kafka; do BASELINE[$ns]="$(snapshot "$ns")" || die "cannot list $ns"; done

# ---------------------------------------------------------------------------------------------
# assert_release <release> <ns> <revision> <status>: Helm's record, its hooks, its pods.
assert_release() {
  local rel="$1" ns="$2" rev="$3" want="$4"
  helm status "$rel" -n "$ns" -o json >"$TMP/status.json"
  python3 - "$rel" "$rev" "$want" "$TMP/status.json" <<'PY' || die "helm status $rel"
import json, sys
rel, rev, want = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = json.load(open(sys.argv[4]))
status = s["info"]["status"]
assert s["version"] == rev and status == want, f"{rel}: revision {s['version']} {status}, want {rev} {want}"
jobs = [h for h in s.get("hooks", []) if h["kind"] == "Job"]
bad = [(h["name"], h.get("last_run", {}).get("phase")) for h in jobs
       if h.get("last_run", {}).get("phase") != "Succeeded"]
assert jobs and not bad, f"{rel}: migration hooks not succeeded: {bad or 'none ran'}"
print(f"  ok: {rel} revision {rev} {status}; hooks succeeded: " + ", ".join(sorted(h["name"] for h in jobs)))
PY
}
# Pods of a release: all Running and Ready, as many as the Deployments want; no hook Job left.
assert_pods() {
  local rel="$1" ns="$2" want got
  want="$(k get deploy -n "$ns" -l "$INSTANCE=$rel" -o jsonpath='{range .items[*]}{.spec.replicas}{"\n"}{end}' \
    | awk '{s += $1} END {print s + 0}')"
  got="$(k get pods -n "$ns" -l "$INSTANCE=$rel" --field-selector=status.phase=Running \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)"
  [[ "$want" -gt 0 && "$got" == "$want" ]] || die "$rel: $got Ready pods, want $want"
  [[ -z "$(k get jobs -n "$ns" -l "$INSTANCE=$rel" -o name)" ]] || die "$rel: hook Jobs left after success"
  ok "$rel: $got pods Running+Ready in $ns (enforce=restricted), no hook Job left"
}
# Each Deployment's pod template, created as a Pod with --dry-run=server: PodSecurity admits it
# without a warning (the namespace warns and enforces restricted).
assert_templates_restricted() {
  local rel="$1" ns="$2" d out
  for d in $(k get deploy -n "$ns" -l "$INSTANCE=$rel" -o name); do
    out="$(pod_from "$ns" "$d" | k create --dry-run=server -f - 2>&1)" || die "$d: $out"
    [[ "$out" != *"PodSecurity"* && "$out" != *Warning* ]] || die "$d: $out"
  done
  ok "$rel: every Deployment's pod template passes restricted (server dry-run, no warning)"
}
pod_from() { # <ns> <deployment>: its pod template as a Pod manifest
  k get -n "$1" "$2" -o json | python3 -c '
import json, sys
d = json.load(sys.stdin)
t = d["spec"]["template"]
print(json.dumps({"apiVersion": "v1", "kind": "Pod",
  "metadata": {"name": d["metadata"]["name"] + "-probe", "namespace": d["metadata"]["namespace"],
               "labels": t["metadata"].get("labels", {})},
  "spec": t["spec"]}))'
}
config_value() { # <ns> <release> <key>: the value in the dossier ConfigMap
  k get configmap -n "$1" -l "$INSTANCE=$2,app.kubernetes.io/name=dossier" -o json \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["items"][0]["data"].get(sys.argv[1], ""))' "$3"
}

step "helm install $DEV_REL -f values-dev.yaml --wait (pre-install migration Jobs via controller-manager, scheduler, kwok)"
helm install "$DEV_REL" "$CHART" -n "$DEV_NS" -f "$CHART/values-dev.yaml" --wait --timeout "$HELM_TIMEOUT" \
  | sed -n '1,6s/^/  /p'
assert_release "$DEV_REL" "$DEV_NS" 1 deployed
assert_pods "$DEV_REL" "$DEV_NS"
assert_templates_restricted "$DEV_REL" "$DEV_NS"

step "helm test $DEV_REL (the test Pods pass restricted admission; kwok reports them exited 0)"
helm_test() { # <release> <ns>
  local out
  out="$(helm test "$1" -n "$2" --timeout "$HELM_TIMEOUT" 2>&1)" || die "helm test $1: $out"
  [[ "$(grep -c 'Phase: *Succeeded' <<<"$out")" == 4 ]] || die "helm test $1: want 4 test Pods Succeeded: $out"
  [[ -z "$(k get pods -n "$2" -l "$INSTANCE=$1,app.kubernetes.io/component=test" -o name)" ]] \
    || die "helm test $1: test Pods left (hook-delete-policy hook-succeeded)"
  ok "$1: $(grep -c 'Phase: *Succeeded' <<<"$out") test Pods Succeeded and deleted"
}
helm_test "$DEV_REL" "$DEV_NS"

# ---------------------------------------------------------------------------------------------
step "a privileged override is refused by PodSecurity admission"
cat >"$TMP/privileged.yaml" <<'EOF'
serviceDefaults:
  migration: {enabled: false}     # otherwise the pre-install Job would wait for pods that never come
  containerSecurityContext:
    privileged: true
    allowPrivilegeEscalation: true
EOF
priv_out="$(helm install "$PRIV_REL" "$CHART" -n "$PRIV_NS" -f "$CHART/values-dev.yaml" -f "$TMP/privileged.yaml" \
  --timeout "$HELM_TIMEOUT" 2>&1)" || die "helm install $PRIV_REL: $priv_out"
priv_out="${priv_out//\\\"/\"}"   # helm logs the API server's warnings through klog, quotes escaped
[[ "$priv_out" == *'would violate PodSecurity "restricted:latest"'* ]] \
  || die "no PodSecurity warning on the privileged Deployments: $priv_out"
ok "Deployments accepted with the warning: $(grep -o 'would violate PodSecurity "restricted:latest": privileged ([^)]*)' <<<"$priv_out" | head -n1)"
rs_refused() {
  local msg
  msg="$(k get rs -n "$PRIV_NS" -l "$INSTANCE=$PRIV_REL,app.kubernetes.io/name=dossier" \
    -o jsonpath='{.items[0].status.conditions[?(@.type=="ReplicaFailure")].message}')"
  [[ "$msg" == *'violates PodSecurity "restricted:latest"'*privileged* ]] && echo "$msg"
}
wait_for "the ReplicaSet's pods refused by PodSecurity" "$WAIT" rs_refused
ok "ReplicaSet: $(rs_refused | cut -c1-220)"
[[ -z "$(k get pods -n "$PRIV_NS" -o name)" ]] || die "pods were admitted in $PRIV_NS"
d="$(k get deploy -n "$PRIV_NS" -l "$INSTANCE=$PRIV_REL,app.kubernetes.io/name=dossier" -o name)"
if out="$(pod_from "$PRIV_NS" "$d" | k create --dry-run=server -f - 2>&1)"; then
  die "a privileged Pod was admitted: $out"
fi
[[ "$out" == *'is forbidden: violates PodSecurity "restricted:latest"'*'privileged (container'* ]] \
  || die "refused, but not by PodSecurity: $out"
ok "Pod create refused: ${out:0:200}..."
helm uninstall "$PRIV_REL" -n "$PRIV_NS" --wait --timeout "$HELM_TIMEOUT" | sed 's/^/  /'

# ---------------------------------------------------------------------------------------------
step "helm install $PROD_REL -f values-prod.yaml --wait (mTLS, SASL_SSL, NetworkPolicy, KafkaTopics, monitoring)"
helm install "$PROD_REL" "$CHART" -n "$PROD_NS" -f "$CHART/values-prod.yaml" --wait --timeout "$HELM_TIMEOUT" \
  | sed -n '1,6s/^/  /p'
assert_release "$PROD_REL" "$PROD_NS" 1 deployed
assert_pods "$PROD_REL" "$PROD_NS"
assert_templates_restricted "$PROD_REL" "$PROD_NS"
helm_test "$PROD_REL" "$PROD_NS"
for kind in kafkatopics.kafka.strimzi.io servicemonitors.monitoring.coreos.com prometheusrules.monitoring.coreos.com \
            networkpolicies.networking.k8s.io ingresses.networking.k8s.io poddisruptionbudgets.policy \
            horizontalpodautoscalers.autoscaling; do
  n="$(k get "$kind" -A -l "$INSTANCE=$PROD_REL" --no-headers 2>/dev/null | wc -l)"
  ((n > 0)) || die "$PROD_REL: no $kind"
  echo "  ok: $n $kind"
done
[[ "$(config_value "$PROD_NS" "$PROD_REL" MOTCUA_DOSSIER_LOG_LEVEL)" == INFO ]] \
  || die "dossier LOG_LEVEL is not INFO: $(config_value "$PROD_NS" "$PROD_REL" MOTCUA_DOSSIER_LOG_LEVEL)"

step "helm upgrade $PROD_REL --set global.logLevel=DEBUG --wait (pre-upgrade migration Jobs again)"
helm upgrade "$PROD_REL" "$CHART" -n "$PROD_NS" -f "$CHART/values-prod.yaml" --set global.logLevel=DEBUG \
  --wait --timeout "$HELM_TIMEOUT" | sed -n '1,6s/^/  /p'
assert_release "$PROD_REL" "$PROD_NS" 2 deployed
[[ "$(config_value "$PROD_NS" "$PROD_REL" MOTCUA_DOSSIER_LOG_LEVEL)" == DEBUG ]] || die "upgrade did not change LOG_LEVEL"
rolled_out() { # every Deployment of the release: the new template rolled out, old pods gone
  local d
  for d in $(k get deploy -n "$PROD_NS" -l "$INSTANCE=$PROD_REL" -o name); do
    k rollout status -n "$PROD_NS" "$d" --timeout=1s >/dev/null 2>&1 || return 1
  done
  local want got
  want="$(k get deploy -n "$PROD_NS" -l "$INSTANCE=$PROD_REL" -o jsonpath='{range .items[*]}{.spec.replicas}{"\n"}{end}' | awk '{s += $1} END {print s}')"
  got="$(k get pods -n "$PROD_NS" -l "$INSTANCE=$PROD_REL" --no-headers | wc -l)"
  [[ "$got" == "$want" ]]
}
wait_for "the upgrade's rollout" "$WAIT" rolled_out
assert_pods "$PROD_REL" "$PROD_NS"
ok "ConfigMap LOG_LEVEL=DEBUG, pods rolled (checksum/config)"

step "helm rollback $PROD_REL 1 --wait"
helm rollback "$PROD_REL" 1 -n "$PROD_NS" --wait --timeout "$HELM_TIMEOUT" | sed 's/^/  /'
s="$(helm status "$PROD_REL" -n "$PROD_NS" -o json | python3 -c 'import json, sys; s = json.load(sys.stdin); print(s["version"], s["info"]["status"])')"
[[ "$s" == "3 deployed" ]] || die "after rollback: revision/status $s, want 3 deployed"
[[ "$(config_value "$PROD_NS" "$PROD_REL" MOTCUA_DOSSIER_LOG_LEVEL)" == INFO ]] || die "rollback did not restore LOG_LEVEL"
wait_for "the rollback's rollout" "$WAIT" rolled_out
assert_pods "$PROD_REL" "$PROD_NS"
ok "revision 3 deployed, LOG_LEVEL=INFO again; history: $(helm history "$PROD_REL" -n "$PROD_NS" -o json \
  | python3 -c 'import json, sys; print(", ".join("%s %s" % (r["revision"], r["status"]) for r in json.load(sys.stdin)))')"

# ---------------------------------------------------------------------------------------------
step "helm uninstall both releases --wait; nothing of them may remain"
# Objects with the release's instance label, in every namespace and cluster-wide.
labelled() {
  local a b
  a="$(kget "$(IFS=,; echo "${NS_TYPES[*]}")" -A -l "$INSTANCE=$1")" || return 1
  b="$(kget "$(IFS=,; echo "${CLUSTER_TYPES[*]}")" -l "$INSTANCE=$1")" || return 1
  printf '%s\n%s\n' "$a" "$b" | sed '/^$/d' | sort
}
kept_topics() { # the KafkaTopics helm.sh/resource-policy: keep leaves (values-prod.yaml: keepOnUninstall)
  k get kafkatopics -n kafka -l "$INSTANCE=$1" -o json | python3 -c '
import json, sys
for t in json.load(sys.stdin)["items"]:
    if t["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep":
        print("kafkatopic.kafka.strimzi.io/" + t["metadata"]["name"])' | sort
}
expected_prod_leftovers="$(kept_topics "$PROD_REL")"
[[ "$(wc -l <<<"$expected_prod_leftovers")" == 8 ]] || die "expected 8 KafkaTopics with resource-policy keep"
for pair in "$DEV_REL:$DEV_NS" "$PROD_REL:$PROD_NS"; do
  rel="${pair%%:*}" ns="${pair#*:}"
  helm uninstall "$rel" -n "$ns" --wait --timeout "$HELM_TIMEOUT" | sed 's/^/  /'
  want=""; [[ "$rel" == "$PROD_REL" ]] && want="$expected_prod_leftovers"
  only_kept() { local l; l="$(labelled "$rel")" || return 1; [[ "$l" == "$want" ]] || { echo "$l"; return 1; }; }
  wait_for "the objects of $rel to be deleted (pods via the garbage collector and kwok)" "$WAIT" only_kept
  [[ -z "$(k get secrets -n "$ns" -l "owner=helm,name=$rel" -o name)" ]] || die "$rel: Helm's release Secrets remain"
  same_as_before() { [[ "$(snapshot "$1")" == "${BASELINE[$1]}" ]]; }
  wait_for "$ns to be as before the install" "$WAIT" same_as_before "$ns"
  [[ "$(snapshot "$ns")" == "${BASELINE[$ns]}" ]] \
    || die "$ns differs from before the install: $(diff <(echo "${BASELINE[$ns]}") <(snapshot "$ns") | grep '^[<>]' | head)"
  ok "$rel: no object with $INSTANCE=$rel in any namespace${want:+ but the 8 kept KafkaTopics}; $ns as before the install"
done
k delete kafkatopics -n kafka -l "$INSTANCE=$PROD_REL" --wait=true >/dev/null
[[ "$(snapshot kafka)" == "${BASELINE[kafka]}" ]] || die "namespace kafka not empty after deleting the kept topics"
ok "kept KafkaTopics deleted by hand; kafka namespace as before"
[[ -z "$(k get jobs,pods -A -o name)" ]] || die "Jobs or Pods remain: $(k get jobs,pods -A -o name)"
ok "no Job and no Pod left in the cluster"
