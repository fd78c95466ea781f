"""Latency of the exported phase pipeline (features -> audio) in onnxruntime on one thread, per K and spec.

    .venv/bin/python benchmarks/gl_onnx_latency.py [--spec kick kick-2048-htk] [--runs 100] [--kicks 64]

Prints Markdown tables:

1. one transform (128 frames, batch 1) written three ways: dense matmul with precomputed windowed bases, the ONNX
   ``DFT`` operator (opset 17), and the factorised two-stage form of ``export.graph.FactorizedSTFT`` per split;
2. the whole ``MagnitudeToAudio`` graph per K in {0, 2, 4, 8, 16, 32}: median / p95 of one kick render, model size,
   session load time, librosa's griffinlim at the same K on the same magnitude (same process, interleaved), and
   the quality of the graph's own output on real kicks (median SC / mel distance, see benchmarks/phase_init.py).

Every onnxruntime session: intra_op_num_threads=1, inter_op_num_threads=1, sequential execution. Timings are
medians of interleaved runs after warm-up; the machine may be shared, so compare within one run.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from export.graph import FactorizedSTFT, MagnitudeToAudio  # noqa: E402
from export.onnx_file import save_onnx  # noqa: E402
from trainer.phase import DEFAULT_INIT, make_init  # noqa: E402
from runtime.spec import SPECS, SpectrogramSpec  # noqa: E402
from trainer.spec import magnitude_scale, stft_bases  # noqa: E402

KS = (0, 2, 4, 8, 16, 32)


def session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def time_calls(fns: dict, runs: int, warmup: int = 5) -> dict[str, np.ndarray]:
    """Interleaved timing (ms) of several zero-argument callables, so load changes hit them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[k].append((time.perf_counter() - t) * 1e3)
    return {k: np.asarray(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------ transform graphs
class DenseForward(torch.nn.Module):
    def __init__(self, spec: SpectrogramSpec) -> None:
        super().__init__()
        self.register_buffer("bases", torch.tensor(stft_bases(spec).T / magnitude_scale(spec), dtype=torch.float32))

    def forward(self, frames):                      # [B, T, N] -> [B, T, 2F]
        return torch.matmul(frames, self.bases)


class DenseInverse(torch.nn.Module):
    def __init__(self, spec: SpectrogramSpec) -> None:
        super().__init__()
        self.register_buffer("bases", torch.tensor(np.linalg.pinv(stft_bases(spec).T), dtype=torch.float32))

    def forward(self, spectrum):                    # [B, T, 2F] -> [B, T, N]
        return torch.matmul(spectrum, self.bases)


class FactForward(torch.nn.Module):
    def __init__(self, spec, n1):
        super().__init__()
        self.st = FactorizedSTFT(spec, n1)

    def forward(self, frames):
        return self.st(frames)


class FactInverse(torch.nn.Module):
    def __init__(self, spec, n1):
        super().__init__()
        self.st = FactorizedSTFT(spec, n1)

    def forward(self, spectrum):
        return self.st.inverse(spectrum)


def dft_model(path: str, spec: SpectrogramSpec, inverse: bool) -> None:
    """ONNX DFT operator (opset 17) on [1, T, N, 1] real frames (one-sided), or its inverse on [1, T, N, 2]."""
    import onnx
    from onnx import TensorProto, helper

    n, t = spec.n_fft, spec.frames
    win = helper.make_tensor("win", TensorProto.FLOAT, [n, 1], np.asarray(np.hanning(n + 1)[:-1], np.float32))
    if not inverse:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, t, n, 1])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, t, n // 2 + 1, 2])
        nodes = [helper.make_node("Mul", ["x", "win"], ["xw"]),
                 helper.make_node("DFT", ["xw"], ["y"], axis=2, onesided=1)]
    else:   # full complex inverse (the DFT op has no one-sided inverse), then the real part, then the window
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, t, n, 2])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, t, n, 1])
        nodes = [helper.make_node("DFT", ["x"], ["z"], axis=2, inverse=1),
                 helper.make_node("Slice", ["z", "s0", "s1", "ax"], ["re"]),
                 helper.make_node("Mul", ["re", "win"], ["y"])]
        win2 = [helper.make_tensor("s0", TensorProto.INT64, [1], [0]),
                helper.make_tensor("s1", TensorProto.INT64, [1], [1]),
                helper.make_tensor("ax", TensorProto.INT64, [1], [3])]
    graph = helper.make_graph(nodes, "dft", [x], [y], [win] + (win2 if inverse else []))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, path)


def save_xy(module: torch.nn.Module, path: str, example: torch.Tensor) -> None:
    """One-input, one-output graph ``x -> y`` for the per-transform timings."""
    save_onnx(module, path, (example,), input_names=["x"], output_names=["y"])


def transform_table(specs: list[str], runs: int, tmp: str) -> str:
    lines = ["| one transform, 128 frames, batch 1 | spec | forward median (ms) | forward p95 | inverse median (ms) "
             "| inverse p95 | real MACs / frame (fwd) |", "|---|---|---|---|---|---|---|"]
    for name in specs:
        spec = SPECS[name]
        n, t = spec.n_fft, spec.frames
        rng = np.random.default_rng(0)
        cands = {}
        save_xy(DenseForward(spec), f"{tmp}/dense_f.onnx", torch.randn(1, t, n))
        save_xy(DenseInverse(spec), f"{tmp}/dense_i.onnx", torch.randn(1, t, 2 * spec.n_freq))
        cands["dense matmul"] = (f"{tmp}/dense_f.onnx", rng.standard_normal((1, t, n)),
                                 f"{tmp}/dense_i.onnx", rng.standard_normal((1, t, 2 * spec.n_freq)),
                                 n * 2 * spec.n_freq)
        dft_model(f"{tmp}/dft_f.onnx", spec, False)
        dft_model(f"{tmp}/dft_i.onnx", spec, True)
        cands["ONNX DFT op"] = (f"{tmp}/dft_f.onnx", rng.standard_normal((1, t, n, 1)),
                                f"{tmp}/dft_i.onnx", rng.standard_normal((1, t, n, 2)), float("nan"))
        for n1 in sorted({d for d in (8, 16, 32, 64, 128) if n % d == 0 and (n // d) % 2 == 0}):
            st = FactorizedSTFT(spec, n1)
            n2 = n // n1
            save_xy(FactForward(spec, n1), f"{tmp}/f_{n1}.onnx", torch.randn(1, n, t))
            save_xy(FactInverse(spec, n1), f"{tmp}/i_{n1}.onnx", torch.randn(1, st.k2, 2, n1, t))
            macs = n2 * (st.k2 * 2) * n1 + st.k2 * (2 * n1) ** 2
            cands[f"factorised {n1} x {n2}"] = (f"{tmp}/f_{n1}.onnx", rng.standard_normal((1, n, t)),
                                                f"{tmp}/i_{n1}.onnx", rng.standard_normal((1, st.k2, 2, n1, t)), macs)
        fns = {}
        for label, (fp, fx, ip, ix, _) in cands.items():
            fs, is_ = session(fp), session(ip)
            fx32, ix32 = fx.astype(np.float32), ix.astype(np.float32)
            fns[(label, "f")] = (lambda s=fs, x=fx32: s.run(None, {"x": x}))
            fns[(label, "i")] = (lambda s=is_, x=ix32: s.run(None, {"x": x}))
        res = time_calls(fns, runs)
        for label, c in cands.items():
            f, i = res[(label, "f")], res[(label, "i")]
            lines.append(f"| {label} | {name} | {np.median(f):.3f} | {np.percentile(f, 95):.3f} | {np.median(i):.3f} "
                         f"| {np.percentile(i, 95):.3f} | {c[4]:,.0f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ full graph
def graph_table(name: str, runs: int, n_kicks: int, tmp: str, inits: list[str]) -> str:
    import librosa

    from phase_init import Scorer, load_kicks

    spec = SPECS[name]
    audio, _ = load_kicks(spec, 2 * n_kicks)
    train, test = audio[0::2], audio[1::2]
    score = Scorer(spec, test)
    feats = score.features.numpy()                              # [B, 1, M, T]
    one = feats[:1]
    mag_unscaled = torch.nn.functional.pad(score.M[:1, 0] / magnitude_scale(spec), (0, 1)).numpy()[0]
    lines = [f"### {name} (n_fft {spec.n_fft}, {spec.n_mels} {spec.mel_scale} mels, {spec.frames} frames, "
             f"{spec.n_samples} samples = {spec.duration:.2f} s)", "",
             "| init | K | graph median (ms) | graph p95 | pre-optimised graph median | p95 | librosa median (ms) "
             "| librosa p95 | model MB | load ms (first / median of 5; pre-optimised median) | ORT vs torch max abs "
             "| SC dB | mel dB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for init_name in inits:
        init = make_init(init_name, spec, train)
        for k in KS:
            module = MagnitudeToAudio(spec, k, init_phase=init).eval()
            path = f"{tmp}/{name}_{init_name}_{k}.onnx"
            example = (torch.as_tensor(one),)
            save_onnx(module, path, example, input_names=["features"], output_names=["audio"])
            save_onnx(module, path + ".opt.onnx", example, input_names=["features"], output_names=["audio"],
                      optimize=True)
            loads, loads_opt = [], []
            for _ in range(6):
                t0 = time.perf_counter()
                sess = session(path)
                loads.append((time.perf_counter() - t0) * 1e3)
                t0 = time.perf_counter()
                sess_opt = session(path + ".opt.onnx")
                loads_opt.append((time.perf_counter() - t0) * 1e3)
            out = sess.run(None, {"features": feats})[0]        # the whole evaluation batch (dynamic batch)
            with torch.no_grad():
                ref = module(torch.as_tensor(feats)).numpy()
            err = float(np.abs(out - ref).max())
            sc, mel = score(out)

            def lib(k=k):
                return librosa.griffinlim(mag_unscaled, n_iter=k, hop_length=spec.hop_length, n_fft=spec.n_fft,
                                          win_length=spec.win_length, center=True, length=spec.n_samples,
                                          momentum=0.99, init="random", random_state=0)

            res = time_calls({"g": lambda s=sess: s.run(None, {"features": one}),
                              "o": lambda s=sess_opt: s.run(None, {"features": one}), "l": lib},
                             runs if k <= 16 else max(50, runs // 2))
            g, o, lb = res["g"], res["o"], res["l"]
            size = os.path.getsize(path) / 1e6
            lines.append(f"| {init_name} | {k} | {np.median(g):.2f} | {np.percentile(g, 95):.2f} | "
                         f"{np.median(o):.2f} | {np.percentile(o, 95):.2f} | "
                         f"{np.median(lb):.2f} | {np.percentile(lb, 95):.2f} | {size:.2f} | "
                         f"{loads[0]:.0f} / {np.median(loads[1:]):.0f}; {np.median(loads_opt[1:]):.0f} | "
                         f"{err:.1e} | {np.median(sc):.1f} | "
                         f"{np.median(mel):.2f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    lines.append("")
    lines.append(f"Quality on {len(test)} evaluation kicks, rendered by the ONNX graph itself in one batch.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", nargs="+", default=["kick", "kick-2048-htk"])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--kicks", type=int, default=64, help="evaluation kicks for the quality columns")
    ap.add_argument("--inits", nargs="+", default=[DEFAULT_INIT, "template"])
    ap.add_argument("--skip-transforms", action="store_true")
    args = ap.parse_args()
    import warnings

    import onnxruntime as ort

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, onnxruntime "
          f"{ort.__version__}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, load average "
          f"{os.getloadavg()[0]:.2f}\n")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_transforms:
            print(transform_table(args.spec, args.runs * 2, tmp), "\n", flush=True)
        for name in args.spec:
            print(graph_table(name, args.runs, args.kicks, tmp, args.inits), "\n", flush=True)
    print(f"Load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
