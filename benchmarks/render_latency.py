"""Latency of one kick render through onnxruntime (1 intra-op thread): the decoder alone, and the whole exported
decoder graph (decoder + mel inverse + K Griffin-Lim iterations + iSTFT) per K, for a trained run or, without one,
a randomly initialised model of the same architecture (the cost does not depend on the weights).

    .venv/bin/python benchmarks/render_latency.py [--run runs/kicks] [--spec kick] [--runs 60]

Prints a Markdown table: median and p95 ms per render (batch 1), model file size and session load time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.onnx_file import save_onnx  # noqa: E402
from trainer.phase import DEFAULT_INIT, DEFAULT_ITERATIONS, make_init  # noqa: E402
from export.preset_folder import DecoderGraph, GraphInputs  # noqa: E402
from runtime.spec import get_spec  # noqa: E402
from trainer.shaping import KNOBS  # noqa: E402
from trainer.checkpoint import load_model  # noqa: E402
from trainer.vae import build_model, get_model_config  # noqa: E402

KS = (0, 2, 4, 8, 16, 32)


class DecoderOnly(nn.Module):
    """``z`` -> normalised log-mel ``[B, M, T]``: the VAE decoder without any audio synthesis."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)[:, 0]


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    start = time.perf_counter()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, (time.perf_counter() - start) * 1e3


def _time(session, feed: dict, runs: int) -> np.ndarray:
    for _ in range(5):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return np.asarray(times)


def _model(run: Path | None, spec_name: str):
    if run is not None:
        model, spec, _ = load_model(run / "best.pt" if run.is_dir() else run)
        return model, spec, f"trained run {run}"
    spec = get_spec(spec_name)
    torch.manual_seed(0)
    config = get_model_config("kick")
    config = type(config)(**{**config.to_dict(), "input_shape": spec.shape})
    return build_model(config).eval(), spec, f"random-init kick VAE on spec {spec_name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None, help="run folder or checkpoint (default: random weights)")
    parser.add_argument("--spec", default="kick", help="spec name when no run is given (default kick)")
    parser.add_argument("--runs", type=int, default=60, help="timed renders per graph (default 60)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, spec, what = _model(args.run, args.spec)
    if model.config.n_classes:
        raise SystemExit("a class-conditioned run: time it with its label input (not supported by this script)")
    z = torch.randn(1, model.config.latent)
    feed = {"z": z.numpy()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        graphs = [("decoder alone (z -> log-mel)", DecoderOnly(model), ("logmel",))]
        init = make_init(DEFAULT_INIT, spec)
        graphs += [(f"decoder + Griffin-Lim, K={k}", DecoderGraph(model, spec, n_iter=k, init_phase=init),
                    ("audio", "logmel")) for k in KS]
        shaped_inputs = ("z", "controls")
        graphs += [(f"decoder + knobs + Griffin-Lim, K={k}",
                    GraphInputs(DecoderGraph(model, spec, n_iter=k, init_phase=init, shaping=True), shaped_inputs),
                    ("audio", "logmel")) for k in (2, DEFAULT_ITERATIONS)]
        controls = torch.rand(1, len(KNOBS)) * 2 - 1
        for name, module, outputs in graphs:
            path = Path(tmp) / "graph.onnx"
            shaped = isinstance(module, GraphInputs)
            examples, names = ((z, controls), ("z", "controls")) if shaped else ((z,), ("z",))
            save_onnx(module, path, examples, input_names=names, output_names=outputs, optimize=True)
            session, load_ms = _session(path)
            times = _time(session, {**feed, "controls": controls.numpy()} if shaped else feed, args.runs)
            rows.append((name, np.median(times), np.percentile(times, 95), path.stat().st_size / 1e6, load_ms))
    print(f"# one kick render, onnxruntime 1 thread, batch 1; {what}; spec n_fft {spec.n_fft}, {spec.n_bins} "
          f"{spec.mel_scale} bins x {spec.frames} frames; phase init {DEFAULT_INIT} (export default K = "
          f"{DEFAULT_ITERATIONS})")
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"python {platform.python_version()}, torch {torch.__version__}\n")
    print("| graph | median ms | p95 ms | file MB | session load ms |")
    print("|---|---|---|---|---|")
    for name, median, p95, size, load in rows:
        print(f"| {name} | {median:.2f} | {p95:.2f} | {size:.2f} | {load:.0f} |")


if __name__ == "__main__":
    main()
