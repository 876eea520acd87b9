#!/usr/bin/env bash
# GPU verification for one NVIDIA GPU, in under 8 minutes: the tests in tests/gpu (CUDA vs CPU
# parity, memory flat across face counts and OCR shapes, real CUDA OOM recovery, TensorRT when the
# ORT build has it; every model strict on the GPU, so a fallback fails) and the throughput check
# (ViT-B-32 batch 1 vs dynamic batching at concurrency 64, against the FP16 floor measured in the
# same run). Writes gpu-report/{tests.xml,tests.txt,gpu_check.json,gpu_check.png}.
#
#   scripts/gpu-check.sh [out-dir]          (needs: pip install -e '.[cuda,dev]' and scripts/setup.sh)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu-report}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" || true
"$PY" -c 'import onnxruntime as o; print(o.__version__, o.get_available_providers())' | tee -a "$OUT/gpu.txt"

timeout 300 "$PY" -m pytest tests/gpu -m gpu -q -rs -p no:cacheprovider \
    --junitxml="$OUT/tests.xml" 2>&1 | tee "$OUT/tests.txt"
tests=${PIPESTATUS[0]}
if grep -q "no GPU:" "$OUT/tests.txt"; then
    echo "gpu-check: the GPU tests were skipped (see the reasons above): this is not a pass" >&2
    tests=1
fi

timeout 200 "$PY" -m immich_ml.bench.gpu_check --out "$OUT" --seconds 15 2>&1 | tee "$OUT/bench.txt"
bench=${PIPESTATUS[0]}

echo "gpu-check: tests exit $tests, bench exit $bench; report in $OUT/"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
