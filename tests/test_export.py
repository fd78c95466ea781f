"""``python -m export onnx``: a run -> decoder + encoder graphs + preset, loaded by the runtime, parity with torch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from export import cli as export_cli
from trainer.phase import make_init
from export.preset_folder import DecoderGraph, EncoderGraph, export_run
from runtime.errors import ConfigError, KickspaceError
from runtime.model import ExportedModel
from runtime.preset import load_preset
from runtime.spec import SpectrogramSpec
from trainer.checkpoint import Checkpoint, load_checkpoint, load_model, save_checkpoint
from trainer.data.audio import Preprocess
from trainer.spec import waveform_to_features
from trainer.vae import ModelConfig, build_model

TINY = SpectrogramSpec(sample_rate=8000, n_fft=128, hop_length=32, win_length=128, n_mels=32, frames=32)


def _run(tmp_path, *, classes: list[str] | None = None, pitch: bool = False, name: str = "run",
         controls: tuple[str, ...] = (), run_config: dict | None = None):
    """A run folder with a randomly initialised tiny (C)VAE checkpoint (export does not care how it was trained)."""
    torch.manual_seed(0)
    config = ModelConfig(input_shape=TINY.shape, widths=(8, 16), latent=4, n_classes=len(classes or []),
                         pitch_conditioning=pitch, controls=controls, control_mean=(0.0,) * len(controls),
                         control_std=(1.0,) * len(controls))
    model = build_model(config)
    ckpt = Checkpoint(model_config=config, spec=TINY, train_config={"epochs": 1}, model_state=model.state_dict(),
                      classes=list(classes or []), epoch=1, step=10, history=[{"val_recon": 0.01}],
                      config=run_config or {})
    run = tmp_path / name
    save_checkpoint(run / "best.pt", ckpt)
    return run


def _axes_file(run, latent: int = 4):
    (run / "analysis").mkdir(exist_ok=True)
    axes = [{"name": "sub", "direction": [1.0, 0, 0, 0], "scale": 1.5, "effect": {"rho": 0.95}},
            {"name": "decay", "direction": [0, 1.0, 0, 0], "scale": 1.0, "effect": {"rho": 0.92}}]
    (run / "analysis" / "axes.json").write_text(json.dumps({"export": axes, "anchor": [0.0] * latent}))


def _assert_onnx_files(folder, names: list[str]) -> None:
    """Each graph: opset 18 (torch.export-based exporter), IR <= 13, Kickspace metadata, batch axis named."""
    import onnx

    from runtime.model import METADATA_KEY

    for name in names:
        model = onnx.load(str(folder / name))
        assert model.ir_version <= 13 and {o.domain: o.version for o in model.opset_import}[""] == 18
        assert [p.key for p in model.metadata_props] == [METADATA_KEY]
        for value in (*model.graph.input, *model.graph.output):
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch", (name, value.name)


@pytest.mark.parametrize("classes", [None, ["kick", "snare"]], ids=["vae", "cvae"])
def test_export_writes_graphs_the_runtime_loads_with_parity(tmp_path, classes, recwarn):
    run = _run(tmp_path, classes=classes)
    _axes_file(run)
    result = export_run(run, out=tmp_path / "preset", n_iter=4, shaping=False)  # latent axes on the knobs
    # torch's current exporter: no deprecation warning (the legacy TorchScript one printed one per graph)
    assert [str(w.message) for w in recwarn if issubclass(w.category, (DeprecationWarning, FutureWarning))] == []
    _assert_onnx_files(tmp_path / "preset", ["decoder.onnx", "decoder_preview.onnx", "encoder.onnx"])
    assert result.parity["audio"] <= 1e-4 and result.parity["logmel"] <= 1e-4 and result.parity["mu"] <= 1e-3
    loaded = ExportedModel(tmp_path / "preset")
    meta = loaded.metadata
    assert meta.latent == 4 and meta.griffin_lim_iterations == 4 and meta.phase_init == "pghi"
    assert meta.labels == tuple(classes or ()) and [a.name for a in meta.axes] == ["sub", "decay"]
    assert meta.spec == TINY and meta.training["epochs"] == 1
    model, spec, _ = load_model(run / "best.pt")
    graph = DecoderGraph(model, spec, n_iter=4, init_phase=make_init("pghi", spec)).eval()
    for batch in (1, 8):
        z = np.random.default_rng(batch).standard_normal((batch, 4)).astype(np.float32)
        label = (np.arange(batch) % 2) if classes else None
        audio, logmel = loaded.decode(z, label=label)
        assert audio.shape == (batch, TINY.n_samples) and logmel.shape == (batch, 32, 32)
        with torch.no_grad():
            ref_audio, ref_logmel = graph(torch.from_numpy(z), None if label is None else torch.from_numpy(label))
        assert np.abs(logmel - ref_logmel.numpy()).max() < 1e-4
        # relative to the peak (see PARITY_TOLERANCE in preset_folder.py for why trained models get a wider guard)
        assert np.abs(audio - ref_audio.numpy()).max() <= 1e-4 * float(ref_audio.abs().max())
        assert np.isfinite(audio).all()
        # the decoder's logmel is what the model decodes, and the audio's own features follow it
        with torch.no_grad():
            direct = model.decode(torch.from_numpy(z), None if label is None else torch.from_numpy(label))[:, 0]
        assert np.abs(logmel - direct.numpy()).max() < 1e-4
    preset = load_preset(tmp_path / "preset" / "preset.json")
    assert [k.cc for k in preset.knobs] == [20, 21] and [k.axis for k in preset.knobs] == ["sub", "decay"]
    if classes:
        assert sorted(p.note for p in preset.pads) == [36, 38] and {p.label for p in preset.pads} == set(classes)


def test_exported_model_carries_the_runs_one_shot_preparation(tmp_path):
    """The runtime prepares a user's sample with the settings the run was trained with, read from the model."""
    run = _run(tmp_path, run_config={"data": {"loudness": "peak"}})
    export_run(run, out=tmp_path / "preset", n_iter=1, preview_iterations=0, optimize=False)
    preparation = ExportedModel(tmp_path / "preset").metadata.preparation
    assert preparation == Preprocess(loudness="peak").preparation
    assert (preparation.loudness, preparation.peak_dbfs, preparation.onset_db) == ("peak", -1.0, -30.0)


def test_control_model_exports_its_code_with_control_axes(tmp_path):
    run = _run(tmp_path, controls=("sub", "decay"))
    (run / "analysis").mkdir()
    axes = [{"name": "sub", "direction": [0, 0, 0, 0, 1.0, 0], "scale": 1.5, "effect": {"rho": 0.95}},
            {"name": "decay", "direction": [0, 0, 0, 0, 0, 1.0], "scale": 1.2, "effect": {"rho": 0.93}}]
    (run / "analysis" / "axes.json").write_text(json.dumps({"export": axes, "anchor": [0.0] * 6}))
    result = export_run(run, out=tmp_path / "preset", n_iter=4)
    assert result.parity["audio"] <= 1e-4 and result.parity["mu"] <= 1e-3
    loaded = ExportedModel(tmp_path / "preset")
    assert loaded.metadata.latent == 6  # latent 4 + 2 controls: the runtime's axes move the controls directly
    model, _, _ = load_model(run / "best.pt")
    code = np.zeros((2, 6), np.float32)
    code[1, 4] = 2.0  # more sub
    _, logmel = loaded.decode(code)
    with torch.no_grad():
        direct = model.decode(torch.from_numpy(code))[:, 0].numpy()
    assert np.abs(logmel - direct).max() < 1e-4 and np.abs(logmel[0] - logmel[1]).max() > 1e-3
    mu, logvar = loaded.encode(np.zeros((1, TINY.n_samples), np.float32))
    assert mu.shape == logvar.shape == (1, 6) and np.all(logvar[:, 4:] < -8)


def test_encoder_graph_matches_torch_encoder(tmp_path):
    run = _run(tmp_path)
    export_run(run, out=tmp_path / "p", n_iter=0, optimize=False)
    model, spec, _ = load_model(run / "best.pt")
    audio = (0.5 * np.sin(2 * np.pi * 60 * np.arange(TINY.n_samples) / 8000)).astype(np.float32)[None].repeat(3, 0)
    mu, logvar = ExportedModel(tmp_path / "p").encode(audio)
    with torch.no_grad():
        ref_mu, ref_logvar = model.encode(waveform_to_features(audio, spec))
        graph_mu, _ = EncoderGraph(model, spec)(torch.from_numpy(audio))
    assert np.abs(mu - ref_mu.numpy()).max() < 1e-4 and np.abs(logvar - ref_logvar.numpy()).max() < 1e-4
    assert torch.allclose(graph_mu, ref_mu)


def test_centroids_become_pads(tmp_path):
    run = _run(tmp_path)
    (run / "analysis").mkdir()
    records = [{"id": 0, "z": [0.1, 0.2, 0.3, 0.4], "weight": 0.2},
               {"id": 1, "name": "deep long", "z": [1, 1, 1, 1], "weight": 0.8}]
    (run / "analysis" / "centroids.json").write_text(json.dumps({"centroids": records}))
    export_run(run, out=tmp_path / "p", n_iter=0, optimize=False)
    pads = load_preset(tmp_path / "p").pads
    assert [p.note for p in pads] == [36, 37]
    assert pads[0].anchor == (1.0, 1.0, 1.0, 1.0), "the biggest cluster goes on the first pad"
    assert [p.name for p in pads] == ["deep long", "cluster 0"]  # the cluster's character name, else its id


def test_export_refuses_what_it_cannot_write(tmp_path, capsys):
    with pytest.raises(KickspaceError, match="no checkpoint"):
        export_run(tmp_path / "nothing", out=tmp_path / "p")
    run = _run(tmp_path, classes=["a", "b"], pitch=True, name="pitched")
    with pytest.raises(ConfigError, match="pitch-conditioned"):
        export_run(run, out=tmp_path / "p")
    bare = tmp_path / "bare"
    bare.mkdir()
    torch.save({"model_state": {}}, bare / "best.pt")
    assert export_cli.main(["onnx", str(bare), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("export onnx: error:") and "config" in err


def test_cli_prints_what_it_wrote(tmp_path, capsys):
    run = _run(tmp_path)
    assert export_cli.main(["onnx", str(run), "--out", str(tmp_path / "p"), "--iterations", "2"]) == 0
    out = capsys.readouterr().out
    assert "K=2 (pghi)" in out and "parity" in out and "preview" not in out  # K=2: no cheaper preview to write
    assert sorted(f.name for f in (tmp_path / "p").iterdir()) == ["decoder.onnx", "encoder.onnx", "preset.json"]


def test_a_full_disk_during_export_is_one_line_and_keeps_the_previous_export(tmp_path, capsys, monkeypatch):
    import errno
    import re

    import onnx

    run, out = _run(tmp_path), tmp_path / "p"
    assert export_cli.main(["onnx", str(run), "--out", str(out), "--iterations", "2"]) == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}

    def full_disk(model, path, *args, **kwargs):
        open(path, "wb").write(b"half a graph")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save", full_disk)
    capsys.readouterr()
    assert export_cli.main(["onnx", str(run), "--out", str(out), "--iterations", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.match(rf"export onnx: error: cannot write {re.escape(str(out))}/\w+\.onnx: the disk is full \(", err)
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before  # the previous export, whole; no temporary


def test_preview_decoder_is_the_same_model_with_fewer_iterations(tmp_path, capsys):
    run = _run(tmp_path)
    out = tmp_path / "p"
    assert export_cli.main(["onnx", str(run), "--out", str(out), "--iterations", "6",
                            "--preview-iterations", "1"]) == 0
    assert "K=6 (pghi), preview K=1" in capsys.readouterr().out
    loaded = ExportedModel(out)
    assert loaded.has_preview and loaded.metadata.preview_iterations == 1
    model, spec, _ = load_model(run / "best.pt")
    z = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    with torch.no_grad():
        refs = {k: DecoderGraph(model, spec, n_iter=k, init_phase=make_init("pghi", spec)).eval()(
            torch.from_numpy(z))[0].numpy() for k in (1, 6)}
    quick, quick_mel = loaded.decode(z, preview=True)
    full, full_mel = loaded.decode(z)
    np.testing.assert_allclose(quick_mel, full_mel, atol=1e-5)  # the same decoder: the same spectrogram
    for audio, k in ((quick, 1), (full, 6)):
        assert np.abs(audio - refs[k]).max() <= 1e-4 * np.abs(refs[k]).max()
    assert np.abs(quick - full).max() > 1e-3 * np.abs(full).max()  # and really fewer iterations
    export_run(run, out=out, n_iter=6, preview_iterations=0, optimize=False)  # none asked: the old one goes
    assert not (out / "decoder_preview.onnx").exists() and not ExportedModel(out).has_preview
    with pytest.raises(ConfigError, match="preview_iterations"):
        export_run(run, out=out, n_iter=6, preview_iterations=-1)


def test_unconditioned_model_trained_on_a_bank_exports_without_labels(tmp_path):
    """A plain VAE fitted on a one-class bank records the class name; the export must not ask for a label input."""
    run = _run(tmp_path)
    ckpt_path = run / "best.pt"
    from trainer.checkpoint import load_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    ckpt.classes = ["kick"]
    save_checkpoint(ckpt_path, ckpt)
    result = export_run(run, out=tmp_path / "p", n_iter=0, optimize=False)
    assert result.metadata.labels == () and not ExportedModel(tmp_path / "p").metadata.conditional


def test_encoder_file_stays_small_at_n_fft_2048(tmp_path):
    """The encoder's STFT is factorised: no dense [2 x 1025 x 2048] basis (17 MB) in the file."""
    import dataclasses

    from export.graph import FactorizedLogMel

    spec = dataclasses.replace(TINY, n_fft=2048, win_length=2048, hop_length=256, frames=8, sample_rate=44100,
                               mel_scale="htk", n_mels=32)
    audio = torch.from_numpy(np.random.default_rng(0).standard_normal((2, spec.n_samples)).astype(np.float32))
    assert torch.allclose(FactorizedLogMel(spec)(audio), waveform_to_features(audio, spec), atol=1e-4)
    from export.onnx_file import save_onnx

    path = save_onnx(FactorizedLogMel(spec), tmp_path / "front.onnx", (audio,), input_names=("audio",),
                     output_names=("features",))
    assert path.stat().st_size < 2e6


def _silent_run(tmp_path):
    """A tiny run whose decoder outputs the floor: its last block's bias pushed to -20 before the tanh, weights 0."""
    run = _run(tmp_path, name="silent")
    ckpt = load_checkpoint(run / "best.pt")
    state = ckpt.model_state
    last = max(k for k in state if k.startswith("decoder.") and k.endswith(".conv.bias"))
    state[last].fill_(-20.0)
    state[last.replace(".bias", ".weight")].zero_()
    save_checkpoint(run / "best.pt", ckpt)
    return run


def test_exported_tiny_model_renders_silence_at_the_floor_and_starts_and_ends_silent(tmp_path):
    """The shipped render path on a tiny model: a decoder at the floor (-1 everywhere) renders exactly 0, not a
    hiss; any decoder's render starts at 0 (no click at note-on) and is below -60 dB re peak over the last
    eighth of its fade-out (never cut)."""
    export_run(_silent_run(tmp_path), out=tmp_path / "silent-preset", n_iter=4)
    audio, logmel = ExportedModel(tmp_path / "silent-preset").decode(np.zeros((2, 4), np.float32))
    assert np.all(logmel <= -0.999) and np.count_nonzero(audio) == 0
    export_run(_run(tmp_path), out=tmp_path / "preset", n_iter=4)
    z = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32) * 2
    audio, _ = ExportedModel(tmp_path / "preset").decode(z)
    peak = np.abs(audio).max(axis=1)
    assert np.all(peak > 0) and np.all(audio[:, 0] == 0.0)
    tail = audio[:, -TINY.n_samples // 64:]
    assert np.all(10 * np.log10(np.mean(tail.astype(np.float64) ** 2, axis=1) / peak ** 2) < -60.0)


def _prior_file(run, *, code_size: int = 4, **changes) -> None:
    (run / "analysis").mkdir(exist_ok=True)
    report = {"kind": "gaussian", "code_size": code_size, "latent": code_size, "controls": [],
              "mean": [0.5] * code_size, "cov": np.diag([0.1] * code_size).tolist(), "sounds": 12,
              "fitted_on": ["real"], "checkpoint": "best.pt", "method": "a Gaussian fitted to encoder means"}
    (run / "analysis" / "prior.json").write_text(json.dumps({**report, **changes}))


def test_export_ships_a_prior_per_class_and_refuses_a_class_the_model_lacks(tmp_path, capsys):
    run = _run(tmp_path, classes=["kick", "snare"])
    snare = {"mean": [-1.0] * 4, "cov": np.diag([0.05] * 4).tolist(), "sounds": 9}
    _prior_file(run, classes={"snare": snare})
    assert export_cli.main(["onnx", str(run), "--out", str(tmp_path / "p"), "--iterations", "0"]) == 0
    assert "(per class: snare)" in capsys.readouterr().out
    meta = ExportedModel(tmp_path / "p").metadata
    assert meta.random_prior("snare").mean == (-1.0,) * 4 and meta.random_prior("kick").mean == (0.5,) * 4
    _prior_file(run, classes={"clap": snare})
    with pytest.raises(ConfigError, match=r"prior.json: prior.classes.clap: not a class of the model"):
        export_run(run, out=tmp_path / "r", n_iter=0, optimize=False)


def test_export_ships_the_runs_prior_for_random_sounds(tmp_path, capsys):
    """trainer evaluate --prior-data writes analysis/prior.json; the exported model carries it (the runtime's
    random sounds draw from it), and a prior of another model fails naming the file and field."""
    run = _run(tmp_path)
    _prior_file(run)
    assert export_cli.main(["onnx", str(run), "--out", str(tmp_path / "p"), "--iterations", "0"]) == 0
    assert "random sounds from a Gaussian fitted to 12 real sounds' codes" in capsys.readouterr().out
    prior = ExportedModel(tmp_path / "p").metadata.prior
    assert prior.mean == (0.5,) * 4 and prior.sounds == 12
    assert export_run(run, out=tmp_path / "q", n_iter=0, optimize=False, prior=False).metadata.prior is None
    _prior_file(run, code_size=6)
    with pytest.raises(ConfigError, match=r"prior.json: code_size"):
        export_run(run, out=tmp_path / "r", n_iter=0, optimize=False)
    _prior_file(run, cov=[[1.0, 2.0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    with pytest.raises(ConfigError, match=r"prior.json: prior.cov: must be symmetric"):
        export_run(run, out=tmp_path / "r", n_iter=0, optimize=False)


def test_export_prior_refits_a_models_prior_through_its_encoder_per_class(tmp_path, capsys):
    """python -m export prior MODEL DATA: the codes of a bank's sounds through encoder.onnx become the pooled and
    per-class Gaussians in every graph's metadata; a multi-hit file and a class the model lacks are skipped."""
    from tests import badfiles

    run = _run(tmp_path, classes=["kick", "snare"])
    export_run(run, out=tmp_path / "m", n_iter=0, optimize=False)
    bank = tmp_path / "bank"
    for name in ("kick", "snare", "clap"):
        (bank / name).mkdir(parents=True)
    for i in range(3):
        badfiles.write(bank / "kick" / f"k{i}.wav", badfiles.kick(TINY.sample_rate, seed=i), TINY.sample_rate)
        badfiles.write(bank / "snare" / f"s{i}.wav", 0.5 * badfiles.kick(TINY.sample_rate, seed=10 + i),
                       TINY.sample_rate)
    badfiles.write(bank / "kick" / "loop.wav", badfiles.four_kicks(TINY.sample_rate), TINY.sample_rate)
    badfiles.write(bank / "clap" / "c.wav", badfiles.kick(TINY.sample_rate), TINY.sample_rate)
    assert export_cli.main(["prior", str(tmp_path / "m"), str(bank)]) == 0
    out = capsys.readouterr().out
    assert "loop.wav: multi-hit" in out and "c.wav: class 'clap'" in out and "skipped 2" in out
    assert "per class: kick 3, snare 3" in out
    model = ExportedModel(tmp_path / "m")
    prior = model.metadata.prior
    assert prior.sounds == 6 and [name for name, _ in prior.classes] == ["kick", "snare"]
    from runtime.controls import read_sample

    codes = [model.encode(read_sample(bank / "snare" / f"s{i}.wav", model.metadata)[None], label=1)[0][0]
             for i in range(3)]
    np.testing.assert_allclose(prior.for_label("snare").mean, np.mean(codes, axis=0), atol=1e-5)
    (tmp_path / "m" / "encoder.onnx").unlink()
    assert export_cli.main(["prior", str(tmp_path / "m"), str(bank)]) == 2
    assert "encoder.onnx: missing" in capsys.readouterr().err
