# Sourced by the infra scripts that build a Go tool into the cache (jaeger.sh, prometheus.sh,
# otelcol.sh): one build at a time per directory (flock), under `nice -n 19`, into a temporary
# file renamed when complete, so an interrupted build never counts as built. The wall time is
# kept next to the binary as <name>.time. Needs die() and say() from the sourcing script.
#
#   cached_go_build BIN WORKDIR GO-ARGS...   e.g. cached_go_build "$BIN" "$MODULE" build -o {} ./
# `{}` in GO-ARGS is replaced by the temporary output path; with `install`, GOBIN is used.
cached_go_build() {
  local bin="$1" workdir="$2"; shift 2
  [[ -x "$bin" ]] && return 0
  command -v go >/dev/null || die "go not found on PATH (needed to build $(basename "$bin"))"
  local dir; dir="$(dirname "$bin")"
  mkdir -p "$dir"
  exec 8>"$dir/.build.lock"
  flock -w 1800 8 || die "timed out waiting for another build into $dir"
  if [[ -x "$bin" ]]; then exec 8>&-; return 0; fi
  say "building $bin (nice -n 19; takes minutes) ..."
  local tmp tmpdir t0=$SECONDS args=()
  tmpdir="$(mktemp -d "$dir/build.XXXXXX")"
  tmp="$tmpdir/$(basename "$bin")"
  for a in "$@"; do args+=("${a//\{\}/$tmp}"); done
  if ! (cd "$workdir" && GOBIN="$tmpdir" nice -n 19 go "${args[@]}") >"$tmpdir/build.log" 2>&1; then
    tail -n 40 "$tmpdir/build.log" >&2
    rm -rf "$tmpdir"
    die "go ${args[*]} failed (output above)"
  fi
  mv "$tmp" "$bin"
  rm -rf "$tmpdir"
  echo "go $*: $((SECONDS - t0))s wall" >"$bin.time"
  say "built $bin in $((SECONDS - t0))s"
  exec 8>&-
}
