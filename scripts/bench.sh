#!/usr/bin/env bash
# Load benchmark of the gateway against the Bedrock emulator: builds release binaries, starts
# the emulator and the gateway on loopback, runs bedrock-gateway-bench (a separate process)
# and writes bench/results.md. Extra arguments go to bedrock-gateway-bench, e.g.
#   scripts/bench.sh --rates 2000 --duration-seconds 5
#   scripts/bench.sh --phases memory --stream-levels 500,5000
# Environment:
#   BENCH_PIN=1   pin the gateway to the last CPU, the emulator and the load generator to the
#                 others (needs taskset and at least 2 CPUs)
#   BENCH_NICE=-10  run the three processes at that nice level, so that other work on a shared
#                 machine disturbs the figures less (negative values need root)
#   BENCH_EMULATOR_PORT, BENCH_API_PORT, BENCH_METRICS_PORT   loopback ports (14599, 18080, 19090)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require cargo "Install Rust with rustup (https://rustup.rs)."
require curl "Install curl."

EMULATOR_PORT="${BENCH_EMULATOR_PORT:-14599}"
API_PORT="${BENCH_API_PORT:-18080}"
METRICS_PORT="${BENCH_METRICS_PORT:-19090}"
ACCESS_KEY_ID=AKIABENCH00000000001
SECRET_ACCESS_KEY=bench-secret-access-key
REGION=us-east-1
RESULTS="$REPO_ROOT/bench/results.md"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "Stopping."; exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$EMULATOR_PORT" "$API_PORT" "$METRICS_PORT"; do
  if port_in_use "$port"; then fail "127.0.0.1:$port is already in use; set BENCH_*_PORT"; fi
done

# Every stream held through the gateway costs it two sockets; ask for plenty.
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
OPEN_FILES="$(ulimit -n)"
OPEN_FILES_HARD="$(ulimit -Hn)"

step "Building release binaries"
cargo build --release --locked -p bedrock-gateway-proxy -p bedrock-emulator -p bedrock-gateway-bench
BIN="$CARGO_TARGET_DIR/release"

CPUS="$(nproc)"
LAUNCH_GATEWAY=()
LAUNCH_OTHERS=()
PLACEMENT="the emulator, the gateway and the load generator share all $CPUS CPUs (no pinning)"
if [[ "${BENCH_PIN:-0}" == "1" ]]; then
  require taskset "Install util-linux, or run without BENCH_PIN=1."
  ((CPUS >= 2)) || fail "BENCH_PIN=1 needs at least 2 CPUs"
  LAST=$((CPUS - 1))
  LAUNCH_GATEWAY=(taskset -c "$LAST")
  LAUNCH_OTHERS=(taskset -c "0-$((LAST - 1))")
  PLACEMENT="gateway pinned to CPU $LAST; emulator and load generator pinned to CPUs 0-$((LAST - 1)) (taskset)"
fi
if [[ -n "${BENCH_NICE:-}" ]]; then
  nice -n "$BENCH_NICE" true 2>/dev/null || fail "cannot run at nice level $BENCH_NICE"
  LAUNCH_GATEWAY=(nice -n "$BENCH_NICE" "${LAUNCH_GATEWAY[@]}")
  LAUNCH_OTHERS=(nice -n "$BENCH_NICE" "${LAUNCH_OTHERS[@]}")
  PLACEMENT="$PLACEMENT; all three at nice $BENCH_NICE"
fi

step "Starting the Bedrock emulator on 127.0.0.1:$EMULATOR_PORT"
env -u BEDROCK_EMULATOR_LOG RUST_LOG=warn "${LAUNCH_OTHERS[@]}" "$BIN/bedrock-emulator" \
  --listen "127.0.0.1:$EMULATOR_PORT" --workers "$CPUS" --log-format json \
  --access-key-id "$ACCESS_KEY_ID" --secret-access-key "$SECRET_ACCESS_KEY" --region "$REGION" \
  > "$WORK/emulator.log" 2>&1 &
EMULATOR_PID=$!
PIDS+=("$EMULATOR_PID")
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$EMULATOR_PORT/_emulator/observations" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$EMULATOR_PORT/_emulator/observations" \
  || { cat "$WORK/emulator.log"; fail "the emulator did not start"; }

step "Starting bedrock-gateway-proxy on 127.0.0.1:$API_PORT"
API_KEY="bench-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$API_KEY" > "$WORK/api-keys"
env AWS_ACCESS_KEY_ID="$ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$SECRET_ACCESS_KEY" \
  AWS_REGION="$REGION" AWS_ENDPOINT_URL="http://127.0.0.1:$EMULATOR_PORT" \
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
  RUST_LOG=warn "${LAUNCH_GATEWAY[@]}" "$BIN/bedrock-gateway-proxy" \
  --listen "127.0.0.1:$API_PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
  --api-keys-file "$WORK/api-keys" --log-format json \
  > "$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
PIDS+=("$GATEWAY_PID")
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/readyz" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/readyz" \
  || { cat "$WORK/gateway.log"; fail "the gateway did not become ready"; }

BENCH_ARGS=(
  --emulator-url "http://127.0.0.1:$EMULATOR_PORT"
  --gateway-url "http://127.0.0.1:$API_PORT"
  --gateway-pid "$GATEWAY_PID" --emulator-pid "$EMULATOR_PID"
  --access-key-id "$ACCESS_KEY_ID" --secret-access-key "$SECRET_ACCESS_KEY" --region "$REGION"
  --markdown "$WORK/figures.md"
  "$@"
)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
step "Running bedrock-gateway-bench (a few minutes)"
BEDROCK_GATEWAY_BENCH_API_KEY="$API_KEY" "${LAUNCH_OTHERS[@]}" "$BIN/bedrock-gateway-bench" "${BENCH_ARGS[@]}" > /dev/null \
  || { tail -n 20 "$WORK/gateway.log" "$WORK/emulator.log"; fail "the benchmark failed"; }

COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -n "$(git status --porcelain 2>/dev/null)" ]] && COMMIT="$COMMIT (with uncommitted changes)"
CPU_MODEL="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
MEMORY="$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
SCRIPT_COMMAND="scripts/bench.sh${*:+ $*}"
[[ -n "${BENCH_NICE:-}" ]] && SCRIPT_COMMAND="BENCH_NICE=$BENCH_NICE $SCRIPT_COMMAND"
[[ "${BENCH_PIN:-0}" == "1" ]] && SCRIPT_COMMAND="BENCH_PIN=1 $SCRIPT_COMMAND"
BENCH_COMMAND="$(printf '%q ' "${LAUNCH_OTHERS[@]}" bedrock-gateway-bench "${BENCH_ARGS[@]}")"
BENCH_COMMAND="${BENCH_COMMAND//"$WORK"/\$WORK}"
{
  echo "# Benchmark results"
  echo
  echo "Written by \`make bench\` (\`scripts/bench.sh\`); each run replaces this file."
  echo
  echo "| Run | |"
  echo "|---|---|"
  echo "| Date | $(date -u '+%Y-%m-%d %H:%M UTC') |"
  echo "| Commit | $COMMIT |"
  echo "| Machine | $CPUS CPUs ($CPU_MODEL), $MEMORY RAM, Linux $(uname -r) $(uname -m) |"
  echo "| Placement | $PLACEMENT; all on loopback |"
  echo "| Servers | emulator and gateway release builds, $CPUS HTTP workers each, \`RUST_LOG=warn\`, JSON logs |"
  echo "| Open files | \`ulimit -n\` $OPEN_FILES (hard limit $OPEN_FILES_HARD) |"
  echo "| Load average before the run | $LOAD_BEFORE (1, 5, 15 min; the \`whole machine\` CPU column shows any competition during the run) |"
  echo "| Command | \`$SCRIPT_COMMAND\` |"
  echo "| Load generator | \`${BENCH_COMMAND% }\` |"
  echo
  cat "$WORK/figures.md"
} > "$RESULTS"

step "Results (written to bench/results.md)"
cat "$RESULTS"
