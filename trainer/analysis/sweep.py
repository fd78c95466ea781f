"""``trainer sweep-latent``: one model per latent size, compared on reconstruction and on how low-dimensional the
used latent space is.

For each size the model is trained with :func:`trainer.fit.fit` (same data, split, seed and settings), then every
example is encoded and a PCA of the posterior means gives the share of variance the top 3 components explain
(how much of the sound space three knobs can reach). The recommendation is the smallest size whose top 3
components explain at least :data:`TOP3_TARGET`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runtime.errors import ConfigError
from runtime.spec import SpectrogramSpec
from trainer.analysis import plots
from trainer.analysis.run import encode
from trainer.analysis.reports import fmt, table, write_json, write_text
from trainer.checkpoint import load_model
from trainer.config import TrainConfig
from trainer.data.arrays import TrainingArrays
from trainer.fit import fit
from trainer.objective import ObjectiveConfig
from trainer.vae import ModelConfig

TOP3_TARGET = 0.6


def top_components_share(mu: np.ndarray, k: int = 3) -> float:
    """Share of the total variance of ``mu [N, L]`` explained by its top ``k`` principal components."""
    centred = mu - mu.mean(axis=0)
    var = np.linalg.svd(centred, compute_uv=False) ** 2
    return float(var[:k].sum() / max(var.sum(), 1e-30))


def recommend(rows: list[dict[str, Any]], *, target: float = TOP3_TARGET) -> dict[str, Any]:
    """Smallest latent size whose top-3 share reaches ``target`` (None, with the reason, when none does)."""
    passing = [r["latent"] for r in sorted(rows, key=lambda r: r["latent"]) if r["top3_share"] >= target]
    if passing:
        return {"latent": passing[0], "reason": f"smallest size whose top 3 components explain >= {target:.0%}"}
    best = max(rows, key=lambda r: r["top3_share"])
    return {"latent": None, "reason": f"no size reaches {target:.0%}; the highest top-3 share is "
                                      f"{best['top3_share']:.1%} at latent {best['latent']}"}


def sweep_latent(data: TrainingArrays, *, dims: Sequence[int], out: Path, spec: SpectrogramSpec, model: ModelConfig,
                 objective: ObjectiveConfig, train: TrainConfig, run_config: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Train one run per latent size into ``out/latent_D``; write ``sweep.json``, ``sweep.md``, ``sweep.png``."""
    if not dims or min(dims) < 1:
        raise ConfigError("--dims", f"need positive latent sizes, got {list(dims)}")
    rows = []
    for dim in sorted(set(dims)):
        folder = out / f"latent_{dim}"
        config = dataclasses.replace(model, latent=dim)
        summary = fit(data, out=folder, spec=spec, model=config, objective=objective, train=train,
                      run_config=run_config)
        net, _, _ = load_model(folder / "best.pt")
        labels = data.label_ids if config.n_classes else None
        pitch = data.pitch if config.pitch_conditioning else None
        mu, _ = encode(net, data.features, labels=labels, pitch=pitch)
        best = summary.get("best", {})
        rows.append({"latent": dim, "run": str(folder), "val_recon": best.get("val_recon"),
                     "val_recon_ratio": best.get("val_recon_ratio"), "val_kl": best.get("val_kl"),
                     "active_units": best.get("latent_active_units"), "top3_share": top_components_share(mu)})
    report = {"target": TOP3_TARGET, "rows": rows, "recommendation": recommend(rows)}
    sizes = [r["latent"] for r in rows]
    plots.curve_png(out / "sweep.png", sizes, {"top-3 PCA share": [r["top3_share"] for r in rows],
                                               "val recon / mean baseline": [r["val_recon_ratio"] for r in rows]},
                    title="Latent size sweep", xlabel="latent size", ylabel="share / ratio",
                    mark_x=report["recommendation"]["latent"])
    write_json(out / "sweep.json", report)
    write_text(out / "sweep.md", _markdown(report))
    return report


def _markdown(report: dict[str, Any]) -> str:
    rec = report["recommendation"]
    verdict = (f"**Recommended latent size: {rec['latent']}** ({rec['reason']})." if rec["latent"] is not None
               else f"**No recommendation**: {rec['reason']}.")
    rows = [[r["latent"], r["val_recon"], r["val_recon_ratio"], r["val_kl"], r["active_units"],
             f"{100 * r['top3_share']:.1f}%"] for r in report["rows"]]
    return "\n\n".join([
        "# Latent size sweep", verdict,
        table(["latent", "val recon (MSE)", "vs mean baseline", "val KL (nats)", "active units",
               "top-3 PCA share"], rows),
        f"Top-3 share: variance of the latent means explained by their first three principal components "
        f"(target {fmt(100 * report['target'])}%). Plot: `sweep.png`."]) + "\n"
