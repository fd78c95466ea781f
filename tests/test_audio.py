"""Preprocessing of one file: alignment, length and fade, loudness, channels, resampling, rejections."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from runtime.dsp import integrated_loudness
from runtime.errors import ConfigError
from runtime.spec import SpectrogramSpec
from tests import badfiles
from tests.signals import simple_kick
from trainer.data.audio import Preprocess, SkipFile, hit_times, prepare, read_audio
from trainer.spec import waveform_to_features

SR = 44100
SPEC = SpectrogramSpec()
STEREO = dataclasses.replace(SPEC, channels=2)
PRE = Preprocess()
CEILING = 10 ** (PRE.peak_dbfs / 20)


def _prepare(audio: np.ndarray, rate: int = SR, *, spec: SpectrogramSpec = SPEC, **changes) -> np.ndarray:
    return prepare(audio, rate, spec=spec, preprocess=dataclasses.replace(PRE, **changes))


def _sine(hz: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


# --------------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("field, value", [("loudness", "loud"), ("target_lufs", 3.0), ("peak_dbfs", 1.0),
                                          ("fade_ms", -1.0), ("clip_fraction", 0.0), ("max_seconds", 0.001),
                                          ("multi_hit_ratio", 2.0), ("onset_db", float("nan")),
                                          ("silence_dbfs", True)])
def test_invalid_preprocess_fields_are_refused_by_name(field, value):
    with pytest.raises(ConfigError) as caught:
        Preprocess(**{field: value})
    assert caught.value.field == f"preprocess.{field}"


def test_digest_follows_every_field():
    assert Preprocess().digest() == Preprocess().digest()
    assert Preprocess(fade_ms=5.0).digest() != PRE.digest()
    assert Preprocess(loudness="peak").digest() != PRE.digest()


# ----------------------------------------------------------------------------------- alignment, length, fade
def test_leading_silence_is_trimmed_so_features_match():
    kick = simple_kick()
    late = np.concatenate([np.zeros(int(0.2 * SR), np.float32), kick])
    a, b = _prepare(kick), _prepare(late)
    fa, fb = (waveform_to_features(x[None], SPEC).numpy() for x in (a, b))
    assert float(np.abs(fa - fb).max()) < 1e-3
    # the onset lands preroll_ms after the start in both
    onset = int(np.argmax(np.abs(b[0]) >= np.abs(b[0]).max() * 10 ** (PRE.onset_db / 20)))
    assert onset == round(PRE.preroll_ms * SR / 1000)


def test_long_sounds_are_cropped_with_a_fade_and_short_ones_padded():
    long = _prepare(simple_kick(seconds=3.0, decay_s=2.0))
    assert long.shape == (1, SPEC.n_samples) and long.dtype == np.float32
    fade = int(PRE.fade_ms * SR / 1000)
    assert long[0, -1] == 0.0
    assert np.abs(long[0, -fade // 4:]).max() < 0.2 * np.abs(long[0, -2 * fade:-fade]).max()
    short = _prepare(simple_kick(seconds=0.1))
    assert short.shape == (1, SPEC.n_samples)
    assert np.all(short[0, int(0.11 * SR):] == 0.0)


# -------------------------------------------------------------------------------------------------- loudness
def test_lufs_normalisation_hits_its_target():
    out = _prepare(0.1 * simple_kick(), loudness="lufs", target_lufs=-24.0)
    assert integrated_loudness(out, SR) == pytest.approx(-24.0, abs=0.1)
    assert np.abs(out).max() < CEILING


def test_lufs_gain_is_limited_by_the_peak_ceiling():
    out = _prepare(simple_kick(), loudness="lufs", target_lufs=-3.0)
    assert np.abs(out).max() == pytest.approx(CEILING, rel=1e-4)
    assert integrated_loudness(out, SR) < -3.0


def test_peak_normalisation_hits_its_target():
    out = _prepare(0.05 * simple_kick(), loudness="peak", peak_dbfs=-3.0)
    assert np.abs(out).max() == pytest.approx(10 ** (-3 / 20), rel=1e-4)


def test_no_normalisation_only_tames_overs():
    loud = _prepare(2.5 * simple_kick(), loudness="none")
    assert np.all(np.isfinite(loud)) and np.abs(loud).max() <= 1.0
    quiet = _prepare(0.2 * simple_kick(), loudness="none")
    assert np.abs(quiet).max() == pytest.approx(0.2 * 0.9, rel=1e-3)


# -------------------------------------------------------------------------------------------------- channels
def test_stereo_is_downmixed_for_a_mono_spec_and_kept_for_a_stereo_spec():
    kick = simple_kick()
    stereo = np.stack([kick, 0.5 * kick])
    mono = _prepare(stereo, loudness="none")
    assert mono.shape == (1, SPEC.n_samples)
    np.testing.assert_allclose(mono, _prepare(0.75 * kick, loudness="none"), atol=1e-6)
    both = _prepare(stereo, spec=STEREO, loudness="none")
    assert both.shape == (2, SPEC.n_samples)
    np.testing.assert_allclose(both[1], 0.5 * both[0], atol=1e-6)
    dup = _prepare(kick, spec=STEREO)
    np.testing.assert_array_equal(dup[0], dup[1])
    six = _prepare(np.stack([kick] * 6), spec=STEREO)
    assert six.shape == (2, SPEC.n_samples) and np.array_equal(six[0], six[1])


# ------------------------------------------------------------------------------------------------ resampling
@pytest.mark.parametrize("rate", [22050, 48000, 96000])
def test_resampling_keeps_the_shape_and_the_pitch(rate):
    out = _prepare(_sine(100.0, rate), rate)
    assert out.shape == (1, SPEC.n_samples)
    body = out[0, : int(0.7 * SR)]
    spectrum = np.abs(np.fft.rfft(body * np.hanning(body.size), n=1 << 20))
    peak_hz = np.argmax(spectrum) * SR / (1 << 20)
    assert peak_hz == pytest.approx(100.0, abs=0.5)


# ------------------------------------------------------------------------------------------------ rejections
@pytest.mark.parametrize("name, audio, reason", [
    ("silence", np.zeros(SR // 2, np.float32), "silent"),
    ("noise at -70 dBFS", (10 ** (-70 / 20) * np.sign(_sine(50, SR))).astype(np.float32), "silent"),
    ("dc", np.full(SR // 2, -0.4, np.float32), "dc-only"),
    ("square wave", badfiles.square_wave(), "clipped"),
    ("four kicks 150 ms apart", badfiles.four_kicks(), "multi-hit"),
    ("drum loop", badfiles.drum_loop(), "multi-hit"),
    ("nan", np.array([0.1, np.nan, 0.2] * 1000, np.float32), "non-finite"),
    ("one sample", np.array([0.5], np.float32), "too-short"),
    ("eleven seconds", np.tile(simple_kick(seconds=0.5), 22), "too-long"),
])
def test_unusable_audio_is_rejected_with_its_reason(name, audio, reason):
    with pytest.raises(SkipFile) as caught:
        _prepare(audio)
    assert caught.value.reason == reason, name


@pytest.mark.parametrize("name, audio", [
    ("kick with a 3 s tail", simple_kick(seconds=3.0, decay_s=1.5)),
    ("saturated kick", np.tanh(5 * simple_kick()).astype(np.float32)),
    ("hard-clipped kick, 10 dB over", np.clip(3 * simple_kick(), -0.9, 0.9)),
    ("kick that ends abruptly", simple_kick(seconds=0.15, decay_s=0.5)),
    ("steady sine", _sine(100.0, SR)),
])
def test_real_one_shots_are_not_rejected(name, audio):
    out = _prepare(audio)
    assert np.all(np.isfinite(out)) and np.abs(out).max() <= CEILING + 1e-7, name


def test_four_kicks_are_counted_as_four_hits_and_a_kick_as_one():
    four = badfiles.four_kicks()[None]
    times = hit_times(four, SR, preprocess=PRE)
    assert len(times) == 4
    np.testing.assert_allclose(np.diff(times), 0.15, atol=0.011)
    assert len(hit_times(simple_kick(seconds=2.0, decay_s=1.0)[None], SR, preprocess=PRE)) == 1
    assert _prepare(badfiles.four_kicks(), multi_hit_ratio=None).shape == (1, SPEC.n_samples)


def test_read_audio_returns_channels_first_float32(tmp_path):
    path = badfiles.write(tmp_path / "stereo.flac", np.stack([simple_kick(), -simple_kick()], 1), 48000,
                          subtype="PCM_24")
    audio, rate = read_audio(path)
    assert rate == 48000 and audio.shape == (2, simple_kick().size) and audio.dtype == np.float32
    np.testing.assert_allclose(audio[0], -audio[1], atol=1e-6)
