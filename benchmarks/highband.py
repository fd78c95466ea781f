"""The band above 11 kHz of the kick model (``trainer highband``, ``export/two_band.py``): held-out figures and cost.

    .venv/bin/python benchmarks/highband.py CKPT --data ROOT... [--kicks GROUP=GLOB ...] [--time FOLDER ...]

* Held-out feature MSE of the ``trainer highband`` checkpoint ``CKPT`` over its own held-out split (the
  checkpoint's ``val_indices`` into the ingest of ``--data``, which must be the roots and order it was trained on),
  split by root, beside the mean-spectrogram baseline (the training split's mean high band for every sound).
* For each ``--kicks NAME=GLOB`` group of real kicks: ``benchmarks/fullband.py``'s scores (full band, 20-250 Hz,
  above 11 kHz, bandwidth) of ``kick-22k``, ``two-band 22k+32 hK2`` (the true high band) and the same with the high
  band predicted by ``CKPT`` from the true low band, the graph's own synthesis (low band K = 6, high K = 2).
* ``--time FOLDER ...``: ms per render of each exported folder's ``decoder.onnx`` and ``decoder_preview.onnx`` and of
  ``CKPT``'s net alone, onnxruntime with one thread, batch 1, interleaved: wall median / p95 and the median CPU
  time of the calling thread (what a busy shared machine disturbs least).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fullband import RATE, _fmt, candidates, load_kicks, reconstruct, scores, time_sessions  # noqa: E402
from render_quality import bandwidth_khz  # noqa: E402
from trainer.highband import band_pairs, load_highband  # noqa: E402
from trainer.data.audio import Preprocess  # noqa: E402


def held_out(ckpt: Path, roots: list[Path]) -> None:
    """Print the held-out MSE per root and overall, beside the mean-spectrogram baseline."""
    net, data = load_highband(ckpt)
    low, high, corpus = band_pairs(roots, net.config, preprocess=Preprocess())
    val = np.asarray(data["metrics"]["val_indices"])
    mean = torch.from_numpy(np.delete(high, val, axis=0).mean(axis=0, keepdims=True))
    with torch.no_grad():
        pred = torch.cat([net(torch.from_numpy(low[i:i + 128])) for i in range(0, len(low), 128)])
    root_of = np.array([next(i for i, r in enumerate(roots) if Path(p).is_relative_to(r)) for p in corpus.paths])
    groups = {str(r): val[root_of[val] == i] for i, r in enumerate(roots)}
    print("| held-out split | sounds | MSE | mean-spectrogram baseline | ratio |\n|---|---|---|---|---|")
    for name, idx in {**groups, "all": val}.items():
        target = torch.from_numpy(high[idx])
        mse, base = float(((pred[idx] - target) ** 2).mean()), float(((mean - target) ** 2).mean())
        print(f"| {name} | {len(idx)} | {mse:.5f} | {base:.5f} | {mse / base:.3f} |")


def kick_scores(ckpt: Path, name: str, files: list[str]) -> None:
    """fullband's scores of one group of real kicks (``name``: the table's title), true and predicted high band."""
    table = candidates()
    base = table["two-band 22k+32 hK2"]
    cands = [table["kick-22k"], base, dataclasses.replace(base, name=f"{base.name}, predicted", highband=ckpt)]
    audio = load_kicks(files, {22050})
    band = np.array([bandwidth_khz(v.astype(np.float64), RATE) for v in audio[RATE]])
    print(f"\n{name}: {len(audio[RATE])} kicks\n\n| render | full dB | 20-250 Hz dB | >11 kHz dB (kicks) | "
          f"band kHz (>11 kHz) |\n|---|---|---|---|---|\n| real kicks | - | - | - | {np.median(band):.1f} "
          f"({int((band > 11).sum())}) |")
    for cand in cands:
        print(f"| {cand.name} | " + " | ".join(_fmt(scores(audio[RATE], reconstruct(cand, audio, "graph", 6))))
              + " |", flush=True)


def _feed(node, rng: np.random.Generator) -> np.ndarray:
    """One batch-1 value for a decoder input: a class index for ``label`` ([B] int64), else a normal row (knobs
    at half their range)."""
    if node.name == "label":
        return np.zeros(1, np.int64)
    return (rng.standard_normal((1, node.shape[1])) * (0.5 if node.name == "controls" else 1.0)).astype(np.float32)


def timing(ckpt: Path, folders: list[Path], runs: int) -> None:
    """ms per render of each folder's decoders and of the net alone (the module docstring)."""
    import onnxruntime as ort

    from export.onnx_file import save_onnx

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    rng, sessions, feeds = np.random.default_rng(0), {}, {}
    for folder in folders:
        for name in ("decoder.onnx", "decoder_preview.onnx"):
            key = f"{folder}/{name}"
            sessions[key] = ort.InferenceSession(key, options, providers=["CPUExecutionProvider"])
            feeds[key] = {i.name: _feed(i, rng) for i in sessions[key].get_inputs()}
    with tempfile.TemporaryDirectory() as tmp:
        save_onnx(load_highband(ckpt)[0], Path(tmp) / "net.onnx", (torch.zeros(1, 1, 128, 128),),
                  input_names=("low",), output_names=("high",), optimize=True)
        sessions["the high-band net alone"] = ort.InferenceSession(f"{tmp}/net.onnx", options,
                                                                   providers=["CPUExecutionProvider"])
    feeds["the high-band net alone"] = {"low": (2 * rng.random((1, 1, 128, 128)) - 1).astype(np.float32)}
    print(f"\n| graph ({runs} runs) | wall median | wall p95 | CPU median |\n|---|---|---|---|")
    for key, (wall, p95, cpu) in time_sessions(sessions, feeds, runs).items():
        print(f"| {key} | {wall:.2f} | {p95:.2f} | {cpu:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt", type=Path, help="a `trainer highband` checkpoint (RUN/highband.pt)")
    parser.add_argument("--data", type=Path, nargs="*", default=[], help="the roots it was trained on, in order")
    parser.add_argument("--kicks", nargs="*", default=[], metavar="NAME=GLOB[:N]",
                        help="groups of real kicks: the files GLOB matches, sorted, the first N if given")
    parser.add_argument("--exclude", type=Path, default=None,
                        help="also score each group without the files (followed links) in this folder: the kicks "
                             "the head was trained on")
    parser.add_argument("--time", type=Path, nargs="*", default=[], help="exported folders to time")
    parser.add_argument("--runs", type=int, default=60, help="timed renders per graph (default 60)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# load average {os.getloadavg()[0]:.2f} at start")
    if args.data:
        held_out(args.ckpt, args.data)
    seen = {os.path.realpath(p) for p in glob.glob(f"{args.exclude}/*")} if args.exclude else set()
    for group in args.kicks:
        name, pattern = group.split("=", 1)
        pattern, _, first = pattern.partition(":")
        files = sorted(glob.glob(pattern))[: int(first) if first else None]
        kick_scores(args.ckpt, name, files)
        unseen = [f for f in files if os.path.realpath(f) not in seen]
        if seen and len(unseen) < len(files):
            kick_scores(args.ckpt, f"{name}, less those in {args.exclude}", unseen)
    if args.time:
        timing(args.ckpt, args.time, args.runs)
    print(f"# load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
