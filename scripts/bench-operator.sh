#!/usr/bin/env bash
# Operator load benchmark: 1,000 BedrockGateways on the local kube-apiserver;
# writes bench/operator-results.md.
#   scripts/bench-operator.sh [gateways]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require cargo "Install Rust with rustup (https://rustup.rs)."
KUBEBUILDER_ASSETS="${KUBEBUILDER_ASSETS:-$("$REPO_ROOT/scripts/envtest-assets.sh")}"
export KUBEBUILDER_ASSETS
step "Operator load benchmark (${1:-1000} gateways)"
cargo bench --locked -p bedrock-gateway-operator --bench reconcile_load -- "${1:-1000}" "$REPO_ROOT/bench/operator-results.md"
