"""The two-band decoder graph: a 22.05 kHz VAE's band plus a predicted band above it, rendered at 44.1 kHz.

``benchmarks/README.md`` ("Full band for the kick model") measured ``two-band 22k+32 hK2`` as the way to bring
back the band above 11 kHz at about today's render cost: the ``kick-22k`` rows rendered as today (clamped mel
inverse, Griffin-Lim, K = 6), upsampled to 44.1 kHz by a polyphase FIR whose taps are the crossover's low side,
plus 32 HTK mels over 9-22.05 kHz of a 44.1 kHz, n_fft 512 spec (``kick-44k-high``) rendered by their own clamped
inverse with the crossover's high side folded into it and Griffin-Lim at K = 2.

The FIR (:func:`lowpass_taps`: Kaiser-windowed sinc, :data:`FIR_TAPS` taps, beta :data:`FIR_BETA`, cut at
:data:`FIR_CUTOFF`) is both the upsampler's image filter and the crossover: its stopband (about -100 dB from 12 kHz)
keeps the mirror image of the low band's sub-bass at 22.05 kHz minus its frequency out of the high band, and its
transition (about 9.2-11.4 kHz, above where the high band's mels start) is where the bands hand over. The high
band's power weight is derived from the FIR's own response, ``1 - |H|^2`` clipped to [0, 1] (:func:`crossover_weight`),
so the crossover is power-complementary by construction: the bands' phases are unrelated, so their powers add, and
``|H|^2 + w_high = 1`` on every bin of the transition.

Here the high rows come from :class:`trainer.highband.HighBandNet` applied to the VAE's decoded features, so the
VAE (its latent, pads, knobs and low band) is the shipped one. The knobs (:mod:`trainer.shaping`) act on both
bands: the low band exactly as :class:`export.graph.MagnitudeToAudio` shapes it, the high band by the same gains
evaluated on its own frequency axis (click and brightness reach it; sub and punch are zero there), with decay's
time gain and brightness's level taken from the low band, so decay and brightness treat the sound as one.

The exported model is a 44.1 kHz model to the runtime (metadata spec ``kick-44k-low``): the decoder's audio is
``[B, 32768]`` at 44.1 kHz and the encoder reads 44.1 kHz audio through ``kick-44k-low``, whose features equal the
VAE's ``kick-22k`` ones (the same bins and window duration); ``logmel`` stays the low band's features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export.graph import MagnitudeToAudio
from runtime.errors import ConfigError
from runtime.spec import SpectrogramSpec
from trainer.highband import HighBandNet
from trainer.shaping import Shaping
from trainer.spec import features_to_power, mel_inverse, render_envelope
from trainer.vae import VAE

#: The crossover's low side and the upsampler's image filter (:func:`lowpass_taps`): its length (odd: linear phase,
#: centred), Kaiser beta (stopband about -100 dB) and cut-off (Hz, the -6 dB point; |H|^2 = 1/2 near 10.25 kHz).
FIR_TAPS = 95
FIR_BETA = 10.0
FIR_CUTOFF = 10500.0
#: The output rate of the two-band decoder (Hz): twice the low band's.
RATE = 44100
#: K of the low band in the two-band decoder: within 0.16 dB (mel distance) of K = 6 on real kicks, and the pair
#: renders within the 10 ms knob budget (K = 6 did not); the high band's K in every two-band graph; the preview's K
#: (both bands), which keeps a knob swept at 100 CC/s under 20 ms p95 (benchmarks/README.md, "knob settle").
LOW_ITERATIONS = 4
HIGH_ITERATIONS = 2
PREVIEW_ITERATIONS = 1


def lowpass_taps(taps: int = FIR_TAPS) -> np.ndarray:
    """The crossover's low-pass at :data:`RATE`: a Kaiser-windowed sinc (``scipy.signal.firwin(taps, FIR_CUTOFF,
    window=("kaiser", FIR_BETA), fs=RATE)``, written in numpy so no graph or benchmark needs scipy), unit gain at DC.
    """
    n = np.arange(taps) - (taps - 1) / 2
    cut = 2.0 * FIR_CUTOFF / RATE
    h = cut * np.sinc(cut * n) * np.kaiser(taps, FIR_BETA)
    return h / h.sum()


def lowpass_response(freqs: np.ndarray, taps: int = FIR_TAPS) -> np.ndarray:
    """|H(f)| of :func:`lowpass_taps` at ``freqs`` (Hz): the low band's amplitude gain through :class:`Upsample2`
    (whose taps are twice these, the zero-stuffing's halving undone)."""
    h = lowpass_taps(taps)
    n = np.arange(taps) - (taps - 1) / 2
    omega = 2 * np.pi * np.asarray(freqs, dtype=np.float64) / RATE
    return np.abs(np.cos(np.multiply.outer(omega, n)) @ h)   # linear phase: the amplitude is a cosine sum


def crossover_weight(freqs: np.ndarray, role: str) -> np.ndarray:
    """Amplitude weight of a band's ``role`` ("low", "high"; anything else: 1) at ``freqs`` (Hz): the low side is
    the FIR's own |H| (:func:`lowpass_response`), the high side ``sqrt(1 - |H|^2)`` clipped to [0, 1], so low^2 +
    high^2 = 1 wherever |H| <= 1 (the passband's ripple, under 1e-4, clips the high side to 0): two bands of
    unrelated phase sum to the original power whatever the FIR's transition looks like."""
    gain = lowpass_response(freqs)
    if role == "low":
        return gain
    if role == "high":
        return np.sqrt(np.clip(1.0 - gain ** 2, 0.0, 1.0))
    return np.ones_like(gain)


def fold_high_side(inverse: np.ndarray, spec: SpectrogramSpec) -> np.ndarray:
    """A mel inverse ``[n_freq, M]`` (band power -> linear power) of a high band times the crossover's high side
    in power, ``1 - |H|^2`` on the spec's bins: the crossover costs no op in the graph."""
    freqs = np.arange(spec.n_freq) * spec.sample_rate / spec.n_fft
    return np.ascontiguousarray(inverse * crossover_weight(freqs, "high")[:, None] ** 2)


class Upsample2(nn.Module):
    """``[B, N]`` at 22.05 kHz -> ``[B, 2N]`` at 44.1 kHz: a linear-phase FIR (``taps`` odd, centred: no delay) on
    the zero-stuffed signal, the crossover's low-pass (:func:`lowpass_taps`, times 2 for the zero-stuffing) as its
    taps, computed polyphase: one Conv1d with a kernel per output phase, interleaved (in onnxruntime 3x faster
    than the equivalent ConvTranspose1d)."""

    def __init__(self, taps: int = FIR_TAPS) -> None:
        super().__init__()
        h = 2.0 * lowpass_taps(taps)
        half = (taps - 1) // 2
        self.pad = (half + 1) // 2
        width = 2 * self.pad + 1
        kernel = np.zeros((2, 1, width))
        for phase in range(2):  # y[2q + phase] = sum_t kernel[phase, t] * x[q + t - pad]
            for t in range(width):
                index = 2 * (self.pad - t) + half + phase
                if 0 <= index < taps:
                    kernel[phase, 0, t] = h[index]
        self.register_buffer("kernel", torch.tensor(kernel, dtype=torch.float32))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(audio[:, None], (self.pad, self.pad))
        return nn.functional.conv1d(padded, self.kernel).transpose(1, 2).reshape(audio.shape[0], -1)


class HighBand(nn.Module):
    """High-band features ``[B, M, T]`` (+ knob values and the low band's envelope terms) -> audio ``[B, N]``:
    the clamped mel inverse with the crossover's high side folded in, the knobs' gain on this band's bins,
    Griffin-Lim (:class:`MagnitudeToAudio`'s own stages)."""

    def __init__(self, spec: SpectrogramSpec, n_iter: int, init_phase: Any, shaping: bool) -> None:
        super().__init__()
        self.synth = MagnitudeToAudio(spec, n_iter, init_phase=init_phase)
        gl = self.synth.gl
        inverse = torch.tensor(fold_high_side(mel_inverse(spec), spec), dtype=torch.float32)
        self.synth.inverse = (inverse[gl.stft.gather_in] * gl.inv_scale ** 2).contiguous()
        self.shaping = Shaping(spec, rows=gl.stft.gather_in.numpy()) if shaping else None
        self.spec = spec

    def forward(self, features: torch.Tensor, controls: torch.Tensor | None = None,
                terms: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        power = torch.matmul(self.synth.inverse, features_to_power(features, self.spec))
        if self.shaping is not None:
            power = power * self.shaping.gain(controls, *terms)
        st = self.synth.gl.stft
        mag = torch.sqrt(torch.clamp(power, min=0.0)).reshape(-1, st.k2, 1, st.n1, self.spec.frames)
        return self.synth.gl.iterate(mag, self.synth.gl.initial_angles(mag))


class TwoBandDecoderGraph(nn.Module):
    """``z`` (+ ``label``) (+ ``controls``) -> ``audio`` ``[B, 2 * low n_samples]`` at twice the low band's rate,
    ``logmel`` ``[B, M, T]`` (the VAE's features, before the knobs): the interface of
    :class:`export.preset_folder.DecoderGraph`, two bands inside (the module docstring)."""

    def __init__(self, model: VAE, high_net: HighBandNet, low_spec: SpectrogramSpec, high_spec: SpectrogramSpec,
                 *, n_iter: int, high_iter: int, low_init: Any, high_init: Any, shaping: bool = False) -> None:
        super().__init__()
        if 2 * low_spec.sample_rate != high_spec.sample_rate or low_spec.n_samples * 2 != high_spec.n_samples:
            raise ConfigError("highband.high_spec", f"must run at twice the low band's rate over the same time "
                                                    f"({high_spec.sample_rate} Hz x {high_spec.n_samples} against "
                                                    f"{low_spec.sample_rate} Hz x {low_spec.n_samples})")
        self.model, self.high_net, self.low_spec = model, high_net, low_spec
        self.low = MagnitudeToAudio(low_spec, n_iter, init_phase=low_init, shaping=shaping)
        self.up = Upsample2()
        self.high = HighBand(high_spec, high_iter, high_init, shaping)
        # the FIR reaches across the low band's silent first and last samples: the sum gets every render's envelope
        self.register_buffer("envelope", torch.tensor(render_envelope(high_spec), dtype=torch.float32))

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None,
                controls: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logmel = self.model.decode(z, label)[:, 0]
        terms = None
        if self.low.shaping is not None and controls is not None:  # one sound: both bands get its decay and level
            terms = self.low.shaping.envelope_terms(controls, features_to_power(logmel, self.low_spec))
        low = self.up(self.low(logmel, controls, terms))
        high = self.high(self.high_net(logmel[:, None])[:, 0], controls, terms)
        return (low + high) * self.envelope, logmel


def two_band_graphs(model: VAE, spec: SpectrogramSpec, highband: Path, *, n_iter: int, preview_iterations: int,
                    phase_init: str, shaping: bool) -> tuple[SpectrogramSpec, nn.Module, nn.Module | None]:
    """The exported model's spec (the high-band net's 44.1 kHz low spec), decoder and preview decoder graphs of a
    VAE on ``spec`` with the high band of the checkpoint ``highband`` (:func:`trainer.highband.load_highband`).

    Raises :class:`ConfigError` unless the net's low spec has the VAE's rows and frame grid at twice its rate.
    """
    from trainer.highband import load_highband
    from trainer.phase import make_init

    high_net, _ = load_highband(highband)
    low44, high_spec = high_net.config.specs()
    same_grid = (low44.n_bins == spec.n_bins and low44.frames == spec.frames
                 and low44.hop_length * spec.sample_rate == spec.hop_length * low44.sample_rate)
    if not same_grid or low44.sample_rate != 2 * spec.sample_rate:
        raise ConfigError("highband", f"{highband}: its low band ({high_net.config.low_spec}) is not this model's "
                                      f"{spec.n_bins} x {spec.frames} features at twice its {spec.sample_rate} Hz")
    low_init, high_init = make_init(phase_init, spec), make_init(phase_init, high_spec)
    graphs = [TwoBandDecoderGraph(model, high_net, spec, high_spec, n_iter=k, high_iter=min(k, HIGH_ITERATIONS),
                                  low_init=low_init, high_init=high_init, shaping=shaping).eval()
              if k else None for k in (n_iter, preview_iterations)]
    return low44, graphs[0], graphs[1]
