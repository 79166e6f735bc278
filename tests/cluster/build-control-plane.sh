#!/usr/bin/env bash
# Build kube-apiserver and kube-controller-manager v1.20.2 from Debian bookworm's `kubernetes`
# source package (the full upstream tree, vendor/ included), offline with Debian's Go, and keep
# only the two binaries in a cache outside the repository. Reused when present.
#
#   tests/cluster/build-control-plane.sh        # prints the cache folder holding the binaries
#
# Cache: ${HPO_CACHE:-~/.cache/hpo-operator}/kubernetes-v1.20.2/{kube-apiserver,kube-controller-manager}
# Installs (apt): golang-1.19-go etcd-server rsync jq openssl golang-github-modern-go-reflect2-dev
set -euo pipefail

VERSION=v1.20.2
CACHE="${HPO_CACHE:-$HOME/.cache/hpo-operator}/kubernetes-$VERSION"
BINARIES=(kube-apiserver kube-controller-manager)
APT_PACKAGES=(golang-1.19-go etcd-server rsync jq openssl golang-github-modern-go-reflect2-dev)

log() { echo "build-control-plane: $*" >&2; }

have_binaries() {
  for b in "${BINARIES[@]}"; do [ -x "$CACHE/$b" ] || return 1; done
}

install_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
}

# apt-get source with a private deb-src list and state, leaving the system's apt config alone.
fetch_source() {
  local work=$1 apt="$1/apt"
  mkdir -p "$apt/sources.list.d" "$apt/lists/partial"
  cat > "$apt/sources.list.d/debian-src.sources" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  local opts=(-o "Dir::Etc::SourceParts=$apt/sources.list.d" -o "Dir::Etc::SourceList=/dev/null"
              -o "Dir::State::Lists=$apt/lists")
  apt-get "${opts[@]}" update -qq
  (cd "$work" && apt-get "${opts[@]}" source --download-only -qq kubernetes)
}

build() {
  local work=$1
  fetch_source "$work"
  local tarball
  tarball=$(ls "$work"/kubernetes_*.orig.tar.gz | head -n1)
  log "unpacking $(basename "$tarball")"
  mkdir -p "$work/src"
  tar -xzf "$tarball" -C "$work/src" --strip-components=1
  # The vendored reflect2 1.0.1 breaks with Go >= 1.18; Debian ships 1.0.2.
  rm -rf "$work/src/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$work/src/vendor/github.com/modern-go/"
  log "compiling ${BINARIES[*]} (several minutes)"
  (cd "$work/src" && PATH=/usr/lib/go-1.19/bin:$PATH CGO_ENABLED=0 KUBE_GIT_VERSION=$VERSION \
     make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$work/make.log" 2>&1) \
     || { tail -n 40 "$work/make.log" >&2; return 1; }
  mkdir -p "$CACHE"
  for b in "${BINARIES[@]}"; do
    install -m 0755 "$work/src/_output/bin/$b" "$CACHE/$b.tmp"
    mv "$CACHE/$b.tmp" "$CACHE/$b"
  done
}

main() {
  install_packages
  if have_binaries; then
    log "using cached binaries in $CACHE"
  else
    local started
    started=$(date +%s)
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/hpo-kube-build.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    build "$WORK"
    log "built ${BINARIES[*]} $VERSION in $(( $(date +%s) - started )) s; cached in $CACHE"
  fi
  echo "$CACHE"
}

main "$@"
