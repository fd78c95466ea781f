"""`trainer evaluate`: the metrics on known inputs (zero distance, collapse) and the report of the tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.errors import ConfigError
from tests.analysis_fixtures import SPEC, tiny_run  # noqa: F401  (session fixture)
from trainer import cli as trainer_cli
from trainer.analysis.evaluate import diversity, evaluate, log_spectral_distance, nearest_distances
from trainer.analysis.realism import GaussianPrior, class_priors, fit_posterior, frechet_distance, realism
from trainer.analysis.run import encode
from trainer.descriptors import DESCRIPTORS


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
    report = evaluate(tiny_run.run, tiny_run.held_out, out=tmp_path, train=tiny_run.train, n_iter=8, samples=24)
    saved = json.loads((tmp_path / "evaluate.json").read_text())
    rt = saved["round_trip_db"]
    n = len(tiny_run.held_out)
    assert all(len(rt[k]["per_example"]) == n for k in ("vae", "oracle_gl_true_magnitude", "oracle_spec"))
    # The VAE cannot beat the spec's own round trip on average; its share is what it adds.
    assert rt["vae"]["median"] > rt["oracle_spec"]["median"] > 0
    assert np.isclose(rt["vae_share_db"], rt["vae"]["median"] - rt["oracle_spec"]["median"])
    assert list(saved["realism"]) == ["standard"] and saved["posterior"] is None  # no --prior-data: no posterior
    real = saved["realism"]["standard"]
    assert real["frechet_generated_vs_real"] >= 0 and real["frechet_real_half_vs_half"] >= 0
    assert real["sizes"] == [n // 2, n - n // 2] and real["generated"] == 24 and real["real"] == n
    assert saved["reference"]["is_data"] and saved["reference"]["in_training"] == 0
    div = saved["diversity"]["standard"]
    assert div["logmel_generated_db"] > 0 and isinstance(div["collapsed"], bool)
    mem = saved["memorisation"]["standard"]
    assert len(mem["generated_nn_db"]) == 24 and len(mem["real_nn_db"]) == n and 0.0 <= mem["copy_fraction"] <= 1.0
    assert set(mem["nearest_training_file"]) <= {p.split("/")[-1] for p in tiny_run.train.paths}
    text = (tmp_path / "evaluate.md").read_text()
    assert f"{report['round_trip_db']['vae_share_db']:.3g} dB" in text and "Memorisation" in text
    assert "Real reference: 16 sounds, the held-out `--data` sounds; none of them is in the training data" in text
    assert (tmp_path / "round_trip.png").is_file() and (tmp_path / "memorisation.png").is_file()
    assert not (tmp_path / "prior.json").exists()


def _raw(units: np.ndarray) -> np.ndarray:
    """Descriptor values whose regression units (:func:`trainer.descriptors.control_units`) are ``units``."""
    out = units.copy()
    for name in ("decay", "brightness", "pitch", "length"):  # the log-unit descriptors
        out[:, DESCRIPTORS.index(name)] = np.exp(units[:, DESCRIPTORS.index(name)])
    return out


def test_realism_compares_generated_and_real_halves_at_the_same_sizes() -> None:
    rng = np.random.default_rng(0)
    real = _raw(rng.standard_normal((20, len(DESCRIPTORS))))
    alike = realism(_raw(rng.standard_normal((2000, len(DESCRIPTORS)))), real, seed=1)
    assert alike["sizes"] == [10, 10] and alike["splits"] == 50
    # Same distribution, same sizes: the same small-sample bias, so a ratio near 1; the full-size figure (2000 vs
    # 20 sounds) carries far less of that bias than either 10-vs-10 figure.
    assert 0.7 < alike["ratio"] < 1.4
    assert alike["frechet_full"] < 0.5 * alike["frechet_real_half_vs_half"]
    shifted = _raw(rng.standard_normal((2000, len(DESCRIPTORS))) + [0, 0, 0, 2.0, 0, 0, 0, 0])
    far = realism(shifted, real, seed=1)
    assert far["ratio"] > 1.5 and set(far["descriptors"]) == set(DESCRIPTORS)
    # Descriptor shifts are in the real set's standard deviations: brightness moved by 2 sd, the rest stayed.
    shift = {name: d["mean_shift_sd"] for name, d in far["descriptors"].items()}
    assert shift["brightness"] > 1.2 and all(abs(v) < 0.6 for k, v in shift.items() if k != "brightness")
    assert all(0.6 < d["spread_ratio"] < 1.5 for d in far["descriptors"].values())


def test_posterior_sampler_is_the_gaussian_of_the_encoded_means(tiny_run) -> None:  # noqa: F811
    mu, _ = encode(tiny_run.run.model, tiny_run.train.features)
    prior = fit_posterior(tiny_run.run, tiny_run.train)
    assert prior.sounds == len(mu) and np.allclose(prior.mean, mu.mean(axis=0))
    assert np.allclose(prior.cov, np.cov(mu, rowvar=False))
    draws = prior.sample(20000, np.random.default_rng(0))
    scale = np.sqrt(np.diag(prior.cov))
    assert np.allclose(draws.mean(axis=0), prior.mean, atol=0.05 * scale.max())
    assert np.allclose(np.cov(draws, rowvar=False), prior.cov, atol=0.05 * prior.cov.diagonal().max())
    # Fewer sounds than code columns: a rank-deficient covariance still draws, within the sounds' span.
    few = GaussianPrior.of_codes(mu[:3]).sample(5, np.random.default_rng(0))
    assert few.shape == (5, mu.shape[1]) and np.isfinite(few).all()


def test_class_priors_draw_each_class_near_its_own_sounds() -> None:
    rng = np.random.default_rng(0)
    kicks = rng.normal([3.0, 0, 0, 0], 0.5, size=(40, 4))
    claps = rng.normal([-3.0, 1.0, 0, 0], 0.5, size=(3, 4))  # fewer sounds than code columns
    codes = np.concatenate([kicks, claps])
    names = np.array(["kick"] * 40 + ["clap"] * 3)
    pooled = GaussianPrior.of_codes(codes)
    classes = class_priors(codes, names, order=("kick", "snare", "clap"))
    assert [name for name, _ in classes] == ["kick", "clap"]  # no snare sounds: the pooled Gaussian serves it
    own = dict(classes)
    assert np.allclose(own["clap"].mean, claps.mean(axis=0)) and own["clap"].sounds == 3
    assert np.linalg.matrix_rank(own["clap"].cov) == 4  # shrunk towards the within-class spread: full rank
    assert np.allclose(own["kick"].cov, np.cov(kicks, rowvar=False), atol=0.1)  # many sounds: nearly its own
    prior = GaussianPrior(pooled.mean, pooled.cov, pooled.sounds, classes)
    labels = ["clap"] * 2000 + ["snare"] * 2000
    draws = prior.sample(4000, np.random.default_rng(1), labels)
    assert np.allclose(draws[:2000].mean(axis=0), claps.mean(axis=0), atol=0.1)
    assert np.allclose(draws[2000:].mean(axis=0), pooled.mean, atol=0.3)


def test_cli_flags_name_reference_and_samplers_and_write_prior(tiny_run, tmp_path, capsys) -> None:  # noqa: F811
    code = trainer_cli.main(["evaluate", str(tiny_run.folder), "--data", str(tiny_run.held_out_root),
                             "--train-data", str(tiny_run.train_root), "--real-data", str(tiny_run.train_root),
                             str(tiny_run.held_out_root), "--prior-data", str(tiny_run.train_root),
                             "--samples", "12", "--gl-iters", "4", "--out", str(tmp_path), "--no-cache"])
    assert code == 0, capsys.readouterr().err
    assert "realism ratio (generated / real half vs half) standard" in capsys.readouterr().out
    saved = json.loads((tmp_path / "evaluate.json").read_text())
    n_train, n_held = len(tiny_run.train), len(tiny_run.held_out)
    assert list(saved["realism"]) == ["standard", "posterior"] and saved["samples"] == 12
    assert saved["reference"] == {"roots": [str(tiny_run.train_root), str(tiny_run.held_out_root)],
                                  "sounds": n_train + n_held, "is_data": False, "in_training": n_train}
    assert saved["posterior"]["sounds"] == n_train and saved["posterior"]["in_reference"] == n_train
    text = (tmp_path / "evaluate.md").read_text()
    assert f"Real reference: {n_train + n_held} sounds" in text and f"{n_train} of them are in the training" in text
    assert "| posterior |" in text and "posterior sampler was fitted on" in text
    prior = json.loads((tmp_path / "prior.json").read_text())
    code_size = tiny_run.run.model.code_size
    assert prior["kind"] == "gaussian" and len(prior["mean"]) == code_size and len(prior["cov"]) == code_size
    assert prior["fitted_on"] == [str(tiny_run.train_root)]


def test_cli_bad_prior_data_path_is_one_line_naming_it(tiny_run, tmp_path, capsys) -> None:  # noqa: F811
    missing = tmp_path / "no-such-kicks"
    code = trainer_cli.main(["evaluate", str(tiny_run.folder), "--data", str(tiny_run.held_out_root),
                             "--prior-data", str(missing), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--prior-data" in err and str(missing) in err


def test_prior_posterior_alone_fits_on_the_references_training_part(tiny_run, tmp_path) -> None:  # noqa: F811
    report = evaluate(tiny_run.run, tiny_run.held_out, out=tmp_path, train=tiny_run.train, reference=tiny_run.train,
                      posterior=True, samples=8, n_iter=4)
    n_train = len(tiny_run.train)
    assert report["posterior"]["sounds"] == n_train and report["posterior"]["in_reference"] == n_train
    assert report["reference"]["in_training"] == n_train and (tmp_path / "prior.json").is_file()
    with pytest.raises(ConfigError, match="--prior posterior"):
        evaluate(tiny_run.run, tiny_run.held_out, out=tmp_path, posterior=True, samples=8, n_iter=4)
