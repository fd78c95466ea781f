"""``trainer axes``: do the shaping knobs of :mod:`trainer.shaping` do what their names say, on this model's sounds?

The five knobs are defined gains on the decoded spectrum (:mod:`trainer.shaping`), not latent directions, so
nothing is derived here; what is checked is that each knob moves its own descriptor, by two implementations, from
every kind of sound the model plays, and what else it moves. Anchors (:func:`trainer.analysis.knobs.choose_anchors`):
the latent mean, ``n_real`` encoded corpus sounds, the pads export will make and ``n_random`` random latents. Each
anchor is decoded once; each knob is swept over ``n_values`` positions in [-1, 1] with the other four at 0, through
:func:`trainer.analysis.run.to_audio` with controls (mel inverse, shaping, Griffin-Lim: the exported graph's
order); every hit is read by :func:`trainer.analysis.knobs.default_implementations` and validated by
:func:`trainer.analysis.knobs.validate`. Effect sizes are in interquartile ranges of the corpus's real kicks
(its ``kick`` class where it has one, else every sound; the sounds as ingested, not the model's renders).

Writes ``knobs.json`` and ``knobs.md`` (``axes.json`` stays the latent axes' file, which export reads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from runtime.errors import KickspaceError
from trainer.analysis import knobs
from trainer.analysis.reference import Describer
from trainer.analysis.reports import write_json, write_text
from trainer.analysis.run import Run, conditions, decode, encode, to_audio
from trainer.data.ingest import Corpus
from trainer.shaping import KNOBS

#: Real kicks described for the effect sizes' IQR, at most (a random subset of a larger corpus).
SPREAD_KICKS = 256


def shaping_sweeps(run: Run, features: np.ndarray, *, values: np.ndarray, n_iter: int,
                   implementations: Mapping[str, Describer]) -> dict[str, np.ndarray]:
    """Descriptors of every anchor's decoded ``features [A, C, M, T]`` with each knob at each of ``values``.

    Returns ``{name: [len(KNOBS), A, len(values), D_name]}``: knob ``k`` at ``values[s]``, the others at 0.
    """
    n_anchors, n_values = len(features), len(values)
    repeated = np.repeat(features, n_values, axis=0)  # anchor-major: row a * S + s
    out: dict[str, list[np.ndarray]] = {name: [] for name in implementations}
    for k in range(len(KNOBS)):
        controls = np.zeros((n_anchors * n_values, len(KNOBS)), np.float32)
        controls[:, k] = np.tile(values, n_anchors)
        audio = to_audio(repeated, run.spec, n_iter=n_iter, controls=controls, init="pghi").mean(axis=1)
        for name, describe in implementations.items():
            out[name].append(describe(audio, run.spec.sample_rate).reshape(n_anchors, n_values, -1))
    return {name: np.stack(rows) for name, rows in out.items()}


def real_kicks(corpus: Corpus, *, limit: int = SPREAD_KICKS, seed: int = 0) -> np.ndarray:
    """Mono audio ``[R, S]`` of the corpus's real kicks: its ``kick`` class where labelled, else every sound.

    At most ``limit`` of them (a random subset): the IQR of a descriptor is stable long before a large corpus is
    exhausted, and the librosa implementation costs a few ms a sound.
    """
    picks = np.array([i for i, label in enumerate(corpus.labels) if label == "kick"], dtype=np.int64)
    if len(picks) == 0:
        picks = np.arange(len(corpus))
    if len(picks) > limit:
        picks = np.sort(np.random.default_rng(seed).choice(picks, size=limit, replace=False))
    return np.asarray(corpus.audio[picks], dtype=np.float32).mean(axis=1)


def check_knobs(run: Run, corpus: Corpus, *, out: Path, n_real: int = 4, n_values: int = 9, n_random: int = 6,
                seed: int = 0, n_iter: int = 32, implementations: Mapping[str, Describer] | None = None
                ) -> dict[str, Any]:
    """Sweep the shaping knobs from the model's sounds, validate them, write ``knobs.json`` and ``knobs.md``.

    Parameters
    ----------
    corpus : Corpus
        The run's training data (ingested through the run): encoded for the ``real`` anchors and the random
        latents' Gaussian, and described for the effect sizes.
    n_real, n_random : int
        Encoded sounds and random latents swept from, besides the latent mean and the pads.

    Returns
    -------
    dict
        The report written to ``knobs.json``: ``run``, ``knobs``, ``values``, ``examples`` and ``validation``
        (:func:`trainer.analysis.knobs.validate`, effect sizes included).
    """
    if len(corpus) < 2:
        raise KickspaceError(f"need at least 2 sounds to place sweep anchors, got {len(corpus)}")
    labels, pitch = conditions(run, corpus)
    if pitch is not None:
        raise KickspaceError("knob sweeps for pitch-conditioned models are not supported (the pitch is a condition)")
    config = run.model.config
    mu, _ = encode(run.model, corpus.features, labels=labels)
    pads = knobs.pad_anchors(run.folder, code_size=config.code_size, classes=run.classes if config.n_classes else ())
    starts = knobs.choose_anchors(mu, labels, n_real=n_real, pads=pads, n_random=n_random, seed=seed)
    implementations = dict(implementations or knobs.default_implementations())
    values = np.linspace(-1.0, 1.0, n_values)
    features = decode(run.model, starts.z, labels=starts.labels)
    swept = shaping_sweeps(run, features, values=values, n_iter=n_iter, implementations=implementations)
    kicks = real_kicks(corpus, seed=seed)
    real = {name: describe(kicks, run.spec.sample_rate) for name, describe in implementations.items()}
    report = {"run": str(run.path), "knobs": list(KNOBS), "values": values, "examples": int(len(corpus)),
              "gl_iters": int(n_iter),
              "validation": knobs.validate(values, swept, controls=KNOBS, kinds=starts.kinds, real=real)}
    write_json(out / "knobs.json", report)
    write_text(out / "knobs.md", knob_markdown(report))
    return report


def knob_markdown(report: dict[str, Any]) -> str:
    """``knobs.md``: what was swept and how, then :func:`trainer.analysis.knobs.markdown`."""
    return "\n\n".join([
        f"# Shaping knobs of {report['run']}",
        f"The knobs {', '.join(report['knobs'])} are the defined gains of trainer/shaping.py on the decoded "
        "spectrum (between the mel inverse and Griffin-Lim, as in the exported decoder graph). Each anchor is "
        f"decoded once; each knob is swept over {len(report['values'])} values in [-1, 1] with the others at 0 and "
        f"rendered as the exported decoder renders: Griffin-Lim from the pghi phase, {report['gl_iters']} "
        f"iterations. {report['examples']} corpus sounds encoded.",
        knobs.markdown(report["validation"])]) + "\n"


def summary(report: dict[str, Any]) -> list[str]:
    """One line per knob: by each implementation its median rho, sweeps at the target and own effect size."""
    validation = report["validation"]
    target = validation["target"]["rho"]
    lines = []
    for knob in report["knobs"]:
        parts = []
        for name, fig in validation["figures"].items():
            f = fig["knobs"].get(knob)
            if f is None:
                parts.append(f"{name} n/a")
                continue
            size = f"  size {f['size']:+.2f}" if f.get("size") is not None else ""
            parts.append(f"{name} rho {f['median']:+.2f} ({round(f['share'] * len(f['rho']))}/{len(f['rho'])} "
                         f">= {target}){size}")
        lines.append(f"{knob:<11} " + "   ".join(parts))
    lines.append("meets the target: " + ", ".join(
        f"{name} {'yes' if ok else 'no'} (worst cross-talk |rho| {validation['worst_cross_talk'][name]:.2f})"
        for name, ok in validation["meets_target"].items())
        + (f"; sizes in {validation['size_unit']}" if validation.get("size_unit") else ""))
    return lines
