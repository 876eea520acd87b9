"""Choosing and loading the ARM NN bridge at run time (immich_ml/backends/armnn_library.py and the
loader in pyx/_armnn.pyx), against real ELF files: small shared objects compiled here with a chosen
soname stand in for other ARM NN releases, and Debian's libarmnn (when installed) for the real one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import immich_ml._core._armnn as loader
from immich_ml.backends import armnn_library
from immich_ml.config import Settings, load_settings

CORE_DIR = Path(loader.__file__ or "").parent
SHIPPED = armnn_library.bridges(CORE_DIR)
SYSTEM_LIBARMNN = next(
    (path for directory in armnn_library.SEARCH_DIRS for path in sorted(Path(directory).glob("libarmnn.so.22"))),
    None,
)
_CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(_CC is None, reason="no C compiler to build test shared objects")


def _shared_object(directory: Path, name: str, soname: str | None, needs: tuple[str, ...] = ()) -> Path:
    """Compile an empty shared object `name` with that soname, linked against `needs` in `directory`."""
    assert _CC is not None
    source = directory / "empty.c"
    source.write_text("int immich_test_symbol;\n")
    command = [_CC, "-shared", "-fPIC", "-o", str(directory / name), str(source), f"-L{directory}"]
    if soname:
        command.append(f"-Wl,-soname,{soname}")
    command += ["-Wl,--no-as-needed"] + [f"-l:{lib}" for lib in needs]
    subprocess.run(command, check=True, capture_output=True)
    return directory / name


# --- reading ELF files ---------------------------------------------------------------------------


@needs_cc
def test_read_dynamic_finds_soname_and_needed(tmp_path: Path) -> None:
    _shared_object(tmp_path, "libarmnn.so.33", "libarmnn.so.33")
    _shared_object(tmp_path, "libarmnnTfLiteParser.so.24", "libarmnnTfLiteParser.so.24")
    bridge = _shared_object(tmp_path, "_armnn_bridge_abi33.so", None, ("libarmnn.so.33", "libarmnnTfLiteParser.so.24"))
    info = armnn_library.read_dynamic(bridge)
    assert info.soname is None
    assert info.needed[:2] == ("libarmnn.so.33", "libarmnnTfLiteParser.so.24")
    assert armnn_library.read_dynamic(tmp_path / "libarmnn.so.33").soname == "libarmnn.so.33"


def test_read_dynamic_rejects_other_files(tmp_path: Path) -> None:
    text = tmp_path / "libarmnn.so.22"
    text.write_text("INPUT(-larmnn)\n")
    with pytest.raises(ValueError, match="not an ELF file"):
        armnn_library.read_dynamic(text)
    # A real shared object cut short: its section headers (at the end) are gone.
    truncated = tmp_path / "truncated.so"
    truncated.write_bytes(Path(loader.__file__ or "").read_bytes()[:4096])
    with pytest.raises(ValueError, match="malformed ELF file"):
        armnn_library.read_dynamic(truncated)


@pytest.mark.skipif(not SHIPPED, reason="no ARM NN bridge was built (no ARM NN headers at build time)")
def test_shipped_bridges_need_the_libarmnn_of_their_abi() -> None:
    for abi, bridge in SHIPPED.items():
        needed = armnn_library.read_dynamic(bridge).needed
        assert f"libarmnn.so.{abi}" in needed, needed
        # No RPATH/RUNPATH to the build machine: the board's library is searched or preloaded.
        assert b"RUNPATH" not in subprocess.run(["readelf", "-d", str(bridge)], capture_output=True).stdout


@pytest.mark.skipif(SYSTEM_LIBARMNN is None, reason="Debian's libarmnn22 is not installed")
def test_library_abi_of_debians_libarmnn() -> None:
    assert SYSTEM_LIBARMNN is not None
    assert armnn_library.library_abi(SYSTEM_LIBARMNN) == 22


# --- choosing a bridge ---------------------------------------------------------------------------


def test_probe_without_bridges_says_not_built(tmp_path: Path) -> None:
    # A wheel built where ARM NN's headers were missing: the loader module alone, no bridge file.
    code = (
        "import json, pathlib; from immich_ml.backends import armnn, armnn_library;"
        "armnn_library.bridges = lambda core_dir: {};"
        "from immich_ml.config import Settings;"
        "print(json.dumps(armnn.probe(Settings(device='armnn')).reason))"
    )
    result = _fresh(code)
    assert result.returncode == 0, result.stderr
    reason = json.loads(result.stdout.strip().splitlines()[-1])
    assert reason.startswith("this build of immich-ml has no ARM NN bridge") and "libarmnn-dev" in reason


def test_choose_unconfigured_tries_newest_abi_first(tmp_path: Path) -> None:
    shipped = {22: tmp_path / "_armnn_bridge_abi22.so", 33: tmp_path / "_armnn_bridge_abi33.so"}
    choice = armnn_library.choose("", shipped)
    assert isinstance(choice, list) and [c.abi for c in choice] == [33, 22]
    assert all(c.preload == () for c in choice)


@needs_cc
@pytest.mark.parametrize(
    ("soname", "expected"),
    [
        ("libarmnn.so.21", "too old: the bridge needs libarmnn.so.22 (ARM NN 20.08) or newer"),
        ("libarmnn.so.33", "has bridges for libarmnn.so.22 (ARM NN 20.08) only"),
        ("libsomething.so.1", "is not libarmnn"),
    ],
)
def test_choose_explains_a_library_it_cannot_use(tmp_path: Path, soname: str, expected: str) -> None:
    library = _shared_object(tmp_path, "libarmnn.so", soname)
    reason = armnn_library.choose(str(library), {22: tmp_path / "_armnn_bridge_abi22.so"})
    assert isinstance(reason, str) and expected in reason, reason


def test_choose_explains_a_missing_path(tmp_path: Path) -> None:
    shipped = {22: tmp_path / "_armnn_bridge_abi22.so"}
    assert "does not exist" in str(armnn_library.choose(str(tmp_path / "nope.so"), shipped))
    assert "no libarmnn.so.* in" in str(armnn_library.choose(str(tmp_path), shipped))


@needs_cc
def test_choose_configured_directory_preloads_the_bridges_siblings(tmp_path: Path) -> None:
    board = tmp_path / "board"
    board.mkdir()
    library = _shared_object(board, "libarmnn.so.22", "libarmnn.so.22")
    parser = _shared_object(board, "libarmnnTfLiteParser.so.22", "libarmnnTfLiteParser.so.22")
    bridge = _shared_object(board, "_armnn_bridge_abi22.so", None, ("libarmnn.so.22", "libarmnnTfLiteParser.so.22"))
    choice = armnn_library.choose(str(board), {22: bridge})
    assert isinstance(choice, armnn_library.Choice)
    assert choice.abi == 22 and choice.preload == (library, parser)


# --- the loader module -----------------------------------------------------------------------------


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a new interpreter: one bridge per process, so loader tests need a clean one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MACHINE_LEARNING_")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@needs_cc
def test_load_reports_the_dynamic_loaders_message(tmp_path: Path) -> None:
    _shared_object(tmp_path, "libarmnn.so.99", "libarmnn.so.99")
    bridge = _shared_object(tmp_path, "_armnn_bridge_abi99.so", None, ("libarmnn.so.99",))
    (tmp_path / "libarmnn.so.99").unlink()
    not_a_bridge = _shared_object(tmp_path, "libplain.so", "libplain.so")
    result = _fresh(
        "import immich_ml._core._armnn as m\n"
        f"for path in ({str(bridge)!r}, {str(not_a_bridge)!r}):\n"
        "    try:\n        m.load(path)\n    except OSError as exc:\n        print('OSError', exc)\n"
        "print('LOADED', m.loaded())\n"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "libarmnn.so.99: cannot open shared object file" in lines[0], lines
    assert "is not an ARM NN bridge" in lines[1], lines
    assert lines[2] == "LOADED None"


def test_calls_before_loading_raise() -> None:
    result = _fresh("import immich_ml._core._armnn as m; m.capabilities()")
    assert result.returncode != 0 and "RuntimeError: no ARM NN bridge is loaded" in result.stderr


def _probe_in_fresh_process(library: str) -> dict[str, object]:
    # One bridge per process: a fresh interpreter sees the configured library from the start.
    code = (
        "import json; from immich_ml.backends import armnn; from immich_ml.config import Settings;"
        "import immich_ml._core._armnn as m;"
        "a = armnn.probe(Settings(device='armnn', ann_library=%r));"
        "print(json.dumps({'available': a.available, 'reason': a.reason, 'loaded': m.loaded()}))" % library
    )
    result = _fresh(code)
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


@pytest.mark.skipif(SYSTEM_LIBARMNN is None or 22 not in SHIPPED, reason="needs Debian's libarmnn22 and its bridge")
def test_configured_library_is_preloaded_and_used() -> None:
    answer = _probe_in_fresh_process(str(SYSTEM_LIBARMNN))
    assert answer["available"] is True and "libarmnn 22.0.0" in str(answer["reason"]), answer
    loaded = answer["loaded"]
    assert isinstance(loaded, dict) and loaded["abi"] == 22
    assert str(SYSTEM_LIBARMNN) in loaded["preloaded"]


@needs_cc
@pytest.mark.skipif(not SHIPPED, reason="no ARM NN bridge was built")
def test_probe_names_an_unsupported_board_library(tmp_path: Path) -> None:
    library = _shared_object(tmp_path, "libarmnn.so.33", "libarmnn.so.33")
    answer = _probe_in_fresh_process(str(library))
    assert answer["available"] is False and answer["loaded"] is None
    assert "libarmnn.so.33" in str(answer["reason"]) and "bridges for" in str(answer["reason"]), answer


def test_settings_read_the_library_path() -> None:
    assert load_settings({}).ann_library == ""
    configured = load_settings({"MACHINE_LEARNING_ANN_LIBRARY": "/opt/armnn/libarmnn.so.33"})
    assert configured.ann_library == "/opt/armnn/libarmnn.so.33"
