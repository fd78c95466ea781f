"""The shaping controls in the exported decoder graphs (export/graph.py, export/preset_folder.py, export/cli.py).

The knobs of :mod:`trainer.shaping` are the decoder graphs' last spectral stage: all zeros must be the unshaped
graph, any values must equal the trainer's own path (``Shaping.magnitude`` then ``griffin_lim``), and onnxruntime
must agree with torch with the knobs moved, not only at their identity.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from export import cli as export_cli
from export.graph import MagnitudeToAudio
from trainer.phase import PhaseGradient, make_init, random_phase
from export.preset_folder import DecoderGraph, export_run
from runtime.errors import ConfigError
from runtime.model import ExportedModel
from runtime.preset import load_preset
from tests.test_export import TINY, _run
from tests.test_export_graph import _kick
from trainer.checkpoint import load_model
from trainer.shaping import KNOBS, Shaping
from trainer.spec import MelInverse, griffin_lim, waveform_to_features


def _features(count: int = 3) -> torch.Tensor:
    return waveform_to_features(np.stack([_kick(seed=s) for s in range(count)]), TINY).double()


def _knobs(count: int, seed: int = 0) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).uniform(-1.0, 1.0, (count, len(KNOBS))))


@pytest.mark.parametrize("init", ["random", "pghi"])
def test_all_zero_controls_are_the_unshaped_graph(init):
    feats = _features()
    phase = torch.as_tensor(random_phase(TINY, seed=1)) if init == "random" else PhaseGradient(TINY)
    with torch.no_grad():
        plain = MagnitudeToAudio(TINY, 3, init_phase=phase).double()(feats)
        shaped = MagnitudeToAudio(TINY, 3, init_phase=phase, shaping=True).double()
        assert torch.equal(shaped(feats, torch.zeros(len(feats), len(KNOBS), dtype=torch.float64)), plain)
        assert (shaped(feats, _knobs(len(feats))) - plain).abs().max() > 1e-2 * plain.abs().max()


def test_shaped_graph_equals_the_trainer_path():
    """Shaping's gain gathered into the FFT layout (``gather_in``, as the inverse's rows) and applied to the power
    equals ``Shaping.magnitude`` on the natural-order magnitude, then ``griffin_lim`` from the same phase."""
    feats, knobs = _features(), _knobs(3, seed=4)
    knobs[0] = 0.0
    knobs[1, 0], knobs[2, 2] = 1.0, -1.0     # the ends of sub and decay too
    phase = torch.as_tensor(random_phase(TINY, seed=2))
    with torch.no_grad():
        got = MagnitudeToAudio(TINY, 3, init_phase=phase, shaping=True).double()(feats, knobs)
        shaped = Shaping(TINY).double().magnitude(feats, MelInverse(TINY).double()(feats), knobs)
        ref = griffin_lim(shaped, TINY, n_iter=3, init=phase)[:, 0]
    assert torch.allclose(got, ref, atol=1e-5 * ref.abs().max())


def test_controls_are_an_input_exactly_when_the_graph_shapes():
    feats = _features(1).float()
    with pytest.raises(ConfigError, match="controls"):
        MagnitudeToAudio(TINY, 0, shaping=True)(feats)
    with pytest.raises(ConfigError, match="controls"):
        MagnitudeToAudio(TINY, 0)(feats, torch.zeros(1, len(KNOBS)))


def _axes(run, names: tuple[str, ...]) -> None:
    (run / "analysis").mkdir(exist_ok=True)
    axes = [{"name": name, "direction": list(np.eye(4)[i]), "scale": 1.0, "effect": {"rho": 0.9}}
            for i, name in enumerate(names)]
    (run / "analysis" / "axes.json").write_text(json.dumps({"export": axes, "anchor": [0.0] * 4}))


def _inputs(path) -> dict[str, list]:
    import onnx

    graph = onnx.load(str(path)).graph
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}


@pytest.mark.parametrize("classes", [None, ["kick", "snare"]], ids=["vae", "cvae"])
def test_exported_controls_match_torch_and_leave_logmel_alone(tmp_path, classes):
    run = _run(tmp_path, classes=classes)
    _axes(run, ("sub", "warmth"))
    result = export_run(run, out=tmp_path / "p", n_iter=3, preview_iterations=1)
    assert result.parity["audio"] <= 1e-4 and result.parity["audio_unshaped"] <= 1e-4
    assert result.parity["preview"] <= 1e-4
    label_in = {"label": ["batch"]} if classes else {}
    for name in ("decoder.onnx", "decoder_preview.onnx"):
        assert _inputs(tmp_path / "p" / name) == {"z": ["batch", 4], **label_in, "controls": ["batch", len(KNOBS)]}
    loaded = ExportedModel(tmp_path / "p")
    meta = loaded.metadata
    # the axis named like a control is left out (a knob names one or the other); the others stay
    assert meta.controls == KNOBS and [a.name for a in meta.axes] == ["warmth"]
    preset = load_preset(tmp_path / "p" / "preset.json")
    assert [k.axis for k in preset.knobs] == [*KNOBS, "warmth"] and [k.cc for k in preset.knobs] == list(range(20, 26))
    model, spec, _ = load_model(run / "best.pt")
    z = np.random.default_rng(5).standard_normal((4, 4)).astype(np.float32)
    label = (np.arange(4) % 2) if classes else None
    knobs = _knobs(4, seed=6).float()
    for k, preview in ((3, False), (1, True)):
        graph = DecoderGraph(model, spec, n_iter=k, init_phase=make_init("pghi", spec), shaping=True).eval()
        with torch.no_grad():
            ref, ref_mel = graph(torch.from_numpy(z), None if label is None else torch.from_numpy(label), knobs)
        audio, logmel = loaded.decode(z, label=label, controls=knobs.numpy(), preview=preview)
        assert np.abs(audio - ref.numpy()).max() <= 1e-4 * float(ref.abs().max())
        assert np.abs(logmel - ref_mel.numpy()).max() < 1e-4
        plain, plain_mel = loaded.decode(z, label=label, preview=preview)
        np.testing.assert_array_equal(logmel, plain_mel)       # logmel: the decoder's features, before the knobs
        assert np.abs(audio - plain).max() > 1e-2 * np.abs(plain).max()


def test_zero_controls_render_as_the_latent_axes_only_export(tmp_path, capsys):
    """``--no-shaping``: no controls input, no metadata.controls, every axis kept; its renders equal the shaped
    export's with every knob at 0."""
    run = _run(tmp_path)
    _axes(run, ("sub", "warmth"))
    plain_dir, shaped_dir = tmp_path / "plain", tmp_path / "shaped"
    assert export_cli.main(["onnx", str(run), "--out", str(plain_dir), "--iterations", "3", "--no-shaping"]) == 0
    out = capsys.readouterr().out
    assert "controls: none; axes: sub, warmth" in out
    assert _inputs(plain_dir / "decoder.onnx") == {"z": ["batch", 4]}
    assert export_cli.main(["onnx", str(run), "--out", str(shaped_dir), "--iterations", "3"]) == 0
    assert f"controls: {', '.join(KNOBS)}; axes: warmth" in capsys.readouterr().out
    plain, shaped = ExportedModel(plain_dir), ExportedModel(shaped_dir)
    assert plain.metadata.controls == () and [a.name for a in plain.metadata.axes] == ["sub", "warmth"]
    z = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
    ref, ref_mel = plain.decode(z)
    audio, logmel = shaped.decode(z, controls=np.zeros((3, len(KNOBS)), np.float32))
    assert np.abs(audio - ref).max() <= 1e-5 * np.abs(ref).max() and np.abs(logmel - ref_mel).max() < 1e-6
