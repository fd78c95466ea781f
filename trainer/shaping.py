"""The five knobs as defined time-frequency gains on the decoded spectrogram: each knob means what its name means.

The VAE's latent space carries *which* kick (pads, random draws, morphs, a user's sample); latent directions fitted
to descriptors could not carry the knobs: on both shipped presets two knobs ran against their names by descriptors
the project did not write, and every knob dragged others with it (|rho| 0.93-0.98; issue 20). The knobs are
therefore a last stage of the decoder graph: a gain over (frequency, time) on the linear power spectrum that the
mel pseudo-inverse returns, before Griffin-Lim retrieves the phase. Each knob owns one region of the kick, where the
definition producers and the literature use puts it, so a knob moves its own descriptor on any sound, of any model,
and moves the others only where physics ties them:

============  =============================================================================================
knob          what it changes, where, and the definition it follows
============  =============================================================================================
sub           the sub-bass band, below 60 Hz (edge to 85 Hz, or one STFT bin above 60 Hz where bins are
              coarser), from 60 ms on (fading in from 30 ms): the body's fundamental where it sits that
              low, the sub layer of a kick synthesiser. ±12 dB. Read as the
              share of power below 60 Hz (own) / 80 Hz (librosa), the band the AudioCommons "booming" model
              and Ramires et al. 2020's boominess weigh. A kick whose fundamental sits above 60 Hz has little
              for this knob to raise.
punch         150 Hz-1 kHz in the first 30 ms (fading out by 60 ms): the energy the pitch sweep puts above
              the fundamental at the hit. Kick synthesisers' punch "adds energy to the very start of the
              sound ... increases the depth of pitch modulation" (Knobula Kickain manual). ±12 dB. Read as
              the 150 Hz-1 kHz share of 20 Hz-1 kHz in the first 30 ms.
decay         the fall of the level after 40 ms, the same gain at every frequency: a frame ``d`` dB under
              the loudest comes out at ``d / 2`` at +1 (down to -30 dB, back to ``d`` by -60 dB) and at
              ``2 d`` at -1 (:data:`DECAY_SLOPE`): the envelope length of LMMS Kicker's Length / an amp
              envelope's decay, done as a transient designer's sustain (an expander on the sound's own
              envelope). Read as the time from the peak until the level first falls 20 dB (librosa RMS) /
              30 dB (own) under it.
click         above 2 kHz in the first 12 ms (fading out by 27 ms): the beater click ("adds a click/punch to
              the beginning of the kick", LMMS Kicker; "filtered clicks at the start", Kickain). ±18 dB.
              Read as the share of power above 2 kHz / 5 kHz in the first 15 / 10 ms.
brightness    a tilt of ±4 dB per octave above 150 Hz (at most ±24 dB, reached at 9.6 kHz), the whole
              sound, at the sound's own power (the tilt's level is taken back out): a tone control, not a
              volume control, whose tilt still rises across a hat's or a cymbal's top.
              Read as the spectral centroid over the first 100 ms (librosa's spectral_centroid; MPEG-7's
              spectral centroid, Peeters 2004), the AudioCommons brightness model's main feature.
============  =============================================================================================

Ratio descriptors share their denominators, so a knob that adds power anywhere lowers every "share of all power"
a little (punch lowers the sub share; a longer decay holds more of the sub-heavy tail): rank correlations report
such side effects as |rho| near 1 however small they are; ``trainer axes`` and ``benchmarks/knob_reference.py``
report their size next to rho, in units of the real kicks' spread.

A knob value ``v`` in [-1, 1] scales its gain: ``gain_db = relu(v) * up + relu(-v) * down`` with the table's
``up`` / ``down`` shapes (decay's depends on the sound's envelope), and the five add in dB. Gains multiply power,
so a band the decoder left silent stays silent (the floor gate of :func:`trainer.spec.features_to_power` is not
undone) and every knob at 0 is the identity. The shapes are smooth (raised-cosine edges in log-frequency and time)
so no knob makes a spectral or temporal edge Griffin-Lim would ring on. Every level knob and brightness is a
frequency curve times a time curve, so the graph stores ``[F, 10]`` and ``[10, T]`` and computes
``(freq * [relu(v), relu(-v)]) @ time``, the decay gain from the frame sums of the decoded power, and one Exp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from runtime.spec import SpectrogramSpec
from trainer.spec import features_to_power, mel_basis

#: The knobs, in the order of the decoder graph's ``controls`` input.
KNOBS: tuple[str, ...] = ("sub", "punch", "decay", "click", "brightness")


@dataclass(frozen=True)
class Region:
    """Where a knob acts: frequencies ``lo_hz``..``hi_hz`` and times ``start_s``..``end_s``, each edge a raised
    cosine over ``*_edge`` (octaves for frequency, seconds for time; the region's gain is full inside the edges)."""

    lo_hz: float = 0.0
    hi_hz: float = float("inf")
    start_s: float = 0.0
    end_s: float = float("inf")
    freq_edge_oct: float = 0.5
    time_edge_s: float = 0.02


#: Regions of the level knobs and their gain in dB at +1 and -1.
SUB = Region(hi_hz=60.0, start_s=0.06, freq_edge_oct=0.5, time_edge_s=0.03)
PUNCH = Region(lo_hz=150.0, hi_hz=1000.0, end_s=0.03, freq_edge_oct=0.4, time_edge_s=0.03)
CLICK = Region(lo_hz=2000.0, end_s=0.012, freq_edge_oct=0.4, time_edge_s=0.015)
#: the narrowest frequency edge, in STFT bins (see :func:`_region`)
MIN_EDGE_BINS = 1.0
LEVEL_DB: dict[str, tuple[float, float]] = {"sub": (12.0, -12.0), "punch": (12.0, -12.0), "click": (18.0, -18.0)}
#: decay: from DECAY_START_S on (faded in over DECAY_EDGE_S before it), a frame ``drop`` dB under the sound's
#: loudest frame comes out at ``drop * (1 + k)``, k = DECAY_SLOPE[0] at +1 (-0.5: the decay to any level down to
#: DECAY_HOLD_DB takes twice as long on an exponential decay) and DECAY_SLOPE[1] at -1 (1: the level falls twice
#: as fast, by at most DECAY_CUT_DB more). Lengthening fades out between DECAY_HOLD_DB and DECAY_FLOOR_DB, so a
#: frame at or under DECAY_FLOOR_DB is left where it is: the floor and the buffer's end are not lifted (an
#: expander's release, as the sustain control of a transient designer).
DECAY_SLOPE = (-0.5, 1.0)
DECAY_HOLD_DB = 30.0
DECAY_FLOOR_DB = 60.0
DECAY_CUT_DB = 60.0
DECAY_START_S = 0.04
DECAY_EDGE_S = 0.01
#: brightness: dB per octave above BRIGHT_PIVOT_HZ at +1 / -1, the whole sound, at most BRIGHT_CAP_DB.
BRIGHT_DB_PER_OCT = (4.0, -4.0)
BRIGHT_CAP_DB = 24.0
BRIGHT_PIVOT_HZ = 150.0


def _rise(x: np.ndarray, start: float, width: float) -> np.ndarray:
    """0 up to ``start``, a raised cosine to 1 over ``width``, then 1."""
    if width <= 0:
        return (x >= start).astype(np.float64)
    u = np.clip((x - start) / width, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)


def _band(x: np.ndarray, lo: float, hi: float, edge: float) -> np.ndarray:
    """1 on [lo, hi], a raised-cosine edge of width ``edge`` outside each finite end, 0 beyond."""
    out = np.ones_like(x, dtype=np.float64)
    if np.isfinite(lo):
        out = out * _rise(x, lo - edge, edge)
    if np.isfinite(hi):
        out = out * (1.0 - _rise(x, hi, edge))
    return out


def _axes(spec: SpectrogramSpec) -> tuple[np.ndarray, np.ndarray]:
    """Bin frequencies ``[F]`` (Hz) and frame-centre times ``[T]`` (s; frame t is centred on sample t * hop)."""
    freqs = np.arange(spec.n_freq) * spec.sample_rate / spec.n_fft
    times = np.arange(spec.frames) * spec.hop_length / spec.sample_rate
    return freqs, times


def _region(region: Region, freqs: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The region's frequency shape ``[F]`` and time shape ``[T]``, each in [0, 1] (frequency edges in octaves)."""
    octs = np.log2(np.maximum(freqs, 1.0))
    lo = np.log2(region.lo_hz) if region.lo_hz > 0 else -np.inf
    hi = np.log2(region.hi_hz) if np.isfinite(region.hi_hz) else np.inf
    start = region.start_s if region.start_s > 0 else -np.inf
    # an edge narrower than MIN_EDGE_BINS bins splits a partial between two bins with different gains, and
    # Griffin-Lim hears that as a pitch shift (a 70 Hz fundamental between the 43 and 86 Hz bins of a 44.1 kHz,
    # 1024-point spec slides toward 43 Hz when only the lower bin is raised)
    bin_hz = freqs[1] - freqs[0]
    edge = region.freq_edge_oct
    if np.isfinite(hi):
        edge = max(edge, float(np.log2(1.0 + MIN_EDGE_BINS * bin_hz / region.hi_hz)))
    return _band(octs, lo, hi, edge), _band(times, start, region.end_s, region.time_edge_s)


def gain_factors(spec: SpectrogramSpec) -> tuple[np.ndarray, np.ndarray]:
    """Each knob's dB gain at +1 and at -1 as a frequency curve times a time curve: ``freq [2K, n_freq]`` (dB) and
    ``time [2K, frames]`` (0..1); row ``2k`` is knob k at +1, row ``2k + 1`` at -1. The decay rows are zero: decay
    depends on the sound's own envelope (:func:`decay_gain_db`)."""
    freqs, times = _axes(spec)
    freq = np.zeros((2 * len(KNOBS), spec.n_freq))
    time = np.zeros((2 * len(KNOBS), spec.frames))
    for name, region in {"sub": SUB, "punch": PUNCH, "click": CLICK}.items():
        k = KNOBS.index(name)
        f_shape, t_shape = _region(region, freqs, times)
        freq[2 * k], freq[2 * k + 1] = LEVEL_DB[name][0] * f_shape, LEVEL_DB[name][1] * f_shape
        time[2 * k] = time[2 * k + 1] = t_shape
    k = KNOBS.index("brightness")
    tilt = brightness_tilt_db(freqs)
    freq[2 * k], freq[2 * k + 1] = tilt, -tilt
    time[2 * k] = time[2 * k + 1] = 1.0
    return freq, time


def brightness_tilt_db(freqs: np.ndarray) -> np.ndarray:
    """Brightness's gain in dB at +1 at ``freqs`` (Hz), before its level is kept (``-1``: the negative)."""
    octaves = np.log2(np.maximum(freqs, 1.0) / BRIGHT_PIVOT_HZ)
    return BRIGHT_DB_PER_OCT[0] * np.minimum(np.maximum(octaves, 0.0), BRIGHT_CAP_DB / BRIGHT_DB_PER_OCT[0])


def mel_centres(spec: SpectrogramSpec) -> np.ndarray:
    """Centre of mass in Hz of each mel band's filter ``[n_mels]`` (the frequency brightness's level rule uses)."""
    weights = mel_basis(spec)
    freqs = np.arange(spec.n_freq) * spec.sample_rate / spec.n_fft
    return (weights @ freqs) / np.maximum(weights.sum(axis=1), 1e-12)


def brightness_level_db(spec: SpectrogramSpec, value: np.ndarray, power: np.ndarray) -> np.ndarray:
    """dB ``[B]`` that keeps each sound's power unchanged under brightness ``value [B]`` (mel band power
    ``[B, M, T]``, each band tilted at its centre): a tone control, not a volume control; silence gets 0."""
    tilt = brightness_tilt_db(mel_centres(spec))
    v = np.asarray(value, dtype=np.float64)
    tilted = (power * 10.0 ** (v[:, None, None] * tilt[None, :, None] / 10.0)).sum(axis=(1, 2))
    return -10.0 * np.log10((tilted + 1e-30) / (power.sum(axis=(1, 2)) + 1e-30))


def gain_basis(spec: SpectrogramSpec) -> np.ndarray:
    """dB gain shapes ``[2 * len(KNOBS), n_freq, frames]`` float64 (:func:`gain_factors` multiplied out).

    ``gain_db = relu(v) @ basis[0::2] + relu(-v) @ basis[1::2]`` for knob values ``v [B, len(KNOBS)]``.
    """
    freq, time = gain_factors(spec)
    return freq[:, :, None] * time[:, None, :]


def decay_time_weight(spec: SpectrogramSpec) -> np.ndarray:
    """Where decay acts, ``[frames]`` in [0, 1]: from DECAY_START_S on, faded in over DECAY_EDGE_S before it."""
    _, times = _axes(spec)
    return _rise(times, DECAY_START_S - DECAY_EDGE_S, DECAY_EDGE_S)


def decay_gain_db(drop_db: np.ndarray, value: np.ndarray) -> np.ndarray:
    """dB gain of frames ``drop_db`` (<= 0: each frame's level re the loudest, ``[B, T]``) for decay values ``[B]``.

    Longer (value > 0): ``-k * value * f(drop)`` with ``f(d) = d`` down to ``-DECAY_HOLD_DB``, then falling back to
    0 at ``-DECAY_FLOOR_DB``; shorter (value < 0): ``k * |value| * max(d, -DECAY_CUT_DB)``.
    """
    d = np.minimum(drop_db, 0.0)
    fade = np.clip((d + DECAY_FLOOR_DB) / (DECAY_FLOOR_DB - DECAY_HOLD_DB), 0.0, 1.0)
    held = np.where(d >= -DECAY_HOLD_DB, d, -DECAY_HOLD_DB * fade)
    v = np.asarray(value, dtype=np.float64)[:, None]
    longer = np.maximum(v, 0.0) * DECAY_SLOPE[0] * held
    return longer + np.maximum(-v, 0.0) * DECAY_SLOPE[1] * np.maximum(d, -DECAY_CUT_DB)


def _drop_np(frame_power: np.ndarray) -> np.ndarray:
    db = 10.0 * np.log10(np.maximum(frame_power, 1e-20))
    return db - db.max(axis=-1, keepdims=True)


def power_gain_np(spec: SpectrogramSpec, values: np.ndarray, power: np.ndarray) -> np.ndarray:
    """Power gain ``[B, n_freq, frames]`` (float64) of knob values ``[B, len(KNOBS)]`` for sounds whose decoded
    mel band power is ``power [B, M, frames]`` (numpy reference of :class:`Shaping`)."""
    v = np.clip(np.atleast_2d(np.asarray(values, dtype=np.float64)), -1.0, 1.0)
    power = np.asarray(power, dtype=np.float64)
    basis = gain_basis(spec)
    db = np.einsum("bk,kft->bft", np.maximum(v, 0.0), basis[0::2]) \
        + np.einsum("bk,kft->bft", np.maximum(-v, 0.0), basis[1::2])
    decay = decay_gain_db(_drop_np(power.sum(axis=1)), v[:, KNOBS.index("decay")])
    db = db + (decay * decay_time_weight(spec)[None])[:, None, :]
    db = db + brightness_level_db(spec, v[:, KNOBS.index("brightness")], power)[:, None, None]
    return 10.0 ** (db / 10.0)


class Shaping(nn.Module):
    """Knob values ``[B, len(KNOBS)]`` and the decoded mel band power ``[B, M, T]`` -> power gain ``[B, rows, T]``.

    ``rows`` selects and orders the STFT bins (the exported graph's FFT layout gathers them; ``None`` keeps natural
    order). Values are clamped to [-1, 1]. Ops: Relu, Concat, Mul, MatMul, Log, ReduceMax, Clip, Exp (ONNX-exportable).
    """

    def __init__(self, spec: SpectrogramSpec, rows: torch.Tensor | np.ndarray | None = None) -> None:
        super().__init__()
        freq, time = gain_factors(spec)
        if rows is not None:
            freq = freq[:, np.asarray(rows)]
        self.rows, self.frames = freq.shape[1], time.shape[1]
        # dB -> natural log of power; knob columns as [+1 of each knob, then -1 of each knob]
        order = np.r_[0:2 * len(KNOBS):2, 1:2 * len(KNOBS):2]
        self.register_buffer("freq", torch.tensor(freq[order].T * (np.log(10.0) / 10.0), dtype=torch.float32))
        self.register_buffer("time", torch.tensor(time[order], dtype=torch.float32))
        self.register_buffer("when", torch.tensor(decay_time_weight(spec), dtype=torch.float32))
        tilt = brightness_tilt_db(mel_centres(spec)) * (np.log(10.0) / 10.0)
        self.register_buffer("tilt", torch.tensor(tilt[:, None], dtype=torch.float32))   # [M, 1]
        self.decay, self.brightness = KNOBS.index("decay"), KNOBS.index("brightness")
        self.spec = spec

    def _decay_db(self, v: torch.Tensor, frame_power: torch.Tensor) -> torch.Tensor:
        db = 10.0 * torch.log10(torch.clamp(frame_power, min=1e-20))
        d = torch.clamp(db - torch.amax(db, dim=-1, keepdim=True), max=0.0)
        span = DECAY_FLOOR_DB - DECAY_HOLD_DB
        held = torch.maximum(d, -DECAY_HOLD_DB * torch.clamp((d + DECAY_FLOOR_DB) / span, 0.0, 1.0))
        held = torch.where(d >= -DECAY_HOLD_DB, d, held)
        value = v[:, self.decay:self.decay + 1]
        return (torch.relu(value) * DECAY_SLOPE[0] * held
                + torch.relu(-value) * DECAY_SLOPE[1] * torch.clamp(d, min=-DECAY_CUT_DB)) * self.when

    def forward(self, values: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
        """Power gain ``[B, rows, T]`` for knob values ``[B, K]`` and the decoded band power ``[B, M, T]``
        (:func:`trainer.spec.features_to_power` of the features: its frame sums place decay, its total keeps
        brightness's level)."""
        return self.gain(values, *self.envelope_terms(values, power))

    def envelope_terms(self, values: torch.Tensor, power: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The parts of the gain that depend on the sound: decay's time gain ``[B, 1, T]`` and brightness's level
        ``[B, 1, 1]`` (natural log of power), from the band power ``[B, M, T]``. A second band of the same sound
        (a two-band decoder's high band) takes these from the first, so decay and brightness act on the whole
        sound alike."""
        v = torch.clamp(values, -1.0, 1.0)
        decay = (self._decay_db(v, power.sum(dim=-2)) * (np.log(10.0) / 10.0))[:, None, :]
        return decay, self._brightness_level(v, power)

    def gain(self, values: torch.Tensor, decay: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """Power gain ``[B, rows, T]`` on this module's frequency rows from knob values ``[B, K]`` and the sound's
        :meth:`envelope_terms` (computed here or on another band of the same sound)."""
        v = torch.clamp(values, -1.0, 1.0)
        amounts = torch.cat([torch.relu(v), torch.relu(-v)], dim=1)                   # [B, 2K]
        log_gain = torch.matmul(self.freq[None] * amounts[:, None, :], self.time)     # [B, rows, T]
        return torch.exp(log_gain + decay - level)

    def _brightness_level(self, v: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
        """Natural log ``[B, 1, 1]`` of the power brightness adds, so the gain can take it back out
        (:func:`brightness_level_db`)."""
        value = v[:, self.brightness:self.brightness + 1, None]                         # [B, 1, 1]
        tilted = (power * torch.exp(value * self.tilt)).sum(dim=(1, 2), keepdim=True)
        return torch.log((tilted + 1e-30) / (power.sum(dim=(1, 2), keepdim=True) + 1e-30))

    def magnitude(self, features: torch.Tensor, magnitude: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Shape ``magnitude [B, C, F, T]`` (``MelInverse(spec)(features)``, natural bin order) by knob values
        ``[B, K]``; ``features [B, C, M, T]`` give the frame power (channels summed), as in the exported graph."""
        power = features_to_power(features, self.spec).sum(dim=1)
        return magnitude * torch.sqrt(self(values, power))[:, None]
