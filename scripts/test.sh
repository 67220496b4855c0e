#!/usr/bin/env bash
# Runs every check and test of the project: formatting, lints, Rust unit and
# integration tests, the end-to-end suite driven by the official OpenAI
# and AWS Python clients against the real binaries, and the gateway behind a
# real Open WebUI (tests/openwebui).
# Then the Helm chart checks (scripts/test-chart.sh), the Dockerfile checks
# (scripts/test-images.sh) and the local demo (scripts/demo.sh --once).
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

step "The gateway behind a real Open WebUI (slim, offline; installed once, then cached)"
OPENWEBUI_BIN="$(scripts/openwebui.sh)"
export OPENWEBUI_BIN BEDROCK_GATEWAY_OPERATOR_BIN="$CARGO_TARGET_DIR/debug/bedrock-gateway-operator"
"$VENV_DIR/bin/python" -m pytest -q -p no:cacheprovider tests/openwebui

# The Helm chart: lint, template, server-side dry-run against kube-apiserver,
# and the operator running under the chart's RBAC.
scripts/test-chart.sh

# The Dockerfiles, and the release builds they run (cached after the first run).
scripts/test-images.sh

step "The local demo, end to end (scripts/demo.sh --once on free ports)"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
DEMO_API_PORT="$(free_port)" DEMO_METRICS_PORT="$(free_port)" DEMO_EMULATOR_PORT="$(free_port)" \
  DEMO_OPERATOR_PORT="$(free_port)" scripts/demo.sh --once > "$CACHE_DIR/demo-test.log" 2>&1 ||
  { tail -n 40 "$CACHE_DIR/demo-test.log"; fail "scripts/demo.sh --once failed (log: $CACHE_DIR/demo-test.log)"; }
grep -q '^   reply: ' "$CACHE_DIR/demo-test.log" || fail "the demo printed no reply"
grep -q '^   OPENAI_API_BASE_URLS=http://bedrock-bedrock-gateway.demo.svc.cluster.local/v1$' "$CACHE_DIR/demo-test.log" ||
  fail "the demo did not print the wired Open WebUI env"
grep '^   reply: ' "$CACHE_DIR/demo-test.log" | head -n1

step "All tests passed"
