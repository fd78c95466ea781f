"""`trainer evaluate`: the metrics on known inputs (zero distance, collapse) and the report of the tiny run."""

from __future__ import annotations

import json

import numpy as np

from tests.analysis_fixtures import SPEC, tiny_run  # noqa: F401  (session fixture)
from trainer.analysis.evaluate import (diversity, evaluate, frechet_distance, log_spectral_distance,
                                       nearest_distances)


def test_log_spectral_distance_is_zero_for_identity_and_reads_a_db_offset() -> None:
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (3, *SPEC.shape)).astype(np.float32)
    assert np.allclose(log_spectral_distance(x, x, SPEC), 0.0)
    shifted = x + 2 * 3.0 / SPEC.top_db  # +3 dB everywhere (no clipping in this range)
    assert np.allclose(log_spectral_distance(x, shifted, SPEC), 3.0, atol=1e-4)


def test_frechet_distance_zero_for_same_set_and_grows_with_a_shift() -> None:
    a = np.random.default_rng(0).standard_normal((500, 3))
    assert frechet_distance(a, a) < 1e-6
    assert np.isclose(frechet_distance(a, a + [2.0, 0.0, 0.0]), 4.0, atol=1e-6)


def test_collapse_to_one_sound_shows_in_diversity() -> None:
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (20, *SPEC.shape)).astype(np.float32)
    real_desc = rng.standard_normal((20, 7)) * [5, 0.1, 5, 300, 0.05, 10, 0.05] + [-30, 0.3, -20, 1500, 0.2, 60, 0.3]
    same = np.repeat(real[:1], 20, axis=0)
    collapsed = diversity(same, real, np.repeat(real_desc[:1], 20, axis=0), real_desc, SPEC)
    assert collapsed["collapsed"] and collapsed["logmel_ratio"] == 0.0 and collapsed["descriptor_ratio"] == 0.0
    healthy = diversity(real[::-1].copy(), real, real_desc[::-1].copy(), real_desc, SPEC)
    assert not healthy["collapsed"] and np.isclose(healthy["logmel_ratio"], 1.0)


def test_nearest_neighbour_finds_the_copy() -> None:
    pool = np.random.default_rng(0).uniform(-1, 1, (10, *SPEC.shape)).astype(np.float32)
    dist, idx = nearest_distances(pool[[3, 7]], pool, SPEC)
    assert idx.tolist() == [3, 7] and np.allclose(dist, 0.0, atol=1e-3)


def test_evaluate_reports_round_trip_realism_diversity_memorisation(tiny_run, tmp_path) -> None:  # noqa: F811
    report = evaluate(tiny_run.run, tiny_run.held_out, out=tmp_path, train=tiny_run.train, n_iter=8)
    saved = json.loads((tmp_path / "evaluate.json").read_text())
    rt = saved["round_trip_db"]
    n = len(tiny_run.held_out)
    assert all(len(rt[k]["per_example"]) == n for k in ("vae", "oracle_gl_true_magnitude", "oracle_spec"))
    # The VAE cannot beat the spec's own round trip on average; its share is what it adds.
    assert rt["vae"]["median"] > rt["oracle_spec"]["median"] > 0
    assert np.isclose(rt["vae_share_db"], rt["vae"]["median"] - rt["oracle_spec"]["median"])
    real = saved["realism"]
    assert real["frechet_generated_vs_real"] >= 0 and real["frechet_real_half_vs_half"] >= 0
    assert saved["diversity"]["logmel_generated_db"] > 0 and isinstance(saved["diversity"]["collapsed"], bool)
    mem = saved["memorisation"]
    assert len(mem["generated_nn_db"]) == n and 0.0 <= mem["copy_fraction"] <= 1.0
    assert set(mem["nearest_training_file"]) <= {p.split("/")[-1] for p in tiny_run.train.paths}
    text = (tmp_path / "evaluate.md").read_text()
    assert f"{report['round_trip_db']['vae_share_db']:.3g} dB" in text and "Memorisation" in text
    assert (tmp_path / "round_trip.png").is_file() and (tmp_path / "memorisation.png").is_file()
