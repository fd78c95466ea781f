"""``trainer evaluate``: how a run sounds on audio it never saw.

Measures (JSON + Markdown + PNG in ``out``):

round trip
    encode -> decode -> mel inverse + Griffin-Lim -> waveform -> log-mel, compared with the original's log-mel:
    RMS dB difference over the bands within :data:`FLOOR_DB` of each example's peak. Two oracles show how much of
    that the VAE causes: Griffin-Lim on the *true* linear magnitude (phase only), and the spec round trip
    (true log-mel -> mel inverse -> Griffin-Lim: what any model on this spec could reach at best).
realism
    Fréchet distance of descriptor distributions, generated vs a real reference, beside real half vs half at the
    same sizes (averaged over random splits) and per descriptor (:mod:`trainer.analysis.realism`), for each
    sampler: ``standard`` draws codes from ``N(0, I)``; ``posterior`` from a Gaussian fitted to the encoder means
    of real sounds (stored as ``prior.json``).
diversity
    Median pairwise distance among generated sounds vs among real sounds, in log-mel dB and in descriptor space;
    a ratio far below 1 is a collapse to near-identical outputs (verdict when below :data:`COLLAPSE_RATIO`).
memorisation
    Log-mel distance of each generated sound to its nearest training sound, next to the same for the real
    held-out sounds (a generated sound much closer than real held-out ones is a copy); needs the training data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.spec import SpectrogramSpec
from trainer.analysis import plots
from trainer.analysis.realism import (PRIOR_FILE, GaussianPrior, draw, fit_posterior, realism, standardised_descriptors,
                                      write_prior)
from trainer.analysis.run import Run, conditions, decode, describe_audio, encode, pairwise_distances, to_audio
from trainer.analysis.reports import fmt, table, write_json, write_text
from trainer.data.ingest import Corpus
from trainer.spec import LogMel, griffin_lim, ref_db, waveform_to_features

FLOOR_DB = 60.0
COLLAPSE_RATIO = 0.3


# ================================================================================================ round trip
def features_db(features: np.ndarray, spec: SpectrogramSpec) -> np.ndarray:
    """Normalised features ``[N, C, M, T]`` -> band levels in dB (same shape)."""
    return (np.asarray(features, dtype=np.float64) + 1.0) * 0.5 * spec.top_db + (ref_db(spec) - spec.top_db)


def log_spectral_distance(reference: np.ndarray, other: np.ndarray, spec: SpectrogramSpec) -> np.ndarray:
    """Per-example RMS dB difference ``[N]`` over the reference's bands within :data:`FLOOR_DB` of its peak."""
    ref, oth = features_db(reference, spec), features_db(other, spec)
    peak = ref.reshape(len(ref), -1).max(axis=1)[:, None, None, None]
    mask = ref >= peak - FLOOR_DB
    sq = np.where(mask, (ref - oth) ** 2, 0.0).reshape(len(ref), -1).sum(axis=1)
    return np.sqrt(sq / np.maximum(mask.reshape(len(ref), -1).sum(axis=1), 1))


def _features_of(audio: np.ndarray, spec: SpectrogramSpec) -> np.ndarray:
    return waveform_to_features(np.asarray(audio, dtype=np.float32), spec).numpy()


@torch.no_grad()
def oracle_true_magnitude(audio: np.ndarray, spec: SpectrogramSpec, *, n_iter: int) -> np.ndarray:
    """Waveforms ``[N, C, S]`` rebuilt by Griffin-Lim from the true scaled linear magnitude of ``audio``."""
    power = LogMel(spec).power(torch.as_tensor(audio, dtype=torch.float32))
    return griffin_lim(torch.sqrt(power), spec, n_iter=n_iter).numpy()


def round_trip(run: Run, corpus: Corpus, *, n_iter: int = 32) -> dict[str, np.ndarray]:
    """Per-example log-spectral distances ``[N]`` (dB): ``vae``, ``oracle_gl_true_magnitude``, ``oracle_spec``."""
    labels, pitch = conditions(run, corpus)
    mu, _ = encode(run.model, corpus.features, labels=labels, pitch=pitch)
    vae = to_audio(decode(run.model, mu, labels=labels, pitch=pitch), run.spec, n_iter=n_iter)
    spec_only = to_audio(corpus.features, run.spec, n_iter=n_iter)
    true_mag = oracle_true_magnitude(corpus.audio, run.spec, n_iter=n_iter)
    ref = corpus.features
    return {name: log_spectral_distance(ref, _features_of(a, run.spec), run.spec)
            for name, a in (("vae", vae), ("oracle_gl_true_magnitude", true_mag), ("oracle_spec", spec_only))}


# ================================================================================================ realism / diversity
def diversity(generated_feats: np.ndarray, real_feats: np.ndarray, generated_desc: np.ndarray,
              real_desc: np.ndarray, spec: SpectrogramSpec) -> dict[str, Any]:
    """Median pairwise spreads (log-mel RMS dB; standardised descriptors), generated vs real, and a collapse verdict."""
    def logmel_spread(feats: np.ndarray) -> float:
        flat = features_db(feats, spec).reshape(len(feats), -1)
        return float(np.median(pairwise_distances(flat)) / np.sqrt(flat.shape[1]))

    def desc_spread(desc: np.ndarray) -> float:
        return float(np.median(pairwise_distances(standardised_descriptors(desc, real_desc))))

    out = {"logmel_generated_db": logmel_spread(generated_feats), "logmel_real_db": logmel_spread(real_feats),
           "descriptor_generated": desc_spread(generated_desc), "descriptor_real": desc_spread(real_desc)}
    out["logmel_ratio"] = out["logmel_generated_db"] / max(out["logmel_real_db"], 1e-12)
    out["descriptor_ratio"] = out["descriptor_generated"] / max(out["descriptor_real"], 1e-12)
    out["collapsed"] = bool(min(out["logmel_ratio"], out["descriptor_ratio"]) < COLLAPSE_RATIO)
    return out


def nearest_distances(queries: np.ndarray, pool: np.ndarray, spec: SpectrogramSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per query: RMS dB log-mel distance to its nearest ``pool`` item and that item's index (``[N]`` each)."""
    q = features_db(queries, spec).reshape(len(queries), -1)
    p = features_db(pool, spec).reshape(len(pool), -1)
    d2 = np.maximum((q * q).sum(1)[:, None] + (p * p).sum(1)[None, :] - 2.0 * q @ p.T, 0.0)
    idx = d2.argmin(axis=1)
    return np.sqrt(d2[np.arange(len(q)), idx] / q.shape[1]), idx


def memorisation(generated_feats: np.ndarray, real_feats: np.ndarray, train: Corpus,
                 spec: SpectrogramSpec) -> dict[str, Any]:
    """Nearest-training-neighbour distances of generated and of held-out real sounds, and the share of copies.

    A generated sound counts as a likely copy when it is closer to a training sound than 95% of the held-out
    real sounds are to theirs.
    """
    gen_d, gen_i = nearest_distances(generated_feats, train.features, spec)
    real_d, _ = nearest_distances(real_feats, train.features, spec)
    threshold = float(np.percentile(real_d, 5))
    return {"generated_nn_db": gen_d, "real_nn_db": real_d, "generated_nn_median_db": float(np.median(gen_d)),
            "real_nn_median_db": float(np.median(real_d)), "copy_threshold_db": threshold,
            "copy_fraction": float(np.mean(gen_d < threshold)),
            "nearest_training_file": [Path(train.paths[i]).name for i in gen_i]}


# ================================================================================================ the command
def _real_paths(corpus: Corpus | None) -> set[str]:
    return set() if corpus is None else {os.path.realpath(p) for p in corpus.paths}


def _roots(corpus: Corpus) -> list[str]:
    return [root for root, _ in corpus.summary.layouts]


def _samplers(run: Run, reference: Corpus, train: Corpus | None, prior_data: Corpus | None,
              posterior: bool) -> tuple[dict[str, GaussianPrior | None], dict[str, Any] | None]:
    """The samplers to report (``standard`` always; ``posterior`` with ``prior_data`` or ``posterior``) and the
    posterior's description; without ``prior_data`` it is fitted on the reference's sounds that are in ``train``."""
    if prior_data is None and not posterior:
        return {"standard": None}, None
    if prior_data is not None:
        prior, roots = fit_posterior(run, prior_data), _roots(prior_data)
        in_reference = len(_real_paths(prior_data) & _real_paths(reference))
    else:
        from runtime.schema import require

        require(train is not None, "--prior posterior", "needs --prior-data, or --train-data to fit on the real "
                                                        "reference's training sounds")
        trained = _real_paths(train)
        rows = np.array([os.path.realpath(p) in trained for p in reference.paths])
        prior, roots = fit_posterior(run, reference, rows), _roots(reference)
        in_reference = int(rows.sum())
    return ({"standard": None, "posterior": prior},
            {"fitted_on": roots, "sounds": prior.sounds, "in_reference": in_reference, "file": PRIOR_FILE})


def evaluate(run: Run, corpus: Corpus, *, out: Path, train: Corpus | None = None, reference: Corpus | None = None,
             prior_data: Corpus | None = None, posterior: bool = False, samples: int = 256, n_iter: int = 32,
             seed: int = 0) -> dict[str, Any]:
    """``trainer evaluate``: ``evaluate.json``, ``evaluate.md``, ``round_trip.png`` (+ ``memorisation.png``,
    ``prior.json``).

    ``corpus`` holds the held-out sounds (round trip; the real side of memorisation). ``reference`` is the real set
    realism and diversity compare with (default ``corpus``); it may include training sounds (FID is conventionally
    computed against the training set): the report counts them. ``samples`` generated sounds per sampler.
    ``prior_data`` (or ``posterior``) adds the posterior sampler (:func:`trainer.analysis.realism.fit_posterior`),
    fitted on ``prior_data``, else on the reference's sounds that are in ``train``, and written to ``prior.json``.
    """
    from runtime.schema import require

    require(samples >= 2, "samples", f"must be at least 2 (a distribution needs two sounds), got {samples}")
    reference = corpus if reference is None else reference
    samplers, fitted = _samplers(run, reference, train, prior_data, posterior)
    trip = round_trip(run, corpus, n_iter=n_iter)
    real_desc = describe_audio(reference.audio, run.spec)
    report: dict[str, Any] = {
        "run": str(run.path), "examples": len(corpus), "data": corpus.summary.describe(), "samples": samples,
        "reference": {"roots": _roots(reference), "sounds": len(reference), "is_data": reference is corpus,
                      "in_training": None if train is None else len(_real_paths(reference) & _real_paths(train))},
        "round_trip_db": {k: {"median": float(np.median(v)), "mean": float(np.mean(v)), "per_example": v}
                          for k, v in trip.items()},
        "realism": {}, "diversity": {}, "posterior": fitted}
    rt = report["round_trip_db"]
    report["round_trip_db"]["vae_share_db"] = rt["vae"]["median"] - rt["oracle_spec"]["median"]
    plots.histogram_png(out / "round_trip.png", {k: v for k, v in trip.items()}, xlabel="log-mel distance (dB)",
                        title="Round trip on held-out audio")
    if train is not None:
        report["memorisation"] = {}
    for name, prior in samplers.items():
        generated = draw(run, reference, samples, prior=prior, seed=seed)
        gen_desc = describe_audio(to_audio(generated, run.spec, n_iter=n_iter), run.spec)
        report["realism"][name] = realism(gen_desc, real_desc, seed=seed)
        report["diversity"][name] = diversity(generated, reference.features, gen_desc, real_desc, run.spec)
        if train is not None:
            report["memorisation"][name] = memorisation(generated, corpus.features, train, run.spec)
    if fitted is not None:
        write_prior(out / PRIOR_FILE, samplers["posterior"], run, fitted["fitted_on"])
    if train is not None:
        mem = report["memorisation"]
        plots.histogram_png(out / "memorisation.png",
                            {**{f"generated ({k})": v["generated_nn_db"] for k, v in mem.items()},
                             "held-out real": mem["standard"]["real_nn_db"]},
                            xlabel="distance to nearest training sound (dB)", title="Memorisation")
    write_json(out / "evaluate.json", report)
    write_text(out / "evaluate.md", _markdown(report))
    return report


def _reference_line(report: dict[str, Any]) -> str:
    ref, post = report["reference"], report["posterior"]
    where = "the held-out `--data` sounds" if ref["is_data"] else f"`{', '.join(ref['roots'])}`"
    trained = ("" if ref["in_training"] is None else
               f"; {ref['in_training']} of them are in the training data" if ref["in_training"] else
               "; none of them is in the training data")
    line = f"Real reference: {ref['sounds']} sounds, {where}{trained}. Generated: {report['samples']} per sampler."
    if post is not None:
        line += (f" The posterior sampler was fitted on {post['sounds']} sounds (`{', '.join(post['fitted_on'])}`), "
                 f"{post['in_reference']} of which are in the reference; it is stored in `{post['file']}`.")
    return line


def _realism_markdown(report: dict[str, Any]) -> list[str]:
    real = report["realism"]
    first = next(iter(real.values()))
    half, other = first["sizes"]
    rows = [[name, f"{fmt(r['frechet_real_half_vs_half'])} ± {fmt(r['frechet_real_half_vs_half_sd'], 2)}",
             f"{fmt(r['frechet_generated_vs_real'])} ± {fmt(r['frechet_generated_vs_real_sd'], 2)}", r["ratio"],
             r["frechet_full"]] for name, r in real.items()]
    names = list(first["descriptors"])
    shift = [[d] + [v for r in real.values() for v in (r["descriptors"][d]["mean_shift_sd"],
                                                      r["descriptors"][d]["spread_ratio"])] for d in names]
    return [
        "## Realism (Fréchet distance of standardised descriptor distributions; lower is better)",
        _reference_line(report) + " Samplers: `standard` draws codes from N(0, I); `posterior` from a Gaussian "
        "fitted to the encoder means of real sounds (for a class-conditioned model, one per class: "
        "`trainer.analysis.realism.class_priors`).",
        table(["sampler", f"real half vs half ({half} vs {other})", f"generated vs real ({half} vs {other})",
               "ratio", f"generated ({first['generated']}) vs real ({first['real']})"], rows),
        f"Means ± sd over {first['splits']} random splits and draws at the same sizes, so both carry the same "
        "small-sample bias; the ratio is the figure to read (1: as far from the real sounds as they are from each "
        "other). The last column uses every sound.",
        "Per descriptor: the generated sounds' mean shift (in real standard deviations) and spread ratio "
        "(generated std / real std; 1 is the real spread).",
        table(["descriptor"] + [f"{name} {what}" for name in real for what in ("shift", "spread")], shift),
    ]


def _markdown(report: dict[str, Any]) -> str:
    rt, div = report["round_trip_db"], report["diversity"]
    parts = [
        f"# Evaluation of {report['run']} on {report['examples']} held-out sounds",
        f"## Round trip (log-mel distance, dB, bands within {FLOOR_DB:g} dB of each peak; lower is better)",
        table(["path", "median", "mean"], [[k, v["median"], v["mean"]] for k, v in rt.items() if isinstance(v, dict)]),
        f"The VAE adds **{fmt(rt['vae_share_db'])} dB** (median) to the spec's own round trip; Griffin-Lim on the "
        "true magnitude isolates the phase reconstruction alone. Histogram: `round_trip.png`.",
        *_realism_markdown(report),
        "## Diversity (median pairwise distance, generated vs the real reference)",
        table(["sampler", "space", "generated", "real", "ratio"],
              [row for name, d in div.items() for row in (
                  [name, "log-mel (dB)", d["logmel_generated_db"], d["logmel_real_db"], d["logmel_ratio"]],
                  [name, "descriptors (std units)", d["descriptor_generated"], d["descriptor_real"],
                   d["descriptor_ratio"]])]),
        "**Collapse: " + "; ".join(f"{name} {'YES - near-identical sounds' if d['collapsed'] else 'no'}"
                                   for name, d in div.items())
        + f"** (verdict when a ratio is below {COLLAPSE_RATIO}).",
    ]
    mem = report.get("memorisation")
    if mem:
        parts += ["## Memorisation (distance to the nearest training sound, dB)",
                  table(["sampler", "generated median", "held-out real median", "copy threshold",
                         "share of likely copies"],
                        [[name, m["generated_nn_median_db"], m["real_nn_median_db"], m["copy_threshold_db"],
                          m["copy_fraction"]] for name, m in mem.items()]),
                  "Histogram: `memorisation.png`."]
    else:
        parts += ["## Memorisation\nNot measured: pass the training data (`--train-data`)."]
    return "\n\n".join(parts) + "\n"
