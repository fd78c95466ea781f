"""Realism of generated sounds at sample sizes that carry meaning, and a sampler that draws like real sounds.

realism
    Fréchet distance between Gaussians fitted to the descriptors (regression units, standardised on the real
    reference) of generated and real sounds. Fitted on a few points, that distance is mostly estimator noise and
    grows as the sets shrink, so a figure means something only beside a baseline of the same sizes: the real-vs-real
    baseline is the mean over :data:`SPLITS` random half/half splits of the reference, and the generated figure
    draws as many generated sounds as one half holds against a random draw of the other half's size from the
    reference, averaged over as many draws. Both carry the same small-sample bias; their ratio is the figure to
    read (near 1: generated sounds are as far from the real ones as real ones are from each other). The full-size
    distance (every generated sound vs the whole reference) is reported beside it. Per descriptor, the generated
    sounds' standardised mean shift and spread ratio say *what* differs.
posterior sampler
    Ex-post density estimation (Ghosh et al. 2020, "From Variational to Deterministic Autoencoders", section 4):
    after training, fit a Gaussian to the encoder means of real sounds (the whole decoder code: latent plus control
    columns) and draw codes from it instead of ``N(0, I)``. A model whose control columns follow a training split
    that is mostly procedural sounds, or whose aggregate posterior is not the standard normal, then still draws
    like the real sounds it was fitted on. :func:`write_prior` stores it as ``prior.json`` so export can ship it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import linalg

from runtime.prior import covariance_factor, draw_codes
from trainer.analysis.reports import write_json
from trainer.analysis.run import Run, conditions, decode, encode
from trainer.data.ingest import Corpus
from trainer.descriptors import DESCRIPTORS, control_units

#: Random half/half splits (and matched generated draws) the small-sample figures are averaged over.
SPLITS = 50
SAMPLERS = ("standard", "posterior")
#: The posterior sampler's file in a run's ``analysis/`` folder; ``python -m export onnx`` ships it in the model.
PRIOR_FILE = "prior.json"


# ================================================================================================ realism
def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to rows of ``a [N, D]`` and ``b [M, D]``."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    eps = 1e-6 * np.eye(a.shape[1])  # keeps the square root defined for degenerate (e.g. tiny) sets
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)) + eps, np.atleast_2d(np.cov(b, rowvar=False)) + eps
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(max(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * root), 0.0))


def standardised_descriptors(descriptors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Descriptors in regression units, standardised by the ``reference`` set's mean and std."""
    ref = control_units(reference)
    return (control_units(descriptors) - ref.mean(axis=0)) / (ref.std(axis=0) + 1e-9)


def realism(generated: np.ndarray, real: np.ndarray, *, seed: int = 0, splits: int = SPLITS) -> dict[str, Any]:
    """Fréchet distances of descriptors ``[N, len(DESCRIPTORS)]``, generated vs real, at matched and full sizes.

    Returns
    -------
    dict
        ``frechet_real_half_vs_half`` and ``frechet_generated_vs_real`` (means over ``splits`` draws at the sizes
        ``sizes`` = [half, other half]: the real halves, and ``half`` generated sounds against ``other half`` real
        ones), their standard deviations (``*_sd``), ``ratio`` (generated / real), ``frechet_full`` (all generated
        vs all real: sizes ``generated``, ``real``) and ``descriptors``: per descriptor the generated sounds'
        ``mean_shift_sd`` (in real standard deviations) and ``spread_ratio`` (their std / the real std).
        Descriptors constant over the real set carry no distribution and are left out.
    """
    keep = control_units(real).std(axis=0) > 1e-6
    g, r = standardised_descriptors(generated, real)[:, keep], standardised_descriptors(real, real)[:, keep]
    half, other = len(r) // 2, len(r) - len(r) // 2
    rng = np.random.default_rng(seed)
    baseline, matched = [], []
    for _ in range(splits):
        order = rng.permutation(len(r))
        baseline.append(frechet_distance(r[order[:half]], r[order[half:]]))
        picked = rng.choice(len(g), half, replace=len(g) < half)
        matched.append(frechet_distance(g[picked], r[rng.choice(len(r), other, replace=False)]))
    names = [name for name, k in zip(DESCRIPTORS, keep) if k]
    out = {"sizes": [half, other], "splits": splits, "generated": len(g), "real": len(r),
           "frechet_real_half_vs_half": float(np.mean(baseline)),
           "frechet_real_half_vs_half_sd": float(np.std(baseline)),
           "frechet_generated_vs_real": float(np.mean(matched)),
           "frechet_generated_vs_real_sd": float(np.std(matched)),
           "frechet_full": frechet_distance(g, r),
           "descriptors": {name: {"mean_shift_sd": float(g[:, j].mean() - r[:, j].mean()),
                                  "spread_ratio": float(g[:, j].std() / max(r[:, j].std(), 1e-12))}
                           for j, name in enumerate(names)}}
    out["ratio"] = out["frechet_generated_vs_real"] / max(out["frechet_real_half_vs_half"], 1e-12)
    return out


# ================================================================================================ samplers
@dataclass(frozen=True)
class GaussianPrior:
    """A Gaussian over the decoder code ``[code_size]``: ``mean [L]``, ``cov [L, L]``, fitted on ``sounds`` codes.

    ``classes``: for a class-conditioned model, one Gaussian per class name (:func:`fit_posterior`); a draw for a
    class it holds comes from that class's Gaussian, any other from the pooled one.
    """

    mean: np.ndarray
    cov: np.ndarray
    sounds: int
    classes: tuple[tuple[str, "GaussianPrior"], ...] = ()

    @classmethod
    def of_codes(cls, codes: np.ndarray) -> "GaussianPrior":
        """The maximum-likelihood mean and the unbiased covariance of codes ``[N, L]`` (N >= 2)."""
        codes = np.asarray(codes, dtype=np.float64)
        return cls(mean=codes.mean(axis=0), cov=np.atleast_2d(np.cov(codes, rowvar=False)), sounds=len(codes))

    def sample(self, n: int, rng: np.random.Generator, labels: Sequence[str | None] | None = None) -> np.ndarray:
        """``n`` codes ``[n, L]``, as the runtime draws them from the exported prior
        (:func:`runtime.prior.covariance_factor`: a rank-deficient covariance draws within the span of its sounds);
        row ``i`` from the Gaussian of class ``labels[i]`` when given and held."""
        if labels is None or not self.classes:
            return draw_codes(self.mean, covariance_factor(self.cov), n, rng)
        own = dict(self.classes)
        z = np.empty((n, len(self.mean)))
        for name in dict.fromkeys(labels):
            rows = np.array([label == name for label in labels])
            prior = own.get(name, self)
            z[rows] = draw_codes(prior.mean, covariance_factor(prior.cov), int(rows.sum()), rng)
        return z


def fit_posterior(run: Run, corpus: Corpus, rows: np.ndarray | None = None) -> GaussianPrior:
    """Fit :class:`GaussianPrior` to the encoder means of ``corpus`` (only ``rows`` when given), whole code; for a
    class-conditioned model also one per class with at least two sounds (:func:`class_priors`).

    Raises
    ------
    KickspaceError
        When fewer than two sounds are left to fit on.
    """
    from runtime.errors import KickspaceError

    labels, pitch = conditions(run, corpus)
    mu, _ = encode(run.model, corpus.features, labels=labels, pitch=pitch)
    names = np.array([run.classes[i] if i >= 0 else "" for i in labels]) if labels is not None else None
    if rows is not None:
        mu = mu[rows]
        names = None if names is None else names[rows]
    if len(mu) < 2:
        raise KickspaceError(f"posterior sampler: needs at least 2 real sounds to fit on, got {len(mu)}")
    pooled = GaussianPrior.of_codes(mu)
    if names is None:
        return pooled
    return GaussianPrior(pooled.mean, pooled.cov, pooled.sounds, class_priors(mu, names, order=run.classes))


def class_priors(codes: np.ndarray, names: np.ndarray, *, order: Sequence[str]) -> tuple[tuple[str, GaussianPrior], ...]:
    """One Gaussian per class in ``order`` with at least two codes: the class's mean, and its covariance shrunk
    towards the pooled within-class covariance ``W`` by ``L / (n - 1 + L)`` (``L`` the code size, ``n`` the class's
    sounds; regularised discriminant analysis, Friedman 1989), so a class of 6 real claps draws near its own
    sounds without collapsing onto the 5-dimensional span they cover.

    Parameters
    ----------
    codes : np.ndarray [N, L]
    names : np.ndarray [N] of str
        Each code's class name ("" for none).
    """
    groups = [(name, codes[names == name]) for name in order if np.count_nonzero(names == name) >= 2]
    if not groups:
        return ()
    scatter = sum((len(g) - 1) * np.atleast_2d(np.cov(g, rowvar=False)) for _, g in groups)
    within = scatter / sum(len(g) - 1 for _, g in groups)
    size = codes.shape[1]
    out = []
    for name, g in groups:
        weight = size / (len(g) - 1 + size)
        cov = (1 - weight) * np.atleast_2d(np.cov(g, rowvar=False)) + weight * within
        out.append((name, GaussianPrior(mean=g.mean(axis=0), cov=cov, sounds=len(g))))
    return tuple(out)


def draw(run: Run, reference: Corpus, n: int, *, prior: GaussianPrior | None, seed: int) -> np.ndarray:
    """``n`` generated sounds' features ``[n, C, M, T]``: codes from ``N(0, I)`` (``prior`` None) or ``prior``.

    A CVAE draws its classes (and a pitch-conditioned model its pitches) like the ``reference`` set: its rows'
    conditions, cycled through in a random order, so every class appears in the reference's proportions (+-1);
    each code then comes from its class's Gaussian when ``prior`` has one.
    """
    rng = np.random.default_rng(seed)
    rows = np.resize(rng.permutation(len(reference)), n)
    labels, pitch = conditions(run, reference)
    labels = None if labels is None else labels[rows]
    pitch = None if pitch is None else np.asarray(pitch)[rows]
    if prior is None:
        z = rng.standard_normal((n, run.model.code_size))
    else:
        names = None if labels is None else [run.classes[i] if i >= 0 else None for i in labels]
        z = prior.sample(n, rng, names)
    return decode(run.model, z, labels=labels, pitch=pitch)


def write_prior(path: str | Path, prior: GaussianPrior, run: Run, roots: Sequence[str]) -> Path:
    """Write ``prior`` as JSON (atomic): what a sampler needs to draw codes the decoder takes.

    Keys: ``kind`` ("gaussian"), ``code_size``, ``latent``, ``controls`` (the names of the control columns that
    follow the latent ones), ``mean [code_size]``, ``cov [code_size][code_size]``, ``sounds`` and ``fitted_on``
    (the data it was fitted on), ``checkpoint``; ``classes`` (class name -> ``mean``, ``cov``, ``sounds``) when
    the prior has a Gaussian per class.
    """
    config = run.model.config
    return write_json(path, {"kind": "gaussian", "code_size": run.model.code_size, "latent": config.latent,
                             "controls": list(config.controls), "mean": prior.mean, "cov": prior.cov,
                             "sounds": prior.sounds, "fitted_on": list(roots), "checkpoint": str(run.path),
                             **({"classes": {name: {"mean": c.mean, "cov": c.cov, "sounds": c.sounds}
                                             for name, c in prior.classes}} if prior.classes else {}),
                             "method": "ex-post density estimation: a Gaussian fitted to the encoder means of real "
                                       "sounds (Ghosh et al. 2020, section 4)"})
