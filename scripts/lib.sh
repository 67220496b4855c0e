# Shared settings for the project's scripts. Source it; do not run it.
# Build outputs and tool caches live under the user's cache directory, never in the repository.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${BEDROCK_GATEWAY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bedrock-gateway}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE_DIR/target}"
VENV_DIR="$CACHE_DIR/venv"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

require() {
  command -v "$1" >/dev/null 2>&1 || fail "$1 is required but not installed. $2"
}

# A Python virtualenv with the suite's pinned clients, rebuilt when the requirements change.
ensure_venv() {
  require python3 "Install Python 3.11 or newer."
  local requirements="$REPO_ROOT/tests/e2e/requirements.txt"
  local stamp="$VENV_DIR/.requirements.sha256"
  local wanted
  wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [[ ! -x "$VENV_DIR/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
    step "Preparing the Python test clients in $VENV_DIR"
    python3 -m venv "$VENV_DIR"
    "$VENV_DIR/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    echo "$wanted" > "$stamp"
  fi
}
