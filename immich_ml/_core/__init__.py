"""Compiled kernels (built from pyx/ + csrc/ by CMake). Import the submodules, e.g. ``_core._image``.

If importing a submodule fails with ``ModuleNotFoundError``, the package is being imported from a
source tree without a build: run ``pip install -e .`` (or ``scripts/setup.sh``) first.
"""
