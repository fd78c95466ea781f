"""Device selection, sharding, and a real 2-process torchrun (gloo on CPU) training run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from runtime.errors import ConfigError
from tests.test_fit import write_npz_run
from trainer.checkpoint import load_model
from trainer.distributed import DistContext, epoch_order, select_device, setup, shard

ROOT = Path(__file__).resolve().parents[1]


def test_device_selection() -> None:
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(ConfigError, match="train.device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            select_device("cuda")


def test_single_process_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = setup("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)


def test_epoch_order_shards_are_disjoint_cover_and_reshuffle() -> None:
    ranks = [DistContext(rank=r, world_size=2) for r in (0, 1)]
    shares = [epoch_order(10, ctx, seed=0, epoch=3) for ctx in ranks]
    assert len(shares[0]) == len(shares[1]) == 5 and sorted(shares[0] + shares[1]) == list(range(10))
    assert epoch_order(10, ranks[0], seed=0, epoch=3) == shares[0]
    assert epoch_order(10, ranks[0], seed=0, epoch=4) != shares[0]
    assert sorted(shard(torch.arange(7), ranks[0]).tolist() + shard(torch.arange(7), ranks[1]).tolist()) == list(
        range(7))


def test_torchrun_two_cpu_processes_write_a_valid_checkpoint(tmp_path: Path) -> None:
    data, config = write_npz_run(tmp_path, epochs=2, n=32, widths=(8, 16), latent=4, device="cpu", media_every=1,
                                 n_media=1, griffin_lim_iters=2)
    out = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "trainer", "fit",
                             str(data), "--config", str(config), "--out", str(out), "--no-progress"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    model, spec, ckpt = load_model(out / "last.pt")
    assert ckpt.epoch == 2 and spec.n_mels == 32
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["n_train"] + summary["n_val"] == 32
    per_rank = -(-summary["n_train"] // 2)  # DistributedSampler: each rank gets half the training split
    assert ckpt.step == 2 * -(-per_rank // 4)  # so an epoch is half as many steps of batch 4 as in one process
    with torch.no_grad():
        assert torch.isfinite(model.decode(torch.zeros(1, 4))).all()
