"""runtime.dsp: the numpy BS.1770 loudness against pyloudnorm, and the one-shot preparation a user's sample gets
(the trainer's, with the settings read from the exported model)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from runtime import dsp
from runtime.controls import encode_samples, prepare_sample
from runtime.errors import ConfigError, KickspaceError
from runtime.model import ExportedModel
from runtime.preset import load_preset
from tests import onnx_fixtures as fx


def _signals(rate: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rate + n)
    t = np.arange(n) / rate
    kick = np.sin(2 * np.pi * 50 * t * np.exp(-8 * t)) * np.exp(-6 * t)
    late_hiss = np.where(t > t[-1] / 3, 0.01 * rng.standard_normal(n), 0.0)  # silent blocks gated out
    return {"kick": kick[None], "stereo": np.stack([kick, 0.5 * rng.standard_normal(n) * np.exp(-20 * t)]),
            "late hiss": late_hiss[None]}


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("seconds", [0.05, 0.4, 0.743, 1.3])
def test_integrated_loudness_equals_pyloudnorm(rate, seconds):
    pyloudnorm = pytest.importorskip("pyloudnorm")
    n = int(seconds * rate)
    for name, audio in _signals(rate, n).items():
        meter = pyloudnorm.Meter(rate, block_size=min(0.4, n / rate))
        expected = meter.integrated_loudness(audio[0] if len(audio) == 1 else audio.T)
        assert dsp.integrated_loudness(audio, rate) == pytest.approx(expected, abs=1e-6), name


def test_k_weighting_equals_the_recursive_filters():
    signal = pytest.importorskip("scipy.signal")
    x = np.random.default_rng(0).standard_normal((2, 5000))
    expected = x
    for gain, q, corner, kind in dsp.K_WEIGHTING:  # the high-pass has a double pole (Q 0.5)
        expected = signal.lfilter(*dsp._biquad(gain, q, corner, 16000, kind), expected, axis=-1)
    np.testing.assert_allclose(dsp.k_weight(x, 16000), expected, atol=1e-10)


def test_silence_is_minus_infinity_lufs():
    assert dsp.integrated_loudness(np.zeros((1, 4000)), 8000) == -np.inf


def _model(tmp_path, preparation: dsp.Preparation | None = None):
    folder = fx.linear_kick_model(tmp_path / "model", sample_rate=8000, samples=2048, encoder=True)
    if preparation is not None:
        meta = dataclasses.replace(ExportedModel(folder).metadata, preparation=preparation)
        fx.write_decoder(folder / "decoder.onnx", meta.to_json(), weights=np.zeros((3, 2048)))  # sound unused
        fx.write_encoder(folder / "encoder.onnx", meta.to_json(), samples=2048)
    return ExportedModel(folder)


def test_a_users_sample_is_prepared_with_the_models_settings(tmp_path):
    model = _model(tmp_path, dsp.Preparation(loudness="peak", peak_dbfs=-6.0, onset_db=-20.0, preroll_ms=2.0))
    rate = 16000
    sample = np.concatenate([np.zeros(3000), 0.05 * fx.kick_shape(6000, rate)])[None]
    out = prepare_sample(sample, rate, model.metadata)
    assert out.shape == (2048,) and out.dtype == np.float32
    assert 20 * np.log10(np.abs(out).max()) == pytest.approx(-6.0, abs=1e-3)
    onset = int(np.argmax(np.abs(out) >= np.abs(out).max() * 10 ** (-20 / 20)))
    assert abs(onset - 16) <= 1  # 2 ms pre-roll at 8 kHz
    assert out[-1] == 0.0  # the crop's fade-out ends at zero


@pytest.mark.parametrize("content, message", [(np.zeros(800), "every sample is zero"),
                                              (np.full(800, np.nan), "NaN or infinite")])
def test_an_unusable_sample_fails_in_one_line_naming_the_pad(tmp_path, content, message):
    model = _model(tmp_path)
    sf.write(str(tmp_path / "bad.wav"), content.astype(np.float32), 8000, subtype="FLOAT")
    doc = {"format": "kickspace-preset", "format_version": 1, "model": "model", "knobs": [],
           "pads": [{"note": 36, "sample": "bad.wav"}]}
    (tmp_path / "preset.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=rf"^pads\[0\].sample: .*bad.wav: .*{message}") as err:
        encode_samples(load_preset(tmp_path / "preset.json"), model)
    assert "\n" not in str(err.value)


def test_preparation_settings_are_validated_by_field():
    with pytest.raises(ConfigError, match=r"^preparation.loudness: must be 'lufs', 'peak' or 'none'"):
        dsp.Preparation(loudness="loud")
    with pytest.raises(ConfigError, match=r"^model.preparation.fade_ms: must be a finite number"):
        dsp.Preparation.from_dict({**dsp.Preparation().to_dict(), "fade_ms": "10"}, where="model.preparation")
    with pytest.raises(KickspaceError, match="nothing left"):
        dsp.prepare_one_shot(np.r_[np.ones(1), np.zeros(99)].astype(np.float32)[None], 1000, 1,
                             preparation=dsp.Preparation(preroll_ms=5.0), measure=dsp.integrated_loudness)
