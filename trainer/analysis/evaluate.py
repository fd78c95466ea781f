"""``trainer evaluate``: how a run sounds on audio it never saw.

Measures (JSON + Markdown + PNG in ``out``):

round trip
    encode -> decode -> mel inverse + Griffin-Lim -> waveform -> log-mel, compared with the original's log-mel:
    RMS dB difference over the bands within :data:`FLOOR_DB` of each example's peak. Two oracles show how much of
    that the VAE causes: Griffin-Lim on the *true* linear magnitude (phase only), and the spec round trip
    (true log-mel -> mel inverse -> Griffin-Lim: what any model on this spec could reach at best).
realism
    Fréchet distance between Gaussians fitted to the descriptors (regression units, standardised on the real set)
    of prior samples and of the real sounds, next to the distance between two random halves of the real set.
diversity
    Median pairwise distance among generated sounds vs among real sounds, in log-mel dB and in descriptor space;
    a ratio far below 1 is a collapse to near-identical outputs (verdict when below :data:`COLLAPSE_RATIO`).
memorisation
    Log-mel distance of each generated sound to its nearest training sound, next to the same for the real
    held-out sounds (a generated sound much closer than real held-out ones is a copy); needs the training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import linalg

from runtime.spec import SpectrogramSpec
from trainer.analysis import plots
from trainer.analysis.run import Run, conditions, decode, describe_audio, encode, pairwise_distances, to_audio
from trainer.analysis.reports import fmt, table, write_json, write_text
from trainer.data.ingest import Corpus
from trainer.descriptors import control_units
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


def realism(generated: np.ndarray, real: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """Fréchet distance of descriptor distributions ``[N, D]``: generated vs real, and real half vs half."""
    keep = control_units(real).std(axis=0) > 1e-6  # a descriptor constant over the real set carries no distribution
    g, r = standardised_descriptors(generated, real)[:, keep], standardised_descriptors(real, real)[:, keep]
    order = np.random.default_rng(seed).permutation(len(r))
    half = len(r) // 2
    return {"frechet_generated_vs_real": frechet_distance(g, r),
            "frechet_real_half_vs_half": frechet_distance(r[order[:half]], r[order[half:]])}


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
def prior_like(run: Run, corpus: Corpus, *, seed: int) -> np.ndarray:
    """As many prior samples as real sounds (with the real sounds' classes for a CVAE), features ``[N, C, M, T]``."""
    gen = torch.Generator().manual_seed(seed)
    labels, pitch = conditions(run, corpus)
    z = torch.randn(len(corpus), run.model.code_size, generator=gen).double().numpy()
    return decode(run.model, z, labels=labels, pitch=pitch)


def evaluate(run: Run, corpus: Corpus, *, out: Path, train: Corpus | None = None, n_iter: int = 32,
             seed: int = 0) -> dict[str, Any]:
    """``trainer evaluate``: ``evaluate.json``, ``evaluate.md``, ``round_trip.png`` (+ ``memorisation.png``)."""
    trip = round_trip(run, corpus, n_iter=n_iter)
    generated = prior_like(run, corpus, seed=seed)
    gen_desc = describe_audio(to_audio(generated, run.spec, n_iter=n_iter), run.spec)
    real_desc = describe_audio(corpus.audio, run.spec)
    report: dict[str, Any] = {
        "run": str(run.path), "examples": len(corpus), "data": corpus.summary.describe(),
        "round_trip_db": {k: {"median": float(np.median(v)), "mean": float(np.mean(v)), "per_example": v}
                          for k, v in trip.items()},
        "realism": realism(gen_desc, real_desc, seed=seed),
        "diversity": diversity(generated, corpus.features, gen_desc, real_desc, run.spec),
    }
    rt = report["round_trip_db"]
    report["round_trip_db"]["vae_share_db"] = rt["vae"]["median"] - rt["oracle_spec"]["median"]
    plots.histogram_png(out / "round_trip.png", {k: v for k, v in trip.items()}, xlabel="log-mel distance (dB)",
                        title="Round trip on held-out audio")
    if train is not None:
        mem = memorisation(generated, corpus.features, train, run.spec)
        report["memorisation"] = mem
        plots.histogram_png(out / "memorisation.png", {"generated": mem["generated_nn_db"],
                                                       "held-out real": mem["real_nn_db"]},
                            xlabel="distance to nearest training sound (dB)", title="Memorisation")
    write_json(out / "evaluate.json", report)
    write_text(out / "evaluate.md", _markdown(report))
    return report


def _markdown(report: dict[str, Any]) -> str:
    rt, real, div = report["round_trip_db"], report["realism"], report["diversity"]
    parts = [
        f"# Evaluation of {report['run']} on {report['examples']} held-out sounds",
        f"## Round trip (log-mel distance, dB, bands within {FLOOR_DB:g} dB of each peak; lower is better)",
        table(["path", "median", "mean"], [[k, v["median"], v["mean"]] for k, v in rt.items() if isinstance(v, dict)]),
        f"The VAE adds **{fmt(rt['vae_share_db'])} dB** (median) to the spec's own round trip; Griffin-Lim on the "
        "true magnitude isolates the phase reconstruction alone. Histogram: `round_trip.png`.",
        "## Realism (Fréchet distance of standardised descriptor distributions)",
        table(["generated vs real", "real half vs half"],
              [[real["frechet_generated_vs_real"], real["frechet_real_half_vs_half"]]]),
        "## Diversity (median pairwise distance)",
        table(["space", "generated", "real", "ratio"],
              [["log-mel (dB)", div["logmel_generated_db"], div["logmel_real_db"], div["logmel_ratio"]],
               ["descriptors (std units)", div["descriptor_generated"], div["descriptor_real"],
                div["descriptor_ratio"]]]),
        f"**Collapse: {'YES - generated sounds are near-identical' if div['collapsed'] else 'no'}** "
        f"(verdict when a ratio is below {COLLAPSE_RATIO}).",
    ]
    mem = report.get("memorisation")
    if mem:
        parts += ["## Memorisation (distance to the nearest training sound, dB)",
                  table(["generated median", "held-out real median", "copy threshold", "share of likely copies"],
                        [[mem["generated_nn_median_db"], mem["real_nn_median_db"], mem["copy_threshold_db"],
                          mem["copy_fraction"]]]),
                  "Histogram: `memorisation.png`."]
    else:
        parts += ["## Memorisation\nNot measured: pass the training data (`--train-data`)."]
    return "\n\n".join(parts) + "\n"
