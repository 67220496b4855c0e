#!/usr/bin/env bash
# Checks the Helm chart charts/bedrock-gateway-operator:
#   - its crds/ equals the top-level crds/ byte for byte;
#   - the Grafana dashboard is valid JSON and names only metrics the proxy exports;
#   - `helm lint --strict` and `helm template` for every value set in the chart's
#     ci/ folder, and values.schema.json refusing bad values;
#   - a server-side dry-run apply of each rendering against a real kube-apiserver,
#     and the NOTES each value set prints;
#   - the operator itself running under the chart's RBAC (its ServiceAccount's
#     token, the rendered Deployment's arguments), creating and cleaning up
#     everything a BedrockGateway needs without one forbidden call.
# helm comes from scripts/helm-binary.sh (HELM_BIN to use your own), the control
# plane from scripts/control-plane.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require cargo "Install Rust with rustup (https://rustup.rs)."
require kubectl "Install kubectl (https://kubernetes.io/docs/tasks/tools/)."
require python3 "Install Python 3."

CHART="charts/bedrock-gateway-operator"
RELEASE="bgo"
RELEASE_NAMESPACE="bedrock-gateway-system"
WORK="$(mktemp -d)"
CONTROL_PLANE="$WORK/control-plane"
OPERATOR_PID=""
cleanup() {
  [[ -n "$OPERATOR_PID" ]] && kill "$OPERATOR_PID" 2>/dev/null && wait "$OPERATOR_PID" 2>/dev/null
  scripts/control-plane.sh stop "$CONTROL_PLANE" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

step "Chart CRDs equal crds/"
diff -r crds "$CHART/crds" ||
  fail "$CHART/crds differs from crds/: run scripts/generate-crds.sh"

step "Grafana dashboard"
python3 - "$CHART/dashboards/bedrock-gateway-proxy.json" proxy/src/metrics.rs <<'PY'
import json, re, sys
dashboard = json.load(open(sys.argv[1]))
exported = set(re.findall(r'"([a-z_]+)"', open(sys.argv[2]).read()))
used = set()
def walk(node):
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            used.update(re.findall(r"bedrock_gateway_([a-z_]+?)(?:_bucket)?\b", node["expr"]))
        for value in node.values():
            walk(value)
    elif isinstance(node, list):
        for value in node:
            walk(value)
walk(dashboard)
unknown = sorted(name for name in used if name not in exported)
if unknown or not used:
    sys.exit(f"the dashboard queries metrics the proxy does not export: {unknown}")
ids = [panel["id"] for panel in dashboard["panels"]]
if len(ids) != len(set(ids)):
    sys.exit("panel ids are not unique")
print(f"   {len(dashboard['panels'])} panels over {len(used)} metrics: {', '.join(sorted(used))}")
PY

HELM="$(scripts/helm-binary.sh)"
"$HELM" version --short

# Value sets: the defaults, then every ci/*-values.yaml.
VALUE_SETS=(default)
for file in "$CHART"/ci/*-values.yaml; do
  VALUE_SETS+=("$(basename "$file" -values.yaml)")
done
values_args() {
  [[ "$1" == default ]] || printf -- '--values\n%s\n' "$CHART/ci/$1-values.yaml"
}

step "helm lint --strict"
for set in "${VALUE_SETS[@]}"; do
  mapfile -t args < <(values_args "$set")
  "$HELM" lint --strict --quiet "$CHART" "${args[@]}" > "$WORK/lint.log" 2>&1 ||
    { cat "$WORK/lint.log"; fail "helm lint failed for value set $set"; }
  echo "   $set: ok"
done

step "helm template"
for set in "${VALUE_SETS[@]}"; do
  mapfile -t args < <(values_args "$set")
  "$HELM" template "$RELEASE" "$CHART" --namespace "$RELEASE_NAMESPACE" --include-crds \
    "${args[@]}" > "$WORK/$set.yaml"
  kinds="$(sed -n 's/^kind: //p' "$WORK/$set.yaml" | sort | uniq -c | awk '{printf "%s %s, ", $1, $2}')"
  echo "   $set: ${kinds%, }"
done

# What each value set must (or must not) render.
expect() {
  local set="$1" pattern="$2" what="$3"
  grep -qE -- "$pattern" "$WORK/$set.yaml" || fail "value set $set: $what"
}
refuse() {
  local set="$1" pattern="$2" what="$3"
  if grep -qE -- "$pattern" "$WORK/$set.yaml"; then fail "value set $set: $what"; fi
}
expect default '^kind: ClusterRole$' "no ClusterRole"
refuse default '--leader-election' "leader election with one replica"
refuse default '^kind: Role$' "a Lease Role without leader election"
refuse default '^kind: (ServiceMonitor|BedrockGateway|ConfigMap)$' "an optional object rendered by default"
expect default 'readOnlyRootFilesystem: true' "a writable root filesystem"
expect default 'runAsNonRoot: true' "no runAsNonRoot"
# The operator pod meets the restricted Pod Security Standard and has a memory limit.
python3 - "$WORK/default.yaml" <<'PY'
import re, sys
documents = open(sys.argv[1]).read().split("\n---\n")
deployment = next(d for d in documents if re.search(r"^kind: Deployment$", d, re.M))
for pattern, what in [
    (r"allowPrivilegeEscalation: false", "privilege escalation allowed"),
    (r"drop:\n +- ALL\n", "capabilities not all dropped"),
    (r"seccompProfile:\n +type: RuntimeDefault", "no RuntimeDefault seccomp profile"),
    (r"limits:\n +memory: ", "no memory limit"),
]:
    if not re.search(pattern, deployment):
        sys.exit(f"default: operator Deployment: {what}")
PY
expect default 'image: "ghcr.io/bedrock-gateway/bedrock-gateway-operator:0.1.0"' "operator image not from appVersion"
expect default -- '--proxy-image=ghcr.io/bedrock-gateway/bedrock-gateway-proxy:0.1.0' "proxy image not from appVersion"
expect high-availability '--leader-election$' "no leader election with 3 replicas"
expect high-availability 'name: bgo-bedrock-gateway-operator-leader-election' "no Lease Role"
expect high-availability 'bedrock-gateway-proxy@sha256:0123' "proxy digest ignored"
expect single-namespace '--watch-namespace=team-a' "no --watch-namespace"
expect single-namespace '--log-json=false' "log format ignored"
expect monitoring '^kind: ServiceMonitor$' "no ServiceMonitor"
expect monitoring 'grafana_dashboard: "1"' "no sidecar label on the dashboard"
expect gateway '^kind: BedrockGateway$' "no BedrockGateway"
for set in "${VALUE_SETS[@]}"; do
  # Least privilege: nothing wildcarded in any rule.
  refuse "$set" '^[- ] *(apiGroups|resources|verbs|resourceNames): .*"\*"' "a wildcard in an RBAC rule"
done
# Cluster-wide rules only for cluster-wide watching: one namespace gets a Role.
python3 - "$WORK/single-namespace.yaml" <<'PY'
import re, sys
documents = open(sys.argv[1]).read().split("\n---\n")
cluster_role = next(d for d in documents if re.search(r"^kind: ClusterRole$", d, re.M) and "-edit" not in d and "-view" not in d)
if "bedrockgateways" in cluster_role or "secrets" in cluster_role:
    sys.exit("single-namespace: namespaced permissions in the ClusterRole")
if not any(re.search(r"^kind: Role$", d, re.M) and "namespace: team-a" in d and "secrets" in d for d in documents):
    sys.exit("single-namespace: no Role in team-a")
PY

step "values.schema.json refuses bad values"
refused() {
  local what="$1"
  shift
  if "$HELM" template "$RELEASE" "$CHART" "$@" > /dev/null 2> "$WORK/refused.log"; then
    fail "helm template accepted $what"
  fi
  grep -q 'schema' "$WORK/refused.log" || { cat "$WORK/refused.log"; fail "$what was refused, but not by the schema"; }
  echo "   refused: $what"
}
refused "an unknown top-level value (replica)" --set replica=2
refused "a negative replica count" --set replicas=-1
refused "an image digest that is no sha256" --set image.digest=latest
refused "a gateway without a region" --set gateway.create=true --set gateway.spec.region=null
refused "a malformed region" --set gateway.create=true --set gateway.spec.region=US-EAST-1
refused "a ServiceMonitor interval without unit" --set serviceMonitor.interval=30

step "Starting kube-apiserver and etcd"
KUBECONFIG="$(scripts/control-plane.sh start "$CONTROL_PLANE" --owner $$)"
export KUBECONFIG
kubectl version 2>/dev/null | sed 's/^/   /'
for namespace in "$RELEASE_NAMESPACE" team-a monitoring; do
  kubectl create namespace "$namespace" > /dev/null
done
kubectl apply --server-side -f crds/ > /dev/null
# The Prometheus Operator's CRD, reduced to what the API server needs to accept
# ServiceMonitors (its full schema is not vendored here).
kubectl apply --server-side -f - > /dev/null <<'YAML'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {plural: servicemonitors, singular: servicemonitor, kind: ServiceMonitor, listKind: ServiceMonitorList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
YAML
kubectl wait --for condition=established --timeout=60s \
  crd/bedrockgateways.bedrock-gateway.io crd/servicemonitors.monitoring.coreos.com > /dev/null

step "Server-side dry-run apply of every rendering"
for set in "${VALUE_SETS[@]}"; do
  kubectl apply --server-side --dry-run=server --field-manager=helm -f "$WORK/$set.yaml" \
    > "$WORK/dry-run.log" 2>&1 || { cat "$WORK/dry-run.log"; fail "the API server refused value set $set"; }
  echo "   $set: $(grep -c 'serverside-applied (server dry run)' "$WORK/dry-run.log") objects accepted"
done

step "NOTES.txt for every value set (helm install --dry-run)"
for set in "${VALUE_SETS[@]}"; do
  mapfile -t args < <(values_args "$set")
  "$HELM" install "$RELEASE" "$CHART" --namespace "$RELEASE_NAMESPACE" --dry-run=client \
    "${args[@]}" > "$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; fail "helm install --dry-run failed for value set $set"; }
  sed -n '/^NOTES:$/,$p' "$WORK/install.log" > "$WORK/$set.notes"
  grep -q "rollout status deployment/$RELEASE-bedrock-gateway-operator" "$WORK/$set.notes" ||
    { cat "$WORK/install.log"; fail "value set $set: NOTES do not say how to check the operator"; }
  if [[ "$set" == gateway ]]; then
    grep -q 'get bedrockgateway bedrock -w' "$WORK/$set.notes" || fail "NOTES do not show the created gateway"
  else
    grep -q 'kind: BedrockGateway' "$WORK/$set.notes" || fail "value set $set: NOTES show no BedrockGateway to create"
  fi
  echo "   $set: $(wc -l < "$WORK/$set.notes") lines"
done

step "The operator under the chart's RBAC"
cargo build --locked -q -p bedrock-gateway-operator --bin bedrock-gateway-operator
"$HELM" template "$RELEASE" "$CHART" --namespace "$RELEASE_NAMESPACE" --set replicas=2 \
  > "$WORK/installed.yaml"
kubectl apply --server-side -f "$WORK/installed.yaml" > /dev/null
DEPLOYMENT="$RELEASE-bedrock-gateway-operator"
ACCOUNT="$(kubectl -n "$RELEASE_NAMESPACE" get deployment "$DEPLOYMENT" \
  -o jsonpath='{.spec.template.spec.serviceAccountName}')"
# The operator's own identity: a token of the chart's ServiceAccount.
SA_TOKEN="$(kubectl -n "$RELEASE_NAMESPACE" create token "$ACCOUNT" --duration=1h)"
OPERATOR_KUBECONFIG="$WORK/operator.kubeconfig"
cp "$KUBECONFIG" "$OPERATOR_KUBECONFIG"
kubectl --kubeconfig "$OPERATOR_KUBECONFIG" config set-credentials admin --token="$SA_TOKEN" > /dev/null
echo "   running as $(kubectl --kubeconfig "$OPERATOR_KUBECONFIG" auth whoami -o jsonpath='{.status.userInfo.username}')"
# The arguments of the rendered Deployment, with the health port on loopback.
mapfile -t OPERATOR_ARGS < <(kubectl -n "$RELEASE_NAMESPACE" get deployment "$DEPLOYMENT" \
  -o jsonpath='{range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}')
HEALTH_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
for i in "${!OPERATOR_ARGS[@]}"; do
  [[ "${OPERATOR_ARGS[$i]}" == --listen=* ]] && OPERATOR_ARGS[$i]="--listen=127.0.0.1:$HEALTH_PORT"
done
echo "   bedrock-gateway-operator ${OPERATOR_ARGS[*]}"
KUBECONFIG="$OPERATOR_KUBECONFIG" POD_NAMESPACE="$RELEASE_NAMESPACE" POD_NAME="$DEPLOYMENT-test" \
  RUST_LOG=info "$CARGO_TARGET_DIR/debug/bedrock-gateway-operator" "${OPERATOR_ARGS[@]}" \
  > "$WORK/operator.log" 2>&1 &
OPERATOR_PID=$!

# Waits until a command succeeds (up to 60 s), failing with the operator's log.
eventually() {
  local what="$1"
  shift
  for _ in $(seq 1 240); do
    "$@" > /dev/null 2>&1 && return 0
    kill -0 "$OPERATOR_PID" 2>/dev/null || break
    sleep 0.25
  done
  tail -n 15 "$WORK/operator.log" | cut -c1-600
  fail "$what"
}
condition() { # gateway type status
  [[ "$(kubectl -n team-a get bedrockgateway "$1" \
    -o jsonpath="{.status.conditions[?(@.type==\"$2\")].status}")" == "$3" ]]
}
env_of() { # kind name variable
  kubectl -n team-a get "$1" "$2" \
    -o jsonpath="{.spec.template.spec.containers[0].env[?(@.name==\"$3\")].value}"
}
equals() { [[ "$("${@:2}")" == "$1" ]]; }

kubectl -n team-a apply -f - > /dev/null <<'YAML'
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
        env:
        - {name: OPENAI_API_BASE_URLS, value: "https://api.openai.com/v1"}
        - {name: OPENAI_API_KEYS, value: "sk-existing"}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: open-webui-sts
spec:
  serviceName: open-webui-sts
  selector: {matchLabels: {app: open-webui-sts}}
  template:
    metadata: {labels: {app: open-webui-sts}}
    spec:
      containers:
      - name: open-webui
        image: ghcr.io/open-webui/open-webui:main
---
apiVersion: bedrock-gateway.io/v1alpha1
kind: BedrockGateway
metadata:
  name: bedrock
spec:
  region: us-east-1
  replicas: 2
  aws: {roleArn: "arn:aws:iam::123456789012:role/bedrock-gateway"}
  openWebUI: {workloadRef: {name: open-webui}}
  metrics: {serviceMonitor: true}
---
apiVersion: bedrock-gateway.io/v1alpha1
kind: BedrockGateway
metadata:
  name: sts
spec:
  region: us-east-1
  openWebUI: {workloadRef: {kind: StatefulSet, name: open-webui-sts}}
YAML

URL="http://bedrock-bedrock-gateway.team-a.svc.cluster.local/v1"
eventually "the leader Lease was not taken" kubectl -n "$RELEASE_NAMESPACE" get lease bedrock-gateway-operator
eventually "the proxy objects were not created" kubectl -n team-a get \
  deployment/bedrock-bedrock-gateway service/bedrock-bedrock-gateway \
  serviceaccount/bedrock-bedrock-gateway secret/bedrock-bedrock-gateway-api-key \
  poddisruptionbudget/bedrock-bedrock-gateway servicemonitor/bedrock-bedrock-gateway
eventually "Open WebUI (Deployment) was not wired" \
  equals "https://api.openai.com/v1;$URL" env_of deployment open-webui OPENAI_API_BASE_URLS
eventually "Open WebUI (StatefulSet) was not wired" \
  equals "http://sts-bedrock-gateway.team-a.svc.cluster.local/v1" env_of statefulset open-webui-sts OPENAI_API_BASE_URLS
eventually "ServiceMonitorReady is not True" condition bedrock ServiceMonitorReady True
# No kubelet runs pods here: report the proxy available as one would.
kubectl -n team-a patch deployment bedrock-bedrock-gateway --subresource=status --type=merge \
  -p '{"status":{"replicas":2,"readyReplicas":2,"availableReplicas":2,"updatedReplicas":2}}' > /dev/null
eventually "the gateway did not become Ready" condition bedrock Ready True
eventually "no event was recorded" test -n "$(kubectl -n team-a get events.events.k8s.io -o name)"
echo "   objects created, Open WebUI wired, Ready, events recorded"

kubectl -n team-a patch bedrockgateway bedrock --type=merge -p '{"spec":{"replicas":1}}' > /dev/null
eventually "the PodDisruptionBudget was not deleted at one replica" \
  bash -c '! kubectl -n team-a get poddisruptionbudget bedrock-bedrock-gateway'
kubectl -n team-a delete bedrockgateway bedrock sts --wait=false > /dev/null
eventually "the gateways were not finalized" \
  equals "" kubectl -n team-a get bedrockgateways -o name
eventually "Open WebUI's own connection was not restored" \
  equals "https://api.openai.com/v1" env_of deployment open-webui OPENAI_API_BASE_URLS
echo "   scaled down, deleted, Open WebUI restored"

kill -0 "$OPERATOR_PID" 2>/dev/null || { tail -n 15 "$WORK/operator.log" | cut -c1-600; fail "the operator exited"; }
if grep -iE 'forbidden|could not publish' \
  "$WORK/operator.log" | cut -c1-600; then
  fail "the operator hit errors under the chart's RBAC (above)"
fi
echo "   no forbidden call in the operator's log"

step "Chart checks passed"
