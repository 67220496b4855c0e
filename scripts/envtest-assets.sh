#!/usr/bin/env bash
# Prints the directory that holds the `kube-apiserver` and `etcd` binaries the
# operator's integration tests run against (a control plane without kubelet).
#
#   KUBEBUILDER_ASSETS=/dir scripts/envtest-assets.sh   # reuse binaries you already have
#   scripts/envtest-assets.sh                           # build them once from Go modules
#
# Without KUBEBUILDER_ASSETS the binaries are built from their Go modules at the
# versions pinned below and cached under the user's cache directory, so only the
# first run pays for the build. The Go module and build caches stay in Go's default
# places. Only the directory goes to stdout; progress goes to stderr.
set -euo pipefail

KUBERNETES_VERSION="v1.34.3"
# The etcd release Kubernetes 1.34 is built and tested against.
ETCD_VERSION="v3.6.4"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/bedrock-gateway/envtest"
ASSETS_DIR="$CACHE_ROOT/kube-apiserver-$KUBERNETES_VERSION-etcd-$ETCD_VERSION"

progress() { printf 'envtest-assets: %s\n' "$*" >&2; }
fail() { printf 'envtest-assets: error: %s\n' "$*" >&2; exit 1; }

holds_binaries() {
  [[ -x "$1/kube-apiserver" && -x "$1/etcd" ]]
}

# Writes a go.mod for a throwaway module at $1 that requires Kubernetes and points
# every staging module (replaced by local paths in Kubernetes' own go.mod, which
# Go ignores outside that repository) at its published release.
write_kubernetes_module() {
  local module_dir="$1" kubernetes_go_mod staging_version
  kubernetes_go_mod="$(cd "$module_dir" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$kubernetes_go_mod" ]] || fail "could not download k8s.io/kubernetes@$KUBERNETES_VERSION"
  staging_version="v0.${KUBERNETES_VERSION#v1.}"
  {
    printf 'module envtest.local/kube-apiserver\n\ngo 1.24.0\n\n'
    grep -m1 '^godebug [^(]' "$kubernetes_go_mod" || true
    printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBERNETES_VERSION"
    sed -n 's#^[[:space:]]*\(replace[[:space:]]\{1,\}\)\{0,1\}\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\2#p' \
      "$kubernetes_go_mod" | sort -u | while read -r staging_module; do
        printf '\t%s => %s %s\n' "$staging_module" "$staging_module" "$staging_version"
      done
    printf ')\n'
  } > "$module_dir/go.mod"
  grep -q ' => k8s.io/api ' "$module_dir/go.mod" ||
    fail "found no staging modules in the go.mod of k8s.io/kubernetes@$KUBERNETES_VERSION"
}

# Resolves a main package at a version inside the throwaway module at $1, then
# builds it statically.
build_in_module() {
  local module_dir="$1" package="$2" version="$3" output="$4" extra_ldflags="$5"
  (
    cd "$module_dir"
    go get "$package@$version" >&2
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w$extra_ldflags" -o "$output" "$package" >&2
  )
}

# Sets the version the binary reports (otherwise v0.0.0-master) for both copies
# of Kubernetes' version variables.
kubernetes_version_ldflags() {
  local minor="${KUBERNETES_VERSION#v1.}"
  minor="${minor%%.*}"
  local flags="" package
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $package.gitVersion=$KUBERNETES_VERSION -X $package.gitMajor=1"
    flags+=" -X $package.gitMinor=$minor -X $package.gitTreeState=clean"
  done
  printf '%s' "$flags"
}

build_kube_apiserver() {
  local output="$1" module_dir
  module_dir="$(mktemp -d)"
  progress "building kube-apiserver $KUBERNETES_VERSION (the first build takes several minutes)"
  write_kubernetes_module "$module_dir"
  build_in_module "$module_dir" k8s.io/kubernetes/cmd/kube-apiserver "$KUBERNETES_VERSION" \
    "$output" "$(kubernetes_version_ldflags)"
  rm -rf "$module_dir"
}

build_etcd() {
  local output="$1" module_dir
  module_dir="$(mktemp -d)"
  progress "building etcd $ETCD_VERSION"
  printf 'module envtest.local/etcd\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" > "$module_dir/go.mod"
  local status=0
  build_in_module "$module_dir" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$output" "" ||
    status=$?
  rm -rf "$module_dir"
  return "$status"
}

# Falls back to an etcd already installed (Debian's etcd-server package) when the
# Go build of etcd fails; the result is kept apart from the pinned build.
system_etcd_fallback() {
  local apiserver="$1" system_etcd fallback_dir
  system_etcd="$(command -v etcd || true)"
  [[ -n "$system_etcd" ]] ||
    fail "building etcd failed and no etcd is installed (Debian: apt-get install etcd-server)"
  fallback_dir="$CACHE_ROOT/kube-apiserver-$KUBERNETES_VERSION-etcd-system"
  progress "building etcd failed; using the installed $system_etcd"
  mkdir -p "$fallback_dir"
  cp "$apiserver" "$fallback_dir/kube-apiserver"
  ln -sf "$system_etcd" "$fallback_dir/etcd"
  printf '%s\n' "$fallback_dir"
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  holds_binaries "$KUBEBUILDER_ASSETS" ||
    fail "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS does not hold executable kube-apiserver and etcd"
  printf '%s\n' "$KUBEBUILDER_ASSETS"
  exit 0
fi

if holds_binaries "$ASSETS_DIR"; then
  printf '%s\n' "$ASSETS_DIR"
  exit 0
fi

command -v go >/dev/null 2>&1 ||
  fail "Go is required to build kube-apiserver and etcd once (https://go.dev/dl), or set KUBEBUILDER_ASSETS to a directory holding both"

mkdir -p "$CACHE_ROOT"
# One build at a time: a second caller waits and then finds the cached binaries.
exec 9> "$CACHE_ROOT/.build.lock"
flock 9
if holds_binaries "$ASSETS_DIR"; then
  printf '%s\n' "$ASSETS_DIR"
  exit 0
fi

STAGING_DIR="$(mktemp -d "$CACHE_ROOT/.staging.XXXXXX")"
chmod 755 "$STAGING_DIR"
trap 'rm -rf "$STAGING_DIR"' EXIT
started=$SECONDS
build_kube_apiserver "$STAGING_DIR/kube-apiserver"
if ! build_etcd "$STAGING_DIR/etcd"; then
  system_etcd_fallback "$STAGING_DIR/kube-apiserver"
  exit 0
fi
rm -rf "$ASSETS_DIR"
mv "$STAGING_DIR" "$ASSETS_DIR"
progress "built in $((SECONDS - started))s; cached in $ASSETS_DIR"
printf '%s\n' "$ASSETS_DIR"
