"""The exported-model format: metadata round trip, version refusal, graph I/O checks, decode/encode calls."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime import model as M
from runtime.errors import ConfigError, KickspaceError
from tests import onnx_fixtures as fx
from tests.onnx_fixtures import LATENT, SAMPLES


def test_metadata_round_trip():
    meta = fx.metadata(labels=("kick", "snare"), training={"epochs": 3})
    again = M.ModelMetadata.from_json(meta.to_json())
    assert again == meta
    assert again.sample_rate == 8000 and again.n_samples == 64 and again.conditional
    assert again.axis("sub").effect["rho"] == 0.95
    with pytest.raises(ConfigError, match="no axis named 'punch'.*sub"):
        again.axis("punch")


def test_unknown_version_and_fields_are_refused_by_name():
    data = json.loads(fx.metadata().to_json())
    with pytest.raises(KickspaceError, match="format version 99 is not supported.*reads version 1"):
        M.ModelMetadata.from_json(json.dumps({**data, "format_version": 99}))
    with pytest.raises(ConfigError, match="metadata.colour: unknown field"):
        M.ModelMetadata.from_json(json.dumps({**data, "colour": 1}))
    bad_axis = {**data, "axes": [{"name": "sub", "direction": [1.0, 2.0]}]}
    with pytest.raises(ConfigError, match=r"metadata.axes\[0\].direction: has 2 values, the latent size is 3"):
        M.ModelMetadata.from_json(json.dumps(bad_axis))
    for bad, field in ((bad_axis, r"metadata.axes\[0\].direction"), ({**data, "latent": 0}, "metadata.latent"),
                       ({**data, "colour": 1}, "metadata.colour")):  # every field error names the file too
        with pytest.raises(ConfigError, match=rf"^x/decoder.onnx: {field}: "):
            M.ModelMetadata.from_json(json.dumps(bad), source="x/decoder.onnx")
    with pytest.raises(KickspaceError, match="not a Kickspace model"):
        M.ModelMetadata.from_json(json.dumps({"format": "other"}))


def test_one_shot_preparation_is_typed_and_older_models_fall_back_to_the_legacy_settings():
    peak = M.Preparation(loudness="peak", peak_dbfs=-6.0, onset_db=-20.0)
    again = M.ModelMetadata.from_json(fx.metadata(preparation=peak).to_json())
    assert again.preparation == peak and isinstance(again.preparation, M.Preparation)
    data = json.loads(fx.metadata().to_json())
    del data["preparation"]  # exported before the field existed (the shipped presets)
    assert M.ModelMetadata.from_json(json.dumps(data)).preparation == M.LEGACY_PREPARATION
    for bad, message in (({**peak.to_dict(), "onset_db": 3.0},
                          r"x/decoder.onnx: metadata.preparation.onset_db: must be in \(-120, 0\)"),
                         ({"loudness": "lufs"}, "x/decoder.onnx: metadata.preparation.target_lufs: missing"),
                         ({**peak.to_dict(), "gate": 1}, "x/decoder.onnx: metadata.preparation.gate: unknown field")):
        with pytest.raises(ConfigError, match=message):
            M.ModelMetadata.from_json(json.dumps({**data, "preparation": bad}), source="x/decoder.onnx")


def test_loader_decodes_and_encodes(tmp_path):
    fx.write_decoder(tmp_path / M.DECODER_FILE, fx.metadata().to_json())
    fx.write_encoder(tmp_path / M.ENCODER_FILE, fx.metadata().to_json())
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
    fx.write_decoder(tmp_path / M.DECODER_FILE, fx.metadata(labels=("kick", "snare")).to_json(), conditional=True)
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
    fx.write_decoder(tmp_path / M.DECODER_FILE, None)
    with pytest.raises(KickspaceError, match="no Kickspace metadata"):
        M.ExportedModel(tmp_path)
    fx.write_decoder(tmp_path / M.DECODER_FILE, fx.metadata().to_json(), out_name="wave")
    with pytest.raises(KickspaceError, match="graph outputs .* do not match"):
        M.ExportedModel(tmp_path)
    (tmp_path / M.DECODER_FILE).write_bytes(b"not onnx")
    with pytest.raises(KickspaceError, match="onnxruntime cannot load"):
        M.ExportedModel(tmp_path)
    fx.write_decoder(tmp_path / M.DECODER_FILE, fx.metadata(labels=("a", "b")).to_json())
    with pytest.raises(KickspaceError, match="graph inputs"):
        M.ExportedModel(tmp_path)


def test_preview_decoder_plays_on_request_and_must_match_its_decoder(tmp_path):
    folder = fx.linear_kick_model(tmp_path / "m", preview=True)
    model = M.ExportedModel(folder)
    z = np.array([[1.0, 0.0, 0.0]], np.float32)
    full, quick = model.decode(z)[0], model.decode(z, preview=True)[0]
    np.testing.assert_allclose(quick, fx.PREVIEW_LEVEL * full, atol=1e-6)
    token = M.CancelToken()
    token.cancel()
    with pytest.raises(M.RenderCancelled):
        model.decode(z, cancel=token)
    np.testing.assert_allclose(model.decode(z, cancel=M.CancelToken())[0], full)  # a fresh token runs to the end
    fx.write_decoder(folder / M.PREVIEW_FILE, fx.metadata(preview_iterations=3).to_json())
    with pytest.raises(KickspaceError, match="decoder_preview.onnx: .*different exports.*re-export"):
        M.ExportedModel(folder)
    (folder / M.PREVIEW_FILE).unlink()
    plain = M.ExportedModel(folder)  # no preview file: the full decoder serves both
    assert not plain.has_preview
    np.testing.assert_allclose(plain.decode(z, preview=True)[0], full)


def test_atomic_writes_keep_normal_permissions(tmp_path):
    """Files written through runtime.files are readable by others (mkstemp alone would leave them 0600)."""
    import stat

    from runtime.files import write_text

    path = write_text(tmp_path / "a.json", "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o600)
    write_text(path, "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "an existing file keeps its mode"
