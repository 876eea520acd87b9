"""Our declarations of the librknnrt ABI (csrc/rknn/rknn_abi.h) against Rockchip's documentation.

The bridge and the test double share that header, so a wrong field there would go unnoticed by the
double. Here the header's layout, compiled by the C compiler, is compared with the layout ctypes
derives from the documented field lists (order and C types), with the documented sizes on 64-bit
Linux, and the header's constants with the documented values. Where an aarch64 cross compiler and
qemu-user are installed, the bridge and the double are also built for aarch64 (the boards'
architecture) and run end to end there.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rknn_double as rd

c_enum = ctypes.c_int  # C enums in this ABI are int-sized

# Field lists as documented for rknn_api.h (RKNPU2 runtime 1.x/2.x).
DOCUMENTED: dict[str, list[tuple[str, object]]] = {
    "rknn_input_output_num": [("n_input", ctypes.c_uint32), ("n_output", ctypes.c_uint32)],
    "rknn_tensor_attr": [
        ("index", ctypes.c_uint32), ("n_dims", ctypes.c_uint32), ("dims", ctypes.c_uint32 * 16),
        ("name", ctypes.c_char * 256), ("n_elems", ctypes.c_uint32), ("size", ctypes.c_uint32),
        ("fmt", c_enum), ("type", c_enum), ("qnt_type", c_enum), ("fl", ctypes.c_int8), ("zp", ctypes.c_int32),
        ("scale", ctypes.c_float), ("w_stride", ctypes.c_uint32), ("size_with_stride", ctypes.c_uint32),
        ("pass_through", ctypes.c_uint8), ("h_stride", ctypes.c_uint32),
    ],
    "rknn_tensor_mem": [
        ("virt_addr", ctypes.c_void_p), ("phys_addr", ctypes.c_uint64), ("fd", ctypes.c_int32),
        ("offset", ctypes.c_int32), ("size", ctypes.c_uint32), ("flags", ctypes.c_uint32),
        ("priv_data", ctypes.c_void_p),
    ],
    "rknn_output": [
        ("want_float", ctypes.c_uint8), ("is_prealloc", ctypes.c_uint8), ("index", ctypes.c_uint32),
        ("buf", ctypes.c_void_p), ("size", ctypes.c_uint32),
    ],
    "rknn_sdk_version": [("api_version", ctypes.c_char * 256), ("drv_version", ctypes.c_char * 256)],
    "rknn_custom_string": [("string", ctypes.c_char * 1024)],
}

# Sizes on x86-64 / aarch64 Linux, worked out by hand from the lists above.
LP64_SIZES = {"rknn_input_output_num": 8, "rknn_tensor_attr": 376, "rknn_tensor_mem": 40, "rknn_output": 24,
              "rknn_sdk_version": 512, "rknn_custom_string": 1024}

DOCUMENTED_CONSTANTS = {
    "RKNN_SUCC": 0, "RKNN_ERR_FAIL": -1, "RKNN_ERR_TIMEOUT": -2, "RKNN_ERR_DEVICE_UNAVAILABLE": -3,
    "RKNN_ERR_MALLOC_FAIL": -4, "RKNN_ERR_PARAM_INVALID": -5, "RKNN_ERR_MODEL_INVALID": -6,
    "RKNN_ERR_CTX_INVALID": -7, "RKNN_ERR_INPUT_INVALID": -8, "RKNN_ERR_OUTPUT_INVALID": -9,
    "RKNN_ERR_DEVICE_UNMATCH": -10, "RKNN_ERR_TARGET_PLATFORM_UNMATCH": -13,
    "RKNN_MAX_DIMS": 16, "RKNN_MAX_NAME_LEN": 256,
    "RKNN_QUERY_IN_OUT_NUM": 0, "RKNN_QUERY_INPUT_ATTR": 1, "RKNN_QUERY_OUTPUT_ATTR": 2,
    "RKNN_QUERY_SDK_VERSION": 5, "RKNN_QUERY_CUSTOM_STRING": 7, "RKNN_QUERY_NATIVE_INPUT_ATTR": 8,
    "RKNN_QUERY_NATIVE_OUTPUT_ATTR": 9,
    "RKNN_TENSOR_FLOAT32": 0, "RKNN_TENSOR_FLOAT16": 1, "RKNN_TENSOR_INT8": 2, "RKNN_TENSOR_UINT8": 3,
    "RKNN_TENSOR_INT16": 4, "RKNN_TENSOR_INT32": 6, "RKNN_TENSOR_INT64": 8,
    "RKNN_TENSOR_NCHW": 0, "RKNN_TENSOR_NHWC": 1, "RKNN_TENSOR_NC1HWC2": 2, "RKNN_TENSOR_UNDEFINED": 3,
    "RKNN_NPU_CORE_AUTO": 0, "RKNN_NPU_CORE_0": 1, "RKNN_NPU_CORE_1": 2, "RKNN_NPU_CORE_2": 4,
    "RKNN_NPU_CORE_0_1": 3, "RKNN_NPU_CORE_0_1_2": 7, "RKNN_NPU_CORE_ALL": 0xFFFF,
    "RKNN_TENSOR_MEMORY_FLAGS_ALLOC_INSIDE": 1,
}


def _structure(name: str) -> type[ctypes.Structure]:
    return type(name, (ctypes.Structure,), {"_fields_": DOCUMENTED[name]})


@pytest.fixture(scope="module")
def header_layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """``struct.field -> offset``, ``struct -> size`` and ``CONSTANT -> value`` as compiled from our header."""
    lines = ['#include <stdio.h>', '#include "rknn_abi.h"', "int main(void) {"]
    for struct, fields in DOCUMENTED.items():
        lines.append(f'printf("{struct} %zu\\n", sizeof({struct}));')
        lines += [f'printf("{struct}.{f} %zu\\n", offsetof({struct}, {f}));' for f, _ in fields]
    lines += [f'printf("{c} %lld\\n", (long long)({c}));' for c in DOCUMENTED_CONSTANTS]
    lines.append("return 0; }")
    directory = tmp_path_factory.mktemp("rknn_abi")
    source, exe = directory / "layout.c", directory / "layout"
    source.write_text("\n".join(lines))
    subprocess.run([rd.compiler(), "-std=c11", "-Wall", "-Werror", f"-I{rd.ABI_DIR}", str(source), "-o", str(exe)],
                   check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {key: int(value) for key, value in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize("struct", sorted(DOCUMENTED))
def test_struct_layout_matches_documented_fields(header_layout: dict[str, int], struct: str) -> None:
    documented = _structure(struct)
    assert header_layout[struct] == ctypes.sizeof(documented)
    for field, _ in DOCUMENTED[struct]:
        assert header_layout[f"{struct}.{field}"] == getattr(documented, field).offset, field


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8 or not sys.platform.startswith("linux"),
                    reason="sizes are documented for 64-bit Linux")
def test_struct_sizes_on_64_bit_linux(header_layout: dict[str, int]) -> None:
    assert {s: header_layout[s] for s in LP64_SIZES} == LP64_SIZES
    assert header_layout["rknn_tensor_attr.zp"] == 352  # 3 bytes of padding after int8 fl
    assert header_layout["rknn_tensor_attr.h_stride"] == 372  # 3 bytes after uint8 pass_through


def test_constants_match_documentation(header_layout: dict[str, int]) -> None:
    assert {c: header_layout[c] for c in DOCUMENTED_CONSTANTS} == DOCUMENTED_CONSTANTS



CROSS_CC, CROSS_CXX, QEMU = (shutil.which(tool) for tool in
                             ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-g++", "qemu-aarch64"))
SYSROOT = Path("/usr/aarch64-linux-gnu")


@pytest.mark.skipif(not (CROSS_CC and CROSS_CXX and QEMU and SYSROOT.is_dir()),
                    reason="needs g++-aarch64-linux-gnu and qemu-user (apt) to build and run for aarch64")
def test_bridge_on_aarch64(tmp_path: Path) -> None:
    """RK35xx boards are aarch64: build the bridge and the double for it and run them under qemu."""
    assert CROSS_CC and CROSS_CXX and QEMU
    double, driver = tmp_path / "librknnrt.so", tmp_path / "driver"
    subprocess.run([CROSS_CC, *rd.DOUBLE_FLAGS, *map(str, rd.SOURCES), "-o", str(double), "-lpthread", "-lm"],
                   check=True, capture_output=True)
    sources = [rd.HERE / "cross_driver.cpp", *(rd.ABI_DIR / f for f in ("rknn_bridge.cpp", "rknn_lease.cpp",
                                                                         "rknn_runtime.cpp"))]
    subprocess.run([CROSS_CXX, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{rd.ABI_DIR}",
                    *map(str, sources), "-o", str(driver), "-ldl", "-lpthread"], check=True, capture_output=True)
    model = rd.make_model([rd.Tensor("images", (1, 8, 8, 3), rd.NHWC, rd.FLOAT16)],
                          [rd.Tensor("embedding", (1, 4)), rd.Tensor("heatmap", (1, 2, 3), rd.UNDEFINED, rd.FLOAT16)])
    image = np.random.default_rng(5).standard_normal((1, 3, 8, 8)).astype(np.float32)
    expected = np.concatenate([e.reshape(-1) for e in model.expected([rd.nchw_to_nhwc(image)])]).astype(np.float32)
    files = {"model": model.to_bytes(), "input": image.tobytes(), "expected": expected.tobytes()}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    result = subprocess.run([QEMU, "-L", str(SYSROOT), str(driver), str(double),
                             *(str(tmp_path / name) for name in files)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.endswith("OK\n"), result.stdout + result.stderr
    layout = dict(line.split() for line in result.stdout.splitlines()[:-1])
    assert {k: int(v) for k, v in layout.items()} == {
        "rknn_tensor_attr": LP64_SIZES["rknn_tensor_attr"], "rknn_tensor_attr.zp": 352,
        "rknn_tensor_attr.h_stride": 372, "rknn_tensor_mem": LP64_SIZES["rknn_tensor_mem"],
        "rknn_output": LP64_SIZES["rknn_output"], "rknn_context": 8}
