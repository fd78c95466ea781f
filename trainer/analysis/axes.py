"""Named latent axes: one knob direction per control, derived from descriptors and verified by decoding sweeps.

Derivation (all in the space of posterior means ``z``, ``[N, L]``):

1. Targets: the descriptors of the model's own reconstructions (decode ``mu`` -> Griffin-Lim -> describe), so the
   map from ``z`` to what a knob changes is the one the sweep will measure. Times and frequencies are taken in log,
   dB levels are floored at -80, and every column is standardised.
2. A ridge regression ``y = W (z - mean)`` per descriptor (its held-out R^2 is reported).
3. Three candidate direction sets ``U [L, K]`` (a step of ``U[:, k]`` moves descriptor ``k`` by one standard
   deviation under the linear model):

   - ``gradient``: each descriptor's own regression direction, ``Sigma w_k / (w_k' Sigma w_k)``, ignoring the
     others (the undecorrelated baseline);
   - ``pinv``: the minimum-Mahalanobis-norm solution of ``W U = I`` over the controls and the held descriptors
     (pitch), ``U = Sigma W' (W Sigma W')^-1``: each knob moves its descriptor and, to first order, no other;
   - ``backward``: ridge regression of ``z`` on all standardised descriptors jointly, ``z - mean = B y``, whose
     column ``B[:, k]`` is the move of descriptor ``k`` with the others held fixed (partial regression).

   - ``control`` (control-conditioned models, :mod:`trainer.vae`): the decoder takes the standardised
     descriptor itself as an input, so the axis is the unit vector on that column of the code; nothing is
     regressed, and the other descriptors are held by construction (to the extent the decoder honours them).

4. Scale: the knob's [-1, 1] spans the 5th-95th percentile range of the descriptor around the anchor (the latent
   mean), capped at :data:`MAX_SCALE_STD` standard deviations of the data along the direction so that a poorly
   predicted descriptor cannot push the decoder far outside the training distribution (``control``: that range in
   the model's standardised units, uncapped).
5. Verification: for each method and axis, decode ``z = anchor + v * scale * direction`` for ``v`` in [-1, 1]
   from the mean and from a few encoded examples, synthesise with Griffin-Lim, measure all descriptors. Reported:
   Spearman rho of the knob against its own descriptor (median over anchors, and at the mean), and cross-talk:
   the change of every other descriptor over the knob's range as a share of that descriptor's data range
   (5th-95th percentile), next to the same share for the own descriptor (``span``). The method with the best mean
   rho minus mean worst cross-talk is kept and written to ``axes.json`` for export. An axis whose rho comes out
   negative is mirrored first (its direction negated), so no knob turns the wrong way.
6. Validation (:mod:`trainer.analysis.knobs`): the chosen method's sweeps, from the mean, encoded sounds, the pads
   (cluster centroids or one per class) and random latents, read by the project's descriptors and by an independent
   implementation (:mod:`trainer.analysis.reference`): rho per sweep, its median and share >= 0.9, and the full
   knob x descriptor rho matrix (cross-talk).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from runtime.errors import KickspaceError
from runtime.model import Axis
from trainer.analysis import knobs, plots
from trainer.analysis.run import Run, conditions, decode, describe_audio, encode, to_audio
from trainer.analysis.reports import read_json, table, write_json, write_text
from trainer.data.ingest import Corpus
from trainer.descriptors import DESCRIPTORS, control_units, describe_batch
from trainer.vae import ModelConfig

CONTROLS: tuple[str, ...] = ("sub", "punch", "decay", "click", "brightness")
HELD: tuple[str, ...] = ("pitch",)
METHODS: tuple[str, ...] = ("gradient", "pinv", "backward")
CONTROL = "control"
MAX_SCALE_STD = 3.0


# ================================================================================================ targets
@dataclass(frozen=True)
class Standardiser:
    """Per-descriptor centre, spread and 5th-95th percentile range in regression units (``[D]`` each)."""

    mean: np.ndarray
    std: np.ndarray
    p05: np.ndarray
    p95: np.ndarray

    @classmethod
    def fit(cls, y: np.ndarray) -> "Standardiser":
        return cls(y.mean(axis=0), y.std(axis=0) + 1e-9, np.percentile(y, 5, axis=0), np.percentile(y, 95, axis=0))

    def apply(self, y: np.ndarray) -> np.ndarray:
        return (y - self.mean) / self.std

    @property
    def half_range(self) -> np.ndarray:
        """Half the 5th-95th percentile range in standard deviations."""
        return (self.p95 - self.p05) / (2.0 * self.std)


# ================================================================================================ derivation
def ridge_forward(zc: np.ndarray, y: np.ndarray, *, ridge: float) -> np.ndarray:
    """``W [D, L]`` of ``y ~ zc W'`` (centred inputs, standardised targets) with an L2 penalty ``ridge * N``."""
    gram = zc.T @ zc + ridge * len(zc) * np.eye(zc.shape[1])
    return np.linalg.solve(gram, zc.T @ y).T


def held_out_r2(z: np.ndarray, y: np.ndarray, *, ridge: float, seed: int = 0) -> np.ndarray:
    """R^2 ``[D]`` of the forward ridge model on a held-out 20% (fit on the rest)."""
    from trainer.data.arrays import split_indices

    train, val = split_indices(len(z), None, val_fraction=0.2, seed=seed)
    mean = z[train].mean(axis=0)
    w = ridge_forward(z[train] - mean, y[train] - y[train].mean(axis=0), ridge=ridge)
    pred = (z[val] - mean) @ w.T + y[train].mean(axis=0)
    resid = ((y[val] - pred) ** 2).sum(axis=0)
    total = ((y[val] - y[val].mean(axis=0)) ** 2).sum(axis=0) + 1e-12
    return 1.0 - resid / total


def derive(z: np.ndarray, y: np.ndarray, *, method: str, controls: Sequence[int], held: Sequence[int],
           ridge: float = 1e-3) -> np.ndarray:
    """Direction set ``U [L, len(controls)]`` for one method (see the module docstring).

    Parameters
    ----------
    z : ndarray ``[N, L]``
        Latent means.
    y : ndarray ``[N, D]``
        Standardised descriptors.
    controls, held : sequences of column indices of ``y``
    """
    zc = z - z.mean(axis=0)
    sigma = np.cov(zc, rowvar=False) + 1e-6 * np.eye(z.shape[1])
    if method == "backward":
        cols = list(controls) + list(held)
        ys = y[:, cols]
        b = np.linalg.solve(ys.T @ ys + ridge * len(ys) * np.eye(len(cols)), ys.T @ zc).T
        return b[:, : len(controls)]
    w = ridge_forward(zc, y, ridge=ridge)
    if method == "gradient":
        rows = w[list(controls)]
        return np.stack([sigma @ r / max(float(r @ sigma @ r), 1e-12) for r in rows], axis=1)
    if method == "pinv":
        rows = w[list(controls) + list(held)]
        u = sigma @ rows.T @ np.linalg.pinv(rows @ sigma @ rows.T)
        return u[:, : len(controls)]
    raise KickspaceError(f"unknown axis method {method!r} (known: {', '.join(METHODS)})")


def control_axes(config: ModelConfig, controls: Sequence[str], standard: Standardiser
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``control`` method: unit directions ``[K, code]`` on the controls' columns, scales ``[K]``, cap flags.

    Knob +-1 moves the control by half the 5-95% range of its descriptor over the model's reconstructions.
    """
    directions = np.zeros((len(controls), config.code_size))
    scales = np.zeros(len(controls))
    for k, name in enumerate(controls):
        i = config.controls.index(name)
        j = DESCRIPTORS.index(name)
        directions[k, config.latent + i] = 1.0
        scales[k] = (standard.p95[j] - standard.p05[j]) / (2.0 * config.control_std[i])
    return directions, scales, np.zeros(len(controls), dtype=bool)


def available_methods(config: ModelConfig, controls: Sequence[str] = CONTROLS) -> tuple[str, ...]:
    """Methods that apply to a model: ``control`` first when its decoder takes every one of ``controls``."""
    has_all = bool(config.controls) and all(c in config.controls for c in controls)
    return ((CONTROL,) if has_all else ()) + METHODS


def scale_axes(u: np.ndarray, z: np.ndarray, half_range: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit directions ``[K, L]``, scales ``[K]`` (knob +-1 = +-half the descriptor's 5-95% range) and cap flags."""
    sigma = np.cov(z - z.mean(axis=0), rowvar=False)
    steps = u * half_range[None, :]
    norms = np.linalg.norm(steps, axis=0) + 1e-12
    directions = (steps / norms).T
    data_std = np.sqrt(np.maximum(np.einsum("kl,lm,km->k", directions, sigma, directions), 1e-12))
    limit = MAX_SCALE_STD * data_std
    return directions, np.minimum(norms, limit), norms > limit


# ================================================================================================ verification
def sweep_descriptors(run: Run, *, directions: np.ndarray, scales: np.ndarray, anchors: np.ndarray,
                      anchor_labels: np.ndarray | None, values: np.ndarray, n_iter: int = 32,
                      implementations: Mapping[str, knobs.Describer] | None = None) -> dict[str, np.ndarray]:
    """Descriptors of the sounds decoded along each axis ``k`` from each anchor at knob ``values``.

    Returns ``{name: [K, A, S, D_name]}`` for each of ``implementations`` (default: ``{"own": describe_batch}``,
    raw :data:`DESCRIPTORS`).
    """
    k_axes, n_anchors, n_values = len(directions), len(anchors), len(values)
    steps = values[None, None, :, None] * (scales[:, None] * directions)[:, None, None, :]
    z = (anchors[None, :, None, :] + steps).reshape(-1, anchors.shape[1])
    labels = None
    if anchor_labels is not None:
        labels = np.broadcast_to(anchor_labels[None, :, None], (k_axes, n_anchors, n_values)).reshape(-1)
    audio = np.asarray(to_audio(decode(run.model, z, labels=labels), run.spec, n_iter=n_iter)).mean(axis=1)
    implementations = implementations or {knobs.OWN: describe_batch}
    return {name: describe(audio, run.spec.sample_rate).reshape(k_axes, n_anchors, n_values, -1)
            for name, describe in implementations.items()}


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(y) <= 1e-12:
        return 0.0
    return float(stats.spearmanr(x, y)[0])


def measure(values: np.ndarray, swept: np.ndarray, standard: Standardiser, *,
            controls: Sequence[str]) -> list[dict[str, Any]]:
    """Per axis: rho of the knob vs every descriptor and their change as a share of the data range.

    ``swept`` is ``[K, A, S, D]`` raw descriptors; anchor 0 is the latent mean.
    """
    y = control_units(swept.reshape(-1, swept.shape[-1])).reshape(swept.shape)
    width = np.maximum(standard.p95 - standard.p05, 1e-6)
    results = []
    for k, name in enumerate(controls):
        own = DESCRIPTORS.index(name)
        rho = np.array([[_rho(values, y[k, a, :, j]) for j in range(len(DESCRIPTORS))] for a in range(y.shape[1])])
        slope = np.array([[np.polyfit(values, y[k, a, :, j], 1)[0] for j in range(len(DESCRIPTORS))]
                          for a in range(y.shape[1])])
        change = np.median(2.0 * slope / width, axis=0)
        others = {d: float(change[j]) for j, d in enumerate(DESCRIPTORS) if d != name and d != "length"}
        results.append({
            "name": name, "rho": float(np.median(rho[:, own])), "rho_at_mean": float(rho[0, own]),
            "rho_per_anchor": rho[:, own], "span": float(change[own]),
            "rho_all": {d: float(np.median(rho[:, j])) for j, d in enumerate(DESCRIPTORS)},
            "cross_talk": others,
            "max_cross_talk": float(max(abs(v) for d, v in others.items() if d in (*controls, *HELD))),
        })
    return results


def flip_axis(result: dict[str, Any]) -> None:
    """Mirror one measured axis in place: direction, rho and every signed change negated.

    A sweep over ``v`` in [-1, 1] along ``-direction`` is the sweep along ``direction`` read backwards, so the
    mirrored figures are exact, not re-measured.
    """
    result["direction"] = -np.asarray(result["direction"])
    for key in ("rho", "rho_at_mean", "span"):
        result[key] = -result[key]
    result["rho_per_anchor"] = -np.asarray(result["rho_per_anchor"])
    result["rho_all"] = {k: -v for k, v in result["rho_all"].items()}
    result["cross_talk"] = {k: -v for k, v in result["cross_talk"].items()}
    result["flipped"] = True


def score(results: list[dict[str, Any]]) -> float:
    """Mean own rho minus mean worst cross-talk (higher is better)."""
    return float(np.mean([r["rho"] for r in results]) - np.mean([r["max_cross_talk"] for r in results]))


# ================================================================================================ the command
@dataclass(frozen=True)
class AxesData:
    """Latent means, their reconstructions' descriptors and the decoding conditions of a corpus."""

    z: np.ndarray
    descriptors: np.ndarray
    labels: np.ndarray | None


def prepare(run: Run, corpus: Corpus, *, n_iter: int = 32) -> AxesData:
    """Encode ``corpus`` and describe the model's reconstructions of it."""
    labels, pitch = conditions(run, corpus)
    if pitch is not None:
        raise KickspaceError("named axes for pitch-conditioned models are not supported (the pitch is a condition)")
    mu, _ = encode(run.model, corpus.features, labels=labels)
    audio = to_audio(decode(run.model, mu, labels=labels), run.spec, n_iter=n_iter)
    return AxesData(z=mu, descriptors=describe_audio(audio, run.spec), labels=labels)


def derive_axes(run: Run, data: AxesData, *, controls: Sequence[str] = CONTROLS, methods: Sequence[str] | None = None,
                n_anchors: int = 4, n_values: int = 9, ridge: float = 1e-3, seed: int = 0, n_iter: int = 32,
                pads: tuple[np.ndarray, np.ndarray | None] | None = None, n_random: int = 0,
                implementations: Mapping[str, knobs.Describer] | None = None) -> dict[str, Any]:
    """Derive, scale and verify axes with each method (default: :func:`available_methods`).

    Sweeps start from the latent mean, ``n_anchors`` encoded examples, ``pads`` (codes ``[P, L]`` and labels, see
    :func:`trainer.analysis.knobs.pad_anchors`) and ``n_random`` random latents; each is read by every one of
    ``implementations`` (default :func:`trainer.analysis.knobs.default_implementations`). Returns the report
    written by :func:`write_axes`.
    """
    methods = available_methods(run.model.config, controls) if methods is None else tuple(methods)
    if CONTROL in methods and CONTROL not in available_methods(run.model.config, controls):
        raise KickspaceError(f"method {CONTROL!r} needs a model whose decoder takes all of {list(controls)} "
                             f"(this one takes {list(run.model.config.controls)})")
    y_raw = control_units(data.descriptors)
    standard = Standardiser.fit(y_raw)
    y = standard.apply(y_raw)
    flat = [c for c in controls if (standard.p95 - standard.p05)[DESCRIPTORS.index(c)] < 1e-3]
    controls = [c for c in controls if c not in flat]
    if not controls:
        raise KickspaceError("no control descriptor varies over the model's reconstructions; no axis can be derived")
    ctrl = [DESCRIPTORS.index(c) for c in controls]
    held = [DESCRIPTORS.index(h) for h in HELD]
    anchor = data.z.mean(axis=0)
    no_pads = (np.zeros((0, data.z.shape[1])), None)
    starts = knobs.choose_anchors(data.z, data.labels, n_real=n_anchors, pads=pads or no_pads, n_random=n_random,
                                  seed=seed)
    implementations = dict(implementations or knobs.default_implementations())
    values = np.linspace(-1.0, 1.0, n_values)
    candidates = {}
    for method in methods:
        if method == CONTROL:
            directions, scales, capped = control_axes(run.model.config, controls, standard)
        else:
            u = derive(data.z, y, method=method, controls=ctrl, held=held, ridge=ridge)
            directions, scales, capped = scale_axes(u, data.z, standard.half_range[ctrl])
        candidates[method] = _verify(run, directions, scales, capped, starts=starts, values=values,
                                     standard=standard, controls=controls, n_iter=n_iter,
                                     implementations=implementations)
    chosen = max(candidates, key=lambda m: candidates[m]["score"])
    r2 = held_out_r2(data.z, y, ridge=ridge, seed=seed)
    return {"run": str(run.path), "method": chosen, "anchor": anchor, "latent": int(data.z.shape[1]),
            "examples": int(len(data.z)), "values": values, "n_anchors": int(len(starts.z)),
            "r2": {d: float(r2[j]) if standard.p95[j] - standard.p05[j] >= 1e-3 else None
                   for j, d in enumerate(DESCRIPTORS)},
            "data_range": {d: [float(standard.p05[j]), float(standard.p95[j])] for j, d in enumerate(DESCRIPTORS)},
            "axes": candidates[chosen]["axes"],
            "skipped": {c: "does not vary over the model's reconstructions" for c in flat},
            "methods": {m: {"score": c["score"], "axes": c["axes"]} for m, c in candidates.items()},
            "validation": candidates[chosen]["validation"],
            "_swept": {m: c["swept"] for m, c in candidates.items()}}



def _verify(run: Run, directions: np.ndarray, scales: np.ndarray, capped: np.ndarray, *, starts: knobs.Anchors,
            values: np.ndarray, standard: Standardiser, controls: Sequence[str], n_iter: int,
            implementations: Mapping[str, knobs.Describer]) -> dict[str, Any]:
    """Sweep one method's axes from every anchor, read by each implementation; mirror any axis turning backwards.

    Returns the method's candidate entry of :func:`derive_axes`: ``score``, ``axes`` (with direction, scale,
    capped), ``swept`` (the project's descriptors of every sweep) and the ``validation`` of :func:`knobs.validate`.
    """
    read = sweep_descriptors(run, directions=directions, scales=scales, anchors=starts.z,
                             anchor_labels=starts.labels, values=values, n_iter=n_iter,
                             implementations={**implementations, knobs.OWN: describe_batch})
    swept = read[knobs.OWN]
    results = measure(values, swept, standard, controls=controls)
    for k, (r, d, s, c) in enumerate(zip(results, directions, scales, capped)):
        r.update(direction=d, scale=float(s), capped=bool(c))
        if r["rho"] < 0:  # the knob turns the wrong way: mirror it (the sweep is symmetric, so exactly)
            flip_axis(r)
            knobs.flip(read, k)  # own (``swept``) included
    return {"score": score(results), "axes": results, "swept": swept,
            "validation": knobs.validate(values, read, controls=controls, kinds=starts.kinds)}

def to_runtime_axes(report: dict[str, Any]) -> list[Axis]:
    """The chosen axes as :class:`runtime.model.Axis` (``z = anchor + value * scale * direction``)."""
    return [Axis(name=a["name"], direction=tuple(float(v) for v in a["direction"]), scale=float(a["scale"]),
                 effect={"rho": float(a["rho"]), "span": float(a["span"]), "max_cross_talk": float(a["max_cross_talk"]),
                         **{f"cross_talk_{k}": float(v) for k, v in a["cross_talk"].items()}})
            for a in report["axes"]]


def load_axes(path: str | Path) -> tuple[list[Axis], np.ndarray]:
    """Read ``axes.json``: the runtime axes and their anchor ``[L]`` (the latent mean)."""
    report = read_json(path)
    return to_runtime_axes(report), np.asarray(report["anchor"], dtype=np.float64)


def write_axes(report: dict[str, Any], *, out: Path) -> dict[str, Path]:
    """``axes.json``, ``axes.md``, ``axes_sweeps.png`` (own descriptor vs knob), ``axes_crosstalk.png``."""
    swept = report["_swept"][report["method"]]
    public = {k: v for k, v in report.items() if k != "_swept"}
    public["export"] = [{"name": a.name, "direction": a.direction, "scale": a.scale, "effect": a.effect}
                        for a in to_runtime_axes(report)]
    paths = {"json": write_json(out / "axes.json", public)}
    values = report["values"]
    curves = {}
    for k, axis in enumerate(report["axes"]):
        own = DESCRIPTORS.index(axis["name"])
        y = control_units(swept[k, 0])[:, own]
        width = report["data_range"][axis["name"]][1] - report["data_range"][axis["name"]][0] + 1e-12
        curves[f"{axis['name']} (rho {axis['rho']:.2f})"] = (y - y[len(y) // 2]) / width
    paths["sweeps"] = plots.curve_png(out / "axes_sweeps.png", values, curves, xlabel="knob value",
                                      ylabel="own descriptor change / data 5-95% range",
                                      title=f"Axis sweeps from the latent mean ({report['method']})")
    paths["md"] = write_text(out / "axes.md", axes_markdown(report))
    return paths


def axes_markdown(report: dict[str, Any]) -> str:
    """The axes report: chosen method, rho and cross-talk per axis, comparison of methods."""
    shown = [d for d in DESCRIPTORS if d != "length"]
    rows = [[a["name"], a["rho"], a["rho_at_mean"], a["span"], a["max_cross_talk"], a["scale"],
             "yes" if a["capped"] else "no", *(a["cross_talk"].get(d, a["span"]) for d in shown)]
            for a in report["axes"]]
    methods = [[m, c["score"], *(a["rho"] for a in c["axes"]), *(a["max_cross_talk"] for a in c["axes"])]
               for m, c in report["methods"].items()]
    names = [a["name"] for a in report["axes"]]
    r2 = table(list(report["r2"]), [list(report["r2"].values())])
    return "\n\n".join([
        f"# Named latent axes of {report['run']}",
        f"Method kept: **{report['method']}** (best mean rho minus mean worst cross-talk). {report['examples']} "
        f"encoded examples, latent {report['latent']}; knob values {len(report['values'])} steps in [-1, 1] from "
        f"{report['n_anchors']} anchors (the latent mean + encoded examples), decoded through Griffin-Lim.",
        "rho: Spearman of knob vs own descriptor (median over anchors; `at mean`: from the latent mean). span and "
        "cross-talk: change of a descriptor over the knob's range as a share of its 5-95% data range (own ideal "
        "~1, others ideal 0; the matrix shows the own span on the diagonal). `max xt`: worst cross-talk to the "
        "other controls and pitch.",
        table(["axis", "rho", "rho at mean", "span", "max xt", "scale", "capped", *shown], rows),
        *([f"Skipped: {', '.join(f'{k} ({v})' for k, v in report['skipped'].items())}."] if report["skipped"] else []),
        "## Methods compared", table(["method", "score", *(f"rho {n}" for n in names),
                                      *(f"max xt {n}" for n in names)], methods),
        "## Held-out R^2 of the linear descriptor model (z -> descriptor)", r2,
        *([knobs.markdown(report["validation"])] if report.get("validation") else []),
        "Plot: `axes_sweeps.png`. Axes for export: `axes.json` (`export`: name, direction, scale, effect; anchor "
        "= `anchor`)."]) + "\n"


def axes(run: Run, corpus: Corpus, *, out: Path, n_anchors: int = 4, n_values: int = 9, seed: int = 0,
         n_iter: int = 32, methods: Sequence[str] | None = None, n_random: int = 6) -> dict[str, Any]:
    """``trainer axes``: derive, verify and write the named axes of ``run`` from ``corpus`` (its training data).

    Sweeps also start from the pads export will make (:func:`trainer.analysis.knobs.pad_anchors`: cluster
    centroids once ``trainer cluster`` has run, or one per class) and ``n_random`` random latents.
    """
    if len(corpus) < 10:
        raise KickspaceError(f"need at least 10 sounds to derive axes, got {len(corpus)}")
    data = prepare(run, corpus, n_iter=n_iter)
    config = run.model.config
    pads = knobs.pad_anchors(run.folder, code_size=config.code_size,
                             classes=run.classes if config.n_classes else ())
    report = derive_axes(run, data, n_anchors=n_anchors, n_values=n_values, seed=seed, n_iter=n_iter,
                         methods=methods, pads=pads, n_random=n_random)
    write_axes(report, out=out)
    return {k: v for k, v in report.items() if k != "_swept"}
