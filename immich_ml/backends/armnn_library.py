"""Which ARM NN bridge to load, and with which of the board's libraries.

A wheel carries one bridge per ARM NN ABI it was built against (``_armnn_bridge_abi<N>.so`` next to
``immich_ml._core._armnn``); ARM NN's ABI is the major number of its soname, ``libarmnn.so.<N>``
(``ARMNN_MAJOR_VERSION``: 22 is ARM NN 20.08, Debian bookworm's and Ubuntu 22.04's; 33 is 23.08
to 24.05, the release Immich's image downloads). ARM NN's API is C++ and changes between majors, so a bridge only ever binds to
the ABI it was compiled for, and a mismatch is reported instead of loaded.

``MACHINE_LEARNING_ANN_LIBRARY`` names the board's ``libarmnn.so.<N>`` (or its directory): its ABI
is read from the ELF soname, and the libraries the bridge needs (parsers, serializer) are taken
from the same directory. Unset, the dynamic loader's search path decides (``LD_LIBRARY_PATH``,
``ldconfig``), as for any library.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

# The oldest ARM NN the bridge speaks: 20.08 (csrc/armnn relies on its API).
MIN_ABI = 22
_BRIDGE = re.compile(r"^_armnn_bridge_abi(\d+)\.so$")
_LIBARMNN = re.compile(r"^libarmnn\.so\.(\d+)")
_RELEASES = {22: "20.08", 23: "20.11", 24: "21.02", 25: "21.05", 26: "21.08", 27: "21.11",
             33: "23.08-24.05", 34: "24.11", 35: "25.02", 36: "25.11"}
# Where ARM NN usually lives when no path is configured, for the hint when nothing loads.
SEARCH_DIRS = ("/opt/armnn", "/usr/lib/aarch64-linux-gnu", "/usr/lib/arm-linux-gnueabihf",
               "/usr/lib/x86_64-linux-gnu", "/usr/local/lib", "/usr/lib")

_DT_NEEDED, _DT_SONAME, _SHT_DYNAMIC = 1, 14, 6


def release_name(abi: int) -> str:
    """ARM NN release for a soname major, for messages (e.g. 22 -> "ARM NN 20.08")."""
    return f"ARM NN {_RELEASES[abi]}" if abi in _RELEASES else f"ARM NN with libarmnn.so.{abi}"


@dataclass(frozen=True)
class DynamicInfo:
    soname: str | None
    needed: tuple[str, ...]


def read_dynamic(path: Path) -> DynamicInfo:
    """DT_SONAME and DT_NEEDED of an ELF shared object; ValueError when it is not one."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or len(data) < 64:
        raise ValueError(f"{path} is not an ELF file")
    wide = {1: False, 2: True}.get(data[4])
    order = {1: "<", 2: ">"}.get(data[5])
    if wide is None or order is None:
        raise ValueError(f"{path}: unknown ELF class or byte order")
    try:
        if wide:
            shoff, = struct.unpack_from(order + "Q", data, 0x28)
            shentsize, shnum = struct.unpack_from(order + "HH", data, 0x3A)
            section, entry = order + "IIQQQQIIQQ", order + "qQ"
        else:
            shoff, = struct.unpack_from(order + "I", data, 0x20)
            shentsize, shnum = struct.unpack_from(order + "HH", data, 0x2E)
            section, entry = order + "IIIIIIIIII", order + "iI"
        headers = [struct.unpack_from(section, data, shoff + i * shentsize) for i in range(shnum)]
        for header in headers:
            if header[1] != _SHT_DYNAMIC:
                continue
            offset, size, link = header[4], header[5], header[6]
            strtab_offset = headers[link][4]
            soname: str | None = None
            needed: list[str] = []
            step = struct.calcsize(entry)
            for at in range(offset, offset + size - step + 1, step):
                tag, value = struct.unpack_from(entry, data, at)
                if tag in (_DT_NEEDED, _DT_SONAME):
                    end = data.index(b"\0", strtab_offset + value)
                    name = data[strtab_offset + value : end].decode("utf-8", "replace")
                    if tag == _DT_SONAME:
                        soname = name
                    else:
                        needed.append(name)
            return DynamicInfo(soname, tuple(needed))
    except (struct.error, IndexError, ValueError) as exc:
        raise ValueError(f"{path}: malformed ELF file ({exc})") from exc
    return DynamicInfo(None, ())


def bridges(core_dir: Path) -> dict[int, Path]:
    """The bridges shipped next to the _armnn module, by ARM NN ABI."""
    found: dict[int, Path] = {}
    for path in core_dir.glob("_armnn_bridge_abi*.so"):
        if (match := _BRIDGE.match(path.name)) is not None:
            found[int(match.group(1))] = path
    return found


def library_abi(path: Path) -> int:
    """The ARM NN ABI of a libarmnn file: its soname's major (the file name when it has no soname)."""
    info = read_dynamic(path)
    for name in (info.soname, path.name, path.resolve().name):
        if name and (match := _LIBARMNN.match(name)) is not None:
            return int(match.group(1))
    raise ValueError(f"{path} is not libarmnn (soname {info.soname!r})")


@dataclass(frozen=True)
class Choice:
    """A bridge to load, with the libraries to open first (empty: the loader's search path)."""

    bridge: Path
    abi: int
    preload: tuple[Path, ...]


def _library_file(configured: Path) -> Path:
    if configured.is_dir():
        candidates = sorted(configured.glob("libarmnn.so.*")) or sorted(configured.glob("libarmnn.so"))
        if not candidates:
            raise LookupError(f"no libarmnn.so.* in {configured}")
        return candidates[0]
    if not configured.exists():
        raise LookupError(f"{configured} does not exist")
    return configured


def choose(configured: str, shipped: dict[int, Path]) -> Choice | list[Choice] | str:
    """The bridge for ``MACHINE_LEARNING_ANN_LIBRARY=configured`` (one Choice), the bridges to try in
    order when it is empty (a list, newest ABI first), or why none can be used (a message).
    ``shipped`` is not empty (see :func:`bridges`)."""
    have = ", ".join(f"libarmnn.so.{abi} ({release_name(abi)})" for abi in sorted(shipped))
    if not configured:
        return [Choice(shipped[abi], abi, ()) for abi in sorted(shipped, reverse=True)]
    try:
        library = _library_file(Path(configured))
        abi = library_abi(library)
    except (LookupError, OSError, ValueError) as exc:
        return f"MACHINE_LEARNING_ANN_LIBRARY={configured}: {exc}"
    if abi < MIN_ABI:
        return (f"{library} is {release_name(abi)}, too old: the bridge needs libarmnn.so.{MIN_ABI} "
                f"({release_name(MIN_ABI)}) or newer")
    if abi not in shipped:
        return (f"{library} is {release_name(abi)}, but this build of immich-ml has bridges for {have} only; "
                f"build immich-ml from source against that ARM NN (ARMNN_ROOT=<its tree>)")
    bridge = shipped[abi]
    # The bridge's other ARM NN libraries (parsers, serializer) from the same directory, when there.
    siblings = [library.parent / name for name in read_dynamic(bridge).needed if name.startswith("libarmnn")]
    preload = [library] + [path for path in siblings if path.exists() and path.name != library.name]
    return Choice(bridge, abi, tuple(preload))


def installed_hint() -> str:
    """The libarmnn files in the usual directories, for the message when no bridge loads."""
    found = sorted({str(path) for directory in SEARCH_DIRS for path in Path(directory).glob("libarmnn.so.*")})
    if not found:
        return "no libarmnn.so.* in " + ", ".join(SEARCH_DIRS)
    return "found " + ", ".join(found) + " (set MACHINE_LEARNING_ANN_LIBRARY to use one)"
