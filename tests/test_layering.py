"""The package's imports flow one way (ARCHITECTURE.md): server → workers → pipeline → models →
{ops, backends} → _core, with config/errors/schemas as leaves anyone may import.

This reads every module with ``ast`` and collects what it imports: ``import`` statements (including
ones inside functions) and string imports, ``importlib.import_module("…")`` / ``__import__("…")``
(an f-string counts as its constant prefix, e.g. ``f"immich_ml.backends.{kind}"`` imports from
``immich_ml.backends``). Two rules:
  * direct: no module imports a layer above or beside it;
  * transitive: the modules that must stay light (the pool runs in the service process) are judged
    by everything they load, following imports recursively within immich_ml — including the
    packages' ``__init__`` modules Python runs on the way.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
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
# Modules that must stay lighter than their layer allows, judged by everything they load
# (transitively): layers they must not reach, and third-party packages they must not load.
# A key is a module or a whole layer (then each of its modules is judged).
RESTRICTED: dict[str, set[str]] = {
    # The server and the pool run in the parent process: no model or runtime code may load there.
    "server": {"pipeline", "models", "ops", "backends", "_core"},
    "workers.pool": {"pipeline", "models", "ops", "backends", "_core"},
    "workers.protocol": {"pipeline", "models", "ops", "_core", "backends"},
}
FORBIDDEN_EXTERNAL: dict[str, set[str]] = {
    "server": {"numpy", "onnxruntime", "PIL", "cv2", "ray"},
    "workers": {"ray"},
    "pipeline": {"ray"},
    "models": {"ray"},
    "backends": {"ray"},
    # The request-splitting rules stay importable (and testable) without Ray.
    "ray.groups": {"ray", "numpy", "onnxruntime"},
    "workers.pool": {"numpy", "onnxruntime", "PIL", "cv2"},
}
# Import edges that are not followed: the function that holds the import only ever runs in a
# freshly spawned worker process (multiprocessing's target), never in the process importing it.
CHILD_PROCESS_ONLY = {("workers.entry", "workers.worker")}

Graph = Mapping[str, set[str]]  # module → absolute names it imports


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Module name relative to the package ("workers.pool"; a package's ``__init__`` is named
    after the package, "workers"; the top-level one "__init__") → file."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _layer(module: str) -> str:
    return module.split(".")[0]


def _string_import(node: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("…")``, ``import_module("…")`` or
    ``__import__("…")``; for an f-string, its constant prefix up to the last dot."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values:
        head = arg.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str) and "." in head.value:
            return head.value.rsplit(".", 1)[0]
    return None


def _imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute names imported by ``source``, the text of ``module`` (relative imports resolved
    against it)."""
    tree = ast.parse(source)
    package_parts = ["immich_ml", *module.split(".")] if module != "__init__" else ["immich_ml"]
    if not is_package and module != "__init__":
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
        elif isinstance(node, ast.Call):
            target = _string_import(node)
            if target:
                names.add(target)
    return names


def _graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = _modules(package)
    return {
        module: _imports(path.read_text(), module, is_package=path.name == "__init__.py")
        for module, path in modules.items()
    }


def _internal(name: str, known: Iterable[str]) -> list[str]:
    """The immich_ml modules Python runs to import ``name`` (an absolute dotted name, possibly
    ending in an attribute): the longest known module prefix and every package above it."""
    parts = name.split(".")
    if parts[0] != "immich_ml" or len(parts) < 2:
        return []
    known = set(known)
    loaded = []
    for end in range(2, len(parts) + 1):
        candidate = ".".join(parts[1:end])
        if candidate in known:
            loaded.append(candidate)
    return loaded


def _closure(start: str, graph: Graph) -> dict[str, list[str]]:
    """Every immich_ml module loaded by importing ``start`` → the import chain that loads it."""
    chains = {start: [start]}
    todo = [start]
    while todo:
        module = todo.pop()
        for name in sorted(graph.get(module, ())):
            for target in _internal(name, graph):
                if target in chains or (module, target) in CHILD_PROCESS_ONLY:
                    continue
                chains[target] = chains[module] + [target]
                todo.append(target)
    return chains


def _direct_violations(graph: Graph) -> list[str]:
    problems = []
    for module, names in graph.items():
        layer = _layer(module)
        allowed = ALLOWED.get(layer)
        if allowed is None:
            problems.append(f"{module}: layer {layer!r} is not in ARCHITECTURE.md's order")
            continue
        forbidden_ext = FORBIDDEN_EXTERNAL.get(layer, set())
        for name in names:
            top = name.split(".")[0]
            if top in forbidden_ext:
                problems.append(f"{module} imports {name} (forbidden in this layer)")
            parts = name.split(".")
            if top != "immich_ml" or len(parts) < 2:
                continue
            target = parts[1]
            if target in LEAVES or target == layer or target == "__init__":
                continue
            if target not in allowed:
                problems.append(f"{module} imports {name}: {layer} may not depend on {target}")
    return problems


def _transitive_violations(graph: Graph) -> list[str]:
    problems = []
    for start in sorted(graph):
        keys = {start, _layer(start)}
        layers = set().union(*(v for k, v in RESTRICTED.items() if k in keys))
        externals = set().union(*(v for k, v in FORBIDDEN_EXTERNAL.items() if k in keys))
        if not layers and not externals:
            continue
        chains = _closure(start, graph)
        for module, chain in sorted(chains.items()):
            via = " → ".join(chain)
            if _layer(module) in layers:
                problems.append(f"{start} loads {module} ({via}): {start} may not load {_layer(module)}")
            for name in sorted(graph[module]):
                if name.split(".")[0] in externals:
                    problems.append(f"{start} loads {name} ({via} imports it)")
    return problems


def test_no_upward_or_sideways_imports() -> None:
    problems = _direct_violations(_graph())
    assert not problems, "layering violations:\n" + "\n".join(sorted(set(problems)))


def test_light_modules_stay_light_transitively() -> None:
    problems = _transitive_violations(_graph())
    assert not problems, "layering violations:\n" + "\n".join(sorted(set(problems)))


def test_the_pool_closure_is_what_the_rule_judges() -> None:
    """The transitive rule really follows the pool's imports (not only its own file)."""
    chains = _closure("workers.pool", _graph())
    assert {"workers.slot", "workers.supervisor", "workers.entry", "workers"} <= set(chains)
    assert "workers.worker" not in chains  # only through the child-process entry point


def test_checker_sees_relative_and_function_level_imports() -> None:
    names = _imports("def f():\n    from ..server import app\n    import numpy\n", "ops.mod")
    assert "immich_ml.server" in names and "numpy" in names


def _fake_graph(**sources: str) -> dict[str, set[str]]:
    """An in-memory module graph from the real package's, with some modules' source replaced."""
    graph = _graph()
    for module, source in sources.items():
        module = module.replace("__", ".")
        graph[module] = _imports(source, module)
    return graph


def test_transitive_rule_catches_a_model_import_added_to_the_slot() -> None:
    """The issue's first example: ``workers/slot.py`` importing ``immich_ml.models.base`` passed
    the direct rule (workers may import models) while loading model code into the parent."""
    slot_source = (PACKAGE / "workers" / "slot.py").read_text()
    graph = _fake_graph(workers__slot=slot_source + "\nimport immich_ml.models.base\n")
    assert not _direct_violations(graph)
    problems = _transitive_violations(graph)
    assert any(p.startswith("workers.pool loads models.base (workers.pool →") for p in problems), problems
    assert any("loads numpy" in p for p in problems), problems


def test_transitive_rule_covers_the_server_layer() -> None:
    source = (PACKAGE / "workers" / "routing.py").read_text()
    graph = _fake_graph(workers__routing=source + "\nimport numpy\n")
    problems = _transitive_violations(graph)
    assert any(p.startswith("server.app loads numpy (server.app →") for p in problems), problems


def test_direct_rule_catches_a_string_import() -> None:
    """The issue's second example: an upward import written as a string inside ops/."""
    source = 'import importlib\n\ndef f():\n    return importlib.import_module("immich_ml.server.app")\n'
    graph = _fake_graph(ops__image=source)
    assert "ops.image imports immich_ml.server.app: ops may not depend on server" in _direct_violations(graph)
    for spelling in ('__import__("immich_ml.server.app")', 'import_module(f"immich_ml.server.{x}")'):
        assert "immich_ml.server" in " ".join(_imports(f"def f(x):\n    {spelling}\n", "ops.image"))


def test_transitive_rule_follows_string_imports_too() -> None:
    source = (PACKAGE / "workers" / "routing.py").read_text()
    graph = _fake_graph(workers__routing=source + '\nimport importlib\nimportlib.import_module("immich_ml.ops.image")\n')
    assert any(p.startswith("workers.pool loads ops.image") for p in _transitive_violations(graph))


@pytest.mark.parametrize("module", ["config", "errors", "schemas"])
def test_leaves_import_only_leaves(module: str) -> None:
    names = _imports((PACKAGE / f"{module}.py").read_text(), module)
    internal = {n.split(".")[1] for n in names if n.startswith("immich_ml.") and n.count(".") >= 1}
    assert internal <= LEAVES, f"{module} imports {internal - LEAVES}"
