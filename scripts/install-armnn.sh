#!/usr/bin/env bash
# Install the ARM NN packages the ARM NN bridge builds and is tested against (Debian/Ubuntu).
#   scripts/install-armnn.sh         -> libarmnn + headers, the TfLite parser, and the backends
#                                       this architecture has (CpuRef everywhere; CpuAcc and
#                                       GpuAcc for Mali boards on arm64/armhf)
# Idempotent: installed packages are skipped and apt is only touched when something is missing.
# Runs apt-get as root, through sudo otherwise. Rebuild immich-ml afterwards (pip install -e .).
set -euo pipefail

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-armnn: no apt-get/dpkg here; install ARM NN (libarmnn, its headers, a backend) by hand" >&2
  exit 1
fi

packages=(libarmnn-dev libarmnn-cpuref-backend22 libarmnntfliteparser-dev)
case "$(dpkg --print-architecture)" in
  arm64 | armhf) packages+=(libarmnn-cpuacc-backend22 libarmnn-gpuacc-backend22) ;;
esac

missing=()
for package in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-armnn: already installed: ${packages[*]}"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-armnn: need root (or sudo) to install: ${missing[*]}" >&2
  exit 1
fi

echo "install-armnn: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run to finish instead of failing on its lock.
apt=(apt-get -o DPkg::Lock::Timeout=300)
if ! "${as_root[@]}" "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; then
  # Package lists may be missing or stale on a fresh machine.
  "${as_root[@]}" "${apt[@]}" update
  "${as_root[@]}" "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
fi
