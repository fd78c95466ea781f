"""The one spectrogram spec: shapes, value range, librosa agreement, round-trip quality, validation."""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest
import torch

from runtime.errors import ConfigError
from runtime.spec import SpectrogramSpec, get_spec
from tests.signals import simple_kick
from trainer import spec as S

SMALL = SpectrogramSpec(sample_rate=16000, n_fft=512, hop_length=128, win_length=512, n_mels=64, frames=64)


def _librosa_features(audio: np.ndarray, spec: SpectrogramSpec) -> np.ndarray:
    """The documented feature definition written independently with librosa (float64)."""
    stft = librosa.stft(audio.astype(np.float64), n_fft=spec.n_fft, hop_length=spec.hop_length,
                        window=S.window(spec), center=True, pad_mode="constant")[:, : spec.frames]
    power = (np.abs(stft) * S.magnitude_scale(spec)) ** 2
    if spec.mel_scale == "linear":
        mel = power
    else:
            mel = librosa.feature.melspectrogram(S=power, sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels,
                                             fmin=spec.fmin, fmax=spec.fmax, htk=spec.mel_scale == "htk",
                                             norm=spec.mel_norm)
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    return np.clip((db - (S.ref_db(spec) - spec.top_db)) / spec.top_db, 0, 1) * 2 - 1


def _spectral_convergence_db(audio: np.ndarray, target_mag: np.ndarray, spec: SpectrogramSpec) -> float:
    stft = librosa.stft(audio.astype(np.float64), n_fft=spec.n_fft, hop_length=spec.hop_length,
                        window=S.window(spec), center=True, pad_mode="constant")[:, : spec.frames]
    mag = np.abs(stft) * S.magnitude_scale(spec)
    return float(20 * np.log10(np.linalg.norm(mag - target_mag) / np.linalg.norm(target_mag)))


def test_defaults_follow_design():
    spec = SpectrogramSpec()
    assert (spec.sample_rate, spec.n_fft, spec.hop_length, spec.n_mels, spec.frames) == (44100, 1024, 256, 128, 128)
    assert spec.n_samples == 32768 and spec.shape == (1, 128, 128)
    assert abs(spec.duration - 0.743) < 1e-3
    assert get_spec("nsynth").shape == (1, 80, 128)
    assert get_spec("kick-2048-htk").mel_scale == "htk"


@pytest.mark.parametrize("spec", [SMALL, dataclasses.replace(SMALL, mel_scale="htk"),
                                  dataclasses.replace(SMALL, mel_scale="linear")], ids=["slaney", "htk", "linear"])
def test_shapes_range_and_librosa_agreement(spec):
    kicks = np.stack([simple_kick(sample_rate=spec.sample_rate, seconds=spec.duration, seed=i, decay_s=0.05 + 0.1 * i)
                      for i in range(3)])[:, : spec.n_samples]
    feats = S.waveform_to_features(kicks, spec)
    assert feats.shape == (3, *spec.shape) and feats.dtype == torch.float32
    assert feats.min() >= -1 and feats.max() <= 1
    assert feats.max() > 0.3, "a loud kick should reach the upper part of the range"
    for i in range(3):
        expected = _librosa_features(kicks[i], spec)
        assert np.abs(feats[i, 0].numpy() - expected).max() < 1e-3


def test_level_is_absolute_not_per_file():
    kick = simple_kick(sample_rate=SMALL.sample_rate, seconds=SMALL.duration)[: SMALL.n_samples]
    loud, quiet = S.waveform_to_features(np.stack([kick, kick * 0.1]), SMALL)
    # 20 dB quieter = 0.5 lower on the 80 dB -> [-1, 1] scale, wherever neither is clipped
    visible = (quiet > -0.99) & (loud < 0.99)
    assert visible.sum() > 100
    assert torch.allclose(loud[visible] - quiet[visible], torch.tensor(0.5), atol=1e-3)


def test_full_scale_sine_stays_below_the_ceiling():
    spec = SpectrogramSpec()
    t = np.arange(spec.n_samples) / spec.sample_rate
    sines = np.stack([np.sin(2 * np.pi * f * t) for f in (40.0, 60.0, 1000.0, 12000.0)])
    feats = S.waveform_to_features(sines, spec)
    assert feats.max() < 1.0, "headroom: a full-scale sine must not clip"
    ceiling_in_units = 1.0 - 2 * spec.headroom_db / spec.top_db
    # Slaney-normalised bands are narrowest (highest weight) low down: a kick's body reaches the ceiling there
    assert feats[:2].amax(dim=(1, 2, 3)).min() > ceiling_in_units - 0.1  # within 4 dB of the ceiling


def test_stereo_channels_are_independent():
    spec = dataclasses.replace(SMALL, channels=2)
    kick = simple_kick(sample_rate=spec.sample_rate, seconds=spec.duration)[: spec.n_samples]
    stereo = np.stack([kick, 0.1 * kick])[None]
    feats = S.waveform_to_features(stereo, spec)
    assert feats.shape == (1, 2, spec.n_mels, spec.frames)
    assert feats[0, 0].mean() > feats[0, 1].mean()
    with pytest.raises(ConfigError, match="channels"):
        S.waveform_to_features(kick[None], spec)


def test_round_trip_quality_on_a_synthetic_kick():
    """mel -> pseudo-inverse -> 32 fast Griffin-Lim iterations: spectral convergence better than -10 dB."""
    spec = SpectrogramSpec()
    kick = simple_kick(sample_rate=spec.sample_rate, seconds=spec.duration)[: spec.n_samples]
    feats = S.waveform_to_features(kick, spec)
    target = S.MelInverse(spec)(feats)[0, 0].numpy()
    audio = S.features_to_waveform(feats, spec, n_iter=32)
    assert audio.shape == (1, 1, spec.n_samples)
    assert torch.isfinite(audio).all()
    sc32 = _spectral_convergence_db(audio[0, 0].numpy(), target, spec)
    sc0 = _spectral_convergence_db(S.features_to_waveform(feats, spec, n_iter=0)[0, 0].numpy(), target, spec)
    assert sc32 < -10.0
    assert sc32 < sc0 - 5.0, "iterations must improve the phase"
    rms_in, rms_out = np.sqrt(np.mean(kick ** 2)), np.sqrt(np.mean(audio[0, 0].numpy() ** 2))
    assert abs(20 * np.log10(rms_out / rms_in)) < 1.0, "the inverse keeps the level"


def test_griffin_lim_matches_librosa():
    """Our fast Griffin-Lim reaches the same spectral convergence as librosa's on the same magnitude."""
    spec = SpectrogramSpec()
    kick = simple_kick(sample_rate=spec.sample_rate, seconds=spec.duration, click=0.0)[: spec.n_samples]
    target = S.MelInverse(spec)(S.waveform_to_features(kick, spec))
    ours = S.griffin_lim(target, spec, n_iter=16)[0, 0].numpy()
    padded = np.pad(target[0, 0].numpy() / S.magnitude_scale(spec), ((0, 0), (0, 1)))
    theirs = librosa.griffinlim(padded, n_iter=16, hop_length=spec.hop_length, window=S.window(spec),
                                length=spec.n_samples, pad_mode="constant", random_state=0)
    target = target[0, 0].numpy()
    assert abs(_spectral_convergence_db(ours, target, spec) - _spectral_convergence_db(theirs, target, spec)) < 1.0


def test_serialisation_and_digest():
    spec = get_spec("kick-2048-htk")
    again = SpectrogramSpec.from_dict(spec.to_dict())
    assert again == spec and again.digest() == spec.digest()
    assert spec.digest() != SpectrogramSpec().digest()
    with pytest.raises(ConfigError, match=r"spec\.hop_size: unknown field"):
        SpectrogramSpec.from_dict({**spec.to_dict(), "hop_size": 3})


@pytest.mark.parametrize("field, value, message", [
    ("n_fft", 0, "positive integer"),
    ("win_length", 4096, "longer than n_fft"),
    ("mel_scale", "bark", "must be one of"),
    ("channels", 6, "mono"),
    ("fmax", 30000.0, "Hz or null"),
    ("n_mels", 600, "exceed"),
])
def test_invalid_fields_are_named(field, value, message):
    with pytest.raises(ConfigError, match=f"spec.{field}.*{message}"):
        dataclasses.replace(SpectrogramSpec(), **{field: value})
    with pytest.raises(ConfigError):
        get_spec("nope")


def test_wrong_length_is_refused():
    with pytest.raises(ConfigError, match="samples"):
        S.waveform_to_features(np.zeros(SMALL.n_samples - 1, dtype=np.float32), SMALL)


# ------------------------------------------------------------------------- what a render sounds like (issue 18)
KICK22 = get_spec("kick-22k")


def _level_db(x: np.ndarray, peak: float) -> float:
    return float(10 * np.log10(max(np.mean(x.astype(np.float64) ** 2), 1e-30) / peak ** 2))


def test_the_floor_decodes_to_silence_and_the_map_stays_continuous():
    """-1 (80 dB under the ceiling) and the values a tanh decoder leaves just above it are silence, not a hiss:
    zero power, zero magnitude after the mel pseudo-inverse, zero audio after Griffin-Lim."""
    floor = torch.full((1, 1, KICK22.n_mels, KICK22.frames), -1.0)
    for feats in (floor, floor + 0.05):
        assert torch.count_nonzero(S.features_to_power(feats, KICK22)) == 0
        assert torch.count_nonzero(S.MelInverse(KICK22)(feats)) == 0
        assert torch.count_nonzero(S.features_to_waveform(feats, KICK22, n_iter=4)) == 0
    x = torch.linspace(-1.0, 1.0, 4001, dtype=torch.float64)
    power = S.features_to_power(x, KICK22)
    assert torch.all(power[1:] >= power[:-1]), "monotonic"
    assert torch.max(torch.abs(torch.diff(power))) < 1e-2 * power[-1], "no jump anywhere"
    loud = x > 0
    back = S.power_to_features(power[loud], KICK22)
    assert torch.allclose(back, x[loud], atol=1e-4), "loud bands come back within 0.004 dB"


def _sound(kind: str) -> np.ndarray:
    n, rate = KICK22.n_samples, KICK22.sample_rate
    if kind == "kick at sample 0":          # no pre-roll: the loudest sample is the first
        return simple_kick(sample_rate=rate, seconds=KICK22.duration, decay_s=0.08)[:n]
    t = np.arange(n) / rate                 # a body still ringing at -6 dB when the buffer ends
    return (0.8 * np.sin(2 * np.pi * 55 * t) * np.exp(-t / 1.0)).astype(np.float32)


@pytest.mark.parametrize("kind", ["kick at sample 0", "ringing past the end"])
def test_a_render_starts_from_silence_and_is_not_cut(kind):
    """First sample <= 0.01 x peak (no click at note-on) and below -60 dB re peak in the 10 ms before the last
    10 ms (what the runtime's end fade would otherwise cut), for a kick that starts at sample 0 and for a body that
    outlasts the buffer."""
    audio = S.features_to_waveform(S.waveform_to_features(_sound(kind), KICK22), KICK22, n_iter=8)[0, 0].numpy()
    peak = float(np.abs(audio).max())
    ms10 = int(0.01 * KICK22.sample_rate)
    assert abs(audio[0]) <= 0.01 * peak
    assert _level_db(audio[-2 * ms10:-ms10], peak) < -60.0


def test_the_onset_rise_keeps_the_attack():
    """The rise at the start spans only the 1 ms pre-roll: a prepared kick (onset 1 ms in) rendered through the
    shaped Griffin-Lim keeps its peak level and reaches 90 % of its envelope no later than unshaped Griffin-Lim."""
    pre = int(S.RENDER_ONSET_MS * 1e-3 * KICK22.sample_rate)
    kick = np.concatenate([np.zeros(pre, np.float32), _sound("kick at sample 0")])[: KICK22.n_samples]
    mag = S.MelInverse(KICK22)(S.waveform_to_features(kick, KICK22))
    shaped, plain = (S.griffin_lim(mag, KICK22, n_iter=16, shaped=s)[0, 0].numpy() for s in (True, False))
    env = [np.sqrt(np.convolve(a ** 2, np.ones(110) / 110, mode="same")) for a in (shaped, plain)]
    rise = [int(np.argmax(e >= 0.9 * e.max())) for e in env]
    assert rise[0] <= rise[1] + 22
    assert abs(20 * np.log10(np.abs(shaped).max() / np.abs(plain).max())) < 1.0
