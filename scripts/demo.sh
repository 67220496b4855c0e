#!/usr/bin/env bash
# Runs the gateway locally against the Bedrock emulator (no AWS account needed),
# sends a real chat completion through it and keeps both running until Ctrl-C.
#   scripts/demo.sh          # stay up for your own requests
#   scripts/demo.sh --once   # exit after the demo completion
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require cargo "Install Rust with rustup (https://rustup.rs)."
require curl "Install curl."

ONCE=false
[[ "${1:-}" == "--once" ]] && ONCE=true
API_PORT="${DEMO_API_PORT:-8080}"
METRICS_PORT="${DEMO_METRICS_PORT:-9090}"
EMULATOR_PORT="${DEMO_EMULATOR_PORT:-4599}"
API_KEY="demo-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "Stopping."; exit 0' INT TERM

step "Building the gateway and the Bedrock emulator"
cargo build --bins --locked -q
BIN="$CARGO_TARGET_DIR/debug"

step "Starting the Bedrock emulator on 127.0.0.1:$EMULATOR_PORT"
"$BIN/bedrock-emulator" --listen "127.0.0.1:$EMULATOR_PORT" \
  --access-key-id AKIADEMO0000000000001 --secret-access-key demo-secret --region us-east-1 \
  > "$WORK/emulator.log" 2>&1 &
PIDS+=($!)

step "Starting bedrock-gateway-proxy on 127.0.0.1:$API_PORT (metrics on :$METRICS_PORT)"
printf '%s\n' "$API_KEY" > "$WORK/api-keys"
AWS_ACCESS_KEY_ID=AKIADEMO0000000000001 AWS_SECRET_ACCESS_KEY=demo-secret AWS_REGION=us-east-1 \
AWS_ENDPOINT_URL="http://127.0.0.1:$EMULATOR_PORT" AWS_EC2_METADATA_DISABLED=true \
  "$BIN/bedrock-gateway-proxy" --listen "127.0.0.1:$API_PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
  --api-keys-file "$WORK/api-keys" --log-format text \
  --model-alias gpt-4o=anthropic.claude-3-5-sonnet-20240620-v1:0 \
  > "$WORK/proxy.log" 2>&1 &
PIDS+=($!)

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$API_PORT/readyz" >/dev/null || { cat "$WORK/proxy.log"; fail "the gateway did not become ready"; }

step "GET /v1/models"
curl -fsS -H "Authorization: Bearer $API_KEY" "http://127.0.0.1:$API_PORT/v1/models" \
  | python3 -c 'import json,sys; [print("  ", m["id"]) for m in json.load(sys.stdin)["data"]]'

step "POST /v1/chat/completions"
curl -fsS "http://127.0.0.1:$API_PORT/v1/chat/completions" \
  -H "Authorization: Bearer $API_KEY" -H "Content-Type: application/json" \
  -d '{"model":"gpt-4o","messages":[{"role":"user","content":"Hello from the local demo!"}]}' \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); print("   reply:", r["choices"][0]["message"]["content"]); print("   usage:", r["usage"])'

step "Streaming the same request"
curl -fsSN "http://127.0.0.1:$API_PORT/v1/chat/completions" \
  -H "Authorization: Bearer $API_KEY" -H "Content-Type: application/json" \
  -d '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hello from the local demo!"}]}' \
  | sed 's/^/   /'

if $ONCE; then exit 0; fi
cat <<INFO

The gateway is running. Try it with any OpenAI client:
  export OPENAI_BASE_URL=http://127.0.0.1:$API_PORT/v1 OPENAI_API_KEY=$API_KEY
  curl -H "Authorization: Bearer \$OPENAI_API_KEY" \$OPENAI_BASE_URL/models
Metrics: http://127.0.0.1:$METRICS_PORT/metrics    Press Ctrl-C to stop.
INFO
wait
