"""Knob validation for ``trainer axes``: where sweeps start, and what they do by two implementations.

A knob is checked by sweeping it from many starting points (anchors) and reading every sweep with the project's
descriptors (:mod:`trainer.descriptors`, what the model is conditioned on) and with an independent implementation
of the same definitions (:mod:`trainer.analysis.reference`, librosa; more can be passed in, e.g. the AudioCommons
timbral models in ``benchmarks/knob_reference.py``). Anchors, of four kinds:

``mean``    the latent mean (the axes' own anchor);
``real``    encoded training sounds (real kicks, and synth ones where the corpus has them);
``pad``     the pads the exported preset will have: cluster centroids (``RUN/analysis/centroids.json``, written by
            ``trainer cluster``), or for a class-conditioned model one pad per class at the origin, as export makes;
``random``  draws from a Gaussian fitted to the encoded codes (random latents, controls included).

Figures, per knob and implementation: Spearman rho of knob value vs the knob's own descriptor for every sweep,
their median and the share of sweeps at or above :data:`TARGET_RHO`, medians per anchor kind; and the full knob x
descriptor rho matrix (median over sweeps), whose off-diagonal entries are the cross-talk.

Next to each rho, where descriptors of real kicks are given, a size: the median over sweeps of (descriptor at knob
+1 minus at -1) over that descriptor's interquartile range across real kicks (:data:`SIZE_UNIT`). Rank correlation
reads a tiny monotone side effect as |rho| 1; the size says whether a producer would hear it (a change of 0.05
real-kick IQRs is lost among kicks, one of 1 is the difference between two typical kicks). Sizes inform; the
targets stay on rho.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from runtime.errors import KickspaceError
from trainer.analysis import reference
from trainer.analysis.reference import Describer
from trainer.analysis.reports import table
from trainer.descriptors import DESCRIPTORS, describe_batch

TARGET_RHO = 0.9
#: Share of sweeps that must reach :data:`TARGET_RHO`, and the worst cross-talk |rho| allowed (issue 20).
TARGET_SHARE = 0.9
TARGET_CROSS_TALK = 0.5
OWN = "own"
#: The unit of a knob's effect size: a descriptor's change over the knob's range / its IQR over real kicks.
SIZE_UNIT = "IQR of real kicks"
#: What each implementation is, for the report.
ABOUT = {OWN: "trainer/descriptors.py (what the model is conditioned on)",
         "librosa": "trainer/analysis/reference.py, the same definitions written afresh on librosa's features",
         "timbral": "the AudioCommons timbral models (hardness for punch, booming for sub, brightness)"}


@dataclass(frozen=True)
class Anchors:
    """Where sweeps start: codes ``z [A, L]``, class labels ``[A]`` (or None) and one kind per anchor."""

    z: np.ndarray
    labels: np.ndarray | None
    kinds: tuple[str, ...]


def pad_anchors(run_folder: Path, *, code_size: int, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """The codes ``[P, L]`` (and labels ``[P]``) of the pads export will make; ``[0, L]`` when there are none yet."""
    if classes:
        return np.zeros((len(classes), code_size)), np.arange(len(classes))
    path = run_folder / "analysis" / "centroids.json"
    if not path.is_file():
        return np.zeros((0, code_size)), None
    records = json.loads(path.read_text(encoding="utf-8")).get("centroids", [])
    for i, record in enumerate(records):
        z = np.asarray(record.get("z", ()), dtype=np.float64)
        if z.shape != (code_size,) or not np.isfinite(z).all():
            raise KickspaceError(f"{path}: centroids[{i}].z: must be {code_size} finite numbers")
    return np.array([r["z"] for r in records], dtype=np.float64).reshape(-1, code_size), None


def choose_anchors(z: np.ndarray, labels: np.ndarray | None, *, n_real: int, pads: tuple[np.ndarray, np.ndarray | None],
                   n_random: int, seed: int) -> Anchors:
    """The latent mean, ``n_real`` encoded sounds, the pads and ``n_random`` Gaussian draws.

    Parameters
    ----------
    z : np.ndarray [N, L]
        Encoded codes (posterior means) of the corpus.
    labels : np.ndarray [N] or None
        Their class ids (class-conditioned models); the mean and the random draws take the majority class.
    """
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(z), size=min(n_real, len(z)), replace=False)
    cov = np.cov(z, rowvar=False).reshape(z.shape[1], z.shape[1])
    draws = rng.multivariate_normal(z.mean(axis=0), cov, size=n_random, method="eigh") if n_random else z[:0]
    pad_z, pad_labels = pads
    rows = np.vstack([z.mean(axis=0), z[picks], pad_z, draws])
    kinds = ("mean",) + ("real",) * len(picks) + ("pad",) * len(pad_z) + ("random",) * len(draws)
    if labels is None:
        return Anchors(rows, None, kinds)
    majority = np.bincount(labels[labels >= 0]).argmax() if np.any(labels >= 0) else -1
    pad_labels = np.full(len(pad_z), majority) if pad_labels is None else pad_labels
    ids = np.concatenate([[majority], labels[picks], pad_labels, np.full(len(draws), majority)]).astype(np.int64)
    return Anchors(rows, ids, kinds)


def default_implementations() -> dict[str, Describer]:
    """The implementations ``trainer axes`` reads sweeps with: the project's (raw units) and librosa's."""
    return {OWN: describe_batch, "librosa": reference.describe_batch}


def columns(implementation: str) -> tuple[str, ...]:
    """Descriptor names of an implementation's columns (``own``: all of :data:`DESCRIPTORS`)."""
    return DESCRIPTORS if implementation == OWN else reference.KNOBS


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho; 0 for a constant ``y``, NaN where a value is missing (NaN: not measured)."""
    if not np.isfinite(y).all():
        return float("nan")
    if np.ptp(y) <= 1e-12:
        return 0.0
    return float(stats.spearmanr(x, y)[0])


def spread(real: np.ndarray) -> np.ndarray:
    """Interquartile range ``[D]`` of descriptors ``[R, D]`` of real kicks (NaN where unmeasured or constant).

    Missing values (NaN: an implementation that failed on a file) are left out; a column with fewer than two
    values or no spread has no IQR, so no size is reported against it.
    """
    real = np.asarray(real, dtype=np.float64).reshape(len(real), -1)
    out = np.full(real.shape[1], np.nan)
    for j, column in enumerate(real.T):
        column = column[np.isfinite(column)]
        if len(column) >= 2:
            iqr = float(np.subtract(*np.percentile(column, [75, 25])))
            out[j] = iqr if iqr > 1e-12 else np.nan
    return out


def sizes(values: np.ndarray, swept: np.ndarray, iqr: np.ndarray) -> np.ndarray:
    """Effect sizes ``[A, D]`` of one knob's sweeps ``[A, S, D]``: (value at +1 minus at -1) / ``iqr [D]``.

    +1 and -1 are the largest and smallest of ``values``; NaN where either end or the IQR is missing.
    """
    hi, lo = int(np.argmax(values)), int(np.argmin(values))
    with np.errstate(invalid="ignore"):
        return (swept[:, hi, :] - swept[:, lo, :]) / np.asarray(iqr, dtype=np.float64)[None, :]


def _median(x: np.ndarray) -> float | None:
    """Median of the finite entries, None when there are none."""
    x = x[np.isfinite(x)]
    return float(np.median(x)) if len(x) else None


def knob_figures(values: np.ndarray, swept: np.ndarray, names: Sequence[str], *, controls: Sequence[str],
                 kinds: Sequence[str], iqr: np.ndarray | None = None) -> dict[str, Any]:
    """Per knob: own-descriptor rho per sweep, median, share >= target, medians per anchor kind, rho matrix row.

    Parameters
    ----------
    values : np.ndarray [S]
        Knob values of each sweep.
    swept : np.ndarray [K, A, S, D]
        One implementation's descriptors (columns ``names``) of the sweep of knob ``k`` from anchor ``a``.
    controls : sequence of str
        The knob names, ``K`` of them; a knob whose descriptor the implementation lacks (not a column, or all NaN)
        gets no own figures, and a sweep with a NaN value counts in none.
    kinds : sequence of str
        Anchor kind per anchor (``A``).
    iqr : np.ndarray [D] or None
        Each column's IQR over real kicks (:func:`spread`): adds ``size`` (knob x descriptor, the median of
        :func:`sizes` over sweeps; None where unmeasured) and each knob's own ``size``.
    """
    out: dict[str, Any] = {"knobs": {}, "matrix": {}, **({"size": {}} if iqr is not None else {})}
    kinds = np.asarray(kinds)
    for k, knob in enumerate(controls):
        rho = np.array([[_rho(values, swept[k, a, :, j]) for j in range(len(names))] for a in range(swept.shape[1])])
        measured = [j for j, d in enumerate(names) if d != "length" and np.isfinite(rho[:, j]).any()]
        out["matrix"][knob] = {names[j]: float(np.nanmedian(rho[:, j])) for j in measured}
        size = sizes(values, swept[k], iqr) if iqr is not None else None
        if size is not None:
            out["size"][knob] = {names[j]: _median(size[:, j]) for j in measured}
        if knob not in names or list(names).index(knob) not in measured:
            continue
        own = rho[:, list(names).index(knob)]
        kinds_ok, own = kinds[np.isfinite(own)], own[np.isfinite(own)]
        out["knobs"][knob] = {
            "rho": [float(v) for v in own], "median": float(np.median(own)), "min": float(own.min()),
            "share": float(np.mean(own >= TARGET_RHO)),
            "by_kind": {kind: float(np.median(own[kinds_ok == kind])) for kind in dict.fromkeys(kinds_ok)}}
        if size is not None:
            out["knobs"][knob]["size"] = out["size"][knob][knob]
    return out


def validate(values: np.ndarray, swept: Mapping[str, np.ndarray], *, controls: Sequence[str],
             kinds: Sequence[str], real: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """:func:`knob_figures` for every implementation (``swept``: name -> ``[K, A, S, D_name]``) and the verdict.

    ``real`` (name -> descriptors ``[R, D_name]`` of real kicks by that implementation) adds the effect sizes in
    :data:`SIZE_UNIT` and each implementation's ``iqr`` per descriptor; the verdict stays on rho alone.
    """
    real = real or {}
    iqrs = {name: spread(real[name]) for name in swept if name in real}
    figures = {name: knob_figures(values, s, columns(name), controls=controls, kinds=kinds, iqr=iqrs.get(name))
               for name, s in swept.items()}
    for name, iqr in iqrs.items():
        figures[name]["iqr"] = {d: (float(v) if np.isfinite(v) else None) for d, v in zip(columns(name), iqr)}
    worst = {}
    for name, fig in figures.items():
        off = [abs(v) for knob, row in fig["matrix"].items() for d, v in row.items() if d != knob and d in controls]
        worst[name] = float(max(off)) if off else 0.0
    meets = {name: all(f["share"] >= TARGET_SHARE for f in fig["knobs"].values()) and worst[name] <= TARGET_CROSS_TALK
             for name, fig in figures.items()}
    return {"implementations": list(swept), "anchors": list(kinds), "values": [float(v) for v in values],
            "target": {"rho": TARGET_RHO, "share": TARGET_SHARE, "cross_talk": TARGET_CROSS_TALK},
            "figures": figures, "worst_cross_talk": worst, "meets_target": meets,
            **({"size_unit": SIZE_UNIT, "real_kicks": {name: int(len(real[name])) for name in iqrs}} if iqrs else {})}


def flip(swept: Mapping[str, np.ndarray], k: int) -> None:
    """Read knob ``k``'s sweeps backwards in every implementation (in place), as a mirrored axis does."""
    for s in swept.values():
        s[k] = s[k, :, ::-1]


def _knob_rows(validation: dict[str, Any], kinds: Sequence[str], *, with_size: bool) -> list[list[Any]]:
    """One row per knob and implementation: median rho, sweeps at target, min, medians per kind (and size)."""
    return [[knob, name, f["median"], f"{round(f['share'] * len(f['rho']))}/{len(f['rho'])}", f["min"],
             *(f["by_kind"].get(kind) for kind in kinds),
             *([f.get("size")] if with_size else [])]
            for name, fig in validation["figures"].items() for knob, f in fig["knobs"].items()]


def _matrices(name: str, fig: dict[str, Any], unit: str | None) -> list[str]:
    """The rho matrix of one implementation and, where sizes were measured, the size matrix beside it."""
    cols = [d for d in columns(name) if any(d in row for row in fig["matrix"].values())]
    parts = [f"### Cross-talk by `{name}`: knob x descriptor rho (median over sweeps; the diagonal is the "
             "knob's own)", table(["knob", *cols], [[knob, *(row.get(d, "n/a") for d in cols)]
                                                    for knob, row in fig["matrix"].items()])]
    if "size" in fig:
        parts += [f"Size by `{name}`: descriptor at knob +1 minus at -1, in {unit} (median over sweeps; "
                  "|rho| near 1 with a size near 0 is a side effect no one hears)",
                  table(["knob", *cols], [[knob, *(row.get(d) for d in cols)]
                                          for knob, row in fig["size"].items()])]
    return parts


def markdown(validation: dict[str, Any]) -> str:
    """The validation section of a knob report: rho per knob by each implementation, the rho matrices and, where
    real kicks were described, the effect sizes next to them."""
    counts = {kind: validation["anchors"].count(kind) for kind in dict.fromkeys(validation["anchors"])}
    kinds = list(counts)
    target = validation["target"]
    unit = validation.get("size_unit")
    real = validation.get("real_kicks", {})
    parts = [
        "## Knobs by each implementation",
        f"Spearman rho of knob value vs the knob's own descriptor, one per sweep ({len(validation['values'])} values "
        f"in [-1, 1]) from {len(validation['anchors'])} anchors ("
        + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + "). "
        + "; ".join(f"`{name}`: {ABOUT.get(name, 'as passed in')}" for name in validation["implementations"])
        + f". Target: rho >= {target['rho']} on >= {target['share']:.0%} of sweeps, worst "
        f"cross-talk |rho| <= {target['cross_talk']}."
        + (f" Size: the own descriptor's change from knob -1 to +1 in {unit} (median over sweeps; real kicks: "
           + ", ".join(f"{n} by `{name}`" for name, n in real.items()) + ")." if unit else ""),
        table(["knob", "implementation", "median rho", f"sweeps >= {target['rho']}", "min",
               *(f"median {kind}" for kind in kinds), *(["size"] if unit else [])],
              _knob_rows(validation, kinds, with_size=bool(unit))),
        "Meets the target: " + ", ".join(f"{name} **{'yes' if ok else 'no'}** (worst cross-talk "
                                         f"{validation['worst_cross_talk'][name]:.2f})"
                                         for name, ok in validation["meets_target"].items()) + "."]
    for name, fig in validation["figures"].items():
        parts += _matrices(name, fig, unit)
    return "\n\n".join(parts)
