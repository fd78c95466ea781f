"""Refit an exported model's random-sound prior to real sounds, through the model's own encoder graph.

``python -m export prior MODEL DATA...``: every one-shot under the data roots is prepared as the runtime prepares
a user's sample (:func:`runtime.controls.read_sample`; a file training would skip, multi-hit or clipped, is
skipped here too), encoded by ``MODEL/encoder.onnx`` (with its class when the
model is class-conditioned and the file's folder names one), and the model's prior becomes the Gaussian of those
codes, plus one per class (:func:`trainer.analysis.realism.class_priors`). The metadata of every graph in the
folder is rewritten (atomically); the graphs themselves are not touched. Two uses: a model exported before
per-class priors existed gets them without its run, and a producer gets random sounds that lie where *their* folder
of kicks encodes. A file that cannot be read or prepared, or whose class the model lacks, is skipped with its
reason and counted.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from runtime.errors import ConfigError, KickspaceError
from runtime.files import atomic_path
from runtime.model import METADATA_KEY, ExportedModel, ModelMetadata
from runtime.prior import LatentPrior

GRAPHS = ("decoder.onnx", "decoder_preview.onnx", "encoder.onnx")
METHOD = ("ex-post density estimation through the exported encoder: a Gaussian fitted to the encoder means of "
          "real sounds, one per class where a class has two or more (Ghosh et al. 2020, section 4)")


def encode_roots(model: ExportedModel, roots: Sequence[Path]) -> tuple[np.ndarray, list[str], list[tuple[Path, str]]]:
    """Encoder means of every one-shot under ``roots``.

    Returns
    -------
    codes : np.ndarray [N, latent] float64
    classes : list of str
        Each code's class (its folder's name for a bank; "" when the model has no classes).
    skipped : list of (path, reason)
    """
    from runtime.controls import read_sample
    from trainer.data.audio import Preprocess, load_one_shot
    from trainer.data.layouts import scan_root

    labels = model.metadata.labels
    checks = Preprocess(**dataclasses.asdict(model.metadata.preparation))
    codes, classes, skipped = [], [], []
    for root in roots:
        _, items, _, refused = scan_root(Path(root), layout="bank" if labels else "auto")
        skipped += [(item.path, str(err)) for item, err in refused]
        for item in items:
            if labels and item.label not in labels:
                skipped.append((item.path, f"class {item.label!r} is not one of the model's ({', '.join(labels)})"))
                continue
            try:
                load_one_shot(item.path, spec=model.metadata.spec, preprocess=checks)  # skips what training skips
                mono = read_sample(item.path, model.metadata)
            except KickspaceError as err:
                skipped.append((item.path, str(err)))
                continue
            mu, _ = model.encode(mono[None], label=labels.index(item.label) if labels else None)
            codes.append(mu[0].astype(np.float64))
            classes.append(item.label if labels else "")
    return np.array(codes).reshape(len(codes), model.metadata.latent), classes, skipped


def fit_prior(codes: np.ndarray, classes: Sequence[str], labels: Sequence[str]) -> LatentPrior:
    """The pooled Gaussian of ``codes [N, L]`` and, for ``labels``, one per class with two or more codes."""
    from trainer.analysis.realism import GaussianPrior, class_priors

    if len(codes) < 2:
        raise KickspaceError(f"a prior needs at least 2 sounds to fit on, got {len(codes)}")
    pooled = GaussianPrior.of_codes(codes)
    per_class = class_priors(codes, np.array(classes), order=labels) if labels else ()

    def typed(g: GaussianPrior) -> LatentPrior:
        return LatentPrior(mean=tuple(g.mean.tolist()), cov=tuple(map(tuple, g.cov.tolist())), sounds=g.sounds)

    return dataclasses.replace(typed(pooled), method=METHOD,
                               classes=tuple((name, typed(g)) for name, g in per_class))


def write_prior(folder: Path, prior: LatentPrior) -> list[Path]:
    """Store ``prior`` in the metadata of every graph of ``folder`` (atomic per file); returns the files written."""
    import onnx

    written = []
    for name in GRAPHS:
        path = Path(folder) / name
        if not path.exists():
            continue
        graph = onnx.load(str(path))
        props = {p.key: p.value for p in graph.metadata_props}
        if METADATA_KEY not in props:
            raise ConfigError(f"{path}: metadata", "not a Kickspace model (no kickspace metadata)")
        meta = ModelMetadata.from_json(props[METADATA_KEY], source=str(path))
        props[METADATA_KEY] = dataclasses.replace(meta, prior=prior).to_json()
        del graph.metadata_props[:]
        onnx.helper.set_model_props(graph, props)
        with atomic_path(path) as tmp:
            onnx.save(graph, str(tmp))
        written.append(path)
    return written


def refit(folder: Path, roots: Sequence[Path]) -> tuple[LatentPrior, list[tuple[Path, str]]]:
    """``python -m export prior``: encode, fit, write. Returns the prior and the skipped files."""
    model = ExportedModel(folder)
    if not model.has_encoder:
        raise ConfigError(f"{folder}: encoder.onnx", "missing: the prior is fitted through the model's encoder")
    codes, classes, skipped = encode_roots(model, roots)
    prior = fit_prior(codes, classes, model.metadata.labels)
    write_prior(Path(folder), prior)
    return prior, skipped
