"""The training data container: a corpus as plain arrays, and the train / validation split over it.

:class:`TrainingArrays` is what :func:`trainer.fit.fit` consumes, so tests and benchmarks feed synthetic arrays and
only the command edges run ingestion (:func:`training_arrays`, which imports the ingestion and torch-side modules
when called). Arrays in, arrays out: no torch at import, so the split can be reused by analysis code that never
trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runtime.errors import ConfigError
from runtime.schema import require
from trainer.descriptors import DESCRIPTORS


@dataclass(frozen=True)
class TrainingArrays:
    """What training needs from a corpus.

    Attributes
    ----------
    features : ndarray ``[N, C, M, T]`` float32 in [-1, 1]
    label_ids : ndarray ``[N]`` int64 or None (-1 = unlabelled)
    pitch : ndarray ``[N]`` int64 or None (-1 = unknown MIDI pitch)
    classes : tuple of str, the names of ``label_ids``
    descriptors : ndarray ``[N, len(DESCRIPTORS)]`` float64 or None
        Audio descriptors of each example (:func:`trainer.descriptors.describe_batch` of the prepared audio); needed
        by a model with ``controls``.
    """

    features: np.ndarray
    label_ids: np.ndarray | None = None
    pitch: np.ndarray | None = None
    classes: tuple[str, ...] = ()
    descriptors: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.features)
        require(self.features.ndim == 4, "features", f"must be [N, C, M, T], got shape {self.features.shape}")
        require(self.descriptors is None or np.shape(self.descriptors) == (n, len(DESCRIPTORS)), "descriptors",
                f"must be [{n}, {len(DESCRIPTORS)}] ({', '.join(DESCRIPTORS)}), got shape {np.shape(self.descriptors)}")
        for name in ("label_ids", "pitch"):
            value = getattr(self, name)
            if value is not None:
                require(len(value) == n, name, f"has {len(value)} entries for {n} examples")


def load_npz(path: str | Path) -> TrainingArrays:
    """Arrays saved with ``np.savez(path, features=..., [label_ids=..., pitch=..., classes=..., descriptors=...])``.

    Loaded without pickle (an ``.npz`` from elsewhere cannot run code); a file without ``features`` raises
    :class:`ConfigError` naming the path.
    """
    with np.load(path, allow_pickle=False) as data:
        if "features" not in data:
            raise ConfigError(str(path), "an .npz training set needs a 'features' array [N, C, M, T]")
        get = (lambda k: np.asarray(data[k], dtype=np.int64) if k in data else None)
        classes = tuple(str(c) for c in data["classes"]) if "classes" in data else ()
        descriptors = np.asarray(data["descriptors"], dtype=np.float64) if "descriptors" in data else None
        return TrainingArrays(np.asarray(data["features"], dtype=np.float32), get("label_ids"), get("pitch"),
                              classes, descriptors)


def split_indices(n: int, label_ids: np.ndarray | None, *, val_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train / validation positions, stratified by ``label_ids`` (-1 is its own stratum).

    Each stratum of size >= 2 gives ``round(val_fraction * size)`` (at least 1) examples to validation; the
    validation set is never empty and training keeps at least one example. The split depends only on ``seed``, so
    a resumed run and an analysis of the run see the same validation examples.
    """
    require(n >= 2, "data", f"need at least 2 examples to hold out a validation split, got {n}")
    rng = np.random.default_rng(seed)
    labels = np.full(n, -1) if label_ids is None else np.asarray(label_ids)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        k = 0 if len(members) < 2 else min(len(members) - 1, max(1, round(val_fraction * len(members))))
        val.extend(members[:k])
        train.extend(members[k:])
    if not val:
        val.append(train.pop())
    return np.sort(np.asarray(train)), np.sort(np.asarray(val))


def training_arrays(roots: Sequence[Path], *, run: Any, spec: Any, cache_dir: Path | None,
                    use_cache: bool = True) -> TrainingArrays:
    """The arrays ``trainer fit`` (and ``trainer sweep-latent``) train on: one ``.npz`` of features, or the data
    ``roots`` ingested with ``run``'s (a :class:`trainer.config.RunConfig`) preprocessing at ``spec``, with each
    sound's descriptors when the model is conditioned on them. Under torchrun, rank 0 ingests first (it fills the
    feature cache the other ranks then read)."""
    from trainer import distributed
    from trainer.data.audio import Preprocess
    from trainer.data.ingest import ingest

    roots = [Path(r) for r in roots]
    if len(roots) == 1 and roots[0].suffix == ".npz":
        return load_npz(roots[0])
    ctx = distributed.setup(run.train.device)
    if not ctx.is_main:
        distributed.barrier(ctx)
    corpus = ingest(roots, spec=spec, preprocess=Preprocess(loudness=run.data.loudness), layout=run.data.layout,
                    cache_dir=cache_dir, use_cache=use_cache, progress=ctx.is_main and run.train.progress)
    if ctx.is_main:
        distributed.barrier(ctx)
    descriptors = None
    if run.model.get("controls"):  # the decoder is conditioned on descriptors of the prepared audio
        from trainer.descriptors import describe_batch

        descriptors = describe_batch(corpus.audio, spec.sample_rate)
    labelled = bool(corpus.classes)
    return TrainingArrays(corpus.features, corpus.label_ids if labelled else None, corpus.pitch,
                          tuple(corpus.classes), descriptors)
