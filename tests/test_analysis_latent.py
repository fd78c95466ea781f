"""`trainer analyze`: latent diagnostics and maps, on known posteriors and on the tiny run (also through the CLI)."""

from __future__ import annotations

import json

import numpy as np

from tests.analysis_fixtures import tiny_run  # noqa: F401  (session fixture)
from trainer import cli
from trainer.analysis.latent import diagnostics
from trainer.analysis.run import pairwise_distances
from trainer.descriptors import DESCRIPTORS


def test_diagnostics_tell_collapse_from_health() -> None:
    rng = np.random.default_rng(0)
    healthy = diagnostics(rng.standard_normal((50, 4)), np.full((50, 4), -4.0))
    assert healthy["verdict"] == "healthy" and healthy["active_units"] == 4 and healthy["collapsed_dims"] == []
    assert healthy["pairwise"]["separation"] > 5  # codes 1 apart, posterior noise exp(-2) per dim
    mu = rng.standard_normal((50, 4)) * [1.0, 1.0, 0.0, 0.0]
    partial = diagnostics(mu, np.zeros((50, 4)) + [-4, -4, 0, 0])
    assert partial["verdict"] == "partial" and partial["active_units"] == 2 and partial["collapsed_dims"] == [2, 3]
    assert np.allclose(partial["kl_per_dim"][2:], 0.0)
    collapsed = diagnostics(np.zeros((50, 4)), np.zeros((50, 4)))
    assert collapsed["verdict"] == "collapsed" and collapsed["kl_total"] == 0.0


def test_pairwise_distances_match_brute_force() -> None:
    x = np.random.default_rng(1).standard_normal((7, 3))
    brute = [np.linalg.norm(x[i] - x[j]) for i in range(7) for j in range(i + 1, 7)]
    assert np.allclose(pairwise_distances(x), brute)


def test_analyze_cli_writes_diagnostics_and_maps(tiny_run, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "analysis"
    code = cli.main(["analyze", str(tiny_run.folder), "--data", str(tiny_run.train_root), "--out", str(out),
                     "--no-cache"])
    assert code == 0
    report = json.loads((out / "latent.json").read_text())
    diag = report["diagnostics"]
    latent = tiny_run.run.model.config.latent
    assert diag["examples"] == len(tiny_run.train) and len(diag["kl_per_dim"]) == latent
    assert diag["active_units"] == sum(s ** 2 > diag["active_threshold"] for s in diag["mu_std_per_dim"])
    assert diag["verdict"] == "healthy" and diag["active_units"] >= 2  # a trained model uses its latent
    assert 0 < sum(report["maps"]["pca"]["explained_variance_ratio"]) <= 1.0
    assert report["clusters"] >= 1
    text = (out / "latent.md").read_text()
    assert f"**Verdict: {diag['verdict']}**" in text and f"{diag['active_units']} of {latent} units" in text
    for column in ("cluster", *DESCRIPTORS):
        assert (out / f"map_pca_{column}.png").stat().st_size > 1000
    page = (out / "map_pca.html").read_text()
    assert "http" not in page.replace('"http://www.w3.org/2000/svg"', "")  # self-contained, no CDN
    payload = json.loads(page.split("const DATA = ")[1].split(";\n")[0])
    assert len(payload["x"]) == len(tiny_run.train) and set(DESCRIPTORS) <= set(payload["columns"])
