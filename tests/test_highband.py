"""The band above 11 kHz of a 22.05 kHz model: `trainer highband` and the two-band export (tiny models, real specs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile
import torch

from export import cli as export_cli
from export.preset_folder import export_run
from export.two_band import two_band_graphs
from runtime.errors import ConfigError, KickspaceError
from runtime.model import ExportedModel
from runtime.spec import SPECS
from trainer import cli as trainer_cli
from trainer.checkpoint import Checkpoint, save_checkpoint
from trainer.data.synth import write_corpus
from trainer import highband
from trainer.highband import (HIGHBAND_FILE, STATE_FILE, HighBandConfig, HighBandNet, fit_highband, load_highband,
                              save_highband, train)
from trainer.shaping import KNOBS
from trainer.spec import features_to_power
from trainer.vae import ModelConfig, build_model

LOW, LOW44, HIGH = SPECS["kick-22k"], SPECS["kick-44k-low"], SPECS["kick-44k-high"]
TINY = HighBandConfig(hidden=8, layers=2, kernel=3, epochs=2, batch_size=4)


def _vae_run(root, name: str = "run"):
    """A run folder with a randomly initialised tiny kick-22k VAE (export does not care how it was trained)."""
    torch.manual_seed(0)
    config = ModelConfig(input_shape=LOW.shape, widths=(4, 8), latent=3)
    ckpt = Checkpoint(model_config=config, spec=LOW, train_config={"epochs": 1},
                      model_state=build_model(config).state_dict(), epoch=1, step=1, history=[{"val_recon": 0.1}])
    save_checkpoint(root / name / "best.pt", ckpt)
    return root / name


def _head(path, *, bias: float, weight: float = 1.0):
    """A tiny high-band checkpoint whose output is pushed to ``bias`` (-5: the floor everywhere)."""
    torch.manual_seed(1)
    net = HighBandNet(TINY)
    with torch.no_grad():
        net.net[-1].bias.fill_(bias)
        net.net[-1].weight.mul_(weight)
    return save_highband(path, net, history=[], metrics={})


def _band_db(audio: np.ndarray, lo_hz: float, rate: int = 44100) -> float:
    """Power above ``lo_hz`` re the whole signal's, dB (over the batch)."""
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(audio.shape[-1], 1.0 / rate)
    return float(10 * np.log10(spectrum[..., freqs > lo_hz].sum() / spectrum.sum() + 1e-30))


def test_net_maps_the_low_band_to_the_high_band_in_feature_units():
    net = HighBandNet(HighBandConfig())
    out = net(2 * torch.rand(2, *LOW.shape) - 1)
    assert out.shape == (2, *HIGH.shape) and out.abs().max() <= 1.0
    assert sum(p.numel() for p in net.parameters()) < 500_000
    with pytest.raises(ConfigError, match="highband.kernel"):
        HighBandConfig(kernel=4)
    with pytest.raises(ConfigError, match="highband.widht"):
        HighBandConfig.from_dict({"widht": 3})


def test_fit_skips_bad_files_writes_a_loadable_checkpoint_and_is_reproducible(tmp_path, capsys):
    write_corpus(tmp_path / "data", n=5, seed=3)
    (tmp_path / "data" / "broken.wav").write_bytes(b"RIFF not really a wav file")
    argv = ["highband", str(tmp_path / "data"), "--out", str(tmp_path / "a"), "--epochs", "2", "--no-cache"]
    assert trainer_cli.main(argv) == 0
    assert "5 sounds (1 skipped)" in capsys.readouterr().out
    net, data = load_highband(tmp_path / "a" / HIGHBAND_FILE)
    assert data["metrics"]["kept"] == 5 and data["metrics"]["val_n"] == 1 and len(data["history"]) == 2
    _, metrics = fit_highband([tmp_path / "data"], out=tmp_path / "b", use_cache=False,
                              config=HighBandConfig(epochs=2))
    again, _ = load_highband(tmp_path / "b" / HIGHBAND_FILE)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint")
    torch.save({"format_version": 1, "model_state": {}, "config": {"hidden": "x"}}, tmp_path / "bad.pt")
    for name in ("foreign.pt", "bad.pt", "missing.pt"):
        with pytest.raises(KickspaceError, match=name):
            load_highband(tmp_path / name)


def test_a_killed_fit_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch):
    gen = np.random.default_rng(1)
    low = (2 * gen.random((10, *LOW44.shape)) - 1).astype(np.float32)
    high = (2 * gen.random((10, *HIGH.shape)) - 1).astype(np.float32)
    groups = np.r_[np.zeros(4, np.int64), np.ones(6, np.int64)]
    config = HighBandConfig(hidden=8, layers=2, kernel=3, epochs=4, batch_size=3, balance_roots=True)
    net, history, metrics = train(low, high, config, groups, state=tmp_path / "whole.pt")
    save, saved = highband._save_state, []

    def killed_after_two(*args, **kwargs):
        save(*args, **kwargs)
        saved.append(1)
        if len(saved) == 2:
            raise KeyboardInterrupt  # a kill right after epoch 2's state is on disk

    monkeypatch.setattr(highband, "_save_state", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        train(low, high, config, groups, state=tmp_path / "killed.pt")
    monkeypatch.undo()
    before = torch.load(tmp_path / "killed.pt", weights_only=True)["history"]
    again, history2, metrics2 = train(low, high, config, groups, state=tmp_path / "killed.pt", resume=True)
    assert len(before) == 2 and history2[:2] == before   # epochs 1-2 restored (their own seconds), not re-run
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in history] == \
        [{k: v for k, v in h.items() if k != "seconds"} for h in history2]
    assert metrics == metrics2
    with pytest.raises(KickspaceError, match="data differ"):
        train(low[::-1].copy(), high, config, groups, state=tmp_path / "killed.pt", resume=True)
    with pytest.raises(ConfigError, match="highband.lr"):
        train(low, high, dataclasses.replace(config, lr=1e-3), groups, state=tmp_path / "killed.pt", resume=True)


def test_cli_refuses_a_second_run_into_a_folder_and_resumes_with_the_runs_settings(tmp_path, capsys):
    write_corpus(tmp_path / "data", n=4, seed=5)
    base = ["highband", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--no-cache"]
    assert trainer_cli.main(base + ["--resume"]) == 2 and "nothing to resume" in capsys.readouterr().err
    assert trainer_cli.main(base + ["--epochs", "1", "--seed", "3"]) == 0
    assert (tmp_path / "run" / STATE_FILE).is_file()
    assert trainer_cli.main(base + ["--epochs", "2"]) == 2 and "--resume" in capsys.readouterr().err
    assert trainer_cli.main(base + ["--resume", "--seed", "4"]) == 2 and "highband.seed" in capsys.readouterr().err
    assert trainer_cli.main(base + ["--resume", "--epochs", "2"]) == 0
    _, data = load_highband(tmp_path / "run" / HIGHBAND_FILE)
    assert len(data["history"]) == 2 and data["config"]["seed"] == 3 and data["config"]["epochs"] == 2


def test_balanced_roots_weigh_each_root_equally_in_draws_and_held_out_mse():
    gen = np.random.default_rng(0)
    low = (2 * gen.random((12, *LOW44.shape)) - 1).astype(np.float32)
    high = -np.ones((12, *HIGH.shape), np.float32)
    high[:3] = 0.5                                   # root 0: three loud sounds; root 1: nine at the floor
    groups = np.r_[np.zeros(3, np.int64), np.ones(9, np.int64)]
    config = HighBandConfig(hidden=8, layers=2, kernel=3, epochs=1, batch_size=4, val_fraction=0.5, seed=2)
    _, _, plain = train(low, high, config, groups)
    _, _, balanced = train(low, high, dataclasses.replace(config, balance_roots=True), groups)
    assert {0, 1} <= set(groups[balanced["val_indices"]])
    assert balanced["baseline_mse"] > plain["baseline_mse"]   # the loud root's error counts for half


def test_all_zero_knobs_are_the_identity_on_both_bands_and_a_floor_high_band_is_digital_silence(tmp_path):
    from trainer.checkpoint import load_model

    model, spec, _ = load_model(_vae_run(tmp_path) / "best.pt")
    z = torch.randn(2, model.code_size, generator=torch.Generator().manual_seed(0))
    graphs = {}
    for name, bias, shaping in (("loud", 0.5, True), ("plain", 0.5, False), ("floor", -5.0, True)):
        _, graphs[name], _ = two_band_graphs(model, spec, _head(tmp_path / f"{name}.pt", bias=bias, weight=0.0),
                                             n_iter=2, preview_iterations=0, phase_init="pghi", shaping=shaping)
    zero = torch.zeros(2, len(KNOBS))
    with torch.no_grad():
        shaped, logmel = graphs["loud"](z, None, zero)
        plain, _ = graphs["plain"](z)
        torch.testing.assert_close(shaped, plain, rtol=1e-6, atol=1e-7)
        assert shaped.shape == (2, LOW.n_samples * 2) and _band_db(shaped.numpy(), 11000) > -30
        floor = graphs["floor"]
        terms = floor.low.shaping.envelope_terms(zero, features_to_power(logmel, LOW))
        assert torch.count_nonzero(floor.high(floor.high_net(logmel[:, None])[:, 0], zero, terms)) == 0
        torch.testing.assert_close(floor(z, None, zero)[0], floor.up(floor.low(logmel, zero)) * floor.envelope,
                                   rtol=0, atol=0)
        click = torch.zeros(2, len(KNOBS))
        click[:, KNOBS.index("click")] = 1.0
        early = slice(0, int(0.012 * 44100))
        loud = graphs["loud"]
        high = loud.high_net(logmel[:, None])[:, 0]
        assert (loud.high(high, click, terms)[:, early] ** 2).sum() > 10 * (loud.high(high, zero, terms)[:, early]
                                                                             ** 2).sum()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny VAE with a loud tiny high band in its run folder, exported (parity checked by the export)."""
    root = tmp_path_factory.mktemp("two-band")
    run = _vae_run(root)
    _head(run / HIGHBAND_FILE, bias=0.5)
    result = export_run(run, out=root / "preset", n_iter=2, preview_iterations=1, optimize=False)
    return root, result


def test_two_band_export_is_a_44k_model_with_its_high_band(exported):
    root, result = exported
    assert result.metadata.spec == LOW44 and result.metadata.griffin_lim_iterations == 2
    assert set(result.parity) >= {"audio", "audio_unshaped", "preview", "logmel", "mu"}
    model = ExportedModel(result.folder)
    audio, logmel = model.decode(np.zeros((2, 3), np.float32), controls=np.zeros((2, len(KNOBS)), np.float32))
    assert audio.shape == (2, 32768) and logmel.shape == (2, 128, 128) and model.metadata.sample_rate == 44100
    assert _band_db(audio, 11000) > -30 and np.all(audio[:, 0] == 0) and np.all(audio[:, -1] == 0)
    mu, _ = model.encode(0.1 * np.random.default_rng(0).standard_normal((2, 32768)).astype(np.float32))
    assert mu.shape == (2, 3) and np.isfinite(mu).all()


def test_runtime_renders_the_two_band_folder_offline_and_encodes_a_44k_sample(exported, capsys):
    from runtime import cli as runtime_cli
    from runtime.controls import read_sample

    root, result = exported
    out = root / "hit.wav"
    assert runtime_cli.main(["render", "--preset", str(result.folder), "--axes", "click=0.5", "--rate", "0",
                             "--out", str(out)]) == 0
    audio, rate = soundfile.read(str(out))
    assert rate == 44100 and len(audio) >= 32768 and _band_db(audio.T, 11000) > -30
    write_corpus(root / "sample", n=1, seed=4)
    sample = read_sample(root / "sample" / "kick_00000.wav", result.metadata)
    assert sample.shape == (32768,)
    assert np.isfinite(ExportedModel(result.folder).encode(sample[None])[0]).all()


def test_export_flags_choose_the_high_band(exported, tmp_path):
    root, _ = exported
    args = export_cli.build_parser().parse_args(["onnx", str(root / "run"), "--out", "x", "--no-highband"])
    assert args.no_highband and args.highband is None and args.iterations is None
    with pytest.raises(KickspaceError, match="missing.pt"):
        export_run(root / "run", out=tmp_path / "x", highband=tmp_path / "missing.pt")
