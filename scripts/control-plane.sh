#!/usr/bin/env bash
# A local Kubernetes control plane: etcd and kube-apiserver (from
# scripts/envtest-assets.sh) on free loopback ports, with an admin bearer token
# (group system:masters) in a kubeconfig. No scheduler, controller manager or
# kubelet: objects are stored and validated, nothing runs pods.
#
#   scripts/control-plane.sh start DIR [--owner PID]   # prints DIR/kubeconfig once ready
#   scripts/control-plane.sh stop DIR                  # stops it and removes DIR
#
# DIR must not exist yet or be empty; it holds etcd's data, the certificates,
# the logs (etcd.log, kube-apiserver.log) and the pids. With --owner the
# processes are also stopped when process PID exits, whatever way it ends.
# Only the kubeconfig path goes to stdout; progress goes to stderr.
set -euo pipefail

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
READY_TIMEOUT_SECONDS=120

progress() { printf 'control-plane: %s\n' "$*" >&2; }
fail() { printf 'control-plane: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '7,8p' "${BASH_SOURCE[0]}" | sed 's/^#  */usage: /' >&2
  exit 2
}

# A loopback port nothing listens on right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_pids() {
  local dir="$1" pid
  [[ -f "$dir/pids" ]] || return 0
  # kube-apiserver first, then etcd (reverse start order).
  for pid in $(tac "$dir/pids"); do
    kill "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do
    local alive=false
    for pid in $(cat "$dir/pids"); do
      kill -0 "$pid" 2>/dev/null && alive=true
    done
    $alive || break
    sleep 0.1
  done
  for pid in $(cat "$dir/pids"); do
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -f "$dir/pids"
}

stop() {
  local dir="$1"
  [[ -d "$dir" ]] || return 0
  if [[ -f "$dir/watchdog.pid" ]]; then
    kill "$(cat "$dir/watchdog.pid")" 2>/dev/null || true
  fi
  stop_pids "$dir"
  rm -rf "$dir"
}

start() {
  local dir="$1" owner="${2:-}"
  command -v python3 >/dev/null 2>&1 || fail "python3 is required to find free ports"
  command -v openssl >/dev/null 2>&1 ||
    fail "openssl is required for the service account signing key (Debian: apt-get install openssl)"
  command -v kubectl >/dev/null 2>&1 ||
    fail "kubectl is required (https://kubernetes.io/docs/tasks/tools/)"
  if [[ -e "$dir" && -n "$(ls -A "$dir" 2>/dev/null)" ]]; then
    fail "$dir is not empty"
  fi
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"

  local assets
  assets="$("$SCRIPTS_DIR/envtest-assets.sh")" ||
    fail "no kube-apiserver and etcd (scripts/envtest-assets.sh failed)"

  local etcd_port peer_port apiserver_port token
  etcd_port="$(free_port)"
  peer_port="$(free_port)"
  apiserver_port="$(free_port)"
  token="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

  "$assets/etcd" --name=default --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="default=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync=true --log-level=warn \
    < /dev/null > "$dir/etcd.log" 2>&1 &
  echo $! >> "$dir/pids"

  printf '%s,admin,admin,"system:masters"\n' "$token" > "$dir/tokens.csv"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/service-account.key" \
    2> "$dir/openssl.log" || { stop_pids "$dir"; fail "openssl genpkey failed: $(cat "$dir/openssl.log")"; }

  "$assets/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$apiserver_port" \
    --cert-dir="$dir/certs" --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \
    --service-cluster-ip-range=10.0.0.0/16 \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$dir/service-account.key" \
    --service-account-signing-key-file="$dir/service-account.key" \
    --disable-admission-plugins=ServiceAccount --allow-privileged=true \
    < /dev/null > "$dir/kube-apiserver.log" 2>&1 &
  echo $! >> "$dir/pids"

  if [[ -n "$owner" ]]; then
    # Stops the processes once the owner is gone, even if it could not clean up.
    (
      trap '' INT
      while kill -0 "$owner" 2>/dev/null; do sleep 1; done
      stop_pids "$dir"
      rm -rf "$dir"
    ) < /dev/null > /dev/null 2>&1 &
    echo $! > "$dir/watchdog.pid"
  fi

  local kubeconfig="$dir/kubeconfig" deadline=$((SECONDS + READY_TIMEOUT_SECONDS)) pid
  while true; do
    for pid in $(cat "$dir/pids"); do
      if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 20 "$dir/etcd.log" "$dir/kube-apiserver.log" >&2 || true
        stop "$dir"
        fail "the control plane did not start (a process exited; its log is above)"
      fi
    done
    if [[ -s "$dir/certs/apiserver.crt" ]]; then
      cat > "$kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority-data: $(base64 -w0 < "$dir/certs/apiserver.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: local
  context:
    cluster: local
    user: admin
    namespace: default
current-context: local
KUBECONFIG
      if [[ "$(kubectl --kubeconfig "$kubeconfig" get --raw /readyz 2>/dev/null)" == "ok" ]]; then
        break
      fi
    fi
    if ((SECONDS > deadline)); then
      tail -n 20 "$dir/etcd.log" "$dir/kube-apiserver.log" >&2 || true
      stop "$dir"
      fail "kube-apiserver was not ready within ${READY_TIMEOUT_SECONDS}s"
    fi
    sleep 0.25
  done
  printf '%s\n' "$kubeconfig"
}

[[ $# -ge 2 ]] || usage
case "$1" in
  start)
    owner=""
    if [[ $# -ge 4 && "$3" == "--owner" ]]; then owner="$4"; elif [[ $# -ne 2 ]]; then usage; fi
    start "$2" "$owner"
    ;;
  stop) stop "$2" ;;
  *) usage ;;
esac
