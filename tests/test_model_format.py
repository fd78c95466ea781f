"""The exported-model format: metadata round trip, version refusal, graph I/O checks, decode/encode calls."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from runtime import model as M
from runtime.errors import ConfigError, KickspaceError

SPEC = {"sample_rate": 8000, "n_fft": 64, "hop_length": 16, "win_length": 64, "n_mels": 8, "fmin": 0.0,
        "fmax": None, "mel_scale": "slaney", "mel_norm": "slaney", "frames": 4, "channels": 1, "top_db": 80.0,
        "headroom_db": 6.0}
LATENT, SAMPLES = 3, 64


def _meta(**changes) -> M.ModelMetadata:
    base = M.ModelMetadata(spec=SPEC, latent=LATENT, axes=(M.Axis("sub", (1.0, 0.0, 0.0), 2.0, {"rho": 0.95}),),
                           griffin_lim_iterations=4, phase_init="test")
    return dataclasses.replace(base, **changes)


def _save(graph: onnx.GraphProto, path, meta_json: str | None) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    if meta_json is not None:
        helper.set_model_props(model, {M.METADATA_KEY: meta_json})
    onnx.save(model, str(path))


def _decoder(path, meta_json: str | None, *, conditional: bool = False, out_name: str = "audio") -> None:
    """audio = z @ W (linear stand-in), logmel = reshape(z @ V); label (if any) adds a per-class offset."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((LATENT, SAMPLES)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((LATENT, 8 * 4)).astype(np.float32), "V"),
             numpy_helper.from_array(np.array([-1, 8, 4], dtype=np.int64), "shape")]
    nodes = [helper.make_node("MatMul", ["z", "W"], ["a0"]), helper.make_node("MatMul", ["z", "V"], ["m0"]),
             helper.make_node("Reshape", ["m0", "shape"], ["logmel"])]
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["B", LATENT])]
    if conditional:
        inits.append(numpy_helper.from_array(np.array([[0.0], [10.0]], dtype=np.float32), "offsets"))
        nodes += [helper.make_node("Gather", ["offsets", "label"], ["off"], axis=0),
                  helper.make_node("Add", ["a0", "off"], [out_name])]
        inputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["B"]))
    else:
        nodes.append(helper.make_node("Identity", ["a0"], [out_name]))
    outputs = [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["B", SAMPLES]),
               helper.make_tensor_value_info("logmel", TensorProto.FLOAT, ["B", 8, 4])]
    _save(helper.make_graph(nodes, "decoder", inputs, outputs, inits), path, meta_json)


def _encoder(path, meta_json: str) -> None:
    w = numpy_helper.from_array(np.full((SAMPLES, LATENT), 0.01, dtype=np.float32), "E")
    nodes = [helper.make_node("MatMul", ["audio", "E"], ["mu"]), helper.make_node("Neg", ["mu"], ["logvar"])]
    inputs = [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["B", SAMPLES])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", LATENT]) for n in ("mu", "logvar")]
    _save(helper.make_graph(nodes, "encoder", inputs, outputs, [w]), path, meta_json)


def test_metadata_round_trip():
    meta = _meta(labels=("kick", "snare"), training={"epochs": 3})
    again = M.ModelMetadata.from_json(meta.to_json())
    assert again == meta
    assert again.sample_rate == 8000 and again.n_samples == 64 and again.conditional
    assert again.axis("sub").effect["rho"] == 0.95
    with pytest.raises(ConfigError, match="no axis named 'punch'.*sub"):
        again.axis("punch")


def test_unknown_version_and_fields_are_refused_by_name():
    data = json.loads(_meta().to_json())
    with pytest.raises(KickspaceError, match="format version 99 is not supported.*reads version 1"):
        M.ModelMetadata.from_json(json.dumps({**data, "format_version": 99}))
    with pytest.raises(ConfigError, match="metadata.colour: unknown field"):
        M.ModelMetadata.from_json(json.dumps({**data, "colour": 1}))
    bad_axis = {**data, "axes": [{"name": "sub", "direction": [1.0, 2.0]}]}
    with pytest.raises(ConfigError, match=r"metadata.axes\[0\].direction: has 2 values, the latent size is 3"):
        M.ModelMetadata.from_json(json.dumps(bad_axis))
    with pytest.raises(KickspaceError, match="not a Kickspace model"):
        M.ModelMetadata.from_json(json.dumps({"format": "other"}))


def test_loader_decodes_and_encodes(tmp_path):
    _decoder(tmp_path / M.DECODER_FILE, _meta().to_json())
    _encoder(tmp_path / M.ENCODER_FILE, _meta().to_json())
    model = M.ExportedModel(tmp_path)
    assert model.has_encoder and model.metadata.latent == LATENT
    for batch in (1, 8):
        audio, logmel = model.decode(np.ones((batch, LATENT)))
        assert audio.shape == (batch, SAMPLES) and logmel.shape == (batch, 8, 4) and audio.dtype == np.float32
    mu, logvar = model.encode(np.ones((2, SAMPLES)))
    assert np.allclose(mu, 0.64) and np.allclose(logvar, -0.64)
    with pytest.raises(KickspaceError, match="z has 5 dimensions, the model's latent size is 3"):
        model.decode(np.ones((1, 5)))
    with pytest.raises(KickspaceError, match="audio has 10 samples, the model wants 64 at 8000 Hz"):
        model.encode(np.ones((1, 10)))


def test_conditional_model_needs_a_valid_label(tmp_path):
    _decoder(tmp_path / M.DECODER_FILE, _meta(labels=("kick", "snare")).to_json(), conditional=True)
    model = M.ExportedModel(tmp_path)
    kick, _ = model.decode(np.zeros((1, LATENT)), label=0)
    snare, _ = model.decode(np.zeros((1, LATENT)), label=1)
    assert np.allclose(snare - kick, 10.0)
    with pytest.raises(KickspaceError, match="conditioned on a class"):
        model.decode(np.zeros((1, LATENT)))
    with pytest.raises(KickspaceError, match="out of range"):
        model.decode(np.zeros((1, LATENT)), label=2)


def test_loader_fails_clearly(tmp_path):
    with pytest.raises(KickspaceError, match="model file not found.*export onnx"):
        M.ExportedModel(tmp_path)
    _decoder(tmp_path / M.DECODER_FILE, None)
    with pytest.raises(KickspaceError, match="no Kickspace metadata"):
        M.ExportedModel(tmp_path)
    _decoder(tmp_path / M.DECODER_FILE, _meta().to_json(), out_name="wave")
    with pytest.raises(KickspaceError, match="graph outputs .* do not match"):
        M.ExportedModel(tmp_path)
    (tmp_path / M.DECODER_FILE).write_bytes(b"not onnx")
    with pytest.raises(KickspaceError, match="onnxruntime cannot load"):
        M.ExportedModel(tmp_path)
    _decoder(tmp_path / M.DECODER_FILE, _meta(labels=("a", "b")).to_json())
    with pytest.raises(KickspaceError, match="graph inputs"):
        M.ExportedModel(tmp_path)
