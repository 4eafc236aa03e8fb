# Sourced by infra/jaeger.sh and infra/k8s/build.sh: sets CACHE, the directory that built tools
# are cached in, by version. MOTCUA_CACHE, else MOTCUA_CACHE_DIR (infra/kafka.sh's), else
# $HOME/.cache/motcua; a relative path is taken from the current directory.
if [[ -n "${MOTCUA_CACHE:-}" ]]; then CACHE="$MOTCUA_CACHE"
elif [[ -n "${MOTCUA_CACHE_DIR:-}" ]]; then CACHE="$MOTCUA_CACHE_DIR"
else [[ -n "${HOME:-}" ]] || die "HOME is not set; set MOTCUA_CACHE"; CACHE="$HOME/.cache/motcua"
fi
case "$CACHE" in /*) ;; *) CACHE="$PWD/$CACHE" ;; esac
