"""The package's layers: every module imports only from its own layer or the layers below,
and no import cycle closes (docs/architecture.md explains each layer).

The order is written once, here. A new package goes into this list where its imports put
it; an import that points up is a design error to fix by moving code down (or splitting a
module), never by hiding the import inside a function.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: bottom to top; a module may import from its own entry and the entries before it
LAYERS: list[tuple[str, ...]] = [
    ("trainlab.utils", "trainlab.registry", "trainlab._startup", "trainlab._version"),
    ("trainlab.store",),
    ("trainlab.data",),
    ("trainlab.nn",),
    ("trainlab.optim",),
    ("trainlab.probes",),
    ("trainlab.init",),
    ("trainlab.losses",),
    ("trainlab.models",),
    ("trainlab.report",),
    ("trainlab.engine",),
    ("trainlab.runs",),
    ("trainlab.doctor",),
    ("trainlab.studies",),
    ("trainlab.cli", "trainlab.__main__"),
]

#: the public façade and the old module paths (trainlab._compat): they re-export from every
#: layer and nothing inside the package may import them
FACADE = ("trainlab", "trainlab._compat", "trainlab.train")

#: trainlab modules a function may import lazily: the optional extras' glue, loaded only
#: when a user asks for Ray or TensorBoard
LAZY_OK = {"trainlab.runs.ray_executor", "trainlab.engine.tensorboard"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path):
    """``(target, lineno, in_function)`` for every ``trainlab`` import of the file."""
    mod = _module_name(path)
    is_pkg = path.name == "__init__.py"
    out = []

    def visit(node, in_fn):
        for ch in ast.iter_child_nodes(node):
            fn = in_fn or isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(ch, ast.Import):
                out.extend((a.name, ch.lineno, in_fn) for a in ch.names
                           if a.name.split(".")[0] == "trainlab")
            elif isinstance(ch, ast.ImportFrom):
                if ch.level:
                    base = mod.split(".")
                    base = base[:len(base) - ch.level + (1 if is_pkg else 0)]
                    target = ".".join(base + ([ch.module] if ch.module else []))
                else:
                    target = ch.module or ""
                if target.split(".")[0] == "trainlab":
                    out.append((target, ch.lineno, in_fn))
                    # `from trainlab.engine import distributed` imports a submodule
                    for a in ch.names:
                        sub = f"{target}.{a.name}"
                        if _exists(sub):
                            out.append((sub, ch.lineno, in_fn))
            visit(ch, fn)

    visit(ast.parse(path.read_text()), False)
    return out


def _exists(mod: str) -> bool:
    p = SRC / mod.replace(".", "/")
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _layer(mod: str) -> int | None:
    best, at = -1, None
    for i, names in enumerate(LAYERS):
        for n in names:
            if (mod == n or mod.startswith(n + ".")) and len(n) > best:
                best, at = len(n), i
    return at


def _is_facade(mod: str) -> bool:
    return mod in FACADE or mod.startswith("trainlab.train.")


def _graph():
    files = sorted((SRC / "trainlab").rglob("*.py"))
    return {_module_name(f): _imports(f) for f in files}


def test_every_module_has_a_layer():
    missing = [m for m in _graph() if not _is_facade(m) and _layer(m) is None]
    assert not missing, f"modules in no layer (add them to LAYERS): {missing}"


def test_no_import_points_up():
    bad = []
    for mod, imports in _graph().items():
        if _is_facade(mod):
            continue
        here = _layer(mod)
        for target, line, _ in imports:
            if _is_facade(target):
                bad.append(f"{mod}:{line} imports {target}, the façade (import the module "
                           "where the name lives)")
                continue
            there = _layer(target)
            if there is not None and there > here:
                bad.append(f"{mod}:{line} imports {target} ({LAYERS[there][0]} is above "
                           f"{LAYERS[here][0]})")
    assert not bad, "imports that point up:\n" + "\n".join(bad)


def test_no_import_cycle():
    graph = _graph()
    edges = defaultdict(set)
    for mod, imports in graph.items():
        for target, _, _ in imports:
            # an import of one's own parent package (``from trainlab.nn import functional``
            # in trainlab.nn.activations) is the package mechanism, not a dependency
            own_parent = mod.startswith(target + ".")
            if target in graph and target != mod and not own_parent and not _is_facade(mod):
                edges[mod].add(target)
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def strong(v):  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            strong(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_function_level_imports_only_for_optional_extras():
    bad = [f"{mod}:{line} imports {target} inside a function"
           for mod, imports in _graph().items() if not _is_facade(mod)
           for target, line, in_fn in imports
           if in_fn and target not in LAZY_OK]
    assert not bad, "\n".join(bad)


def test_old_paths_are_the_new_modules():
    import importlib

    from trainlab._compat import MOVED

    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    import trainlab.engine
    import trainlab.models
    from trainlab.nn import mlp
    from trainlab.train import PackTrainer, Trainer

    assert mlp is trainlab.models.mlp
    assert Trainer is trainlab.engine.Trainer and PackTrainer is trainlab.engine.PackTrainer


@pytest.mark.parametrize("layer", [n for names in LAYERS for n in names])
def test_layers_exist(layer):
    assert _exists(layer), f"{layer} is in LAYERS but not in src/"
