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
