"""THE audio <-> feature transforms of the spectrogram spec.

Every part of Kickspace that turns audio into features or back (ingestion, training, the exported encoder and
decoder graphs, evaluation, previews) goes through this module, so the parameters cannot drift. The spec itself
(:class:`runtime.spec.SpectrogramSpec`: fields, validation, sizes, named specs) is torch-free and lives in the
runtime, which reads it from every exported model; this module adds what needs torch or the mel filterbank.

Feature definition
------------------
1. STFT with a Hann window, ``center=True`` and zero padding, keeping the first ``frames`` frames of a signal of
   ``n_samples = frames * hop_length`` samples. Magnitudes are scaled by ``2 / sum(window)`` so that a full-scale
   sine has magnitude ~1 in its peak bin (levels are absolute, not relative to each file's maximum).
2. Power -> mel bands (librosa's filters, Slaney or HTK scale) or kept linear (``mel_scale="linear"``).
3. Power -> dB, clipped to the ``top_db`` range below a fixed ceiling :func:`ref_db` (the loudest band level a
   full-scale sine reaches, plus ``headroom_db``), then scaled to [-1, 1]: -1 is ``ref_db - top_db`` or quieter,
   +1 is ``ref_db``.

Back to audio (every render: the exported decoder, evaluation, training previews): de-normalise with the floor
gated to zero (:func:`features_to_power`: the floor is silence, not a hiss), the clamped mel pseudo-inverse, square
root, fast Griffin-Lim constrained to :func:`render_envelope` (starts from silence 1 ms before the attack, decays
to silence over the buffer's last 100 ms).

Shapes: audio is ``[B, N]`` (mono) or ``[B, C, N]``; features are always ``[B, C, M, T]`` with ``C = channels``,
``M = n_bins`` (mel bands or linear bins) and ``T = frames``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from runtime.dsp import fade_out_curve
from runtime.errors import ConfigError
from runtime.spec import SpectrogramSpec

_AMIN = 1e-10
#: Every render rises from exact silence over its first ``RENDER_ONSET_MS`` (raised cosine). The preparation puts a
#: sound's onset (its first sample within 30 dB of the peak) 1 ms after the start (``runtime.dsp.Preparation``), so
#: the rise only shapes what comes before the attack.
RENDER_ONSET_MS = 1.0
#: ... and decays to silence over its last ``RENDER_TAIL_MS`` (at most an eighth of the buffer; a raised cosine
#: cubed: -18 dB 50 ms before the end of a 100 ms fall, -61 dB 20 ms before, -97 dB 10 ms before), so a sound that
#: outlasts the buffer is faded, never cut.
RENDER_TAIL_MS = 100.0
#: Features within this many dB of the floor decode to silence (:func:`features_to_power`) ...
FLOOR_GATE_DB = 3.0
#: ... and the next this many dB fade in (a soft knee): a band falling toward the floor fades out instead of dropping
#: to silence from a few dB above it.
FLOOR_KNEE_DB = 9.0


# ================================================================================ numpy: precomputed matrices
@lru_cache(maxsize=16)
def window(spec: SpectrogramSpec) -> np.ndarray:
    """Periodic Hann window of ``win_length`` zero-padded (centred) to ``n_fft``. Shape ``[n_fft]``, float64."""
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(spec.win_length) / spec.win_length)
    out = np.zeros(spec.n_fft)
    start = (spec.n_fft - spec.win_length) // 2
    out[start:start + spec.win_length] = win
    out.setflags(write=False)
    return out


def magnitude_scale(spec: SpectrogramSpec) -> float:
    """Factor applied to raw STFT magnitudes so a full-scale sine reads ~1: ``2 / sum(window)``."""
    return 2.0 / float(window(spec).sum())


@lru_cache(maxsize=16)
def mel_basis(spec: SpectrogramSpec) -> np.ndarray:
    """Power -> band matrix, shape ``[n_bins, n_freq]`` (identity for a linear spec), float64."""
    if spec.mel_scale == "linear":
        basis = np.eye(spec.n_freq)
    else:
        import librosa

        basis = librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin,
                                    fmax=spec.fmax, htk=spec.mel_scale == "htk", norm=spec.mel_norm,
                                    dtype=np.float64)
    basis.setflags(write=False)
    return basis


@lru_cache(maxsize=16)
def mel_inverse(spec: SpectrogramSpec) -> np.ndarray:
    """Band -> power matrix: the pseudo-inverse of :func:`mel_basis` clamped at 0, shape ``[n_freq, n_bins]``.

    DESIGN.md measured this as good as NNLS for kicks and it is a fixed matrix, so it fits in an ONNX graph.
    """
    inv = np.clip(np.linalg.pinv(mel_basis(spec)), 0.0, None)
    inv.setflags(write=False)
    return inv


def ref_db(spec: SpectrogramSpec) -> float:
    """Fixed dB ceiling that maps to +1: :func:`_sine_peak_db` plus ``spec.headroom_db`` (see module docstring)."""
    return _sine_peak_db(spec) + spec.headroom_db


@lru_cache(maxsize=16)
def _sine_peak_db(spec: SpectrogramSpec) -> float:
    """Loudest band power (dB) a full-scale sine reaches anywhere in the band range, per frame."""
    basis = mel_basis(spec)
    win = window(spec)
    t = np.arange(spec.n_fft)
    lo = max(spec.fmin, 10.0)
    hi = spec.fmax or spec.sample_rate / 2
    freqs = np.geomspace(lo, hi * 0.999, 512)
    frames = np.sin(2 * np.pi * freqs[:, None] * t[None, :] / spec.sample_rate) * win[None, :]
    power = (np.abs(np.fft.rfft(frames, axis=-1)) * magnitude_scale(spec)) ** 2
    return float(10 * np.log10(max((power @ basis.T).max(), _AMIN)))


@lru_cache(maxsize=16)
def render_envelope(spec: SpectrogramSpec) -> np.ndarray:
    """Gain ``[n_samples]`` (float64) Griffin-Lim imposes on the signal in every iteration and on its output.

    0 at the first sample, a raised-cosine rise to 1 over :data:`RENDER_ONSET_MS`, 1, then a cubed raised-cosine
    fall over :data:`RENDER_TAIL_MS` (at most ``n_samples // 8``) to 0 at the last sample. Inside the iterations
    it is a time-support constraint: the phase is retrieved for a signal that starts and ends in silence, so the
    magnitude of the first frames (whose windows reach before the onset) is realised after it instead of as a click
    at sample 0.
    """
    env = np.ones(spec.n_samples)
    rise = min(spec.n_samples, max(1, int(round(RENDER_ONSET_MS * 1e-3 * spec.sample_rate))))
    env[:rise] = fade_out_curve(rise + 1)[::-1][:rise]
    fall = max(1, min(spec.n_samples // 8, int(round(RENDER_TAIL_MS * 1e-3 * spec.sample_rate))))
    env[spec.n_samples - fall:] *= fade_out_curve(fall) ** 3
    env.setflags(write=False)
    return env


def stft_bases(spec: SpectrogramSpec) -> np.ndarray:
    """Windowed, scaled DFT bases as one real matrix, shape ``[2 * n_freq, n_fft]`` (real rows, then imaginary).

    ``frames @ bases.T`` gives the scaled STFT of ``[.., n_fft]`` frames; used as a Conv1d kernel below.
    """
    k = np.arange(spec.n_freq)[:, None]
    n = np.arange(spec.n_fft)[None, :]
    phase = 2 * np.pi * k * n / spec.n_fft
    scale = window(spec)[None, :] * magnitude_scale(spec)
    return np.concatenate([np.cos(phase) * scale, -np.sin(phase) * scale], axis=0)


# ======================================================================================== torch: transforms
def _as_channels(audio: torch.Tensor, spec: SpectrogramSpec) -> torch.Tensor:
    """``[B, N]`` or ``[B, C, N]`` -> ``[B, C, N]`` with ``C == spec.channels``."""
    if audio.dim() == 2:
        audio = audio.unsqueeze(1)
    if audio.dim() != 3:
        raise ConfigError("audio", f"expected [batch, samples] or [batch, channels, samples], got {tuple(audio.shape)}")
    if audio.shape[1] != spec.channels:
        raise ConfigError("audio", f"has {audio.shape[1]} channels, the spec wants {spec.channels}")
    return audio


class LogMel(nn.Module):
    """Waveform -> normalised log-mel features, written with ops that export to ONNX (Conv1d, MatMul, Log).

    Input ``[B, N]`` or ``[B, C, N]`` float32 with ``N == spec.n_samples``; output ``[B, C, M, T]`` in [-1, 1].
    """

    def __init__(self, spec: SpectrogramSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("bases", torch.tensor(stft_bases(spec), dtype=torch.float32).unsqueeze(1))
        self.register_buffer("mel", torch.tensor(mel_basis(spec), dtype=torch.float32))

    def power(self, audio: torch.Tensor) -> torch.Tensor:
        """Scaled linear power spectrogram ``[B, C, n_freq, T]``."""
        spec = self.spec
        audio = _as_channels(audio, spec)
        batch, channels, n = audio.shape
        if n != spec.n_samples:
            raise ConfigError("audio", f"has {n} samples, the spec wants {spec.n_samples} (crop/pad first)")
        x = audio.reshape(batch * channels, 1, n)
        pad = spec.n_fft // 2
        x = nn.functional.pad(x, (pad, pad))
        coeffs = nn.functional.conv1d(x, self.bases, stride=spec.hop_length)[..., : spec.frames]
        re, im = coeffs[:, : spec.n_freq], coeffs[:, spec.n_freq:]
        return (re * re + im * im).reshape(batch, channels, spec.n_freq, spec.frames)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        bands = torch.matmul(self.mel, self.power(audio))
        return power_to_features(bands, self.spec)


def power_to_features(power: torch.Tensor, spec: SpectrogramSpec) -> torch.Tensor:
    """Band power (any shape) -> normalised dB in [-1, 1]."""
    db = 10.0 * torch.log10(torch.clamp(power, min=_AMIN))
    floor = ref_db(spec) - spec.top_db
    return torch.clamp((db - floor) / spec.top_db, 0.0, 1.0) * 2.0 - 1.0


def features_to_power(features: torch.Tensor, spec: SpectrogramSpec) -> torch.Tensor:
    """Band power (same shape) of normalised features: the inverse of :func:`power_to_features`, gated at the floor.

    The power is scaled by a smoothstep of the band's level over the floor (``ref_db - top_db``, where every quieter
    band sits at -1): 0 up to :data:`FLOOR_GATE_DB` above it, rising to 1 over the next :data:`FLOOR_KNEE_DB`. So -1,
    and the values a tanh decoder leaves just above it (-0.96 in a trained decoder's silent frames), decode to
    exactly zero, not to a broadband hiss (~47 dB under the peak once 128 floor-level bands are summed); a band
    fading toward the floor keeps fading (0.4 dB above the gate it comes back 22 dB low, 3 dB above 6 dB low)
    instead of dropping to silence from near its own level; bands :data:`FLOOR_GATE_DB` + :data:`FLOOR_KNEE_DB`
    (12 dB) or more above the floor come back exactly. The map is continuous and monotonic.
    """
    above = (torch.clamp(features, -1.0, 1.0) + 1.0) * (0.5 * spec.top_db)  # dB over the floor
    knee = torch.clamp((above - FLOOR_GATE_DB) / FLOOR_KNEE_DB, 0.0, 1.0)
    return torch.pow(10.0, (above + (ref_db(spec) - spec.top_db)) / 10.0) * (knee * knee * (3.0 - 2.0 * knee))


class MelInverse(nn.Module):
    """Normalised features ``[B, C, M, T]`` -> scaled linear magnitude ``[B, C, n_freq, T]``.

    De-normalise, apply the clamped pseudo-inverse of the mel basis to the power, take the square root. Used by
    evaluation and written into the exported decoder graph.
    """

    def __init__(self, spec: SpectrogramSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("inverse", torch.tensor(mel_inverse(spec), dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        power = features_to_power(features, self.spec)
        if self.spec.mel_scale != "linear":
            power = torch.matmul(self.inverse, power)
        return torch.sqrt(torch.clamp(power, min=0.0))


@lru_cache(maxsize=16)
def _transforms(spec: SpectrogramSpec) -> tuple[LogMel, MelInverse]:
    return LogMel(spec).eval(), MelInverse(spec).eval()


@torch.no_grad()
def waveform_to_features(audio: torch.Tensor | np.ndarray, spec: SpectrogramSpec) -> torch.Tensor:
    """Waveform ``[B, N]`` / ``[B, C, N]`` (or one example ``[N]``) -> features ``[B, C, M, T]`` float32."""
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    if x.dim() == 1:
        x = x.unsqueeze(0)
    return _transforms(spec)[0](x)


@torch.no_grad()
def griffin_lim(magnitude: torch.Tensor, spec: SpectrogramSpec, *, n_iter: int = 32, momentum: float = 0.99,
                init: str | torch.Tensor = "random", seed: int = 0, shaped: bool = True) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013) from a scaled magnitude.

    Parameters
    ----------
    magnitude : Tensor ``[B, C, n_freq, T]``
        Scaled linear magnitude (as :class:`MelInverse` returns).
    n_iter : int
        Iterations; 0 returns the inverse STFT of the initial phase.
    momentum : float
        0 gives classic Griffin-Lim; 0.99 is librosa's default fast variant.
    init : "random", "zero", or a phase tensor broadcastable to ``magnitude``
        Initial phase in radians.
    shaped : bool
        Impose :func:`render_envelope` on the signal in every iteration and on the result (what every render does);
        False gives plain fast Griffin-Lim.

    Returns
    -------
    Tensor ``[B, C, N]`` with ``N == spec.n_samples``.
    """
    batch, channels, n_freq, frames = magnitude.shape
    mag = magnitude.reshape(batch * channels, n_freq, frames) / magnitude_scale(spec)
    mag = nn.functional.pad(mag, (0, 1))  # STFT of N samples with center=True has frames + 1 columns
    win = torch.tensor(window(spec), dtype=mag.dtype)
    kwargs = dict(n_fft=spec.n_fft, hop_length=spec.hop_length, win_length=spec.n_fft, window=win, center=True)
    if isinstance(init, torch.Tensor):
        phase = nn.functional.pad(init.expand_as(magnitude).reshape_as(mag[..., :-1]), (0, 1))
    elif init == "random":
        gen = torch.Generator().manual_seed(seed)
        phase = 2 * torch.pi * torch.rand(mag.shape, generator=gen, dtype=mag.dtype)
    elif init == "zero":
        phase = torch.zeros_like(mag)
    else:
        raise ConfigError("init", f"must be 'random', 'zero' or a phase tensor, got {init!r}")
    angles = torch.polar(torch.ones_like(mag), phase)
    rebuilt = torch.zeros_like(angles)
    gain = torch.tensor(render_envelope(spec) if shaped else np.ones(spec.n_samples), dtype=mag.dtype)
    for _ in range(n_iter):
        previous = rebuilt
        inverse = torch.istft(mag * angles, length=spec.n_samples, **kwargs) * gain
        rebuilt = torch.stft(inverse, return_complex=True, pad_mode="constant", **kwargs)
        angles = rebuilt - (momentum / (1 + momentum)) * previous
        angles = angles / (angles.abs() + 1e-16)
    audio = torch.istft(mag * angles, length=spec.n_samples, **kwargs) * gain
    return audio.reshape(batch, channels, spec.n_samples)


@torch.no_grad()
def features_to_waveform(features: torch.Tensor | np.ndarray, spec: SpectrogramSpec, *, n_iter: int = 32,
                         momentum: float = 0.99, seed: int = 0) -> torch.Tensor:
    """Normalised features ``[B, C, M, T]`` -> waveform ``[B, C, N]`` (mel inverse + fast Griffin-Lim)."""
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    if x.dim() == 3:
        x = x.unsqueeze(0)
    return griffin_lim(_transforms(spec)[1](x), spec, n_iter=n_iter, momentum=momentum, seed=seed)
