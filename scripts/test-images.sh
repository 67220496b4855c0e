#!/usr/bin/env bash
# Checks the container images' recipes (proxy/Dockerfile, operator/Dockerfile,
# .dockerignore) without a Docker engine:
#   - the build stage uses the workspace's Rust version, the runtime stage the
#     distroless nonroot base, the user is 65532, the entrypoint is the binary
#     the build stage produced;
#   - the build context is assembled as Docker would (.dockerignore applied) and
#     each Dockerfile's own `cargo build` command runs in it; the binaries must
#     then start. A cold release build takes 15-27 min on 2 CPUs (later runs
#     reuse the cached artefacts); --no-release-build or
#     BEDROCK_GATEWAY_SKIP_RELEASE_BUILD=1 skips it for quick local runs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require python3 "Install Python 3."

RELEASE_BUILD=true
[[ -n "${BEDROCK_GATEWAY_SKIP_RELEASE_BUILD:-}" ]] && RELEASE_BUILD=false
for arg in "$@"; do
  case "$arg" in
    --no-release-build) RELEASE_BUILD=false ;;
    *) fail "unknown argument $arg (use --no-release-build)" ;;
  esac
done

DOCKERFILES=(proxy/Dockerfile operator/Dockerfile)
RUST_VERSION="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)"

step "Dockerfiles and .dockerignore"
for dockerfile in "${DOCKERFILES[@]}"; do
  python3 - "$dockerfile" "$RUST_VERSION" <<'PY'
import re, sys
path, rust_version = sys.argv[1:]
lines = [line.strip() for line in open(path) if line.strip() and not line.startswith("#")]
problems = []
froms = [line for line in lines if line.startswith("FROM ")]
if len(froms) != 2:
    problems.append("want a build stage and a runtime stage")
elif froms[0] != f"FROM rust:{rust_version}-bookworm AS build":
    problems.append(f"build stage is not rust:{rust_version}-bookworm (the workspace's rust-version): {froms[0]}")
elif froms[1] != "FROM gcr.io/distroless/cc-debian12:nonroot":
    problems.append(f"runtime stage is not distroless cc nonroot: {froms[1]}")
runs = [line for line in lines if line.startswith("RUN ")]
build = re.fullmatch(r"RUN cargo build --release --locked -p (\S+) --bin (\S+)", runs[-1] if runs else "")
if not build:
    problems.append("no `RUN cargo build --release --locked -p <crate> --bin <binary>`")
else:
    binary = build.group(2)
    copy = f"COPY --from=build /src/target/release/{binary} /usr/local/bin/{binary}"
    if copy not in lines:
        problems.append(f"missing `{copy}`")
    if f'ENTRYPOINT ["/usr/local/bin/{binary}"]' not in lines:
        problems.append("the entrypoint is not the built binary")
    # The last USER wins; the image must not run as root.
users = [line for line in lines if line.startswith("USER ")]
if not users or users[-1] not in ("USER 65532", "USER 65532:65532"):
    problems.append("the runtime user is not 65532 (nonroot)")
if problems:
    sys.exit(f"{path}: " + "; ".join(problems))
print(f"   {path}: {froms[0][5:]} -> {froms[1][5:]}, user 65532, {build.group(2)}")
PY
done
for pattern in .git '**/target'; do
  grep -qxF "$pattern" .dockerignore || fail ".dockerignore does not exclude $pattern"
done
echo "   .dockerignore keeps .git and build outputs out of the context"

if ! $RELEASE_BUILD; then
  echo "   (release builds skipped on request; run without --no-release-build to build as the Dockerfiles do)"
  exit 0
fi

# The files Docker would send: the repository minus what .dockerignore excludes
# (last matching pattern wins, `!` re-includes, a matching directory excludes
# its contents), copied with their timestamps so later runs rebuild little.
CONTEXT="$CACHE_DIR/image-build-context"
step "Assembling the Docker build context in $CONTEXT"
python3 - "$REPO_ROOT" "$CONTEXT" <<'PY'
import os, re, shutil, sys
root, context = sys.argv[1:]
def regex(pattern):
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")
rules = []
for line in open(os.path.join(root, ".dockerignore")):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    negate = line.startswith("!")
    rules.append((negate, regex(os.path.normpath(line.lstrip("!")).lstrip("/"))))
def excluded(relative):
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, pattern in rules:
        if any(pattern.match(prefix) for prefix in prefixes):
            result = not negate
    return result
wanted = set()
for directory, subdirectories, files in os.walk(root):
    relative_dir = os.path.relpath(directory, root)
    relative_dir = "" if relative_dir == "." else relative_dir + "/"
    subdirectories[:] = [d for d in subdirectories if d != ".git" or not excluded(relative_dir + d)]
    for name in files:
        relative = relative_dir + name
        if not excluded(relative):
            wanted.add(relative)
for directory, _, files in os.walk(context, topdown=False):
    for name in files:
        relative = os.path.relpath(os.path.join(directory, name), context)
        if relative not in wanted:
            os.remove(os.path.join(directory, name))
for relative in sorted(wanted):
    source, target = os.path.join(root, relative), os.path.join(context, relative)
    if os.path.exists(target) and os.stat(target).st_mtime == os.stat(source).st_mtime \
            and os.path.getsize(target) == os.path.getsize(source):
        continue
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(source, target)
print(f"   {len(wanted)} files")
PY

for dockerfile in "${DOCKERFILES[@]}"; do
  command="$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' "$dockerfile")"
  binary="${command##* --bin }"
  step "$dockerfile: $command"
  started=$SECONDS
  (cd "$CONTEXT" && $command)
  "$CARGO_TARGET_DIR/release/$binary" --help > /dev/null ||
    fail "$CARGO_TARGET_DIR/release/$binary does not start"
  echo "   built in $((SECONDS - started))s; $binary $(du -h "$CARGO_TARGET_DIR/release/$binary" | cut -f1)"
done
step "Image checks passed"
