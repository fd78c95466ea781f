"""The runtime is a leaf: importing any runtime module pulls in neither torch nor the trainer."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import runtime


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
