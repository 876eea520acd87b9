#!/usr/bin/env bash
# Set up everything the tests need from a fresh clone and run the whole suite.
#   1. system packages the native bridges are tested against (Debian's ARM NN; needs root or sudo)
#      and promtool (Debian's prometheus) for the /metrics check
#   2. .venv with the package (compiled core built) + the starter models
#   3. pytest over tests/ (CPU ONNX Runtime, ARM NN on CpuRef, RKNN against its C-ABI double)
#   4. the OpenVINO suite from a second venv (.venv-openvino): one ONNX Runtime flavour per venv
#   5. the x86_64 manylinux wheel built in isolation, repaired and checked with auditwheel
#      (scripts/wheels.sh --quick; the long form with aarch64 under qemu is run by hand)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/install-armnn.sh ]; then
  scripts/install-armnn.sh || echo "warning: ARM NN packages could not be installed; its tests will say why they skip"
fi
if [ -x scripts/install-promtool.sh ]; then
  scripts/install-promtool.sh || echo "warning: promtool could not be installed; the promtool metrics test will skip and say why"
fi
scripts/setup.sh
.venv/bin/python -m pytest "$@"

if [ -x scripts/openvino-venv.sh ]; then
  scripts/openvino-venv.sh
  .venv-openvino/bin/python -m pytest -m openvino "$@"
fi

if [ -x scripts/wheels.sh ]; then
  scripts/wheels.sh --quick --out build/wheels/ci-dist
fi
