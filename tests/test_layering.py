"""Layering: the runtime is a leaf (importing it pulls in neither torch nor the trainer), and no package module
imports itself back through others (no import circles, not even through an import inside a function)."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import runtime

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "export", "runtime")


def test_runtime_never_imports_torch_or_trainer():
    modules = [f"runtime.{m.name}" for m in pkgutil.iter_modules(runtime.__path__) if m.name != "__main__"]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'trainer', 'export'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(modules) >= 3
    assert out.stdout.strip() == "", f"runtime imported: {out.stdout.strip()}"


def test_trainer_data_never_imports_the_runtime_engine():
    """Ingestion shares the one-shot preparation through runtime.dsp, not through the voice engine or the worker."""
    code = ("import sys\nimport trainer.data.audio, trainer.data.ingest\n"
            "print(','.join(sorted(m for m in sys.modules if m in ('runtime.engine', 'runtime.worker', "
            "'runtime.model', 'onnxruntime'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"trainer.data imported: {out.stdout.strip()}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, name: str, modules: set[str]) -> set[str]:
    """The package modules that ``path`` (module ``name``) imports anywhere in its body, functions included."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                anchor = package[: len(package) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import sub`` imports the submodule when there is one, else names of ``pkg`` itself
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}
    return {name: _imported_modules(path, name, set(files)) for name, path in files.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_find_cycle_names_the_circle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_circles_in_trainer_export_runtime():
    """A circle makes import order matter and hides a module that does two jobs; function-level imports count."""
    graph = _import_graph()
    assert {"trainer.fit", "trainer.config", "export.cli", "runtime.cli"} <= set(graph)
    assert "trainer.config" in graph["trainer.fit"]  # the scan sees real edges
    circles = []
    while (cycle := _find_cycle(graph)) is not None:  # name every circle, not only the first
        circles.append(" -> ".join(cycle))
        graph[cycle[0]].discard(cycle[1])
    assert not circles, "import circles: " + "; ".join(circles)


def test_config_and_data_never_import_the_training_loop():
    """The run config and the data container stand alone: trainer.config, trainer.data.arrays, trainer.observe and
    trainer.batches load without trainer.fit, and the data container without torch."""
    graph = _import_graph()
    assert "trainer.fit" not in graph["trainer.config"]
    code = ("import sys\nimport trainer.data.arrays\nprint('torch' in sys.modules)\n"
            "import trainer.config, trainer.observe, trainer.batches\nprint('trainer.fit' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"], out.stdout
