"""Procedural drum one-shots with known parameters: a licence-free corpus and ground truth for the latent knobs.

A kick is a swept sine body, optionally saturated, through a tone filter, plus a sub-octave sine, a click and a
noise layer. Every :class:`KickParams` field has one audible job, chosen so that the matching descriptor in
:mod:`trainer.descriptors` follows it (tested):

============  ===========================================================  ===================
parameter     what it does                                                 descriptor it moves
============  ===========================================================  ===================
start_hz      body frequency at the onset (Hz)                             ``punch`` (depth)
end_hz        body frequency after the sweep (Hz)                          ``pitch``
sweep_s       time constant of the exponential pitch sweep (s)             ``punch`` (length)
decay_s       time constant of the amplitude decay (s)                     ``decay`` ``length``
click_level   level of a 2 ms high-passed noise burst at the onset         ``click``
brightness    0..1, cutoff of the tone low-pass on body harmonics + noise  ``brightness``
noise_level   red-noise layer, decays 2x faster, through the tone filter   (none)
drive         0..1, tanh saturation of the body, 0 to 30 dB of gain        ``body``
sub_level     amplitude of a sine an octave below ``end_hz``               ``sub``
============  ===========================================================  ===================

The click deliberately bypasses the tone filter (it has its own fixed 2.5 kHz high-pass) so that ``brightness`` and
``click_level`` stay separable; the sub sits an octave below the body so that it never masks the body's pitch.

All synthesis is numpy + scipy; nothing is computed at import time.
"""

from __future__ import annotations

import csv
import dataclasses
import numbers
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np
from scipy import signal

from runtime.errors import ConfigError
from runtime.files import atomic_path, write_wav

BANK_CLASSES: tuple[str, ...] = ("kick", "snare", "hat", "tom")

_PEAK = 0.95  # output peak (-0.45 dBFS)
_FADE_S = 0.02  # raised-cosine fade at the end of every render
_CLICK_TAU_S = 0.002  # click burst time constant
_CLICK_HP_HZ = 2500.0
_CLICK_GAIN = 1.0  # the burst has the energy of unit-variance noise under its envelope, times this
_HARMONIC_MIX = 0.35  # level of the square-ish harmonic layer under the body sine
_MAX_DRIVE_DB = 30.0
_TONE_MIN_HZ, _TONE_MAX_HZ = 300.0, 14000.0


@dataclass(frozen=True)
class KickParams:
    """Parameters of one procedural drum sound (see the module table).

    Parameters
    ----------
    start_hz, end_hz : float
        Body frequency at the onset and after the pitch sweep, in Hz.
    sweep_s : float
        Time constant of the exponential sweep from ``start_hz`` to ``end_hz``, in seconds.
    decay_s : float
        Time constant of the body's exponential amplitude decay, in seconds (the body is 30 dB down after about
        ``3.5 * decay_s`` without drive).
    click_level : float
        Level of the onset click (a 2 ms noise burst high-passed at 2.5 kHz); at 1 the click peaks at about 2x
        the body's peak (the whole sound is then normalised to a 0.95 peak).
    brightness : float
        0..1, log-mapped to the cutoff of a 2-pole tone low-pass from 300 Hz to 14 kHz, applied to the body
        (with its harmonics) and the noise layer.
    noise_level : float
        Level of a noise layer (red: power ~ 1/f^2 above 150 Hz, the slope of the body's harmonics) decaying with
        ``decay_s / 2``, before the tone filter; its RMS at the onset is about ``noise_level``.
    drive : float
        0..1, saturation of the body: ``tanh(g x) / tanh(g)`` with ``g`` from 0 to 30 dB. More drive holds the
        body near full level longer (denser, louder attack for the same peak).
    sub_level : float
        Amplitude of a clean sine one octave below ``end_hz`` (same envelope as the body), relative to the body.
    """

    start_hz: float
    end_hz: float
    sweep_s: float
    decay_s: float
    click_level: float
    brightness: float
    noise_level: float
    drive: float
    sub_level: float

    #: Sampling range of each field for :func:`sample_params` (inclusive bounds).
    PARAM_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "start_hz": (120.0, 450.0),
        "end_hz": (38.0, 95.0),
        "sweep_s": (0.006, 0.04),
        "decay_s": (0.04, 0.3),
        "click_level": (0.0, 1.0),
        "brightness": (0.0, 1.0),
        "noise_level": (0.0, 0.5),
        "drive": (0.0, 1.0),
        "sub_level": (0.0, 0.7),
    }
    #: Fields sampled log-uniformly (frequencies and times); the others are uniform.
    LOG_FIELDS: ClassVar[frozenset[str]] = frozenset({"start_hz", "end_hz", "sweep_s", "decay_s"})

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if not isinstance(value, numbers.Real) or not np.isfinite(value):
                raise ConfigError(name, f"must be a finite number, got {value!r}")
        for name in ("start_hz", "end_hz", "sweep_s", "decay_s"):
            if getattr(self, name) <= 0.0:
                raise ConfigError(name, f"must be positive, got {getattr(self, name)}")
        for name in ("click_level", "noise_level", "sub_level", "brightness", "drive"):
            if getattr(self, name) < 0.0:
                raise ConfigError(name, f"must be 0 or more, got {getattr(self, name)}")
        for name in ("brightness", "drive"):
            if getattr(self, name) > 1.0:
                raise ConfigError(name, f"is a 0..1 knob, got {getattr(self, name)}")

    def to_row(self) -> dict[str, float]:
        """The fields as a ``{name: value}`` dict (CSV row order)."""
        return dataclasses.asdict(self)


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(KickParams))


# ---------------------------------------------------------------------------------------------- sampling
def _sample_field(rng: np.random.Generator, low: float, high: float, log: bool, n: int) -> np.ndarray:
    if log:
        return np.exp(rng.uniform(np.log(low), np.log(high), n))
    return rng.uniform(low, high, n)


def _sample(n: int, seed: int, ranges: dict[str, tuple[float, float]], stream: int = 0) -> list[KickParams]:
    if n < 0:
        raise ConfigError("n", f"must be 0 or more sounds, got {n}")
    if seed < 0:
        raise ConfigError("seed", f"must be 0 or more, got {seed}")
    rng = np.random.default_rng([seed, stream] if stream else seed)
    columns = {name: _sample_field(rng, *ranges[name], name in KickParams.LOG_FIELDS, n) for name in FIELDS}
    return [KickParams(**{name: float(columns[name][i]) for name in FIELDS}) for i in range(n)]


def sample_params(n: int, *, seed: int) -> list[KickParams]:
    """Draw ``n`` kicks independently from :attr:`KickParams.PARAM_RANGES`.

    Frequencies and times are log-uniform, levels and 0..1 knobs uniform. Deterministic for a seed.

    Returns
    -------
    list of KickParams, length ``n``
    """
    return _sample(n, seed, KickParams.PARAM_RANGES)


# ------------------------------------------------------------------------------------------------ rendering
def _check_render(sample_rate: int, seconds: float) -> int:
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate < 8000:
        raise ConfigError("sample_rate", f"must be an integer of at least 8000 Hz, got {sample_rate!r}")
    n = int(round(seconds * sample_rate))
    if n < int(_FADE_S * sample_rate) * 2:
        raise ConfigError("seconds", f"must be at least {2 * _FADE_S} s to fit the end fade, got {seconds}")
    return n


def _noise(params: KickParams, n: int, stream: int) -> np.ndarray:
    """White noise seeded from the parameter values, so a render is a pure function of its parameters."""
    key = zlib.crc32(repr((dataclasses.astuple(params), stream)).encode())
    return np.random.default_rng(key).standard_normal(n)


@lru_cache(maxsize=64)
def _butter(order: int, cutoff: float | tuple[float, float], btype: str, sample_rate: int) -> np.ndarray:
    return signal.butter(order, cutoff, btype=btype, fs=sample_rate, output="sos")


def _filter(x: np.ndarray, order: int, cutoff: float | tuple[float, float], btype: str, sample_rate: int) -> np.ndarray:
    nyquist = 0.49 * sample_rate
    if isinstance(cutoff, tuple):
        cutoff = (min(cutoff[0], nyquist * 0.9), min(cutoff[1], nyquist))
    elif cutoff >= nyquist:
        return x if btype == "lowpass" else np.zeros_like(x)
    return signal.sosfilt(_butter(order, cutoff, btype, sample_rate), x)


def tone_cutoff_hz(brightness: float) -> float:
    """Cutoff of the tone low-pass in Hz for a ``brightness`` knob in 0..1 (log mapping, 300 Hz to 14 kHz)."""
    b = float(np.clip(brightness, 0.0, 1.0))
    return _TONE_MIN_HZ * (_TONE_MAX_HZ / _TONE_MIN_HZ) ** b


def _phase(start_hz: float, end_hz: float, sweep_s: float, t: np.ndarray, sample_rate: int) -> np.ndarray:
    freq = end_hz + (start_hz - end_hz) * np.exp(-t / sweep_s)
    return 2.0 * np.pi * (np.cumsum(freq) - freq[0]) / sample_rate


def _drive_gain(params: KickParams) -> float:
    return 10.0 ** (float(np.clip(params.drive, 0.0, 1.0)) * _MAX_DRIVE_DB / 20.0)


def _saturate(x: np.ndarray, gain: float) -> np.ndarray:
    return np.tanh(gain * x) / np.tanh(gain)


def _body(params: KickParams, t: np.ndarray, sample_rate: int) -> np.ndarray:
    """Swept sine + square-ish harmonic layer, enveloped and saturated. Peak 1."""
    phase = _phase(params.start_hz, params.end_hz, params.sweep_s, t, sample_rate)
    sine = np.sin(phase)
    osc = (sine + _HARMONIC_MIX * np.sign(sine)) / (1.0 + _HARMONIC_MIX)
    return _saturate(osc * np.exp(-t / params.decay_s), _drive_gain(params))


def _sub(params: KickParams, t: np.ndarray) -> np.ndarray:
    """Clean sine an octave below ``end_hz`` on the body's (saturated) envelope, so drive keeps the balance."""
    sine = np.sin(np.pi * params.end_hz * t)
    return params.sub_level * sine * _saturate(np.exp(-t / params.decay_s), _drive_gain(params))


def _noise_layer(params: KickParams, t: np.ndarray, sample_rate: int) -> np.ndarray:
    """Noise with the harmonics' spectral slope (power ~ 1/f^2 above 150 Hz), decaying with ``decay_s / 2``."""
    white = _noise(params, t.size, 0)
    pole = np.exp(-2.0 * np.pi * 150.0 / sample_rate)
    red = signal.lfilter([1.0 - pole], [1.0, -pole], white) * 10.0
    return params.noise_level * red * np.exp(-2.0 * t / params.decay_s)


def _click(params: KickParams, t: np.ndarray, sample_rate: int) -> np.ndarray:
    burst = _noise(params, t.size, 1) * np.exp(-t / _CLICK_TAU_S)
    burst = _filter(burst, 2, _CLICK_HP_HZ, "highpass", sample_rate)
    energy = max(float(np.sum(burst * burst)), 1e-12)
    return params.click_level * _CLICK_GAIN * burst * np.sqrt(0.5 * _CLICK_TAU_S * sample_rate / energy)


def _finish(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Fade out the last 20 ms, normalise the peak to 0.95, float32."""
    fade = int(_FADE_S * sample_rate)
    x = x.copy()
    x[-fade:] *= 0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, fade)))
    peak = np.max(np.abs(x))
    if not np.isfinite(peak) or peak <= 0.0:
        return np.zeros_like(x, dtype=np.float32)
    return (x * (_PEAK / peak)).astype(np.float32)


def render_kick(params: KickParams, *, sample_rate: int = 44100, seconds: float = 1.0) -> np.ndarray:
    """Render one kick.

    Parameters
    ----------
    params : KickParams
    sample_rate : int
        Output rate in Hz.
    seconds : float
        Output length in seconds (the last 20 ms fade to zero).

    Returns
    -------
    np.ndarray, shape ``[round(seconds * sample_rate)]``, float32
        Onset at sample 0, peak 0.95, finite. The same parameters always render the same samples.
    """
    n = _check_render(sample_rate, seconds)
    t = np.arange(n) / sample_rate
    tone = _body(params, t, sample_rate) + _noise_layer(params, t, sample_rate)
    tone = _filter(tone, 2, tone_cutoff_hz(params.brightness), "lowpass", sample_rate)
    return _finish(tone + _sub(params, t) + _click(params, t, sample_rate), sample_rate)


def _render_snare(params: KickParams, *, sample_rate: int, seconds: float) -> np.ndarray:
    """Short body (the kick synth without noise) + band-passed noise (1-9 kHz) decaying with ``decay_s``."""
    n = _check_render(sample_rate, seconds)
    t = np.arange(n) / sample_rate
    body = render_kick(dataclasses.replace(params, noise_level=0.0), sample_rate=sample_rate, seconds=seconds)
    rattle = _filter(_noise(params, n, 2), 2, (1000.0, 9000.0), "bandpass", sample_rate)
    rattle = params.noise_level * rattle / max(np.max(np.abs(rattle)), 1e-9) * np.exp(-t / (2.0 * params.decay_s))
    return _finish(body + rattle, sample_rate)


def _render_hat(params: KickParams, *, sample_rate: int, seconds: float) -> np.ndarray:
    """High-passed noise (cutoff 5-9 kHz from ``brightness``) with a very short decay; no body."""
    n = _check_render(sample_rate, seconds)
    t = np.arange(n) / sample_rate
    cutoff = 5000.0 + 4000.0 * float(np.clip(params.brightness, 0.0, 1.0))
    noise = _filter(_noise(params, n, 3), 4, cutoff, "highpass", sample_rate)
    return _finish(noise * np.exp(-t / params.decay_s), sample_rate)


_CLASS_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "kick": KickParams.PARAM_RANGES,
    "tom": {**KickParams.PARAM_RANGES, "start_hz": (120.0, 450.0), "end_hz": (80.0, 300.0),
            "sweep_s": (0.003, 0.012), "decay_s": (0.05, 0.2), "sub_level": (0.0, 0.0), "drive": (0.0, 0.4),
            "noise_level": (0.0, 0.1)},
    "snare": {**KickParams.PARAM_RANGES, "start_hz": (250.0, 350.0), "end_hz": (180.0, 250.0),
              "sweep_s": (0.003, 0.01), "decay_s": (0.02, 0.06), "sub_level": (0.0, 0.0), "drive": (0.0, 0.3),
              "noise_level": (1.0, 2.0), "click_level": (0.0, 0.5)},
    "hat": {**KickParams.PARAM_RANGES, "start_hz": (8000.0, 8000.0), "end_hz": (8000.0, 8000.0),
            "sweep_s": (0.01, 0.01), "decay_s": (0.008, 0.04), "click_level": (0.0, 0.0), "noise_level": (1.0, 1.0),
            "drive": (0.0, 0.0), "sub_level": (0.0, 0.0)},
}

_CLASS_RENDER: dict[str, Callable[..., np.ndarray]] = {
    "kick": render_kick, "tom": render_kick, "snare": _render_snare, "hat": _render_hat,
}


def _tom_start(params: KickParams) -> KickParams:
    """Toms sweep only 1.2-1.8x above their end pitch (derived from ``start_hz`` so sampling stays independent)."""
    ratio = 1.2 + 0.6 * (np.log(params.start_hz / 120.0) / np.log(450.0 / 120.0))
    return dataclasses.replace(params, start_hz=float(params.end_hz * ratio))


def sample_class_params(drum_class: str, n: int, *, seed: int) -> list[KickParams]:
    """Draw ``n`` parameter sets for one drum class of :data:`BANK_CLASSES` (deterministic for a seed)."""
    if drum_class not in _CLASS_RANGES:
        raise ConfigError("class", f"unknown drum class {drum_class!r}; known classes: {', '.join(BANK_CLASSES)}")
    params = _sample(n, seed, _CLASS_RANGES[drum_class], stream=1 + BANK_CLASSES.index(drum_class))
    return [_tom_start(p) for p in params] if drum_class == "tom" else params


def render_class(drum_class: str, params: KickParams, *, sample_rate: int = 44100,
                 seconds: float = 1.0) -> np.ndarray:
    """Render one sound of a drum class of :data:`BANK_CLASSES`. Shape ``[samples]`` float32, peak 0.95."""
    if drum_class not in _CLASS_RENDER:
        raise ConfigError("class", f"unknown drum class {drum_class!r}; known classes: {', '.join(BANK_CLASSES)}")
    return _CLASS_RENDER[drum_class](params, sample_rate=sample_rate, seconds=seconds)


# -------------------------------------------------------------------------------------------------- writing
def _write_csv(path: Path, header: Sequence[str], rows: Sequence[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(header), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _prepare_out(out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"{out} exists and is not a folder; choose a folder for the corpus")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_corpus(out: Path, *, n: int, seed: int, sample_rate: int = 44100) -> Path:
    """Render ``n`` kicks from :func:`sample_params` into ``out/kick_00000.wav ...`` plus ``out/params.csv``.

    Files are 24-bit PCM WAV at ``sample_rate``, 1 s long; ``params.csv`` has a ``filename`` column and one
    column per :class:`KickParams` field. Every file is written atomically, and the same seed gives byte-identical
    files.

    Returns
    -------
    Path
        The CSV path.
    """
    out = _prepare_out(out)
    _check_render(sample_rate, 1.0)
    rows = []
    for i, params in enumerate(sample_params(n, seed=seed)):
        name = f"kick_{i:05d}.wav"
        write_wav(out / name, render_kick(params, sample_rate=sample_rate), sample_rate)
        rows.append({"filename": name, **params.to_row()})
    csv_path = out / "params.csv"
    _write_csv(csv_path, ("filename", *FIELDS), rows)
    return csv_path


def write_bank(out: Path, *, n_per_class: int, seed: int, sample_rate: int = 44100,
               classes: Sequence[str] = BANK_CLASSES) -> Path:
    """Write a bank layout ``out/<class>/<class>_00000.wav`` with ``n_per_class`` sounds per drum class.

    Classes come from :data:`BANK_CLASSES` (kick: the kick synth; tom: pitched body 80-300 Hz with a short, shallow
    sweep; snare: short 180-250 Hz body + 1-9 kHz band-passed noise; hat: high-passed noise, 8-40 ms decay).
    ``out/params.csv`` has ``class`` and ``filename`` (relative to ``out``) columns plus every
    :class:`KickParams` field. Atomic per file and deterministic for a seed.

    Raises
    ------
    ConfigError
        For a class name outside :data:`BANK_CLASSES` (before anything is written).

    Returns
    -------
    Path
        The CSV path.
    """
    unknown = [c for c in classes if c not in BANK_CLASSES]
    if unknown:
        raise ConfigError("class", f"unknown drum class {unknown[0]!r}; known classes: {', '.join(BANK_CLASSES)}")
    out = _prepare_out(out)
    _check_render(sample_rate, 1.0)
    rows = []
    for drum_class in classes:
        folder = _prepare_out(out / drum_class)
        for i, params in enumerate(sample_class_params(drum_class, n_per_class, seed=seed)):
            name = f"{drum_class}_{i:05d}.wav"
            write_wav(folder / name, render_class(drum_class, params, sample_rate=sample_rate), sample_rate)
            rows.append({"class": drum_class, "filename": f"{drum_class}/{name}", **params.to_row()})
    csv_path = out / "params.csv"
    _write_csv(csv_path, ("class", "filename", *FIELDS), rows)
    return csv_path
