"""``trainer cluster``: Gaussian mixtures on the latent means, a TensorBoard projector, centroids for pad anchors.

The GMM is fitted on z-scored posterior means (each dimension standardised over the data, so an unused dimension
with a tiny spread cannot dominate or vanish by scale); the number of components minimises the BIC unless one is
asked for (``components``: a preset that wants several pads on a corpus whose BIC prefers one blob). Centroids
are mapped back to the model's latent space and written to ``centroids.json`` so a preset can place pads on them,
each with a character name from its members' descriptors ("deep long", "punchy clicky") for the pad.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import KickspaceError
from trainer.analysis import plots
from trainer.analysis.run import Run, conditions, decode, describe_audio, encode, to_audio
from trainer.analysis.reports import table, write_json, write_text, write_wav
from trainer.data.ingest import Corpus
from trainer.descriptors import DESCRIPTORS, control_units

PROJECTOR_COLUMNS = ("cluster", "class", "sub", "punch", "click", "brightness", "decay")
#: Words for a cluster whose members sit high (first) or low (second) on a descriptor, relative to the whole corpus.
CHARACTER = {"sub": ("deep", "thin"), "punch": ("punchy", "soft"), "click": ("clicky", "round"),
             "brightness": ("bright", "dark"), "decay": ("long", "short")}


@dataclass(frozen=True)
class GmmFit:
    """A BIC-selected GMM on z-scored latent means.

    Attributes
    ----------
    components : int
        The number of components used.
    bic_components : int
        The number the BIC prefers (equal to ``components`` unless a count was asked for).
    counts, bic : lists
        Every tried component count and its BIC (lower is better).
    labels : ndarray ``[N]`` int
        Component of each example.
    centroids : ndarray ``[K, L]``
        Component means in the model's latent space (un-z-scored).
    weights : ndarray ``[K]``
    mean, std : ndarray ``[L]``
        The z-scoring applied before fitting.
    """

    components: int
    bic_components: int
    counts: list[int]
    bic: list[float]
    labels: np.ndarray
    centroids: np.ndarray
    weights: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def select_gmm(mu: np.ndarray, *, max_components: int = 10, components: int | None = None,
               seed: int = 0) -> GmmFit:
    """Fit GMMs with 1..``max_components`` full-covariance components on z-scored ``mu [N, L]``; keep the BIC minimum,
    or the fit with ``components`` components when given (the BIC curve is still computed and reported).

    At most ``N // 5`` components are tried (each needs a handful of members); covariances are regularised
    (``reg_covar=1e-3``) since latent means can be nearly degenerate.
    """
    from sklearn.mixture import GaussianMixture

    top = max(1, min(max_components, len(mu) // 5))
    if components is not None and not 1 <= components <= top:
        raise KickspaceError(f"components: {components} clusters need 1 to {top} (at most 1 per 5 sounds and "
                             f"--max-components); this corpus has {len(mu)} sounds")
    mean, std = mu.mean(axis=0), mu.std(axis=0) + 1e-8
    x = (mu - mean) / std
    counts = list(range(1, top + 1))
    fits = [GaussianMixture(k, covariance_type="full", reg_covar=1e-3, n_init=2, random_state=seed).fit(x)
            for k in counts]
    bic = [float(f.bic(x)) for f in fits]
    preferred = int(counts[int(np.argmin(bic))])
    used = fits[(components or preferred) - 1]
    return GmmFit(components=used.n_components, bic_components=preferred, counts=counts, bic=bic,
                  labels=used.predict(x), centroids=used.means_ * std + mean, weights=used.weights_, mean=mean,
                  std=std)


def _majority(values: list) -> Any:
    return Counter(values).most_common(1)[0][0] if values else None


def character(members: np.ndarray, descriptors: np.ndarray, *, words: int = 2) -> str:
    """Name a group of sounds by the descriptors on which its members stand out from all sounds.

    Parameters
    ----------
    members : np.ndarray [M] int
        Rows of ``descriptors`` in the group.
    descriptors : np.ndarray [N, D]
        Raw descriptors of every sound (:data:`trainer.descriptors.DESCRIPTORS` order).

    Returns
    -------
    str
        Up to ``words`` words of :data:`CHARACTER` for the descriptors whose group median is furthest from the
        corpus median (in interquartile ranges, in control units), most distinctive first; "typical" when no
        descriptor is a quarter of an interquartile range away.
    """
    if len(members) == 0:
        return "typical"
    y = control_units(descriptors)
    cols = [DESCRIPTORS.index(name) for name in CHARACTER]
    q1, med, q3 = np.percentile(y[:, cols], [25, 50, 75], axis=0)
    z = (np.median(y[members][:, cols], axis=0) - med) / np.maximum(q3 - q1, 1e-9)
    order = [j for j in np.argsort(-np.abs(z)) if abs(z[j]) >= 0.25][:words]
    return " ".join(CHARACTER[list(CHARACTER)[j]][0 if z[j] > 0 else 1] for j in order) or "typical"


def centroid_table(fit: GmmFit, corpus: Corpus, descriptors: np.ndarray) -> list[dict[str, Any]]:
    """One record per component: id, character name, latent centroid, weight, size, class counts, median
    descriptors of members. Names are made unique by the component id where two coincide."""
    records = []
    for k in range(fit.components):
        members = np.flatnonzero(fit.labels == k)
        labels = [corpus.labels[i] or "(unlabelled)" for i in members]
        records.append({
            "id": k, "name": character(members, descriptors), "z": fit.centroids[k], "weight": float(fit.weights[k]),
            "size": int(len(members)),
            "classes": dict(Counter(labels)), "majority_class": _majority(labels),
            "descriptors": {name: float(np.median(descriptors[members, j])) if len(members) else None
                            for j, name in enumerate(DESCRIPTORS)},
            "examples": [Path(corpus.paths[i]).name for i in members[:5]],
        })
    names = Counter(r["name"] for r in records)
    for r in records:
        if names[r["name"]] > 1:
            r["name"] = f"{r['name']} {r['id']}"
    return records


def _thumbnails(features: np.ndarray, size: int = 32) -> np.ndarray:
    """Spectrogram sprites ``[N, 3, size, size]`` in [0, 1], low bins at the bottom."""
    import torch

    x = torch.as_tensor(features, dtype=torch.float32).mean(dim=1, keepdim=True).flip(2)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    return ((x + 1) / 2).clamp(0, 1).repeat(1, 3, 1, 1).numpy()


def write_projector(out: Path, mu: np.ndarray, corpus: Corpus, descriptors: np.ndarray, labels: np.ndarray, *,
                    audio: bool = True) -> Path:
    """TensorBoard projector of ``mu`` with metadata columns, spectrogram sprites and (optionally) a WAV per sample.

    Open with ``tensorboard --logdir OUT/projector``; the ``audio`` column names each sample's WAV (relative path).
    """
    import torch
    from torch.utils.tensorboard import SummaryWriter

    folder = out / "projector"
    index = {name: j for j, name in enumerate(DESCRIPTORS)}
    rows = []
    for i in range(len(mu)):
        name = Path(corpus.paths[i]).stem
        wav = f"audio/{i:05d}_{name}.wav"
        if audio:
            write_wav(folder / wav, corpus.audio[i], corpus.spec.sample_rate)
        row = [f"c{labels[i]}", corpus.labels[i] or "(unlabelled)"]
        row += [f"{descriptors[i, index[c]]:.4g}" for c in PROJECTOR_COLUMNS[2:]]
        rows.append(row + [wav if audio else "", name])
    writer = SummaryWriter(log_dir=str(folder))
    try:
        writer.add_embedding(torch.as_tensor(mu, dtype=torch.float32), metadata=rows,
                             metadata_header=[*PROJECTOR_COLUMNS, "audio", "name"],
                             label_img=torch.as_tensor(_thumbnails(corpus.features)), tag="latent_means")
    finally:
        writer.close()
    return folder


def write_cluster_sounds(out: Path, run: Run, fit: GmmFit, records: list[dict[str, Any]], *,
                         n_iter: int = 32) -> list[Path]:
    """Decode each centroid (with its majority class for a CVAE) to ``cluster_sounds/cluster_KK.wav``."""
    labels = None
    if run.model.config.n_classes:
        index = {name: i for i, name in enumerate(run.classes)}
        labels = np.array([index.get(r["majority_class"], -1) for r in records], np.int64)
    feats = decode(run.model, fit.centroids, labels=labels)
    audio = to_audio(feats, run.spec, n_iter=n_iter)
    plots.spectrogram_grid(out / "cluster_sounds.png", [list(feats)],
                           col_titles=[f"cluster {k} (n={r['size']})" for k, r in enumerate(records)])
    return [write_wav(out / "cluster_sounds" / f"cluster_{k:02d}.wav", a, run.spec.sample_rate)
            for k, a in enumerate(audio)]


def cluster(run: Run, corpus: Corpus, *, out: Path, max_components: int = 10, components: int | None = None,
            seed: int = 0, projector_audio: bool = True) -> dict[str, Any]:
    """``trainer cluster``: BIC-chosen GMM (``bic.png``), projector, per-cluster sounds, ``centroids.json``, ``clusters.md``.

    ``centroids.json`` holds each component's latent centroid ``z [L]`` (pad anchors), weight, size, classes and
    median descriptors of its members.
    """
    labels, pitch = conditions(run, corpus)
    mu, _ = encode(run.model, corpus.features, labels=labels, pitch=pitch)
    descriptors = describe_audio(corpus.audio, run.spec)
    fit = select_gmm(mu, max_components=max_components, components=components, seed=seed)
    records = centroid_table(fit, corpus, descriptors)
    plots.curve_png(out / "bic.png", fit.counts, {"BIC": fit.bic}, title="GMM on z-scored latent means",
                    xlabel="components", ylabel="BIC (lower is better)", mark_x=fit.components)
    write_projector(out, mu, corpus, descriptors, fit.labels, audio=projector_audio)
    write_cluster_sounds(out, run, fit, records)
    report = {"run": str(run.path), "latent": int(mu.shape[1]), "components": fit.components,
              "bic_components": fit.bic_components, "bic": dict(zip(map(str, fit.counts), fit.bic)), "zscore": {"mean": fit.mean, "std": fit.std},
              "centroids": records}
    write_json(out / "centroids.json", report)
    write_text(out / "clusters.md", _markdown(report, run))
    return report


def _markdown(report: dict[str, Any], run: Run) -> str:
    rows = [[r["id"], r["name"], r["size"], r["weight"], r["majority_class"],
             *(r["descriptors"][d] for d in ("sub", "punch", "click", "brightness", "decay", "pitch")),
             ", ".join(r["examples"][:3])] for r in report["centroids"]]
    bic = table(["components", "BIC"], [[k, v] for k, v in report["bic"].items()])
    chosen = (f"**{report['components']} components** minimise the BIC" if report["components"] ==
              report["bic_components"] else f"**{report['components']} components** as asked (the BIC prefers "
              f"{report['bic_components']})")
    return "\n\n".join([
        f"# Clusters of {run.path}",
        f"GMM (full covariance) on z-scored latent means; {chosen} "
        "(`bic.png`). Centroids (latent space, for pad anchors) are in `centroids.json`; each decoded centroid is "
        "`cluster_sounds/cluster_KK.wav` (`cluster_sounds.png`). TensorBoard projector: "
        "`tensorboard --logdir projector` (metadata: cluster, class, sub, punch, click, brightness, decay, audio).",
        "## Components (median descriptors of members)",
        table(["id", "name", "size", "weight", "class", "sub dB", "punch", "click dB", "bright Hz", "decay s", "pitch Hz",
               "examples"], rows),
        "## BIC", bic]) + "\n"
