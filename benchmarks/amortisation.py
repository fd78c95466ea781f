"""How much of a model's round trip is its encoder? The amortisation gap on sounds it never saw.

    .venv/bin/python benchmarks/amortisation.py RUN DATA... [--steps 300] [--lr 0.03] [--cache DIR]

``trainer evaluate`` measures encode -> decode -> audio. Here each sound's code is then refined by gradient descent
on the frozen decoder (Adam on the element-wise MSE to the sound's own features, starting from the encoder mean),
and both codes' round trips are reported the way ``trainer evaluate`` reports them (log-mel dB over bands within
60 dB of each peak, median / mean), in the feature domain and through audio (mel inverse + 32 Griffin-Lim
iterations), beside the spec's own round trip. What refinement gains, the encoder loses (Cremer et al. 2018,
"Inference Suboptimality in Variational Autoencoders"); what is left over the spec's ceiling is the decoder's.
Figures and their history: ``benchmarks/README.md``, "The held-out round trip".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from trainer.analysis.evaluate import _features_of, log_spectral_distance
from trainer.analysis.run import decode, encode, load_corpus, load_run, to_audio


def refine(model, features: np.ndarray, start: np.ndarray, *, steps: int, lr: float) -> np.ndarray:
    """Codes ``[N, L]`` from ``start`` after ``steps`` Adam steps on the decoder's MSE to ``features``."""
    model.eval()
    target = torch.as_tensor(features, dtype=torch.float32)
    z = torch.nn.Parameter(torch.as_tensor(start, dtype=torch.float32).clone())
    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model.decode(z, None, None) - target) ** 2).mean()
        loss.backward()
        opt.step()
    return z.detach().double().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = load_run(args.run)
    corpus = load_corpus(run, args.data, cache_dir=args.cache)
    if run.model.config.n_classes or run.model.config.pitch_conditioning:
        raise SystemExit("amortisation.py: an unconditioned (or control-conditioned) model only")
    ref = corpus.features
    mu, _ = encode(run.model, ref)
    codes = {"encoder mean": mu, f"refined ({args.steps} steps)": refine(run.model, ref, mu, steps=args.steps,
                                                                         lr=args.lr)}
    print(f"{len(ref)} sounds | code | feature domain dB median / mean | through audio | mean |code|")
    for name, code in codes.items():
        feats = decode(run.model, code)
        spec_d = log_spectral_distance(ref, feats, run.spec)
        audio_d = log_spectral_distance(ref, _features_of(to_audio(feats, run.spec, n_iter=32), run.spec), run.spec)
        print(f"{name} | {np.median(spec_d):.2f} / {spec_d.mean():.2f} | {np.median(audio_d):.2f} / "
              f"{audio_d.mean():.2f} | {np.linalg.norm(code, axis=1).mean():.2f}")
    ceiling = log_spectral_distance(ref, _features_of(to_audio(ref, run.spec, n_iter=32), run.spec), run.spec)
    print(f"spec's own round trip | | {np.median(ceiling):.2f} / {ceiling.mean():.2f} |")


if __name__ == "__main__":
    main()
