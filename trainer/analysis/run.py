"""A trained run and the services every analysis feeds it through: load, ingest, encode, decode, listen, describe.

A *run* is a folder written by ``trainer fit`` or a checkpoint file, resolved to one checkpoint by
:func:`trainer.checkpoint.resolve_checkpoint` (the same rule export uses). Data is ingested with the run's own
spectrogram spec and the preprocessing of its config, so the features match training. Every analysis job
(``latent``, ``cluster``, ``axes``, ``evaluate``, ``generate``, ``sweep``) imports these from here and none from
another job, so the jobs stay independent of each other.

Shapes: features ``[N, C, M, T]``; ``mu``, ``logvar``, ``z`` ``[N, L]``; audio ``[N, C, S]``; descriptors
``[N, len(DESCRIPTORS)]`` in :data:`trainer.descriptors.DESCRIPTORS` order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from runtime.errors import KickspaceError
from runtime.spec import SpectrogramSpec
from trainer.checkpoint import Checkpoint, load_model, resolve_checkpoint
from trainer.data.audio import Preprocess
from trainer.data.ingest import Corpus, ingest
from trainer.descriptors import describe_batch
from trainer.phase import PhaseGradient
from trainer.shaping import KNOBS, Shaping
from trainer.spec import MelInverse, griffin_lim
from trainer.vae import VAE


# ================================================================================================ runs and data
@dataclass(frozen=True)
class Run:
    """A trained model with everything needed to feed it: spec, class names, preprocessing."""

    model: VAE
    spec: SpectrogramSpec
    checkpoint: Checkpoint
    path: Path
    folder: Path

    @property
    def classes(self) -> list[str]:
        return list(self.checkpoint.classes)

    @property
    def preprocess(self) -> Preprocess:
        """The run's loudness setting (from its config) on default preprocessing."""
        return Preprocess.of_run(self.checkpoint.config)

    @property
    def layout(self) -> str:
        return str(self.checkpoint.config.get("data", {}).get("layout", "auto"))


def load_run(run: str | Path) -> Run:
    """Load a run folder's ``best.pt`` (else ``last.pt``), or a checkpoint file given directly, in eval mode on CPU.

    Raises
    ------
    KickspaceError
        When ``run`` holds no checkpoint (:func:`trainer.checkpoint.resolve_checkpoint`) or the file is not one.
    """
    path = resolve_checkpoint(run)
    model, spec, checkpoint = load_model(path)
    return Run(model=model, spec=spec, checkpoint=checkpoint, path=path, folder=path.parent)


def load_corpus(run: Run, roots: Sequence[Path], *, cache_dir: Path | None = None, use_cache: bool = True,
                progress: bool = False) -> Corpus:
    """Ingest ``roots`` with the run's spec and preprocessing; refuses an empty result."""
    corpus = ingest(list(roots), spec=run.spec, preprocess=run.preprocess, layout=run.layout, cache_dir=cache_dir,
                    use_cache=use_cache, progress=progress)
    if len(corpus) == 0:
        raise KickspaceError(f"no usable audio in {', '.join(map(str, roots))}")
    return corpus


def conditions(run: Run, corpus: Corpus) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Labels and pitches ``[N]`` to feed the model (None where it is not conditioned on them).

    Labels are mapped from the corpus' class names to the run's; classes the run never saw become -1 (unknown).
    """
    config = run.model.config
    labels = None
    if config.n_classes:
        index = {name: i for i, name in enumerate(run.classes)}
        labels = np.array([index.get(name, -1) if name is not None else -1 for name in corpus.labels], np.int64)
    pitch = corpus.pitch if config.pitch_conditioning else None
    return labels, pitch


# ================================================================================================ model I/O
def _pick(values: np.ndarray | None, sl: slice) -> torch.Tensor | None:
    return None if values is None else torch.as_tensor(np.asarray(values)[sl], dtype=torch.long)


@torch.no_grad()
def encode(model: VAE, features: np.ndarray, *, labels: np.ndarray | None = None, pitch: np.ndarray | None = None,
           batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Posterior ``mu``, ``logvar`` ``[N, L]`` float64 of features ``[N, C, M, T]``.

    ``L`` is the model's code size: for a control-conditioned model the last columns are its predicted controls
    (:meth:`trainer.vae.VAE.encode_code`), so what this returns is what :func:`decode` takes.
    """
    mus, logvars = [], []
    for start in range(0, len(features), batch_size):
        sl = slice(start, start + batch_size)
        mu, logvar = model.encode_code(torch.as_tensor(features[sl], dtype=torch.float32), _pick(labels, sl),
                                       _pick(pitch, sl))
        mus.append(mu.double().numpy())
        logvars.append(logvar.double().numpy())
    return np.concatenate(mus), np.concatenate(logvars)


@torch.no_grad()
def decode(model: VAE, z: np.ndarray, *, labels: np.ndarray | None = None, pitch: np.ndarray | None = None,
           batch_size: int = 64) -> np.ndarray:
    """Features ``[N, C, M, T]`` float32 decoded from latents ``z [N, L]``."""
    out = []
    for start in range(0, len(z), batch_size):
        sl = slice(start, start + batch_size)
        out.append(model.decode(torch.as_tensor(z[sl], dtype=torch.float32), _pick(labels, sl),
                                _pick(pitch, sl)).numpy())
    return np.concatenate(out) if out else np.zeros((0, *model.config.input_shape), np.float32)


@torch.no_grad()
def to_audio(features: np.ndarray, spec: SpectrogramSpec, *, n_iter: int = 32, batch_size: int = 32,
             controls: np.ndarray | None = None, init: str = "random") -> np.ndarray:
    """Waveforms ``[N, C, S]`` float32 from features ``[N, C, M, T]`` (mel inverse + fast Griffin-Lim).

    ``controls [N, len(trainer.shaping.KNOBS)]``: knob values that shape each magnitude
    (:meth:`trainer.shaping.Shaping.magnitude`) between the mel inverse and Griffin-Lim, as the exported decoder
    graph does; None (or all zeros) renders the decoder's features as they are. ``init``: Griffin-Lim's initial
    phase, ``"random"`` (seed 0) or ``"pghi"`` (:class:`trainer.phase.PhaseGradient` of each magnitude, what the
    exported decoder graph starts from, so ``n_iter`` 8 renders what the runtime plays).
    """
    if controls is not None:
        controls = np.asarray(controls, dtype=np.float32)
        if controls.shape != (len(features), len(KNOBS)):
            raise KickspaceError(f"controls: must be [{len(features)}, {len(KNOBS)}] (one row of "
                                 f"{', '.join(KNOBS)} per sound), got {list(controls.shape)}")
    inverse = MelInverse(spec).eval()
    shaping = None if controls is None else Shaping(spec).eval()
    phase = PhaseGradient(spec).eval() if init == "pghi" else None
    out = []
    for i in range(0, len(features), batch_size):
        x = torch.as_tensor(np.asarray(features[i:i + batch_size], dtype=np.float32))
        magnitude = inverse(x)
        if shaping is not None:
            magnitude = shaping.magnitude(x, magnitude, torch.as_tensor(controls[i:i + batch_size]))
        start = "random" if phase is None else phase(magnitude)[:, None]
        out.append(griffin_lim(magnitude, spec, n_iter=n_iter, init=start).numpy())
    return np.concatenate(out) if out else np.zeros((0, spec.channels, spec.n_samples), np.float32)


def describe_audio(audio: np.ndarray, spec: SpectrogramSpec) -> np.ndarray:
    """Descriptors ``[N, D]`` of waveforms ``[N, C, S]`` (channels averaged)."""
    return describe_batch(np.asarray(audio).mean(axis=1), spec.sample_rate)


def pairwise_distances(x: np.ndarray) -> np.ndarray:
    """Euclidean distances of all unordered pairs of rows of ``x [N, D]``, shape ``[N * (N - 1) / 2]``."""
    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    return np.sqrt(d2[np.triu_indices(len(x), k=1)])
