"""The torch-free spectrogram spec (runtime.spec) and the exported model's typed, validated spec and buffer length."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from runtime import model as M
from runtime.errors import ConfigError, KickspaceError
from runtime.spec import SPECS, SpectrogramSpec
from tests import onnx_fixtures as fx

PRESETS = Path(__file__).resolve().parents[1] / "presets"


def test_runtime_spec_imports_no_torch_and_no_trainer():
    code = ("import sys\nimport runtime.spec\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'trainer', 'export'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"runtime.spec imported: {out.stdout.strip()}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_named_spec_survives_a_json_round_trip(name):
    spec = SPECS[name]
    again = SpectrogramSpec.from_dict(json.loads(json.dumps(spec.to_dict())), complete=True)
    assert again == spec and again.digest() == spec.digest()
    assert again.n_samples == spec.frames * spec.hop_length and again.shape == (spec.channels, spec.n_bins, spec.frames)


@pytest.mark.parametrize("field, value, message", [
    ("sample_rate", True, "positive integer"),
    ("hop_length", "256", "positive integer"),
    ("top_db", "80", "finite number"),
    ("fmax", "nyquist", "Hz or null"),
    ("mel_norm", "area", "'slaney' or null"),
])
def test_json_types_are_checked_and_named(field, value, message):
    with pytest.raises(ConfigError, match=f"^cfg.spec.{field}: .*{message}"):
        SpectrogramSpec.from_dict({**SpectrogramSpec().to_dict(), field: value}, where="cfg.spec")


def test_a_config_table_may_leave_fields_at_their_defaults_a_saved_spec_may_not():
    assert SpectrogramSpec.from_dict({"n_mels": 64}) == SpectrogramSpec(n_mels=64)
    with pytest.raises(ConfigError, match="^spec.sample_rate: missing"):
        SpectrogramSpec.from_dict({"n_mels": 64}, complete=True)


def test_the_metadata_spec_is_typed_and_a_bad_field_names_the_model_file_and_the_field():
    again = M.ModelMetadata.from_json(fx.metadata().to_json())
    assert isinstance(again.spec, SpectrogramSpec) and again.spec == fx.SPEC
    assert json.loads(fx.metadata().to_json())["spec"] == fx.SPEC.to_dict()  # the JSON document is unchanged
    data = json.loads(fx.metadata().to_json())
    for spec, message in (({**data["spec"], "hop_length": 0}, "metadata.spec.hop_length: must be a positive integer"),
                          ({**data["spec"], "hop_length": 128}, "metadata.spec.hop_length: must not exceed"),
                          ({k: v for k, v in data["spec"].items() if k != "frames"}, "metadata.spec.frames: missing"),
                          ({**data["spec"], "hop": 16}, "metadata.spec.hop: unknown field"),
                          ("kick", "metadata.spec: must be an object")):
        with pytest.raises(ConfigError, match=f"^x/decoder.onnx: {message}") as err:
            M.ModelMetadata.from_json(json.dumps({**data, "spec": spec}), source="x/decoder.onnx")
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("preset", ["kicks", "kit"])
def test_the_shipped_presets_load_with_a_typed_spec_matching_their_graphs(preset):
    model = M.ExportedModel(PRESETS / preset)
    assert isinstance(model.metadata.spec, SpectrogramSpec)
    assert model.metadata.spec in SPECS.values()  # exported with a named spec
    model.warm_up(runs=1)  # checks each decoder's audio length against the spec
    label = 0 if model.metadata.conditional else None
    audio, _ = model.decode(np.zeros((1, model.metadata.latent), np.float32), label=label)
    assert audio.shape == (1, model.metadata.n_samples)


def test_a_graph_whose_static_audio_length_differs_from_the_spec_is_refused_on_load(tmp_path):
    fx.write_decoder(tmp_path / M.DECODER_FILE, fx.metadata().to_json(), weights=np.ones((fx.LATENT, 60)))
    with pytest.raises(KickspaceError, match=r"decoder.onnx: the graph's audio is 60 samples long, its metadata's "
                                             r"spec says 64 \(frames 4 x hop_length 16\)") as err:
        M.ExportedModel(tmp_path)
    assert "\n" not in str(err.value)


def test_an_encoder_whose_static_input_length_differs_from_the_spec_is_refused_on_load(tmp_path):
    fx.write_decoder(tmp_path / M.DECODER_FILE, fx.metadata().to_json())
    fx.write_encoder(tmp_path / M.ENCODER_FILE, fx.metadata().to_json(), samples=32)
    with pytest.raises(KickspaceError, match="encoder.onnx: the graph's audio is 32 samples long"):
        M.ExportedModel(tmp_path)


def _dynamic_decoder(path: Path, meta_json: str, samples: int) -> None:
    """A decoder whose audio length (``samples``) is data-dependent (NonZero), so no shape inference states it."""
    inits = [numpy_helper.from_array(np.ones((fx.LATENT, samples), np.float32), "W"),
             numpy_helper.from_array(np.ones(samples, np.float32), "mask"),
             numpy_helper.from_array(np.array([0], np.int64), "axis"),
             numpy_helper.from_array(np.ones((fx.LATENT, fx.MELS * fx.FRAMES), np.float32), "V"),
             numpy_helper.from_array(np.array([-1, fx.MELS, fx.FRAMES], np.int64), "shape")]
    nodes = [helper.make_node("MatMul", ["z", "W"], ["a0"]), helper.make_node("NonZero", ["mask"], ["nz"]),
             helper.make_node("Squeeze", ["nz", "axis"], ["keep"]),
             helper.make_node("Gather", ["a0", "keep"], ["audio"], axis=1),
             helper.make_node("MatMul", ["z", "V"], ["m0"]), helper.make_node("Reshape", ["m0", "shape"], ["logmel"])]
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["B", fx.LATENT])]
    outputs = [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["B", "samples"]),
               helper.make_tensor_value_info("logmel", TensorProto.FLOAT, ["B", fx.MELS, fx.FRAMES])]
    fx.save_graph(helper.make_graph(nodes, "decoder", inputs, outputs, inits), path, meta_json)


def test_a_graph_whose_dynamic_audio_length_differs_from_the_spec_is_refused_on_warm_up(tmp_path):
    _dynamic_decoder(tmp_path / M.DECODER_FILE, fx.metadata().to_json(), samples=fx.SAMPLES)
    M.ExportedModel(tmp_path).warm_up(runs=1)  # 64 samples, as the spec says
    meta = dataclasses.replace(fx.metadata(), spec=dataclasses.replace(fx.SPEC, frames=5))  # 80 samples
    _dynamic_decoder(tmp_path / M.DECODER_FILE, meta.to_json(), samples=fx.SAMPLES)
    model = M.ExportedModel(tmp_path)  # the graph does not state its length: loads
    with pytest.raises(KickspaceError, match="decoder.onnx: the graph's audio is 64 samples long, its metadata's "
                                             "spec says 80"):
        model.warm_up()
