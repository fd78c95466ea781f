"""``trainer analyze``: posterior statistics, latent diagnostics and 2D maps of a corpus encoded by a trained run.

The run and the corpus come from :mod:`trainer.analysis.run` (the run's own spec and preprocessing, so the features
match training). Diagnostics are of the latent proper (the first ``model.config.latent`` columns of the code), not
of a control-conditioned model's predicted controls; maps are of the whole code, coloured by class, pitch, GMM
cluster (:func:`trainer.analysis.cluster.select_gmm`) and each descriptor.

Shapes: ``mu``, ``logvar`` ``[N, L]``; descriptors ``[N, len(DESCRIPTORS)]`` in
:data:`trainer.descriptors.DESCRIPTORS` order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from trainer.analysis import plots
from trainer.analysis.cluster import select_gmm
from trainer.analysis.reports import fmt, table, write_json, write_text
from trainer.analysis.run import Run, conditions, describe_audio, encode, pairwise_distances
from trainer.data.ingest import Corpus
from trainer.descriptors import DESCRIPTORS
from trainer.objective import ACTIVE_UNIT_THRESHOLD, latent_stats

#: A latent dimension is "collapsed" when its mean KL over the data is below this (nats).
COLLAPSED_KL = 0.01


# ================================================================================================ diagnostics
def diagnostics(mu: np.ndarray, logvar: np.ndarray) -> dict[str, Any]:
    """Latent health of a set of posteriors ``mu``, ``logvar`` ``[N, L]``.

    Returns
    -------
    dict
        ``mu_mean``/``mu_std``/``logvar_mean``/``logvar_std`` (scalars, as logged by ``trainer fit``), per-dimension
        ``mu_mean_per_dim``, ``mu_std_per_dim``, ``logvar_mean_per_dim``, ``kl_per_dim`` (nats), ``active_units``
        (Burda et al.: Var(mu) > 0.01), ``collapsed_dims`` (KL < :data:`COLLAPSED_KL`), ``pairwise`` distance
        statistics between posterior means next to the mean posterior std, and a ``verdict``: ``collapsed`` (no
        active unit: the decoder ignores z), ``partial`` (some dimensions unused) or ``healthy``.
    """
    stats = latent_stats(torch.as_tensor(mu), torch.as_tensor(logvar))
    kl = np.asarray(stats["kl_per_dim"])
    dists = pairwise_distances(mu) if len(mu) > 1 else np.zeros(1)
    noise = float(np.mean(np.sqrt(np.exp(logvar).sum(axis=1))))
    active = stats["active_units"]
    verdict = "collapsed" if active == 0 else ("partial" if active < mu.shape[1] else "healthy")
    return {
        **{k: stats[k] for k in ("mu_mean", "mu_std", "logvar_mean", "logvar_std", "active_units")},
        "latent": int(mu.shape[1]), "examples": int(len(mu)),
        "active_threshold": ACTIVE_UNIT_THRESHOLD,
        "mu_mean_per_dim": mu.mean(axis=0), "mu_std_per_dim": mu.std(axis=0),
        "logvar_mean_per_dim": logvar.mean(axis=0), "kl_per_dim": kl, "kl_total": float(kl.sum()),
        "collapsed_dims": [int(i) for i in np.flatnonzero(kl < COLLAPSED_KL)],
        "pairwise": {"mean": float(dists.mean()), "std": float(dists.std()), "min": float(dists.min()),
                     "p05": float(np.percentile(dists, 5)), "median": float(np.median(dists)),
                     "posterior_noise": noise, "separation": float(np.median(dists) / max(noise, 1e-12))},
        "verdict": verdict,
    }


def diagnostics_markdown(diag: dict[str, Any], *, title: str) -> str:
    """A readable Markdown summary of :func:`diagnostics`."""
    pw = diag["pairwise"]
    dims = table(["dim", "mu mean", "mu std", "logvar mean", "KL (nats)"],
                 [[i, diag["mu_mean_per_dim"][i], diag["mu_std_per_dim"][i], diag["logvar_mean_per_dim"][i],
                   diag["kl_per_dim"][i]] for i in range(diag["latent"])])
    return "\n\n".join([
        f"# {title}",
        f"**Verdict: {diag['verdict']}** - {diag['active_units']} of {diag['latent']} units active "
        f"(Var(mu) > {diag['active_threshold']}), total KL {fmt(diag['kl_total'])} nats over {diag['examples']} "
        f"examples; dimensions with KL < {COLLAPSED_KL} nats: {diag['collapsed_dims'] or 'none'}.",
        f"Pairwise distances between posterior means: median {fmt(pw['median'])}, mean {fmt(pw['mean'])} "
        f"(std {fmt(pw['std'])}), min {fmt(pw['min'])}, 5th percentile {fmt(pw['p05'])}. Mean posterior noise "
        f"(norm of the posterior std) {fmt(pw['posterior_noise'])}: separation {fmt(pw['separation'])}x "
        "(below 1, examples are not told apart by their codes).",
        "## Per dimension", dims])


# ================================================================================================ 2D maps
def project(mu: np.ndarray, *, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """2D map ``[N, 2]`` of ``mu [N, L]`` by PCA (explained variance reported) or UMAP (when installed)."""
    if method == "umap":
        import umap  # optional dependency

        xy = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(mu) - 1)).fit_transform(mu)
        return np.asarray(xy, dtype=np.float64), {"method": "umap"}
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(2, mu.shape[1]), random_state=seed).fit(mu)
    xy = pca.transform(mu)
    if xy.shape[1] == 1:
        xy = np.hstack([xy, np.zeros_like(xy)])
    return xy, {"method": "pca", "explained_variance_ratio": pca.explained_variance_ratio_.tolist()}


def map_methods() -> list[str]:
    """PCA, plus UMAP when ``umap-learn`` is importable."""
    try:
        import umap  # noqa: F401
    except ImportError:
        return ["pca"]
    return ["pca", "umap"]


def colourings(corpus: Corpus, descriptors: np.ndarray, clusters: np.ndarray | None) -> dict[str, list]:
    """Per-example columns to colour maps by: class, MIDI pitch (when known), cluster, each descriptor."""
    columns: dict[str, list] = {}
    if corpus.classes:
        columns["class"] = [label or "(unlabelled)" for label in corpus.labels]
    if np.any(corpus.pitch >= 0):
        columns["midi_pitch"] = [int(p) if p >= 0 else None for p in corpus.pitch]
    if clusters is not None:
        columns["cluster"] = [f"c{int(c)}" for c in clusters]
    for j, name in enumerate(DESCRIPTORS):
        columns[name] = [float(v) for v in descriptors[:, j]]
    return columns


def write_maps(out: Path, mu: np.ndarray, columns: dict[str, list], *, names: Sequence[str],
               seed: int = 0) -> dict[str, Any]:
    """PNG per (method, colouring) and one interactive HTML per method; returns the projection info."""
    info = {}
    for method in map_methods():
        xy, meta = project(mu, method=method, seed=seed)
        for column, values in columns.items():
            categorical = column in ("class", "cluster")
            plots.scatter_png(out / f"map_{method}_{column}.png", xy, values, categorical=categorical,
                              title=f"{method.upper()} of latent means, coloured by {column}")
        plots.scatter_html(out / f"map_{method}.html", xy, columns, names=names,
                           title=f"{method.upper()} of latent means")
        info[method] = meta
    return info


# ================================================================================================ the command
def analyze(run: Run, corpus: Corpus, *, out: Path, seed: int = 0) -> dict[str, Any]:
    """``trainer analyze``: diagnostics (``latent.json`` + ``latent.md``) and maps (PNG + HTML) in ``out``.

    Clusters for colouring come from :func:`trainer.analysis.cluster.select_gmm` (BIC-chosen GMM).
    """
    labels, pitch = conditions(run, corpus)
    mu, logvar = encode(run.model, corpus.features, labels=labels, pitch=pitch)
    latent = run.model.config.latent  # diagnostics of the latent proper, not of the predicted controls
    diag = diagnostics(mu[:, :latent], logvar[:, :latent])
    descriptors = describe_audio(corpus.audio, run.spec)
    gmm = select_gmm(mu, seed=seed)
    columns = colourings(corpus, descriptors, gmm.labels)
    maps = write_maps(out, mu, columns, names=[Path(p).name for p in corpus.paths], seed=seed)
    report = {"run": str(run.path), "data": corpus.summary.describe(), "diagnostics": diag, "maps": maps,
              "clusters": gmm.components}
    write_json(out / "latent.json", report)
    text = diagnostics_markdown(diag, title=f"Latent diagnostics of {run.path}")
    pca = maps["pca"].get("explained_variance_ratio", [])
    text += (f"\n\n## Maps\nPCA of the latent means (first two components explain "
             f"{fmt(100 * sum(pca))}% of the variance); {gmm.components} GMM clusters (BIC). "
             "PNG per colouring: `map_<method>_<column>.png`; interactive: "
             f"{', '.join(f'`map_{m}.html`' for m in maps)}"
             f" (methods: {', '.join(maps)}{'' if 'umap' in maps else '; UMAP when umap-learn is installed'}).\n")
    write_text(out / "latent.md", text)
    return report
