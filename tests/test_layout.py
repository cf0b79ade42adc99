"""The package's shape: every module imports on its own, there is no import circle, imports go
only downward through the layers the README's Layout section names, and no module grows past
the size limit.

The import graph is read from the source (``ast``), so a circle hidden behind a lazy import
inside a function counts too; each module is also imported in a fresh interpreter, which is
what catches a circle that only bites at import time.
"""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "pdlib"

# Layers, lowest first (README "Layout"): a module may import its own layer or lower ones.
LAYERS = [
    ["pdlib.theory", "pdlib.workload"],
    ["pdlib.policy", "pdlib.records", "pdlib.models", "pdlib.paths", "pdlib.hardware", "pdlib.metrics",
     "pdlib.verdicts"],
    ["pdlib.steploop", "pdlib.budget", "pdlib.data"],
    ["pdlib.sim", "pdlib.engines"],
    ["pdlib.params", "pdlib.experiments", "pdlib.memprof", "pdlib.serving"],
    ["pdlib.report"],
    ["pdlib.grid_pool", "pdlib.grid", "pdlib.grid_ray", "pdlib.cli", "pdlib.__main__"],
]
MAX_LINES = 400
# Modules over the limit, each with its reason (kept short on purpose; shrink, never grow).
OVERSIZE: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path) -> set[str]:
    """pdlib modules that ``name`` imports (module-level or inside functions)."""
    is_pkg = path.name == "__init__.py"
    pkg = name if is_pkg else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from pkg import sub`` imports the submodule, not just the package
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES]
            targets = subs if subs and len(subs) == len(node.names) else [mod, *subs]
        else:
            continue
        for t in targets:
            if t.startswith("pdlib"):
                r = _resolve(t)
                if r and r != name and r != "pdlib":
                    out.add(r)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if any(name == m or name.startswith(m + ".") for m in layer):
            return i
    return None


def _top(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_every_module_has_a_layer():
    missing = sorted(n for n in MODULES if n != "pdlib" and _layer(n) is None)
    assert not missing, f"modules not in any layer of LAYERS (add them to README's Layout too): {missing}"


def test_no_import_circles():
    # Tarjan's strongly connected components; a package importing its own submodules
    # (``__init__`` re-exports) is not a circle unless a submodule imports the package back.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10_000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
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
                sccs.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not sccs, f"import circles: {sccs}"


def test_imports_go_only_downward():
    bad = []
    for name, deps in GRAPH.items():
        li = _layer(name)
        for d in deps:
            ld = _layer(d)
            if li is not None and ld is not None and ld > li and _top(d) != _top(name):
                bad.append(f"{name} (layer {li}) imports {d} (layer {ld})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_theory_imports_nothing_else_of_pdlib():
    bad = {n: sorted(d for d in deps if not d.startswith("pdlib.theory"))
           for n, deps in GRAPH.items() if n.startswith("pdlib.theory")}
    assert not any(bad.values()), bad


def test_modules_stay_small():
    big = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    over = {n: k for n, k in big.items() if k > MAX_LINES and n not in OVERSIZE}
    assert not over, f"modules over {MAX_LINES} lines: {over}"


# Each pdlib module imported first in a fresh pdlib state (what catches a circle that only bites
# at import time): one interpreter pre-imports the heavy third-party packages, then forks a child
# per module, so each child starts with no pdlib module loaded. A missing optional extra is a
# skip with its reason; any other import error fails.
IMPORTABLE = sorted(n for n in MODULES if not n.endswith("__main__"))   # __main__ runs the CLI
_FORK_IMPORTS = r"""
import importlib, json, os, sys, traceback
for heavy in ("numpy", "pandas", "matplotlib.pyplot", "yaml", "torch", "transformers", "papermill", "vllm"):
    try:
        importlib.import_module(heavy)
    except Exception:
        pass
assert not [m for m in sys.modules if m == "pdlib" or m.startswith("pdlib.")]
out = {}
for name in json.loads(sys.argv[1]):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            importlib.import_module(name)
            msg = "ok"
        except ModuleNotFoundError as e:
            msg = ("skip: " if not (e.name or "").startswith("pdlib") else "error: ") + traceback.format_exc()
        except BaseException:
            msg = "error: " + traceback.format_exc()
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out[name] = f.read()
    os.waitpid(pid, 0)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def fresh_imports():
    import json
    r = subprocess.run([sys.executable, "-c", _FORK_IMPORTS, json.dumps(IMPORTABLE)], check=False, capture_output=True,
                       text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", IMPORTABLE)
def test_module_imports_alone(name, fresh_imports):
    msg = fresh_imports.get(name, "error: not reported")
    if msg.startswith("skip: "):
        pytest.skip(f"optional dependency missing: {msg.strip().splitlines()[-1]}")
    assert msg == "ok", f"import {name} failed:\n{msg[-3000:]}"


def test_import_every_module_in_one_process():
    for name in IMPORTABLE:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if (e.name or "").startswith("pdlib"):
                raise
