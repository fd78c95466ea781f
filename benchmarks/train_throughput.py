"""Training throughput of the default (kick) VAE on CPU: samples/s, epoch time, peak memory, per variant.

Each variant runs in its own subprocess (so its peak RSS is its own) on random [-1, 1] features of the kick spec's
shape (128 x 128; throughput does not depend on content), with the real training step (``trainer.fit.train_step``:
forward, loss, backward, clipping) plus ``optimizer.step``. The baseline is the plain eager fp32 loop at batch 64.

    .venv/bin/python benchmarks/train_throughput.py [--steps 12] [--corpus 2000] [--variants eager,channels_last]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "eager fp32, batch 64 (baseline)": dict(batch=64, channels_last=False, threads=0, compile=False),
    "channels-last, batch 64": dict(batch=64, channels_last=True, threads=0, compile=False),
    "eager, batch 128": dict(batch=128, channels_last=False, threads=0, compile=False),
    "eager, batch 32": dict(batch=32, channels_last=False, threads=0, compile=False),
    "eager, batch 64, 1 thread": dict(batch=64, channels_last=False, threads=1, compile=False),
    "torch.compile, batch 64": dict(batch=64, channels_last=False, threads=0, compile=True),
}


def measure(*, batch: int, channels_last: bool, threads: int, compile: bool, steps: int) -> dict:
    """Time ``steps`` training steps after 2 warm-up steps; returns samples/s and peak RSS (MiB)."""
    import torch

    from trainer.batches import Batch
    from trainer.fit import train_step
    from trainer.objective import ObjectiveConfig
    from trainer.vae import build_model, get_model_config

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(get_model_config("kick"))
    x = torch.rand(batch, *model.config.input_shape) * 2 - 1
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    objective = ObjectiveConfig()
    for i in range(2 + steps):
        if i == 2:
            start = time.perf_counter()
        train_step(net, optimizer, Batch(x, None, None), step=i, objective=objective, grad_clip=1.0)
        optimizer.step()
    seconds = time.perf_counter() - start
    return {"samples_per_s": steps * batch / seconds, "threads": torch.get_num_threads(),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant (default 12)")
    parser.add_argument("--corpus", type=int, default=2000, help="corpus size for the epoch time (default 2000)")
    parser.add_argument("--variants", default=None, help="comma-separated variant names (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(**json.loads(args.child), steps=args.steps)))
        return
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    root = Path(__file__).resolve().parents[1]
    results = {}
    for name in names:
        child = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--child",
                                json.dumps(VARIANTS[name])], cwd=root, capture_output=True, text=True,
                               env={"PYTHONPATH": str(root), **__import__("os").environ})
        if child.returncode:
            results[name] = {"error": child.stderr.strip().splitlines()[-1] if child.stderr else "failed"}
        else:
            results[name] = json.loads(child.stdout.strip().splitlines()[-1])
            results[name]["epoch_s"] = args.corpus / results[name]["samples_per_s"]
    base = next(iter(results.values())).get("samples_per_s")
    print(f"kick VAE (1x128x128, 16-32-64-128, latent 16), {args.steps} timed steps, epoch = {args.corpus} samples")
    print(f"{'variant':34} {'samples/s':>10} {'epoch s':>8} {'vs base':>8} {'peak RSS MiB':>13} threads")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:34} failed: {r['error']}")
            continue
        print(f"{name:34} {r['samples_per_s']:10.1f} {r['epoch_s']:8.1f} {r['samples_per_s'] / base:7.2f}x "
              f"{r['peak_rss_mib']:13.0f} {r['threads']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
