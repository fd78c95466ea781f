"""`trainer sweep-latent`: the PCA share and the recommendation rule, and a two-size sweep end to end."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from tests.analysis_fixtures import MODEL, OBJECTIVE, SPEC, TRAIN, tiny_run  # noqa: F401
from trainer.analysis.sweep import recommend, sweep_latent, top_components_share
from trainer.data.arrays import TrainingArrays


def test_top_components_share_of_known_spectrum() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 5)) * np.sqrt([4.0, 3.0, 2.0, 0.5, 0.5])
    assert np.isclose(top_components_share(x), 9.0 / 10.0, atol=0.02)


def test_recommend_smallest_size_reaching_the_target() -> None:
    rows = [{"latent": 32, "top3_share": 0.7}, {"latent": 8, "top3_share": 0.5}, {"latent": 16, "top3_share": 0.65}]
    assert recommend(rows)["latent"] == 16
    none = recommend([{"latent": 8, "top3_share": 0.4}, {"latent": 16, "top3_share": 0.45}])
    assert none["latent"] is None and "45.0% at latent 16" in none["reason"]


def test_sweep_trains_one_run_per_size_and_reports(tiny_run, tmp_path) -> None:  # noqa: F811
    data = TrainingArrays(tiny_run.train.features[:32])
    train = dataclasses.replace(TRAIN, epochs=2)
    report = sweep_latent(data, dims=[4, 2], out=tmp_path, spec=SPEC, model=MODEL, objective=OBJECTIVE, train=train)
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["latent"] for r in saved["rows"]] == [2, 4]
    for row in saved["rows"]:
        assert (tmp_path / f"latent_{row['latent']}" / "best.pt").is_file()
        assert 0 < row["top3_share"] <= 1.0 + 1e-9 and row["val_recon"] > 0
    assert saved["rows"][0]["top3_share"] > 0.999  # 2 dimensions: three components explain everything
    assert saved["recommendation"]["latent"] == 2 == report["recommendation"]["latent"]
    assert "Recommended latent size: 2" in (tmp_path / "sweep.md").read_text()
