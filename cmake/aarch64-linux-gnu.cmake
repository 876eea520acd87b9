# Cross-compiling for aarch64 Linux with Debian's cross toolchain (crossbuild-essential-arm64) and
# an arm64 Debian root as sysroot (scripts/wheels.sh makes one with mmdebstrap; its libraries,
# ARM NN included, and Python headers are the target's own). The sysroot comes from
# IMMICH_AARCH64_SYSROOT. Compiler and sysroot are both Debian bookworm (gcc 12, glibc 2.36), so
# the objects are what the native compiler in that root would produce, only built at native speed.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
if(NOT DEFINED ENV{IMMICH_AARCH64_SYSROOT})
  message(FATAL_ERROR "set IMMICH_AARCH64_SYSROOT to an arm64 root (scripts/wheels.sh does)")
endif()
set(CMAKE_SYSROOT $ENV{IMMICH_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH ${CMAKE_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
