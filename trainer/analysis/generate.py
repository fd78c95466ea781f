"""``trainer generate``: listenable and viewable output of a run.

Writes under ``out``:

- ``reconstructions/NN_{original,recon}.wav`` and ``reconstructions.png`` (original | reconstruction | difference),
  from the posterior means of real sounds (needs data);
- ``samples/[CLASS_]NN.wav`` and ``samples.png``: draws from the prior (per class for a CVAE);
- ``interpolations/pair_P_SS.wav`` and ``interpolations.png``: straight lines between the latent means of pairs of
  real sounds (needs data); ``class_interpolations``: between the mean latents of two classes (a CVAE decodes the
  first half with the first class and the second half with the second);
- ``generate.json``: what was written and the reconstruction errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.analysis import plots
from trainer.analysis.run import Run, conditions, decode, encode, to_audio
from trainer.analysis.reports import write_json, write_wav
from trainer.data.ingest import Corpus


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "class"


def _write_set(folder: Path, features: np.ndarray, run: Run, names: list[str], *, n_iter: int) -> list[str]:
    audio = to_audio(features, run.spec, n_iter=n_iter)
    return [str(write_wav(folder / f"{name}.wav", a, run.spec.sample_rate)) for name, a in zip(names, audio)]


def reconstructions(run: Run, corpus: Corpus, picks: np.ndarray, *, out: Path, n_iter: int) -> dict[str, Any]:
    """Originals and reconstructions of ``picks`` as WAV + one grid PNG; returns the per-example MSE."""
    labels, pitch = conditions(run, corpus)
    x = corpus.features[picks]
    sub = (lambda v: None if v is None else v[picks])
    mu, _ = encode(run.model, x, labels=sub(labels), pitch=sub(pitch))
    recon = decode(run.model, mu, labels=sub(labels), pitch=sub(pitch))
    folder = out / "reconstructions"
    for i, k in enumerate(picks):
        write_wav(folder / f"{i:02d}_original.wav", corpus.audio[k], run.spec.sample_rate)
    _write_set(folder, recon, run, [f"{i:02d}_recon" for i in range(len(picks))], n_iter=n_iter)
    plots.spectrogram_grid(out / "reconstructions.png", [[a, b, a - b] for a, b in zip(x, recon)],
                           col_titles=["original", "reconstruction", "difference"], diff_last=True,
                           row_titles=[Path(corpus.paths[k]).stem[:18] for k in picks])
    mse = ((x - recon) ** 2).mean(axis=(1, 2, 3))
    return {"files": [corpus.paths[k] for k in picks], "mse": mse, "mse_mean": float(mse.mean())}


def prior_samples(run: Run, *, n: int, out: Path, n_iter: int, seed: int) -> dict[str, Any]:
    """``n`` prior draws (per class for a CVAE) as WAV + a grid PNG (one row per class)."""
    gen = torch.Generator().manual_seed(seed)
    groups = ({_safe(c): k for k, c in enumerate(run.classes)} if run.model.config.n_classes else {"": None})
    rows, written = [], {}
    for name, label in groups.items():
        feats = run.model.sample(n, label, generator=gen).numpy()
        prefix = f"{name}_" if name else ""
        written[name or "prior"] = _write_set(out / "samples", feats, run, [f"{prefix}{i:02d}" for i in range(n)],
                                              n_iter=n_iter)
        rows.append(list(feats))
    plots.spectrogram_grid(out / "samples.png", rows, row_titles=[g or "prior" for g in groups])
    return written


def _line(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, steps)[:, None]
    return (1.0 - t) * a[None, :] + t * b[None, :]


def interpolations(run: Run, corpus: Corpus, pairs: list[tuple[int, int]], *, steps: int, out: Path,
                   n_iter: int) -> list[dict[str, Any]]:
    """Decode straight latent lines between pairs of real sounds; a CVAE switches label at the midpoint."""
    labels, pitch = conditions(run, corpus)
    mu, _ = encode(run.model, corpus.features, labels=labels, pitch=pitch)
    rows, records = [], []
    for p, (i, j) in enumerate(pairs):
        half = (lambda v: None if v is None else np.where(np.arange(steps) < steps / 2, v[i], v[j]))
        feats = decode(run.model, _line(mu[i], mu[j], steps), labels=half(labels), pitch=half(pitch))
        _write_set(out / "interpolations", feats, run, [f"pair_{p}_{s:02d}" for s in range(steps)], n_iter=n_iter)
        rows.append(list(feats))
        records.append({"from": corpus.paths[i], "to": corpus.paths[j]})
    if rows:
        plots.spectrogram_grid(out / "interpolations.png", rows, row_titles=[f"pair {p}" for p in range(len(rows))])
    return records


def class_interpolations(run: Run, corpus: Corpus, *, steps: int, out: Path, n_iter: int) -> list[dict[str, Any]]:
    """Lines between the mean latents of consecutive classes of the corpus (nothing without two classes)."""
    if len(corpus.classes) < 2:
        return []
    labels, pitch = conditions(run, corpus)
    mu, _ = encode(run.model, corpus.features, labels=labels, pitch=pitch)
    ids = corpus.label_ids
    run_index = {name: i for i, name in enumerate(run.classes)}
    rows, records = [], []
    for a, b in zip(corpus.classes[:-1], corpus.classes[1:]):
        ca, cb = mu[ids == corpus.classes.index(a)].mean(axis=0), mu[ids == corpus.classes.index(b)].mean(axis=0)
        lab = None
        if labels is not None:
            lab = np.where(np.arange(steps) < steps / 2, run_index.get(a, -1), run_index.get(b, -1))
        feats = decode(run.model, _line(ca, cb, steps), labels=lab)
        _write_set(out / "class_interpolations", feats, run, [f"{_safe(a)}_to_{_safe(b)}_{s:02d}"
                                                              for s in range(steps)], n_iter=n_iter)
        rows.append(list(feats))
        records.append({"from": a, "to": b})
    plots.spectrogram_grid(out / "class_interpolations.png", rows,
                           row_titles=[f"{r['from']} -> {r['to']}" for r in records])
    return records


def generate(run: Run, corpus: Corpus | None, *, out: Path, n: int = 4, pairs: int = 2, steps: int = 7,
             n_iter: int = 32, seed: int = 0) -> dict[str, Any]:
    """``trainer generate``: everything in the module docstring; without ``corpus`` only prior samples."""
    report: dict[str, Any] = {"run": str(run.path), "samples": prior_samples(run, n=n, out=out, n_iter=n_iter,
                                                                             seed=seed)}
    if corpus is not None:
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(corpus), size=min(n, len(corpus)), replace=False)
        report["reconstructions"] = reconstructions(run, corpus, picks, out=out, n_iter=n_iter)
        chosen = [tuple(int(v) for v in rng.choice(len(corpus), size=2, replace=False)) for _ in range(pairs)]
        report["interpolations"] = interpolations(run, corpus, chosen, steps=steps, out=out, n_iter=n_iter)
        report["class_interpolations"] = class_interpolations(run, corpus, steps=steps, out=out, n_iter=n_iter)
    write_json(out / "generate.json", report)
    return report
