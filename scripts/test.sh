#!/usr/bin/env bash
# Runs every check and test of the project: formatting, lints, Rust unit and
# integration tests, and the end-to-end suite driven by the official OpenAI
# and AWS Python clients against the real binaries.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require cargo "Install Rust with rustup (https://rustup.rs)."

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "kube-apiserver and etcd for the operator's integration tests (built once, then cached)"
KUBEBUILDER_ASSETS="$(scripts/envtest-assets.sh)"
export KUBEBUILDER_ASSETS

step "Rust unit and integration tests"
cargo test --workspace --locked

step "Building the binaries for the end-to-end suite"
cargo build --workspace --bins --locked
export BEDROCK_EMULATOR_BIN="$CARGO_TARGET_DIR/debug/bedrock-emulator"
export BEDROCK_GATEWAY_PROXY_BIN="$CARGO_TARGET_DIR/debug/bedrock-gateway-proxy"

ensure_venv
step "End-to-end suite (openai SDK, botocore)"
"$VENV_DIR/bin/python" -m pytest -q -p no:cacheprovider tests/e2e "$@"

step "All tests passed"
