#!/bin/sh
# install-wheel.sh EXTRA [PIP ARGS...]: install the immich-ml wheel for this machine's architecture
# from /tmp/dist (scripts/wheels.sh output) with one extra (cpu, cuda, openvino, rocm) into /opt/venv.
set -eu
extra=$1
shift
wheel=$(ls /tmp/dist/immich_ml-*manylinux*_"$(uname -m)".whl 2>/dev/null | sort | tail -n 1)
if [ -z "$wheel" ]; then
  echo "install-wheel: no immich_ml-*manylinux*_$(uname -m).whl in dist/ (run scripts/wheels.sh)" >&2
  exit 1
fi
if [ -n "${PIP_CERT_FILE:-}" ]; then
  set -- --cert "$PIP_CERT_FILE" "$@"
fi
/opt/venv/bin/pip install --no-cache-dir "${wheel}[${extra}]" "$@"
/opt/venv/bin/python -c "import immich_ml._core._image, immich_ml._core._armnn, immich_ml._core._rknn"
