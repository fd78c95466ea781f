"""Shaping controls in the runtime (issue 20): metadata ``controls``, the decoder's ``controls`` feed, knobs on
controls in the control state, the worker passing control rows through, offline render with control names."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime import model as M
from runtime.errors import ConfigError, KickspaceError
from tests import onnx_fixtures as fx
from tests.onnx_fixtures import LATENT, SAMPLES

KNOBS = ("sub", "punch", "decay", "click", "brightness")


def test_metadata_controls_round_trip_and_older_metadata_has_none():
    meta = fx.metadata(axes=(), controls=KNOBS)
    again = M.ModelMetadata.from_json(meta.to_json())
    assert again == meta and again.controls == KNOBS
    assert again.control_index("decay") == 2 and again.control_index("nope") is None
    both = fx.metadata(controls=("punch",))
    assert both.knob_names() == ("punch", "sub")  # controls first, then the latent axes
    data = json.loads(fx.metadata().to_json())
    del data["controls"]  # exported before the field existed
    assert M.ModelMetadata.from_json(json.dumps(data)).controls == ()


@pytest.mark.parametrize("controls, message", [
    (["punch", "punch"], r"metadata.controls\[1\]: 'punch' is listed twice"),
    (["punch", ""], r"metadata.controls\[1\]: must be a non-empty name"),
    (["punch", 3], r"metadata.controls\[1\]: must be a non-empty name, got 3"),
    (["sub"], r"metadata.controls\[0\]: 'sub' is also the name of a latent axis"),
    ("punch", r"metadata.controls: must be a list of names, got str"),
])
def test_bad_controls_are_refused_naming_the_field_and_the_file(controls, message):
    data = json.loads(fx.metadata().to_json())  # has the latent axis ``sub``
    with pytest.raises(ConfigError, match=rf"^x/decoder.onnx: {message}"):
        M.ModelMetadata.from_json(json.dumps({**data, "controls": controls}), source="x/decoder.onnx")


def _shaped_decoder(folder, names=("punch", "decay")):
    """A decoder with a ``controls`` input: control k adds ``(k + 1) * controls[:, k]`` to every sample."""
    meta = fx.metadata(controls=tuple(names))
    fx.write_decoder(folder / M.DECODER_FILE, meta.to_json(),
                     controls=np.stack([np.full(SAMPLES, k + 1.0) for k in range(len(names))]))
    return M.ExportedModel(folder)


def test_decoder_takes_controls_zeros_when_none(tmp_path):
    model = _shaped_decoder(tmp_path)
    z = np.ones((2, LATENT))
    plain, logmel = model.decode(z)
    shaped, logmel2 = model.decode(z, controls=np.array([[0.5, 0.0], [0.0, -1.0]]))
    assert np.allclose(shaped - plain, [[0.5], [-2.0]], atol=1e-5)
    assert np.array_equal(logmel, logmel2)  # logmel is the decoder's own, before the controls
    one_row, _ = model.decode(z, controls=np.array([0.5, 0.0]))  # one row for every sound
    assert np.allclose(one_row - plain, 0.5, atol=1e-5)
    with pytest.raises(KickspaceError, match=r"controls have shape \[2, 3\], the model wants \[2, 2\].*punch, decay"):
        model.decode(z, controls=np.zeros((2, 3)))


def test_model_without_controls_takes_no_controls_feed(tmp_path):
    fx.write_decoder(tmp_path / M.DECODER_FILE, fx.metadata().to_json())
    model = M.ExportedModel(tmp_path)
    plain, _ = model.decode(np.ones((1, LATENT)))
    same, _ = model.decode(np.ones((1, LATENT)), controls=np.zeros((1, 0)))
    assert np.array_equal(plain, same)
    with pytest.raises(KickspaceError, match="has no shaping controls.*latent axes instead \\(sub\\)"):
        model.decode(np.ones((1, LATENT)), controls=np.ones((1, 1)))


def test_graph_inputs_must_match_the_metadata_controls(tmp_path):
    # metadata names controls, graph has no ``controls`` input: refused on load
    fx.write_decoder(tmp_path / M.DECODER_FILE, fx.metadata(controls=("punch",)).to_json())
    with pytest.raises(KickspaceError, match="graph inputs .* do not match the format's .*controls"):
        M.ExportedModel(tmp_path)
    # graph has a ``controls`` input, metadata has none: refused too
    fx.write_decoder(tmp_path / M.DECODER_FILE, fx.metadata().to_json(), controls=np.ones((1, SAMPLES)))
    with pytest.raises(KickspaceError, match="graph inputs .* do not match"):
        M.ExportedModel(tmp_path)


def test_preview_decoder_takes_controls_too(tmp_path):
    folder = fx.linear_kick_model(tmp_path / "m", preview=True, controls=("punch",))
    model = M.ExportedModel(folder)
    assert model.has_preview and model.metadata.controls == ("punch",)
    z = np.array([[1.0, 0.0, 0.0]])
    full = model.decode(z, controls=[[1.0]])[0] - model.decode(z)[0]
    quick = model.decode(z, controls=[[1.0]], preview=True)[0] - model.decode(z, preview=True)[0]
    assert np.allclose(quick, fx.PREVIEW_LEVEL * full, atol=1e-5) and np.abs(full).max() > 0.1
    model.warm_up()


# ------------------------------------------------------------------------------------------- controls in the state

RATE = 8000
CONTROLS = ("punch", "decay")  # control k adds (k + 1) * value * tone (tests/onnx_fixtures.linear_kick_model)


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    """A linear kick model with axes ``sub``, ``click`` and shaping controls ``punch``, ``decay``; its
    ``preset.json`` (pad 36 at the kick, CC 20 -> sub, CC 21 -> punch, 1 output channel)."""
    root = tmp_path_factory.mktemp("shaped")
    folder = fx.linear_kick_model(root / "model", sample_rate=RATE, samples=1024, controls=CONTROLS, preview=True)
    doc = {"format": "kickspace-preset", "format_version": 1, "name": "shaped", "model": "model",
           "knobs": [{"cc": 20, "axis": "sub"}, {"cc": 21, "axis": "punch"}],
           "pads": [{"note": 36, "anchor": [1.0, 0.0, 0.0]}, {"note": 38, "anchor": [0.0, 1.0, 0.0]}],
           "output": {"gain": 1.0, "fade_ms": 2.0, "channels": 1}}
    (root / "preset.json").write_text(json.dumps(doc))
    return folder, root / "preset.json"


def _tone(samples=1024):
    t = np.arange(samples) / RATE
    return (np.sin(2 * np.pi * 220 * t) * np.exp(-t / 0.1)).astype(np.float32)


def test_a_knob_on_a_control_moves_the_controls_row_and_not_z(shaped):
    from runtime.controls import ControlState
    from runtime.preset import load_preset

    folder, path = shaped
    preset = load_preset(path)
    state = ControlState(preset, M.ExportedModel(folder).metadata)
    z0, c0 = state.pad_z(36), state.pad_controls(36)
    assert c0.shape == (1, 2) and c0.dtype == np.float32 and not c0.any()
    assert state.set_cc(21, 127)  # punch to +1
    np.testing.assert_array_equal(state.pad_z(36), z0)
    np.testing.assert_array_equal(state.pad_controls(36), [[1.0, 0.0]])
    assert state.set_cc(20, 127)  # sub (a latent axis) to +1: z moves, the controls row does not
    np.testing.assert_allclose(state.pad_z(36), [[1.5, 0.0, 0.0]])
    np.testing.assert_array_equal(state.pad_controls(36), [[1.0, 0.0]])
    state.set_axis("decay", -0.5)  # a control no knob is bound to, set directly (one-shot render)
    np.testing.assert_array_equal(state.pad_controls(38), [[1.0, -0.5]])
    assert state.set_position("decay", 1.0)  # an OSC knob on a control without a CC knob
    np.testing.assert_array_equal(state.pad_controls(36), [[1.0, 1.0]])
    requests = state.requests(M.ExportedModel(folder))
    assert [r.note for r in requests] == [36, 38]
    np.testing.assert_array_equal(requests[1].controls, [[1.0, 1.0]])
    with pytest.raises(ConfigError, match="no axis or shaping control named 'nope' .*punch, decay, sub, click"):
        state.set_axis("nope", 0.1)


def test_velocity_on_a_control_makes_layers_differ_in_that_control_only(shaped):
    import dataclasses

    from runtime.controls import ControlState, velocity_layer_offsets
    from runtime.preset import Velocity, load_preset

    folder, path = shaped
    preset = dataclasses.replace(load_preset(path), velocity=Velocity(axis="decay", amount=0.8, layers=4))
    state = ControlState(preset, M.ExportedModel(folder).metadata)
    state.set_axis("decay", 0.1)
    z, controls = state.pad_z(36), state.pad_controls(36)
    assert z.shape == (4, 3) and np.all(z == z[0])  # the latent rows stay the same in every layer
    np.testing.assert_allclose(controls[:, 1], 0.1 + velocity_layer_offsets(4, 0.8), rtol=1e-6)
    np.testing.assert_array_equal(controls[:, 0], 0.0)


def test_presets_may_name_controls_and_the_default_preset_maps_them_first(shaped):
    import dataclasses

    from runtime.preset import Knob, Velocity, default_preset, load_preset

    folder, path = shaped
    meta = M.ExportedModel(folder).metadata
    preset = load_preset(path)
    preset.check_against(meta)
    dataclasses.replace(preset, velocity=Velocity(axis="punch", amount=0.5)).check_against(meta)
    with pytest.raises(ConfigError, match=r"knobs\[2\].axis: the model has no axis 'nope' .*punch, decay, sub"):
        dataclasses.replace(preset, knobs=preset.knobs + (Knob(cc=22, axis="nope"),)).check_against(meta)
    assert [k.axis for k in default_preset(meta, folder).knobs] == ["punch", "decay", "sub", "click"]


def test_an_older_model_without_controls_plays_as_before(tmp_path):
    from runtime.controls import ControlState
    from runtime.preset import Knob, Pad, Preset, Velocity

    folder = fx.linear_kick_model(tmp_path / "m", sample_rate=RATE, samples=1024)
    model = M.ExportedModel(folder)
    preset = Preset(model=folder, knobs=(Knob(cc=20, axis="sub"),), pads=(Pad(36, anchor=(1.0, 0.0, 0.0)),),
                    velocity=Velocity(axis="sub", amount=1.0, layers=2))
    state = ControlState(preset, model.metadata)
    state.set_cc(20, 127)
    assert state.pad_controls(36).shape == (2, 0)
    (request,) = state.requests(model)
    assert request.controls is None
    np.testing.assert_allclose(request.z[:, 0], 1.5 + 0.5 * np.array([-0.5, 0.5]), atol=1e-2)
    with pytest.raises(ConfigError, match=r"^axes: the model has no axis named 'punch' \(it has: sub, click\)$"):
        state.check_axis("punch")


# ------------------------------------------------------------------------------------------- worker and render

def test_render_sounds_batches_controls_rows_with_their_z_rows(shaped, monkeypatch):
    from runtime.worker import PadRequest, render_sounds

    folder, _ = shaped
    model = M.ExportedModel(folder)
    seen = []
    decode = model.decode
    monkeypatch.setattr(model, "decode", lambda z, **kw: seen.append(kw["controls"]) or decode(z, **kw))
    kick = np.array([[1.0, 0.0, 0.0]], np.float32)
    requests = [PadRequest(36, model, np.repeat(kick, 2, 0), controls=np.array([[0.5, 0.0], [0.0, 1.0]])),
                PadRequest(38, model, kick)]  # no controls row: every control at 0
    shaped_sounds = render_sounds(requests, RATE, fade_out_ms=0.0, dc_cutoff_hz=0.0)
    np.testing.assert_array_equal(seen[0], [[0.5, 0.0], [0.0, 1.0], [0.0, 0.0]])
    plain = render_sounds([PadRequest(36, model, kick)], RATE, fade_out_ms=0.0, dc_cutoff_hz=0.0)[0]
    difference = (shaped_sounds[0] - plain)[:, :-1]  # the last sample is silenced by the safety fade either way
    np.testing.assert_allclose(difference, [0.5 * _tone()[:-1], 2.0 * _tone()[:-1]], atol=1e-4)
    np.testing.assert_allclose(shaped_sounds[1], plain, atol=1e-6)


def test_a_live_knob_on_a_control_rerenders_with_the_new_controls(shaped):
    import mido

    from runtime.instrument import build_instrument
    from runtime.preset import load_preset

    _, path = shaped
    instrument = build_instrument(load_preset(path), sample_rate=RATE, blocksize=128)
    controller, engine, worker = instrument.controller, instrument.engine, instrument.worker
    worker.render_now()
    before = engine.pad_buffer(36).copy()
    assert controller.handle(mido.Message("control_change", channel=0, control=21, value=127))
    worker.render_now()
    after = engine.pad_buffer(36)
    assert not np.allclose(before, after)
    knob = controller.bind("decay", cc=22)  # MIDI learn on a control
    assert knob.axis == "decay" and knob.cc == 22
    assert controller.handle(mido.Message("control_change", channel=0, control=22, value=0))
    np.testing.assert_array_equal(controller.state.pad_controls(36), [[1.0, -1.0]])
    assert controller.move_knob("decay", 0.5)  # an OSC knob
    np.testing.assert_array_equal(controller.state.pad_controls(36), [[1.0, 0.0]])


def test_one_shot_render_sets_a_control_by_name(shaped, tmp_path, capsys):
    from runtime import cli
    from runtime.render import render_one_shot

    _, path = shaped
    plain = render_one_shot(path, {})[:, 0]
    punched = render_one_shot(path, {"punch": 0.5})[:, 0]
    assert np.abs(punched - plain).max() > 0.1  # the tone the control adds; z (and the kick) unchanged
    assert cli.main(["render", "--preset", str(path), "--axes", "decay=-0.5,sub=0.2",
                     "--out", str(tmp_path / "k.wav")]) == 0
    assert cli.main(["render", "--preset", str(path), "--axes", "nope=1", "--out", str(tmp_path / "x.wav")]) == 2
    assert "no axis or shaping control named 'nope'" in capsys.readouterr().err


def test_the_live_worker_passes_controls_to_preview_and_full_renders(shaped):
    from runtime.engine import Engine
    from runtime.worker import PadRequest, RenderWorker, render_sounds

    folder, _ = shaped
    model = M.ExportedModel(folder)
    engine = Engine(RATE, 128, channels=1)
    worker = RenderWorker(engine, preview=True, split_pads=True)
    kick = np.array([[1.0, 0.0, 0.0]], np.float32)
    request = PadRequest(36, model, kick, controls=np.array([[0.0, 1.0]], np.float32))
    worker.start()
    try:
        worker.request([request])
        assert worker.wait_idle(10.0)
    finally:
        worker.stop()
    assert worker.stats.previews == 1 and worker.stats.renders == 1
    expected = render_sounds([request], RATE)[0]
    np.testing.assert_allclose(engine.pad_buffer(36)[:, :, 0], expected, atol=1e-6)
    unshaped = render_sounds([PadRequest(36, model, kick)], RATE)[0]
    assert np.abs(expected - unshaped).max() > 0.1
