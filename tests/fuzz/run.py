"""Run one fuzz target: ``python tests/fuzz/run.py [--site DIR] <target> [libFuzzer flags ...]``.

Targets are in :mod:`harnesses`. Seeds come from ``tests/fuzz/seeds/<target>/`` (written by
:mod:`seeds`), unless corpus folders are given among the flags.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def use_site(folder: str) -> None:
    """Import ``immich_ml`` from ``folder`` (the sanitizer build scripts/fuzz.sh --asan unpacks)
    instead of the editable install, whose import hook would otherwise win."""
    sys.meta_path[:] = [f for f in sys.meta_path if "ScikitBuild" not in type(f).__name__]
    sys.path.insert(0, folder)


def main(argv: list[str]) -> None:
    if len(argv) > 2 and argv[1] == "--site":
        use_site(argv[2])
        argv = [argv[0], *argv[3:]]
    from harnesses import TARGETS
    from seeds import write_seeds

    import immich_ml._core._align

    print(f"fuzz: compiled core from {immich_ml._core._align.__file__}", file=sys.stderr)
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} <{'|'.join(TARGETS)}> [libFuzzer flags]")
    name = argv[1]
    flags = argv[2:]
    if not any(not flag.startswith("-") for flag in flags):
        flags.append(str(write_seeds(name)))
    atheris.Setup([argv[0], *flags], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
