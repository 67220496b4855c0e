#!/usr/bin/env bash
# The whole product on one machine, with no AWS account and no cluster:
#   1. a local Kubernetes control plane (kube-apiserver + etcd, no kubelet);
#   2. the BedrockGateway CRD and bedrock-gateway-operator, watching it;
#   3. an Open WebUI Deployment and a BedrockGateway pointing at it;
#   4. the proxy Deployment the operator made, run as a local process with the
#      same arguments and environment, its API key read from the Secret the
#      operator generated, talking to the Bedrock emulator instead of AWS;
#   5. a real chat completion through it, and the Open WebUI env the operator wired.
#
#   scripts/demo.sh          # stay up for your own requests until Ctrl-C
#   scripts/demo.sh --once   # exit after the demo
#
# Ports (override with the variables): DEMO_API_PORT=8080, DEMO_METRICS_PORT=9090,
# DEMO_EMULATOR_PORT=4599, DEMO_OPERATOR_PORT=8081.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

ONCE=false
case "${1:-}" in
  --once) ONCE=true ;;
  "") ;;
  *) fail "unknown argument $1 (use --once or nothing)" ;;
esac

require cargo "Install Rust with rustup (https://rustup.rs)."
require curl "Install curl (Debian: apt-get install curl)."
require python3 "Install Python 3."
require kubectl "Install kubectl (https://kubernetes.io/docs/tasks/tools/)."
require openssl "Install openssl (Debian: apt-get install openssl)."
if ! KUBEBUILDER_ASSETS_DIR="$(KUBEBUILDER_ASSETS="${KUBEBUILDER_ASSETS:-}" scripts/envtest-assets.sh 2> /dev/null)"; then
  # Not cached yet: building them needs Go, once.
  require go "kube-apiserver and etcd are built once from their Go modules: install Go 1.24 or newer (https://go.dev/dl), or set KUBEBUILDER_ASSETS to a directory holding both binaries."
  KUBEBUILDER_ASSETS_DIR=""
fi

API_PORT="${DEMO_API_PORT:-8080}"
METRICS_PORT="${DEMO_METRICS_PORT:-9090}"
EMULATOR_PORT="${DEMO_EMULATOR_PORT:-4599}"
OPERATOR_PORT="${DEMO_OPERATOR_PORT:-8081}"
for port_var in API_PORT METRICS_PORT EMULATOR_PORT OPERATOR_PORT; do
  port="${!port_var}"
  # Something listens there when a connection succeeds.
  if ! python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), timeout=1)" 2> /dev/null; then
    continue
  fi
  fail "port $port is in use on 127.0.0.1; pick another with DEMO_$port_var=<port>"
done

# The emulator's own static test credentials: the one place static keys are
# used, because they are the emulator's, not AWS's.
EMULATOR_ACCESS_KEY_ID=AKIADEMO0000000000001
EMULATOR_SECRET_ACCESS_KEY=demo-secret
NAMESPACE=demo
GATEWAY=bedrock

WORK="$(mktemp -d)"
# Started with setsid, away from the terminal's Ctrl-C: the trap below stops them
# in order.
PIDS=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if ((${#PIDS[@]})); then
    step "Stopping the proxy, the emulator, the operator and the control plane"
    for pid in "${PIDS[@]}"; do kill "$pid" 2> /dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2> /dev/null || true; done
  fi
  scripts/control-plane.sh stop "$WORK/control-plane" 2> /dev/null || true
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'echo; exit 0' INT TERM

# Shows the end of a log and stops with a message.
fail_with_log() {
  echo "--- last lines of $1 ---" >&2
  tail -n 20 "$1" | cut -c1-400 >&2
  fail "$2"
}

# Waits up to 60 s for a command to succeed.
wait_for() {
  local log="$1" what="$2"
  shift 2
  for _ in $(seq 1 240); do
    "$@" > /dev/null 2>&1 && return 0
    sleep 0.25
  done
  fail_with_log "$log" "$what"
}

step "Building the proxy, the operator and the Bedrock emulator"
cargo build --bins --locked -q -p bedrock-gateway-proxy -p bedrock-gateway-operator -p bedrock-emulator
BIN="$CARGO_TARGET_DIR/debug"

if [[ -z "$KUBEBUILDER_ASSETS_DIR" ]]; then
  step "Building kube-apiserver and etcd (first run only, several minutes; cached afterwards)"
  scripts/envtest-assets.sh > /dev/null
fi
step "Starting a local Kubernetes control plane (kube-apiserver and etcd, no nodes)"
KUBECONFIG="$(scripts/control-plane.sh start "$WORK/control-plane" --owner $$)"
export KUBECONFIG
echo "   $(kubectl get --raw /version | python3 -c 'import json,sys; print("kube-apiserver", json.load(sys.stdin)["gitVersion"])') at $(kubectl config view -o jsonpath='{.clusters[0].cluster.server}')"

step "Installing the BedrockGateway CRD"
kubectl apply --server-side -f crds/ | sed 's/^/   /'
kubectl wait --for condition=established --timeout=60s crd/bedrockgateways.bedrock-gateway.io > /dev/null

step "Starting bedrock-gateway-operator (health and metrics on 127.0.0.1:$OPERATOR_PORT)"
setsid "$BIN/bedrock-gateway-operator" --listen "127.0.0.1:$OPERATOR_PORT" --log-json=false \
  > "$WORK/operator.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/operator.log" "the operator did not become ready" \
  curl -fsS "http://127.0.0.1:$OPERATOR_PORT/readyz"

step "Creating an Open WebUI Deployment and a BedrockGateway in namespace $NAMESPACE"
kubectl create namespace "$NAMESPACE" > /dev/null
kubectl -n "$NAMESPACE" apply -f - <<'YAML' | sed 's/^/   /'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: open-webui
spec:
  selector: {matchLabels: {app: open-webui}}
  template:
    metadata: {labels: {app: open-webui}}
    spec:
      containers:
      - name: open-webui
        image: ghcr.io/open-webui/open-webui:main
        ports: [{containerPort: 8080}]
        env:
        - {name: WEBUI_NAME, value: "Open WebUI (Bedrock demo)"}
---
apiVersion: bedrock-gateway.io/v1alpha1
kind: BedrockGateway
metadata:
  name: bedrock
spec:
  region: us-east-1
  aws:
    roleArn: arn:aws:iam::123456789012:role/bedrock-gateway
  models:
    aliases:
      gpt-4o: anthropic.claude-3-5-sonnet-20240620-v1:0
  openWebUI:
    workloadRef:
      kind: Deployment
      name: open-webui
YAML

PROXY="$GATEWAY-bedrock-gateway"
wait_for "$WORK/operator.log" "the operator did not create the proxy Deployment" \
  kubectl -n "$NAMESPACE" get deployment "$PROXY"
wait_for "$WORK/operator.log" "the operator did not wire Open WebUI" \
  test -n "$(kubectl -n "$NAMESPACE" get deployment open-webui \
    -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="OPENAI_API_BASE_URLS")].value}')"
echo "   the operator created:"
kubectl -n "$NAMESPACE" get deployment,service,serviceaccount,secret \
  -l app.kubernetes.io/managed-by=bedrock-gateway-operator -o name | sed 's/^/     /'

step "Running the proxy Deployment's container as a local process"
SECRET="$(kubectl -n "$NAMESPACE" get bedrockgateway "$GATEWAY" -o jsonpath='{.status.secretName}')"
mkdir -p "$WORK/keys"
kubectl -n "$NAMESPACE" get secret "$SECRET" -o jsonpath='{.data.api-key}' | base64 -d > "$WORK/keys/api-key"
API_KEY="$(cat "$WORK/keys/api-key")"
[[ -n "$API_KEY" ]] || fail "Secret $NAMESPACE/$SECRET has no api-key"
kubectl -n "$NAMESPACE" get deployment "$PROXY" -o json > "$WORK/proxy-deployment.json"
# The container's arguments and plain env, with the listen addresses on loopback
# and the key file (mounted from the Secret in a pod) at its local copy.
python3 - "$WORK/proxy-deployment.json" "$API_PORT" "$METRICS_PORT" "$WORK/keys" \
  "$WORK/proxy.args" "$WORK/proxy.env" <<'PY'
import json, sys
deployment, api_port, metrics_port, keys_dir, args_out, env_out = sys.argv[1:]
pod = json.load(open(deployment))["spec"]["template"]["spec"]
container = next(c for c in pod["containers"] if c["name"] == "bedrock-gateway-proxy")
mount = container["volumeMounts"][0]["mountPath"]
args = []
for arg in container["args"]:
    if arg.startswith("--listen="):
        arg = f"--listen=127.0.0.1:{api_port}"
    elif arg.startswith("--metrics-listen="):
        arg = f"--metrics-listen=127.0.0.1:{metrics_port}"
    elif arg.startswith("--api-keys-file="):
        arg = arg.replace(mount, keys_dir, 1)
    args.append(arg)
open(args_out, "w").write("\n".join(args) + "\n")
env = [f"{v['name']}={v['value']}" for v in container.get("env", []) if "value" in v]
open(env_out, "w").write("\n".join(env) + "\n")
print(f"   image in the cluster: {container['image']}")
PY
mapfile -t PROXY_ARGS < "$WORK/proxy.args"
mapfile -t PROXY_ENV < "$WORK/proxy.env"
echo "   env:  ${PROXY_ENV[*]}"
echo "   args: ${PROXY_ARGS[*]}"

step "Starting the Bedrock emulator on 127.0.0.1:$EMULATOR_PORT (in place of AWS)"
setsid "$BIN/bedrock-emulator" --listen "127.0.0.1:$EMULATOR_PORT" \
  --access-key-id "$EMULATOR_ACCESS_KEY_ID" --secret-access-key "$EMULATOR_SECRET_ACCESS_KEY" \
  --region us-east-1 > "$WORK/emulator.log" 2>&1 &
PIDS+=($!)

step "Starting bedrock-gateway-proxy on 127.0.0.1:$API_PORT (metrics on :$METRICS_PORT)"
env "${PROXY_ENV[@]}" \
  AWS_ENDPOINT_URL="http://127.0.0.1:$EMULATOR_PORT" AWS_EC2_METADATA_DISABLED=true \
  AWS_ACCESS_KEY_ID="$EMULATOR_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$EMULATOR_SECRET_ACCESS_KEY" \
  BEDROCK_GATEWAY_LOG_FORMAT=text \
  setsid "$BIN/bedrock-gateway-proxy" "${PROXY_ARGS[@]}" > "$WORK/proxy.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/proxy.log" "the proxy did not become ready" \
  curl -fsS "http://127.0.0.1:$API_PORT/readyz"
# No kubelet runs pods here: the local process stands in for the proxy pod.
kubectl -n "$NAMESPACE" patch deployment "$PROXY" --subresource=status --type=merge \
  -p '{"status":{"replicas":1,"updatedReplicas":1,"readyReplicas":1,"availableReplicas":1}}' > /dev/null
wait_for "$WORK/operator.log" "the BedrockGateway did not become Ready" \
  test "$(kubectl -n "$NAMESPACE" get bedrockgateway "$GATEWAY" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True
kubectl -n "$NAMESPACE" get bedrockgateway "$GATEWAY" | sed 's/^/   /'

step "GET /v1/models with the key from Secret $NAMESPACE/$SECRET"
curl -fsS -H "Authorization: Bearer $API_KEY" "http://127.0.0.1:$API_PORT/v1/models" |
  python3 -c 'import json,sys; [print("  ", m["id"]) for m in json.load(sys.stdin)["data"]]'

step "POST /v1/chat/completions (model gpt-4o, the alias from the BedrockGateway)"
curl -fsS "http://127.0.0.1:$API_PORT/v1/chat/completions" \
  -H "Authorization: Bearer $API_KEY" -H "Content-Type: application/json" \
  -d '{"model":"gpt-4o","messages":[{"role":"user","content":"Hello from the local demo!"}]}' |
  python3 -c 'import json,sys; r=json.load(sys.stdin); print("   reply:", r["choices"][0]["message"]["content"]); print("   usage:", r["usage"])'

step "The same request, streamed"
curl -fsSN "http://127.0.0.1:$API_PORT/v1/chat/completions" \
  -H "Authorization: Bearer $API_KEY" -H "Content-Type: application/json" \
  -d '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hello from the local demo!"}]}' |
  python3 -c '
import json, sys
text = []
for line in sys.stdin:
    line = line.strip()
    if line.startswith("data: {"):
        for choice in json.loads(line[6:])["choices"]:
            text.append(choice["delta"].get("content") or "")
    elif line == "data: [DONE]":
        print("   reply:", "".join(text))
        print("   stream ended with data: [DONE]")'

step "What the operator wired into Open WebUI (Deployment $NAMESPACE/open-webui)"
kubectl -n "$NAMESPACE" get deployment open-webui -o json | python3 -c '
import json, sys
container = json.load(sys.stdin)["spec"]["template"]["spec"]["containers"][0]
for var in container.get("env", []):
    name = var["name"]
    if "value" in var:
        print("   %s=%s" % (name, var["value"]))
    else:
        ref = var["valueFrom"]["secretKeyRef"]
        print("   %s <- Secret %s, key %s" % (name, ref["name"], ref["key"]))'
cat <<INFO

   In a cluster Open WebUI reaches the gateway at that URL (the proxy Service),
   and Kubernetes expands \$(...) in OPENAI_API_KEYS to the key from the Secret.
   Open WebUI reads these variables at its first start (see the README on
   existing installs and ENABLE_PERSISTENT_CONFIG).
INFO

if $ONCE; then
  exit 0
fi
cat <<INFO

Everything keeps running. Try it with any OpenAI client:
  export OPENAI_BASE_URL=http://127.0.0.1:$API_PORT/v1 OPENAI_API_KEY=$API_KEY
  curl -H "Authorization: Bearer \$OPENAI_API_KEY" \$OPENAI_BASE_URL/models
Or the cluster:
  export KUBECONFIG=$KUBECONFIG
  kubectl -n $NAMESPACE get bedrockgateway,deployment,service,secret
Proxy metrics: http://127.0.0.1:$METRICS_PORT/metrics   Operator: http://127.0.0.1:$OPERATOR_PORT/metrics
Logs: $WORK/{operator,proxy,emulator}.log
Press Ctrl-C to stop and remove everything.
INFO
while true; do
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2> /dev/null || fail "a demo process (pid $pid) exited; logs were in $WORK"
  done
  sleep 1
done
