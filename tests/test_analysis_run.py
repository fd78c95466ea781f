"""``trainer.analysis.run``: runs load by the checkpoint rule export uses, and the analysis modules form no circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from runtime.errors import KickspaceError
from runtime.spec import SpectrogramSpec
from trainer.analysis.run import load_run
from trainer.checkpoint import LAST, Checkpoint, save_checkpoint
from trainer.vae import ModelConfig, build_model

ANALYSIS = Path(__file__).resolve().parents[1] / "trainer" / "analysis"


def _imports(path: Path) -> set[str]:
    """Sibling modules of ``trainer.analysis`` that ``path`` imports, at module or function level."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "trainer.analysis":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trainer.analysis."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("trainer.analysis.")}
    return found


def test_analysis_modules_import_each_other_without_a_circle():
    graph = {path.stem: _imports(path) for path in ANALYSIS.glob("*.py")}
    assert not graph["run"], "the run services depend on no analysis job"

    def visit(module: str, path: tuple[str, ...]) -> None:
        for dep in graph.get(module, ()):
            assert dep not in path, f"import circle: {' -> '.join((*path, dep))}"
            visit(dep, (*path, dep))

    for module in graph:
        visit(module, (module,))


def test_load_run_reads_last_pt_when_best_pt_is_absent(tmp_path):
    spec = SpectrogramSpec(sample_rate=8000, n_fft=128, hop_length=32, win_length=128, n_mels=32, frames=32)
    config = ModelConfig(input_shape=spec.shape, widths=(8, 16), latent=4)
    torch.manual_seed(0)
    ckpt = Checkpoint(model_config=config, spec=spec, train_config={}, model_state=build_model(config).state_dict())
    save_checkpoint(tmp_path / "run" / LAST, ckpt)
    run = load_run(tmp_path / "run")
    assert run.path == tmp_path / "run" / LAST and run.folder == tmp_path / "run" and not run.model.training
    assert load_run(run.path).path == run.path  # the file given directly
    with pytest.raises(KickspaceError, match="no checkpoint: no best.pt or last.pt"):
        load_run(tmp_path)
