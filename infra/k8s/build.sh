#!/usr/bin/env bash
# Builds the binaries of the loopback Kubernetes control plane that infra/k8s/check.sh
# (make k8s-check) runs, from Go modules through the ordinary module proxy, into a cache:
#
#   $CACHE/k8s/<KUBE_VERSION>/   kube-apiserver kube-controller-manager kube-scheduler kubectl
#   $CACHE/k8s/etcd-<ETCD_VERSION>/etcd
#   $CACHE/k8s/kwok-<KWOK_VERSION>/kwok, stages.yaml
#
# CACHE is MOTCUA_CACHE, else MOTCUA_CACHE_DIR (infra/kafka.sh's), else $HOME/.cache/motcua.
# A binary already in the cache is not built again (delete its directory to rebuild). Each
# build runs under `nice -n 19`, one `go build` at a time, and its wall time and peak memory
# (/usr/bin/time -v) are kept next to the binary as <name>.time.
#
#   infra/k8s/build.sh          build what is missing, print the cache directories
#   infra/k8s/build.sh --print  only print them (exit 1 if something is missing)
set -euo pipefail

KUBE_VERSION=v1.37.2    # k8s.io/kubernetes; infra/k8s/kube/go.mod pins its staging modules to v0.37.2
ETCD_VERSION=v3.7.0     # go.etcd.io/etcd/server/v3: the etcd client k8s.io/kubernetes v1.37.2 requires
KWOK_VERSION=v0.8.0     # sigs.k8s.io/kwok: the newest the module proxy serves

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { echo "k8s/build.sh: error: $*" >&2; exit 1; }
say() { echo "k8s/build.sh: $*" >&2; }

source "$HERE/../cache.sh"
KUBE_DIR="$CACHE/k8s/$KUBE_VERSION"
ETCD_DIR="$CACHE/k8s/etcd-$ETCD_VERSION"
KWOK_DIR="$CACHE/k8s/kwok-$KWOK_VERSION"
KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

print_dirs() { printf 'KUBE_BIN=%s\nETCD_BIN=%s\nKWOK_BIN=%s\n' "$KUBE_DIR" "$ETCD_DIR" "$KWOK_DIR"; }

missing=0
for b in "${KUBE_BINS[@]}"; do [[ -x "$KUBE_DIR/$b" ]] || missing=1; done
[[ -x "$ETCD_DIR/etcd" && -x "$KWOK_DIR/kwok" && -s "$KWOK_DIR/stages.yaml" ]] || missing=1
if [[ "${1:-}" == "--print" ]]; then print_dirs; exit "$missing"; fi
if ((missing == 0)); then say "cached: $KUBE_DIR, $ETCD_DIR, $KWOK_DIR"; print_dirs; exit 0; fi

command -v go >/dev/null || die "go not found"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install time)"

# The versions above and the go.mod files must agree (go.mod is what is built).
requires() { grep -Eq "^[[:space:]]*(require[[:space:]]+)?$2 $3( |$)" "$HERE/$1/go.mod" \
  || die "$1/go.mod does not require $2 $3 (the version in build.sh)"; }
requires kube k8s.io/kubernetes "$KUBE_VERSION"
requires etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
requires kwok sigs.k8s.io/kwok "$KWOK_VERSION"
staging="v0.${KUBE_VERSION#v1.}"
if grep -E '=> k8s.io/[a-z0-9-]+ v' "$HERE/kube/go.mod" | grep -vq " $staging\$"; then
  die "kube/go.mod: every staging replace must be $staging"
fi

# build <module dir> <output dir> <name> <package> <ldflags>: go build into a temporary file,
# renamed when complete (an interrupted build never counts as cached).
build() {
  local mod="$1" out="$2" name="$3" pkg="$4" ldflags="$5"
  if [[ -x "$out/$name" ]]; then say "cached: $out/$name"; return; fi
  mkdir -p "$out"
  say "building $name ($pkg) ..."
  rm -f "$out/.$name.tmp"
  if ! (cd "$HERE/$mod" && CGO_ENABLED=0 /usr/bin/time -v -o "$out/.$name.time" \
          nice -n 19 go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$out/.$name.tmp" "$pkg"); then
    rm -f "$out/.$name.tmp"
    die "go build $pkg failed (module $HERE/$mod)"
  fi
  mv "$out/.$name.time" "$out/$name.time"
  mv "$out/.$name.tmp" "$out/$name"
  say "built $out/$name: $(sed -n 's/^\tElapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out/$name.time") wall," \
      "$(awk '/Maximum resident set size/ {printf "%d MiB", $NF/1024}' "$out/$name.time") peak RSS"
}

# What kube-apiserver's /version and `kubectl version` report (hack/lib/version.sh sets the
# same variables in both packages). The build date is the module's release time.
released="$(cd "$HERE/kube" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
major="${KUBE_VERSION#v}"; major="${major%%.*}"
minor="${KUBE_VERSION#v*.}"; minor="${minor%%.*}"
kube_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  kube_ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$released"
done
for b in "${KUBE_BINS[@]}"; do
  build kube "$KUBE_DIR" "$b" "k8s.io/kubernetes/cmd/$b" "$kube_ldflags"
done
build etcd "$ETCD_DIR" etcd go.etcd.io/etcd/server/v3 "-s -w"
build kwok "$KWOK_DIR" kwok sigs.k8s.io/kwok/cmd/kwok "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"

# kwok itself has no default stages (kwokctl passes them in its configuration): install the ones
# the kwok module ships, unchanged, as one config file for `kwok --config`: initialise fake
# nodes and keep their lease and conditions fresh; make pods Running and Ready; complete the
# pods of Jobs (phase Succeeded); delete pods marked for deletion.
if [[ ! -s "$KWOK_DIR/stages.yaml" ]]; then
  kwok_src="$(cd "$HERE/kwok" && go mod download -json sigs.k8s.io/kwok | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$kwok_src/kustomize/stage" ]] || die "no kustomize/stage in the kwok module ($kwok_src)"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [[ -s "$kwok_src/kustomize/stage/$f" ]] || die "kwok module: kustomize/stage/$f missing"
    echo "---"
    echo "# sigs.k8s.io/kwok@$KWOK_VERSION kustomize/stage/$f"
    cat "$kwok_src/kustomize/stage/$f"
  done >"$KWOK_DIR/.stages.yaml.tmp"
  mv "$KWOK_DIR/.stages.yaml.tmp" "$KWOK_DIR/stages.yaml"
  say "installed $KWOK_DIR/stages.yaml (the kwok module's node and pod stages)"
fi
print_dirs
