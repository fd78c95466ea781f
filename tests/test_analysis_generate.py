"""`trainer generate`: reconstructions, prior samples and interpolations as WAV + PNG, with checked contents."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from tests.analysis_fixtures import tiny_run  # noqa: F401  (session fixture)
from trainer import cli
from trainer.analysis.generate import generate


def test_generate_writes_sounds_and_grids(tiny_run, tmp_path) -> None:  # noqa: F811
    spec = tiny_run.run.spec
    report = generate(tiny_run.run, tiny_run.train, out=tmp_path, n=3, pairs=2, steps=5, n_iter=4)
    rec = report["reconstructions"]
    picked = np.array([tiny_run.train.paths.index(p) for p in rec["files"]])
    spread = ((tiny_run.train.features[picked] - tiny_run.train.features.mean(0)) ** 2).mean()
    assert rec["mse_mean"] < 0.5 * spread  # reconstructions are closer than the mean spectrogram
    for i in range(3):
        original, rate = sf.read(tmp_path / "reconstructions" / f"{i:02d}_original.wav")
        recon, _ = sf.read(tmp_path / "reconstructions" / f"{i:02d}_recon.wav")
        assert rate == spec.sample_rate and len(original) == len(recon) == spec.n_samples
        assert np.abs(recon).max() > 1e-3
    samples = sorted((tmp_path / "samples").glob("*.wav"))
    assert len(samples) == 3 and len(report["samples"]["prior"]) == 3
    pairs = sorted((tmp_path / "interpolations").glob("pair_*.wav"))
    assert len(pairs) == 2 * 5 and len(report["interpolations"]) == 2
    assert report["class_interpolations"] == []  # an unlabelled corpus has no classes to interpolate
    for png in ("reconstructions.png", "samples.png", "interpolations.png"):
        assert (tmp_path / png).stat().st_size > 1000
    assert json.loads((tmp_path / "generate.json").read_text())["reconstructions"]["mse_mean"] == rec["mse_mean"]


def test_generate_cli_without_data_writes_prior_samples_only(tiny_run, tmp_path) -> None:  # noqa: F811
    assert cli.main(["generate", str(tiny_run.folder), "--out", str(tmp_path), "--n", "2", "--gl-iters", "2"]) == 0
    report = json.loads((tmp_path / "generate" / "generate.json").read_text())
    assert set(report) == {"run", "samples"} and len(report["samples"]["prior"]) == 2
    assert not (tmp_path / "generate" / "reconstructions").exists()
