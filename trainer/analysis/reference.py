"""A second, independent implementation of the five knob descriptors, to check the knobs against.

:mod:`trainer.descriptors` defines what each knob means and is what the model is conditioned on; a knob that only
follows the project's own code could follow a quirk of that code. This module measures the same five meanings with
librosa's STFT, RMS and spectral-centroid features instead of the project's filters and envelopes, with the bands
and windows of the common definitions (as measured outside the project) rather than the project's:

============  ======  ========================================================================================
name          unit    definition (librosa 0.11; ``y`` from its onset, the first sample within 40 dB of the peak)
============  ======  ========================================================================================
sub           dB      STFT power (n_fft 4096) below 80 Hz re all power, the whole sound
punch         dB      STFT power (n_fft 2048, centred frames whose centre lies in the first 30 ms) in
                      150 Hz-1 kHz re 20 Hz-1 kHz: the pitch-envelope impact of the attack
click         dB      STFT power (n_fft 512, frames centred in the first 15 ms) above 2 kHz re all power
brightness    Hz      mean over the sounding frames (RMS within 60 dB of the loudest) of
                      ``librosa.feature.spectral_centroid`` (n_fft 1024, hop 256) over the first 100 ms
decay         s       time from the peak of ``librosa.feature.rms`` (frame 1024, hop 64) until it first falls
                      20 dB below the peak
============  ======  ========================================================================================

A third implementation, the AudioCommons ``timbral_models`` (hardness, brightness, booming), is run by
``benchmarks/knob_reference.py`` where that package is installed (it is not a dependency).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

#: The knob descriptors this module measures, in this order.
KNOBS: tuple[str, ...] = ("sub", "punch", "click", "brightness", "decay")
#: Value of each for silence.
SILENT: dict[str, float] = {"sub": -80.0, "punch": -80.0, "click": -80.0, "brightness": 1e-3, "decay": 1e-3}

#: A describer: waveforms ``[B, N]`` at a sample rate -> ``[B, len(KNOBS)]`` in control units (log Hz / log s).
Describer = Callable[[np.ndarray, int], np.ndarray]

_FLOOR_DB = -80.0


def _share_db(num: float, den: float) -> float:
    if den <= 1e-20 or num <= 0.0:
        return _FLOOR_DB
    return float(max(10.0 * np.log10(num / den), _FLOOR_DB))


def _power(y: np.ndarray, sample_rate: int, n_fft: int, hop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """STFT power ``[F, T]``, bin frequencies ``[F]`` and frame centre times ``[T]`` (librosa, centred)."""
    import librosa

    power = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, center=True, pad_mode="constant")) ** 2
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft)
    times = librosa.frames_to_time(np.arange(power.shape[1]), sr=sample_rate, hop_length=hop)
    return power, freqs, times


def _scaled(n: int, sample_rate: int) -> int:
    """A 44.1 kHz frame length ``n`` scaled to ``sample_rate`` (a power of two)."""
    return 1 << int(round(np.log2(n * sample_rate / 44100.0)))


def sub(y: np.ndarray, sample_rate: int) -> float:
    """Power below 80 Hz re all power, dB."""
    power, freqs, _ = _power(y, sample_rate, _scaled(4096, sample_rate), _scaled(1024, sample_rate))
    return _share_db(float(power[freqs < 80.0].sum()), float(power.sum()))


def punch(y: np.ndarray, sample_rate: int) -> float:
    """Power in 150 Hz-1 kHz re 20 Hz-1 kHz in the frames centred in the first 30 ms, dB."""
    power, freqs, times = _power(y, sample_rate, _scaled(2048, sample_rate), _scaled(128, sample_rate))
    early = power[:, times <= 0.03]
    band = early[(freqs >= 150.0) & (freqs <= 1000.0)].sum()
    return _share_db(float(band), float(early[(freqs >= 20.0) & (freqs <= 1000.0)].sum()))


def click(y: np.ndarray, sample_rate: int) -> float:
    """Power above 2 kHz re all power in the frames centred in the first 15 ms, dB."""
    power, freqs, times = _power(y, sample_rate, _scaled(512, sample_rate), _scaled(64, sample_rate))
    early = power[:, times <= 0.015]
    return _share_db(float(early[freqs >= 2000.0].sum()), float(early.sum()))


def brightness(y: np.ndarray, sample_rate: int) -> float:
    """Mean spectral centroid (librosa) of the first 100 ms, Hz."""
    import librosa

    n_fft = _scaled(1024, sample_rate)
    head = y[: max(int(0.1 * sample_rate), n_fft)]
    centroid = librosa.feature.spectral_centroid(y=head, sr=sample_rate, n_fft=n_fft, hop_length=n_fft // 4)[0]
    rms = librosa.feature.rms(y=head, frame_length=n_fft, hop_length=n_fft // 4)[0]
    sounding = (rms > 1e-3 * rms.max()) & np.isfinite(centroid)  # librosa gives 0 Hz for a silent frame
    return float(np.mean(centroid[sounding])) if sounding.any() else SILENT["brightness"]


def decay(y: np.ndarray, sample_rate: int) -> float:
    """Seconds from the RMS peak until the RMS first falls 20 dB below it (the sound's end if it never does)."""
    import librosa

    hop = _scaled(64, sample_rate)
    rms = librosa.feature.rms(y=y, frame_length=_scaled(1024, sample_rate), hop_length=hop, center=True)[0]
    peak = int(np.argmax(rms))
    below = np.flatnonzero(rms[peak:] < rms[peak] * 0.1)
    frames = below[0] if below.size else rms.size - 1 - peak
    return float(frames * hop / sample_rate)


_FUNCTIONS = {"sub": sub, "punch": punch, "click": click, "brightness": brightness, "decay": decay}


def describe(audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """The five knob descriptors of one sound (raw units: dB, Hz, s).

    Parameters
    ----------
    audio : np.ndarray [N] or [C, N]
        Waveform (channels averaged); level does not matter.
    sample_rate : int

    Returns
    -------
    dict
        ``{name: value}`` in :data:`KNOBS` order, always finite; :data:`SILENT` for silence or fewer than 64
        samples.
    """
    y = np.nan_to_num(np.asarray(audio, dtype=np.float64))
    y = y.mean(axis=0) if y.ndim == 2 else y.reshape(-1)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if y.size < 64 or peak <= 1e-9:
        return dict(SILENT)
    y = y[int(np.argmax(np.abs(y) >= 0.01 * peak)):] / peak
    y = np.pad(y, (0, max(0, _scaled(4096, sample_rate) - y.size)))  # at least one frame of the longest STFT
    values = {name: _FUNCTIONS[name](y, sample_rate) for name in KNOBS}
    return {name: float(v) if np.isfinite(v) else SILENT[name] for name, v in values.items()}


def control_units(values: np.ndarray) -> np.ndarray:
    """Raw values ``[B, len(KNOBS)]`` -> the units rho and cross-talk are read in: log for Hz and s, dB as is."""
    out = np.array(values, dtype=np.float64)
    for j, name in enumerate(KNOBS):
        if name in ("brightness", "decay"):
            out[:, j] = np.log(np.maximum(out[:, j], 1e-3))
    return out


def describe_batch(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """:func:`describe` of each of ``audio [B, N]`` (or ``[B, C, N]``) in control units, ``[B, len(KNOBS)]``."""
    rows = [describe(example, sample_rate) for example in np.asarray(audio)]
    return control_units(np.array([[row[name] for name in KNOBS] for row in rows]).reshape(-1, len(KNOBS)))
