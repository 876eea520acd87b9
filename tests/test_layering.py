"""The package's imports flow one way (ARCHITECTURE.md): server → workers → pipeline → models →
{ops, backends} → _core, with config/errors/schemas as leaves anyone may import.

This walks every module's ``import`` statements (including ones inside functions) with ``ast`` and
fails on an arrow that points up or sideways.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "immich_ml"
LEAVES = {"config", "errors", "schemas"}
# layer → the layers it may import (besides itself and the leaves)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": set(),
    "schemas": set(),
    "_core": set(),
    "ops": {"_core"},
    "backends": {"_core"},
    "models": {"ops", "backends", "_core"},
    "pipeline": {"models", "ops", "backends", "_core"},
    "workers": {"pipeline", "models", "ops", "backends", "_core"},
    "server": {"workers"},
    "bench": {"server", "workers", "pipeline", "models", "ops", "backends", "_core"},
    # Scale-out on Ray: builds the server's app over Ray handles, runs pipelines in replicas.
    "ray": {"server", "workers", "pipeline", "models", "ops", "backends", "_core"},
    "__main__": {"server", "workers"},
    "__init__": set(),
}
# Modules of a layer that must stay lighter than the layer allows.
RESTRICTED: dict[str, set[str]] = {
    # The pool runs in the parent process: no model or runtime code may load there.
    "workers.pool": {"pipeline", "models", "ops", "_core"},
    "workers.protocol": {"pipeline", "models", "ops", "_core", "backends"},
}
# Third-party modules a layer must never import.
FORBIDDEN_EXTERNAL: dict[str, set[str]] = {
    "server": {"numpy", "onnxruntime", "PIL", "cv2", "ray"},
    "workers": {"ray"},
    "pipeline": {"ray"},
    "models": {"ray"},
    "backends": {"ray"},
    # The request-splitting rules stay importable (and testable) without Ray.
    "ray.groups": {"ray", "numpy", "onnxruntime"},
    "workers.pool": {"onnxruntime", "PIL", "cv2"},
}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        found.append((".".join(rel.parts), path))
    return found


def _layer(module: str) -> str:
    return module.split(".")[0]


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names imported by ``path`` (relative imports resolved against ``module``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package_parts = ["immich_ml", *module.split(".")]
    if path.name != "__init__.py":
        package_parts = package_parts[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def _violations() -> list[str]:
    problems = []
    for module, path in _modules():
        layer = _layer(module)
        allowed = ALLOWED.get(layer)
        if allowed is None:
            problems.append(f"{module}: layer {layer!r} is not in ARCHITECTURE.md's order")
            continue
        restricted = next((v for k, v in RESTRICTED.items() if module == k), set())
        forbidden_ext = set().union(
            *(v for k, v in FORBIDDEN_EXTERNAL.items() if module == k or layer == k)
        )
        for name in _imports(path, module):
            top = name.split(".")[0]
            if top in forbidden_ext:
                problems.append(f"{module} imports {name} (forbidden in this layer)")
            if top != "immich_ml" or name == "immich_ml":
                continue
            parts = name.split(".")[1:]
            if not parts:
                continue
            target = parts[0]
            if target in LEAVES or target == layer or target == "__init__":
                continue
            if target not in allowed or target in restricted:
                problems.append(f"{module} imports {name}: {layer} may not depend on {target}")
    return problems


def test_no_upward_or_sideways_imports() -> None:
    problems = _violations()
    assert not problems, "layering violations:\n" + "\n".join(sorted(set(problems)))


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    """The walker resolves relative imports and sees imports inside functions."""
    fake = tmp_path / "mod.py"
    fake.write_text("def f():\n    from ..server import app\n    import numpy\n")
    assert "immich_ml.server" in _imports(fake, "ops.mod")
    assert "numpy" in _imports(fake, "ops.mod")


@pytest.mark.parametrize("module", ["config", "errors", "schemas"])
def test_leaves_import_only_leaves(module: str) -> None:
    names = _imports(PACKAGE / f"{module}.py", module)
    internal = {n.split(".")[1] for n in names if n.startswith("immich_ml.") and n.count(".") >= 1}
    assert internal <= LEAVES, f"{module} imports {internal - LEAVES}"
