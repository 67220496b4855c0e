#!/usr/bin/env bash
# Prints the path of the `helm` binary the chart checks run.
#
#   HELM_BIN=/usr/local/bin/helm scripts/helm-binary.sh   # use a helm you already have
#   scripts/helm-binary.sh                                # build the pinned one once
#
# Without HELM_BIN, helm is built from its Go module at the version pinned below
# (with the version information its own Makefile sets) and cached under the
# user's cache directory, so only the first run pays for the build. Only the
# path goes to stdout; progress goes to stderr.
set -euo pipefail

HELM_VERSION="v3.22.0"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/bedrock-gateway/helm"
HELM_DIR="$CACHE_ROOT/$HELM_VERSION"

progress() { printf 'helm-binary: %s\n' "$*" >&2; }
fail() { printf 'helm-binary: error: %s\n' "$*" >&2; exit 1; }

if [[ -n "${HELM_BIN:-}" ]]; then
  [[ -x "$HELM_BIN" ]] || fail "HELM_BIN=$HELM_BIN is not an executable file"
  printf '%s\n' "$HELM_BIN"
  exit 0
fi

if [[ -x "$HELM_DIR/helm" ]]; then
  printf '%s\n' "$HELM_DIR/helm"
  exit 0
fi

command -v go >/dev/null 2>&1 ||
  fail "Go is required to build helm $HELM_VERSION once (https://go.dev/dl), or set HELM_BIN to a helm binary"

mkdir -p "$CACHE_ROOT"
# One build at a time: a second caller waits and then finds the cached binary.
exec 9> "$CACHE_ROOT/.build.lock"
flock 9
if [[ -x "$HELM_DIR/helm" ]]; then
  printf '%s\n' "$HELM_DIR/helm"
  exit 0
fi

STAGING_DIR="$(mktemp -d "$CACHE_ROOT/.staging.XXXXXX")"
chmod 755 "$STAGING_DIR"
trap 'rm -rf "$STAGING_DIR"' EXIT
started=$SECONDS
progress "building helm $HELM_VERSION (the first build takes a few minutes)"

# Helm reports the Kubernetes version of its client-go module as the default
# cluster version of `helm template` and `helm lint`, as its Makefile does.
helm_go_mod="$(cd "$STAGING_DIR" && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[[ -f "$helm_go_mod" ]] || fail "could not download helm.sh/helm/v3@$HELM_VERSION"
client_go="$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$helm_go_mod" | head -n1)"
[[ -n "$client_go" ]] || fail "found no k8s.io/client-go in the go.mod of helm $HELM_VERSION"

ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for package in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $package.k8sVersionMajor=1 -X $package.k8sVersionMinor=$client_go"
done
(
  cd "$STAGING_DIR"
  GOBIN="$STAGING_DIR" CGO_ENABLED=0 go install -trimpath -ldflags="$ldflags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
)
[[ -x "$STAGING_DIR/helm" ]] || fail "go install produced no helm binary"
rm -rf "$HELM_DIR"
mkdir -p "$HELM_DIR"
mv "$STAGING_DIR/helm" "$HELM_DIR/helm"
progress "built in $((SECONDS - started))s; cached in $HELM_DIR"
printf '%s\n' "$HELM_DIR/helm"
