#!/usr/bin/env bash
# Build a real kube-apiserver (1.20.2) once, from Debian bookworm's `kubernetes` source package with
# Debian's Go, and cache it OUTSIDE the repository; install Debian's etcd-server and openssl.
# tests/autoscaler/test_kube.py runs the autoscaler's Kubernetes calls against it.
#
# No package registry ships kube-apiserver. Debian's source package (1.20.5+really1.20.2) builds it
# with Go 1.19 once its bundled github.com/modern-go/reflect2 1.0.1 is swapped for Debian's 1.0.2
# (1.0.1 crashes on Go >= 1.18 at the first custom-resource request).
#
# Cache: ${KUBE_APISERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/occupancy-mlops/kube-apiserver-1.20.2}
# holds kube-apiserver and BUILD-INFO. A cached binary is reused in well under a second.
# KUBE_APISERVER_BIN=/path/to/kube-apiserver (1.20.2) skips the build.
#
# Root is needed only for apt-get (Debian packages, and a deb-src entry for bookworm in
# /etc/apt/sources.list.d/occupancy-mlops-deb-src.sources). Without root, once those are in place,
# the build runs as you; otherwise the script stops and prints the commands to run as root.
#
# Usage: tools/kube-apiserver/build.sh
set -euo pipefail

VERSION=1.20.2
SOURCE_PACKAGE=kubernetes
SOURCE_VERSION_RE='^Version: .*really1\.20\.2-'
REFLECT2_PACKAGE=golang-github-modern-go-reflect2-dev
REFLECT2_VERSION=1.0.2
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
RUN_PACKAGES=(etcd-server openssl)                     # what the tests run
BUILD_PACKAGES=(golang-go dpkg-dev make rsync "$REFLECT2_PACKAGE") # what the build needs
SRC_LIST=/etc/apt/sources.list.d/occupancy-mlops-deb-src.sources
CACHE=${KUBE_APISERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/occupancy-mlops/kube-apiserver-$VERSION}
BIN=$CACHE/kube-apiserver

say() { echo "kube-apiserver: $*" >&2; }

is_version() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -qx "Kubernetes v$VERSION"; }

missing_packages() {
  local pkg out=""
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || out="$out $pkg"
  done
  echo "$out"
}

have_source() { apt-cache showsrc "$SOURCE_PACKAGE" 2>/dev/null | grep -Eq "$SOURCE_VERSION_RE"; }

DEB_SRC="Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"

need_root() { # $1: the packages to install (may be empty); $2: non-empty when the deb-src entry is missing
  local step=1
  say "error: apt-get has to install things first, and you are not root (the build itself runs as you)."
  say "  as root:"
  if [ -n "$2" ]; then
    say "  $step. enable Debian's bookworm sources: write $SRC_LIST containing"
    printf '       %s\n' "${DEB_SRC//$'\n'/$'\n       '}" >&2
    step=2
  fi
  if [ -n "$1" ]; then
    say "  $step. apt-get update && apt-get install -y --no-install-recommends$1"
  else
    say "  $step. apt-get update"
  fi
  say "  then run make kube-apiserver (or make test) again as yourself; or run make as root, which does all of it."
  exit 1
}

if [ -n "${KUBE_APISERVER_BIN:-}" ]; then
  is_version "$KUBE_APISERVER_BIN" || { say "error: KUBE_APISERVER_BIN=$KUBE_APISERVER_BIN is not kube-apiserver v$VERSION"; exit 1; }
  need_build=
else
  is_version "$BIN" && need_build= || need_build=1
fi

# what apt-get has to do (as root)
packages=$(missing_packages "${RUN_PACKAGES[@]}")
if [ -n "$need_build" ]; then
  packages="$packages$(missing_packages "${BUILD_PACKAGES[@]}")"
fi
source_missing=
if [ -n "$need_build" ] && ! have_source; then source_missing=1; fi

if [ -n "$packages" ] || [ -n "$source_missing" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    need_root "$packages" "$source_missing"
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [ -n "$source_missing" ]; then
    say "enabling bookworm deb-src in $SRC_LIST"
    printf '# added by occupancy-mlops tools/kube-apiserver/build.sh: the kubernetes source package\n%s\n' "$DEB_SRC" >"$SRC_LIST"
  fi
  say "apt-get install$packages"
  apt-get update -qq
  if [ -n "$packages" ]; then
    read -ra to_install <<<"$packages"
    apt-get install -y -qq --no-install-recommends "${to_install[@]}" >/dev/null
  fi
  if [ -n "$source_missing" ] && ! have_source; then
    say "error: apt-cache showsrc $SOURCE_PACKAGE shows no version *really$VERSION* (bookworm's is 1.20.5+really1.20.2)"
    exit 1
  fi
fi

[ -z "$need_build" ] && exit 0

reflect2=$(dpkg-query -W -f='${Version}' "$REFLECT2_PACKAGE")
case "$reflect2" in
  "$REFLECT2_VERSION"-*) ;;
  *) say "error: $REFLECT2_PACKAGE is $reflect2, expected $REFLECT2_VERSION"; exit 1 ;;
esac

mkdir -p "$CACHE" && [ -w "$CACHE" ] || { say "error: cannot write the cache folder $CACHE"; exit 1; }
start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/kube-apiserver-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work" # apt-get source downloads as user _apt when it can
say "building kube-apiserver $VERSION from Debian's $SOURCE_PACKAGE source package (~10 min on 2 cores), into $CACHE"
(cd "$work" && apt-get source -qq "$SOURCE_PACKAGE" >/dev/null 2>"$work/source.log") || { cat "$work/source.log" >&2; exit 1; }
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name "$SOURCE_PACKAGE-*really$VERSION" | head -n1)
[ -n "$src" ] || { say "error: apt-get source gave no $SOURCE_PACKAGE-*really$VERSION folder"; ls "$work" >&2; exit 1; }
source_version=$(basename "$(find "$work" -maxdepth 1 -name '*.dsc' | head -n1)" .dsc)

# the swap: vendored reflect2 1.0.1 → Debian's 1.0.2 (sources only; vendor/modules.txt unchanged)
rm -rf "$src/vendor/github.com/modern-go/reflect2"
mkdir -p "$src/vendor/github.com/modern-go/reflect2"
cp "$REFLECT2_SRC"/*.go "$REFLECT2_SRC"/*.s "$src/vendor/github.com/modern-go/reflect2/"

# Kubernetes' own build, as debian/rules runs it: `make WHAT=...` generates the OpenAPI definitions
# (pkg/generated/openapi is not in the source) and builds in GOPATH mode (GO111MODULE=off) with a
# static, CGO-free binary; the version (v1.20.2) comes from the source archive's own stamp.
(
  cd "$src"
  export HOME="$work/home" GOFLAGS='' GOLDFLAGS='-s -w'
  make WHAT=cmd/kube-apiserver
) || { say "error: the build failed (see above)"; exit 1; }
cp "$src/_output/bin/kube-apiserver" "$work/kube-apiserver"
is_version "$work/kube-apiserver" || { say "error: the built binary says: $("$work/kube-apiserver" --version 2>&1)"; exit 1; }

seconds=$(($(date +%s) - start))
cat >"$CACHE/BUILD-INFO.new" <<EOF
kube-apiserver v$VERSION
source package: $source_version (Debian bookworm)
reflect2 swapped for: $REFLECT2_PACKAGE $reflect2
go: $(go version)
built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $seconds s on $(nproc) cores
EOF
install -m 0755 "$work/kube-apiserver" "$BIN.new"
mv "$BIN.new" "$BIN"
mv "$CACHE/BUILD-INFO.new" "$CACHE/BUILD-INFO"
say "built in $seconds s: $BIN"
