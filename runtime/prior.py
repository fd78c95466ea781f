"""Where a random sound's code comes from: the exported model's latent prior (part of its metadata).

A VAE's decoder is trained on codes of the aggregate posterior, which is not ``N(0, I)`` in practice: the shipped
kick model's standard-normal draws are a descriptor Fréchet distance of about 4 x real-vs-real from real kicks (they
decay too long, because the control columns' prior comes from procedural kicks), while a Gaussian fitted to the
encoder means of the real training sounds draws at about 1.5 x (ex-post density estimation, Ghosh et al. 2020,
"From Variational to Deterministic Autoencoders", section 4; ``trainer evaluate --prior-data`` fits and measures
it, ``presets/kicks/MODEL_CARD.md`` quotes the figures). ``python -m export onnx`` copies that fit (the run's
``analysis/prior.json``) into the model's metadata as :class:`LatentPrior`, so the runtime's random sounds
(``runtime render --random``, the ``r`` key and ``/kickspace/random`` in live play) draw where real sounds lie.
A model exported without one draws from ``N(0, I)`` (:func:`standard_prior`) and says so.

Numpy only; the covariance is factored once per model (:func:`covariance_factor`; the trainer's posterior sampler,
``trainer.analysis.realism.GaussianPrior``, draws through the same two functions).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.schema import check_fields, require

#: How far from symmetric, or below zero in its eigenvalues (relative to the largest), a covariance may be.
COV_TOLERANCE = 1e-6


@dataclass(frozen=True)
class LatentPrior:
    """A Gaussian over the decoder's code (its ``z`` input, ``[latent]``).

    Parameters
    ----------
    mean : tuple of float
        ``[latent]``.
    cov : tuple of tuple of float
        ``[latent, latent]``, symmetric positive semi-definite.
    sounds : int
        How many sounds it was fitted on (0: not fitted, the standard normal).
    method : str
        How it was obtained, one line (shown to the user beside random sounds).
    classes : tuple of (str, LatentPrior)
        For a class-conditioned model, one Gaussian per class (its real sounds' codes), in the model's label
        order; empty when the model has no classes or the fit had too few sounds of each. A class's codes sit
        apart from the others' (the kit's kicks and hats do not share a code region), so a random snare is drawn
        where real snares encode (:meth:`for_label`), not from the pooled Gaussian.
    """

    mean: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    sounds: int = 0
    method: str = ""
    classes: tuple[tuple[str, "LatentPrior"], ...] = ()

    @functools.cached_property
    def _scale(self) -> np.ndarray:
        """``[latent, latent]`` (:func:`covariance_factor`, factored once)."""
        return covariance_factor(np.asarray(self.cov, dtype=np.float64))

    @property
    def latent(self) -> int:
        return len(self.mean)

    @property
    def fitted(self) -> bool:
        """Whether it was fitted to real sounds (False: the standard normal)."""
        return self.sounds > 0

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` codes ``[n, latent]`` float32."""
        return draw_codes(np.asarray(self.mean), self._scale, int(n), rng).astype(np.float32)

    def for_label(self, label: str | None) -> "LatentPrior":
        """The prior of class ``label`` when this one has it, else this (pooled) one."""
        return dict(self.classes).get(label, self) if label is not None else self

    def describe(self, label: str | None = None) -> str:
        """One line for the user: where random sounds (of class ``label``) come from."""
        if not self.fitted:
            return "the standard normal (the model ships no fitted prior)"
        if label is not None and label in dict(self.classes):
            return f"a Gaussian fitted to {self.for_label(label).sounds} real {label} sounds' codes"
        return f"a Gaussian fitted to {self.sounds} real sounds' codes"

    def to_dict(self) -> dict[str, Any]:
        out = {"mean": list(self.mean), "cov": [list(row) for row in self.cov], "sounds": self.sounds,
               "method": self.method}
        if self.classes:
            out["classes"] = {name: prior.to_dict() for name, prior in self.classes}
        return out

    @classmethod
    def from_dict(cls, data: Any, *, where: str, latent: int, labels: tuple[str, ...] | None = None) -> "LatentPrior":
        """Typed and checked: ``mean`` ``[latent]`` and ``cov`` ``[latent, latent]`` of finite numbers, ``cov``
        symmetric and positive semi-definite (within :data:`COV_TOLERANCE`); ``classes``, when present, maps
        each of the model's ``labels`` (some or all) to such a Gaussian (none of them nested further). A bad field
        raises :class:`~runtime.errors.ConfigError` naming ``where.FIELD``."""
        data = check_fields(data, cls, where=where)
        classes = _classes(data.get("classes", {}), where=f"{where}.classes", latent=latent,
                           labels=() if labels is None else labels)
        for name in ("mean", "cov"):
            require(name in data, f"{where}.{name}", "missing")
        mean = _numbers(data["mean"], f"{where}.mean", latent)
        rows = data["cov"]
        require(isinstance(rows, list) and len(rows) == latent, f"{where}.cov",
                f"must be {latent} rows (the model's latent size)")
        cov = np.array([_numbers(row, f"{where}.cov[{i}]", latent) for i, row in enumerate(rows)])
        _check_covariance(cov, f"{where}.cov")
        sounds = data.get("sounds", 0)
        require(isinstance(sounds, int) and not isinstance(sounds, bool) and sounds >= 0, f"{where}.sounds",
                f"must be a non-negative integer, got {sounds!r}")
        method = data.get("method", "")
        require(isinstance(method, str), f"{where}.method", f"must be a string, got {type(method).__name__}")
        return cls(mean=tuple(mean), cov=tuple(tuple(row) for row in cov.tolist()), sounds=sounds, method=method,
                   classes=classes)


def _classes(data: Any, *, where: str, latent: int, labels: tuple[str, ...]) -> tuple[tuple[str, LatentPrior], ...]:
    """``classes`` of a prior: ``{label: prior}`` for labels of the model, in the model's label order."""
    require(isinstance(data, dict), where, f"must be an object of class name -> prior, got {type(data).__name__}")
    for name in data:
        require(name in labels, f"{where}.{name}",
                f"not a class of the model (its classes: {', '.join(labels) or 'none'})")
    out = []
    for name in (n for n in labels if n in data):
        require(not (isinstance(data[name], dict) and data[name].get("classes")), f"{where}.{name}.classes",
                "a class's prior has no classes of its own")
        out.append((name, LatentPrior.from_dict(data[name], where=f"{where}.{name}", latent=latent)))
    return tuple(out)


def covariance_factor(cov: np.ndarray) -> np.ndarray:
    """``scale [L, L]`` with ``scale @ scale.T == cov``, through the eigendecomposition: a rank-deficient covariance
    (fitted on fewer sounds than code columns) draws within the span its sounds cover instead of failing a Cholesky
    factorisation."""
    values, vectors = np.linalg.eigh(cov)
    return vectors * np.sqrt(np.maximum(values, 0.0))


def draw_codes(mean: np.ndarray, scale: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` Gaussian codes ``[n, L]`` (float64): ``mean [L]`` plus standard normal noise through ``scale``
    (:func:`covariance_factor`)."""
    return mean + rng.standard_normal((n, len(mean))) @ scale.T


@functools.lru_cache(maxsize=8)
def standard_prior(latent: int) -> LatentPrior:
    """``N(0, I)`` over ``latent`` dimensions: what a model exported without a fitted prior draws from (one per
    size, so its factor is computed once)."""
    return LatentPrior(mean=(0.0,) * latent, cov=tuple(tuple(float(i == j) for j in range(latent))
                                                      for i in range(latent)))


def _numbers(values: Any, where: str, size: int) -> list[float]:
    require(isinstance(values, list) and len(values) == size, where,
            f"must be a list of {size} numbers (the model's latent size)")
    for i, v in enumerate(values):
        require(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), f"{where}[{i}]",
                f"must be a finite number, got {v!r}")
    return [float(v) for v in values]


def _check_covariance(cov: np.ndarray, where: str) -> None:
    top = max(float(np.abs(cov).max()), 1e-12)
    require(float(np.abs(cov - cov.T).max()) <= COV_TOLERANCE * top, where, "must be symmetric")
    require(float(np.linalg.eigvalsh(cov).min()) >= -COV_TOLERANCE * top, where,
            "must be positive semi-definite (a covariance)")
