"""Torch modules of the exported decoder's phase pipeline: factorised STFT / iSTFT, fast Griffin-Lim, mel -> audio.

Everything here is written with ops that ``torch.onnx.export`` turns into a small, fast ONNX graph (MatMul, Mul,
Add, Pad, Slice, Concat, Reshape); no complex dtypes, no ``torch.stft``. Numerically the modules match
``torch.stft`` / ``torch.istft`` with the spec's window and ``trainer.spec.griffin_lim`` (tests/test_export_graph.py).

Cooley-Tukey in two matmul stages (n_fft = N = N1 * N2, decimation in frequency)
-------------------------------------------------------------------------------
Sample index ``n = n1 + N1*n2``, bin index ``k = N2*k1 + k2``::

    X[N2 k1 + k2] = sum_n1 exp(-2 pi i n1 (N2 k1 + k2) / N) * sum_n2 x[n1 + N1 n2] exp(-2 pi i n2 k2 / N2)

* Stage 1 (inner sum) is one real GEMM ``[2*K2, N2] @ [N2, N1*T]`` on the windowed frames: the input is real,
  so only ``k2 = 0 .. N2/2`` (``K2 = N2/2 + 1``) are computed; the rest are conjugate mirrors.
* Stage 2 (outer sum with the twiddle folded in) is a batched matmul with one real ``[2*N1, 2*N1]`` block matrix
  per k2 (the complex N1-point DFT times the twiddle, written as real blocks): no elementwise twiddle.

The spectrum lives in a *layout* ``[B, K2, 2, N1, T]`` (k2, real/imaginary, k1, frame) holding every bin
``k = N2*k1 + k2`` with ``k2 <= N2/2``: ``K2*N1 = N/2 + N1`` complex values, the ``N/2 + 1`` unique bins plus
``N1 - 1`` conjugate duplicates (``k > N/2`` stands for ``conj(X[N - k])``). Griffin-Lim never needs natural bin
order: the magnitude is gathered into the layout once (for mel features the gather is folded into the rows of the
mel pseudo-inverse, so it costs nothing) and the inverse reads the layout directly, with weights 1 for
``k2 in {0, N2/2}`` (their mirrors are in the layout too) and 2 otherwise. Frames come last in every tensor, so the
broadcast constants (window, magnitude) vary along outer axes only.

Real multiply-adds per frame: ``N*(N2 + 2) + 4*N1*N1*K2 ~ N*(N2 + 2*N1)`` against ``N*(N + 2)`` for a dense matmul:
about 104 k vs 1.05 M at n_fft 1024 (32 x 32) and 270 k vs 4.2 M at n_fft 2048 (32 x 64).

Framing and overlap-add
-----------------------
With ``R = n_fft / hop`` an integer, a signal is a sequence of hop-sized *segments*; frame ``t`` is segments
``t .. t+R-1`` (R slices + one concat) and overlap-add is R pads + adds of the frames' R chunks. The window-sum-square
normalisation of ``torch.istft`` (over all ``T + 1`` frames of ``center=True``), the trim to ``n_samples`` and the
zero padding that ``torch.stft(center=True, pad_mode="constant")`` adds back are one precomputed per-sample gain on
the segments. The last STFT column (``frames + 1``-th, magnitude 0 by convention in ``griffin_lim``) never reaches
the audio, so only ``frames`` columns are computed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from runtime.errors import ConfigError
from runtime.spec import SpectrogramSpec
from trainer.shaping import KNOBS, Shaping
from trainer.spec import LogMel, MelInverse, features_to_power, magnitude_scale, render_envelope, window

#: Measured overrides of the multiply-add rule below (1024: 32 x 32 beat 16 x 64 per transform, see
#: benchmarks/README.md#the-in-graph-phase-pipeline-initial-phase-k-and-stft-formulation).
DEFAULT_SPLITS: dict[int, int] = {1024: 32}


def choose_split(n_fft: int) -> int:
    """N1 for ``n_fft = N1 * N2`` (N2 even); minimises ``N2 + 2 + 2*N1`` unless :data:`DEFAULT_SPLITS` says
    otherwise."""
    if n_fft in DEFAULT_SPLITS:
        return DEFAULT_SPLITS[n_fft]
    best = None
    for n1 in range(1, n_fft + 1):
        if n_fft % n1 == 0 and (n_fft // n1) % 2 == 0:
            cost = (n_fft // n1) + 2 + 2 * n1    # stage 1: N*(N2 + 2), stage 2: ~2*N*N1 (decimation in frequency)
            if best is None or cost < best[0]:
                best = (cost, n1)
    if best is None:
        raise ConfigError("spec.n_fft", f"{n_fft} has no even factor for a two-stage FFT")
    return best[1]


def _check_spec(spec: SpectrogramSpec) -> int:
    if spec.n_fft % spec.hop_length or (spec.n_fft // 2) % spec.hop_length:
        raise ConfigError("spec.hop_length", f"the graph's overlap-add needs n_fft/2 ({spec.n_fft // 2}) to be a "
                                             f"multiple of hop_length ({spec.hop_length})")
    return spec.n_fft // spec.hop_length


def _stage_matrices(n1: int, n2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The real matrices of the two stages for ``n_fft = n1 * n2`` (float64), forward ``f1``, ``f2`` and inverse
    ``g2``, ``g1``, in the layout :class:`FactorizedSTFT` documents (``K2 = n2/2 + 1``).

    ``f1`` ``[2*K2, N2]``: stage 1 on real input; ``f2`` ``[K2, 2*N1, 2*N1]``: stage 2 per k2 with the twiddle folded
    in; ``g2`` the same transposed for the inverse; ``g1`` ``[N2, 2*K2]``: the inverse's last stage with the one-sided
    weights (1 for ``k2 in {0, N2/2}``, else 2) and the ``1/N``.
    """
    n, k2n = n1 * n2, n2 // 2 + 1
    # forward stage 1: rows (k2, re/im), exp(-2 pi i n2 k2 / N2) on real input
    a1 = 2 * np.pi * np.arange(k2n)[:, None] * np.arange(n2)[None, :] / n2
    f1 = np.stack([np.cos(a1), -np.sin(a1)], axis=1).reshape(2 * k2n, n2)
    # stage 2 per k2: theta = 2 pi n1 (N2 k1 + k2) / N, indexed [k2, k1, n1]
    th = 2 * np.pi * np.arange(n1)[None, None, :] * (n2 * np.arange(n1)[None, :, None]
                                                     + np.arange(k2n)[:, None, None]) / n
    c, s_ = np.cos(th), np.sin(th)
    # forward: (br + i bi)(c - i s): re = c br + s bi, im = -s br + c bi ; rows (p', k1), cols (p, n1)
    f2 = np.concatenate([np.concatenate([c, s_], axis=2), np.concatenate([-s_, c], axis=2)], axis=1)
    # inverse stage A: b[k2, n1] = sum_k1 exp(+i theta) Y[k2, k1]: rows (p, n1), cols (p', k1)
    ct, st = c.transpose(0, 2, 1), s_.transpose(0, 2, 1)
    g2 = np.concatenate([np.concatenate([ct, -st], axis=2), np.concatenate([st, ct], axis=2)], axis=1)
    # inverse stage B: x[n2, n1] = sum_k2 w_k2 Re(b[k2, n1] exp(2 pi i n2 k2 / N2)) / N; cols (k2, re/im)
    wk = np.full(k2n, 2.0)
    wk[0] = 1.0
    wk[-1] = 1.0
    ai = 2 * np.pi * np.arange(n2)[:, None] * np.arange(k2n)[None, :] / n2
    g1 = np.stack([wk * np.cos(ai), -wk * np.sin(ai)], axis=2).reshape(n2, 2 * k2n) / n
    return f1, f2, g2, g1


class FactorizedSTFT(nn.Module):
    r"""Real-input STFT and inverse STFT of one spec as two matmul stages (see the module docstring).

    Everything is *frames-last*: frames are ``[B, N, T]`` (sample index, frame), the spectrum layout is
    ``[B, K2, 2, N1, T]`` (k2 <= N2/2, real/imaginary, k1, frame) holding bin ``k = N2*k1 + k2``, and a signal is
    ``[B, hop, T + R - 1]`` hop-sized segments (sample within the hop, segment). Broadcast constants then vary only
    along outer axes, which onnxruntime's elementwise kernels handle at memory speed.

    Decimation in frequency, ``n = n1 + N1*n2``, ``k = N2*k1 + k2``::

        X[N2 k1 + k2] = sum_n1 exp(-2 pi i n1 (N2 k1 + k2) / N) * sum_n2 x[n1 + N1 n2] exp(-2 pi i n2 k2 / N2)
                        \________ stage 2 (twiddle folded in) ______/  \___________ stage 1 (real input) ____/

    Stage 1 is one GEMM ``[2*K2, N2] @ [N2, N1*T]`` (K2 = N2/2 + 1: real input, half the k2 suffice); stage 2 is a
    batched matmul with one ``[2*N1, 2*N1]`` real block matrix per k2 that includes the twiddle, so there is no
    elementwise twiddle at all. The inverse runs the same stages transposed.
    """

    def __init__(self, spec: SpectrogramSpec, n1: int | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.R = _check_spec(spec)
        n = spec.n_fft
        n1 = n1 or choose_split(n)
        n2 = n // n1 if n % n1 == 0 else 0
        if not n2 or n2 % 2:
            raise ConfigError("n1", f"{n1} must divide n_fft {n} into N1 x N2 with N2 even")
        k2n = n2 // 2 + 1
        self.n1, self.n2, self.k2 = n1, n2, k2n

        as32 = lambda a: torch.tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
        self.register_buffer("win", as32(window(spec)[:, None]))
        for name, basis in zip(("f1", "f2", "g2", "g1"), _stage_matrices(n1, n2)):
            self.register_buffer(name, as32(basis))

        # bin of each layout position (k2, k1), and how to read natural bins back / write natural bins in
        kk = (n2 * np.arange(n1)[None, :] + np.arange(k2n)[:, None]).reshape(-1)
        self.layout_bins = np.minimum(kk, n - kk)                   # [K2*N1] natural bin (magnitude source)
        self.layout_conj = kk > n // 2                              # phase sign flips there
        natural = np.zeros(spec.n_freq, dtype=np.int64)
        natural_conj = np.zeros(spec.n_freq, dtype=bool)
        for pos in range(kk.size - 1, -1, -1):                      # a layout position holding bin k (or its mirror)
            k = int(self.layout_bins[pos])
            if not natural_conj[k] or kk[pos] <= n // 2:
                natural[k] = pos
                natural_conj[k] = kk[pos] > n // 2
        self.register_buffer("gather_in", torch.tensor(self.layout_bins, dtype=torch.int64), persistent=False)
        self.register_buffer("gather_out", torch.tensor(natural, dtype=torch.int64), persistent=False)
        self.register_buffer("natural_sign", torch.tensor(np.where(natural_conj, -1.0, 1.0), dtype=torch.float32),
                             persistent=False)
        self.register_buffer("phase_sign", torch.tensor(np.where(self.layout_conj, -1.0, 1.0), dtype=torch.float32),
                             persistent=False)

        # overlap-add gain on the (frames + R - 1) hop-sized segments of the padded signal: 1/wss inside the
        # audio, 0 in the centre padding (what torch.stft's constant padding puts back).
        R, hop, frames = self.R, spec.hop_length, spec.frames
        full = np.zeros((frames + R) * hop)                         # frames + 1 columns, as torch.istft sums
        w2 = window(spec) ** 2
        for t in range(frames + 1):
            full[t * hop: t * hop + n] += w2
        pad = n // 2
        gain = np.zeros((frames + R - 1) * hop)
        inside = slice(pad, pad + spec.n_samples)
        gain[inside] = 1.0 / np.maximum(full[inside], 1e-11)
        self.register_buffer("ola_gain", as32(gain.reshape(frames + R - 1, hop).T))   # [hop, S]

    # ---------------------------------------------------------------------------------------- core transforms
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, N, T]`` un-windowed frames -> layout spectrum ``[B, K2, 2, N1, T]`` (unscaled, windowed STFT)."""
        t = self.spec.frames   # static sizes and -1 for the batch: the exported graph gets constant shapes
        x = (frames * self.win).reshape(-1, self.n2, self.n1 * t)
        a = torch.matmul(self.f1, x).reshape(-1, self.k2, 2 * self.n1, t)
        y = torch.matmul(self.f2, a)
        return y.reshape(-1, self.k2, 2, self.n1, t)

    def inverse(self, spectrum: torch.Tensor) -> torch.Tensor:
        """Layout spectrum ``[B, K2, 2, N1, T]`` -> windowed real frames ``[B, N, T]`` (irfft times window)."""
        t = self.spec.frames
        b = torch.matmul(self.g2, spectrum.reshape(-1, self.k2, 2 * self.n1, t))
        x = torch.matmul(self.g1, b.reshape(-1, 2 * self.k2, self.n1 * t))
        return x.reshape(-1, self.spec.n_fft, t) * self.win

    # ---------------------------------------------------------------------------------- framing / overlap-add
    def overlap_add(self, frames: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, N, T]`` windowed frames -> normalised, centre-trimmed segments ``[B, hop, T + R - 1]``.

        ``gain``: per-segment-sample gain ``[hop, T + R - 1]`` replacing ``ola_gain`` (see :meth:`segment_gain`).
        """
        R, hop = self.R, self.spec.hop_length
        total = None
        for r in range(R):  # slices, not torch.split: torch.export's ONNX turns a split into sequence ops (slower)
            part = nn.functional.pad(frames[:, r * hop:(r + 1) * hop], (r, R - 1 - r))
            total = part if total is None else total + part
        return total * (self.ola_gain if gain is None else gain)

    def segment_gain(self, envelope: np.ndarray) -> torch.Tensor:
        """``ola_gain`` times a gain on the audio's samples ``[n_samples]``, as segments ``[hop, T + R - 1]``."""
        spec = self.spec
        full = np.zeros((spec.frames + self.R - 1) * spec.hop_length)
        full[spec.n_fft // 2: spec.n_fft // 2 + spec.n_samples] = envelope
        shaped = torch.tensor(full.reshape(-1, spec.hop_length).T, dtype=self.ola_gain.dtype)
        return (self.ola_gain * shaped).contiguous()

    def frame(self, segments: torch.Tensor) -> torch.Tensor:
        """``[B, hop, T + R - 1]`` segments of the zero-padded signal -> frames ``[B, N, T]``."""
        T = self.spec.frames
        return torch.cat([segments[:, :, r:r + T] for r in range(self.R)], dim=1)

    def segments_to_audio(self, segments: torch.Tensor) -> torch.Tensor:
        lead = (self.spec.n_fft // 2) // self.spec.hop_length
        seg = segments[:, :, lead:lead + self.spec.frames]
        return seg.transpose(1, 2).reshape(-1, self.spec.n_samples)

    def audio_to_segments(self, audio: torch.Tensor) -> torch.Tensor:
        lead = (self.spec.n_fft // 2) // self.spec.hop_length
        seg = audio.reshape(-1, self.spec.frames, self.spec.hop_length).transpose(1, 2)
        return nn.functional.pad(seg, (lead, self.R - 1 - lead))

    def analyze(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, n_samples]`` -> layout spectrum (== torch.stft center=True, constant pad, first ``frames``)."""
        return self.forward(self.frame(self.audio_to_segments(audio)))

    def synthesize(self, spectrum: torch.Tensor) -> torch.Tensor:
        """Layout spectrum -> ``[B, n_samples]`` (== torch.istft with a zero last column)."""
        return self.segments_to_audio(self.overlap_add(self.inverse(spectrum)))

    # ------------------------------------------------------------------------------------------ bin helpers
    def to_natural(self, spectrum: torch.Tensor) -> torch.Tensor:
        """Layout ``[B, K2, 2, N1, T]`` -> complex ``[B, n_freq, T]`` in natural bin order (tests, analysis)."""
        batch, t = spectrum.shape[0], spectrum.shape[-1]
        re = spectrum[:, :, 0].reshape(batch, -1, t).index_select(1, self.gather_out)
        im = spectrum[:, :, 1].reshape(batch, -1, t).index_select(1, self.gather_out)
        return torch.complex(re, im * self.natural_sign.to(im.dtype)[:, None])

    def magnitude_to_layout(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Natural ``[B, n_freq, T]`` -> layout ``[B, K2, 1, N1, T]``."""
        m = magnitude.index_select(1, self.gather_in)
        return m.reshape(-1, self.k2, 1, self.n1, self.spec.frames)

    def layout_to_magnitude(self, mag: torch.Tensor) -> torch.Tensor:
        """Layout ``[B, K2, 1, N1, T]`` -> natural ``[B, n_freq, T]``."""
        return mag.reshape(-1, self.k2 * self.n1, self.spec.frames).index_select(1, self.gather_out)

    def phase_to_layout(self, phase: torch.Tensor) -> torch.Tensor:
        """Natural phase ``[B, n_freq, T]`` (radians) -> unit layout ``[B, K2, 2, N1, T]`` (cos, sin)."""
        p = phase.index_select(-2, self.gather_in) * self.phase_sign.to(phase.dtype)[:, None]
        p = p.reshape(-1, self.k2, 1, self.n1, self.spec.frames)
        return torch.cat([torch.cos(p), torch.sin(p)], dim=2)


class FactorizedLogMel(LogMel):
    """:class:`trainer.spec.LogMel` with its STFT computed by :class:`FactorizedSTFT` (same values, same mel and dB
    code): the dense Conv1d bases of ``LogMel`` (17 MB at n_fft 2048) never enter the graph, the factorised
    stages are a small fraction of that. ``[B, N]`` audio -> ``[B, 1, M, T]`` features.
    """

    def __init__(self, spec: SpectrogramSpec) -> None:
        super().__init__(spec)
        self.stft = FactorizedSTFT(spec)
        self.power_scale = magnitude_scale(spec) ** 2

    def power(self, audio: torch.Tensor) -> torch.Tensor:
        spectrum = self.stft.analyze(audio)                                  # [B, K2, 2, N1, T]
        power = self.stft.layout_to_magnitude((spectrum * spectrum).sum(dim=2, keepdim=True))
        return (power * self.power_scale)[:, None]                           # [B, 1, n_freq, T]


class GriffinLim(nn.Module):
    """Fast Griffin-Lim with momentum (Perraudin et al. 2013) in the factorised layout; K unrolled in the graph.

    ``init_phase``: a fixed phase ``[n_freq, frames]`` (radians; precomputed, stored as cos/sin constants in the
    graph), or an ``nn.Module`` mapping the scaled natural magnitude ``[B, n_freq, T]`` to a phase of the same
    shape (computed in the graph, see ``trainer.phase``), or None for zero phase.

    ``forward(magnitude)``: scaled natural magnitude ``[B, n_freq, T]`` or ``[B, 1, n_freq, T]`` (as
    ``trainer.spec.MelInverse`` returns) -> audio ``[B, n_samples]``; equals
    ``trainer.spec.griffin_lim(magnitude, spec, n_iter, momentum, init=init_phase)``.

    Like ``griffin_lim`` it imposes ``trainer.spec.render_envelope`` (silence at the first and last sample) on the
    signal in every iteration: folded into the overlap-add gain, so it costs nothing.

    Per iteration: ``X = v * (M / (|v| + eps))`` (the magnitude projection and the normalisation fused: the
    division runs on the half-size magnitude tensor), inverse transform, overlap-add, framing, forward transform,
    momentum ``v = new - alpha * previous``.
    """

    def __init__(self, spec: SpectrogramSpec, n_iter: int, momentum: float = 0.99,
                 init_phase: torch.Tensor | np.ndarray | nn.Module | None = None, n1: int | None = None) -> None:
        super().__init__()
        if spec.channels != 1:
            raise ConfigError("spec.channels", "the Griffin-Lim graph is mono (export one graph per channel)")
        self.spec = spec
        self.n_iter = int(n_iter)
        self.alpha = float(momentum) / (1.0 + float(momentum))
        self.stft = FactorizedSTFT(spec, n1)
        self.phase_module = init_phase if isinstance(init_phase, nn.Module) else None
        if self.phase_module is None:
            phase = torch.zeros(spec.n_freq, spec.frames) if init_phase is None else \
                torch.as_tensor(np.asarray(init_phase), dtype=torch.float32)
            if tuple(phase.shape) != (spec.n_freq, spec.frames):
                raise ConfigError("init_phase", f"must be [{spec.n_freq}, {spec.frames}], got {tuple(phase.shape)}")
            self.register_buffer("angles0", self.stft.phase_to_layout(phase.double()[None]).float())
        self.inv_scale = 1.0 / magnitude_scale(spec)
        # trainer.spec.griffin_lim's time-support constraint (render_envelope) folded into the overlap-add gain
        self.register_buffer("gain", self.stft.segment_gain(render_envelope(spec)))

    def initial_angles(self, mag: torch.Tensor) -> torch.Tensor:
        """Unit layout angles from the layout magnitude (unscaled): the constant, or the phase module's output."""
        if self.phase_module is None:
            return self.angles0
        natural = self.stft.layout_to_magnitude(mag) * (1.0 / self.inv_scale)
        return self.stft.phase_to_layout(self.phase_module(natural))

    def iterate(self, mag: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """Layout magnitude ``[B, K2, 1, N1, T]`` (unscaled) and unit angles -> audio ``[B, n_samples]``."""
        st = self.stft
        spectrum = mag * angles
        rebuilt = None
        for _ in range(self.n_iter):
            new = st.forward(st.frame(st.overlap_add(st.inverse(spectrum), self.gain)))
            v = new if rebuilt is None else new - self.alpha * rebuilt
            rebuilt = new
            norm = torch.sqrt(torch.sum(v * v, dim=2, keepdim=True))
            spectrum = v * (mag / (norm + 1e-16))
        return st.segments_to_audio(st.overlap_add(st.inverse(spectrum), self.gain))

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        if magnitude.dim() == 4:
            magnitude = magnitude[:, 0]
        mag = self.stft.magnitude_to_layout(magnitude) * self.inv_scale
        return self.iterate(mag, self.initial_angles(mag))


class MagnitudeToAudio(nn.Module):
    """Normalised features ``[B, 1, M, T]`` or ``[B, M, T]`` (+ knob values ``[B, len(KNOBS)]``) -> audio
    ``[B, n_samples]``.

    De-normalise (``trainer.spec.features_to_power``), the clamped mel pseudo-inverse of ``trainer.spec.MelInverse``
    with its rows gathered into the FFT layout (the same matrix, rows permuted/duplicated: no extra op), square
    root, then :class:`GriffinLim`. Equals ``griffin_lim(MelInverse(spec)(features), spec, ...)``.

    ``shaping``: the knobs of :mod:`trainer.shaping` are the graph's last spectral stage: the layout power is
    multiplied by :class:`trainer.shaping.Shaping`'s gain (its basis gathered by the same ``gather_in`` as the
    inverse's rows, so each layout position gets its natural bin's gain; the gain carries no magnitude scale) before
    the square root, so ``forward(features, controls)`` equals
    ``griffin_lim(Shaping(spec).magnitude(features, MelInverse(spec)(features), controls), spec, ...)``. Without it
    the graph is the unshaped one, op for op.
    """

    def __init__(self, spec: SpectrogramSpec, n_iter: int, init_phase=None, momentum: float = 0.99,
                 n1: int | None = None, shaping: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.gl = GriffinLim(spec, n_iter, momentum, init_phase, n1)
        inv = torch.eye(spec.n_freq) if spec.mel_scale == "linear" else MelInverse(spec).inverse
        # [K2*N1, M] @ power [B, M, T] -> power in layout order, times griffin_lim's 1/scale^2
        self.register_buffer("inverse", (inv[self.gl.stft.gather_in] * self.gl.inv_scale ** 2).contiguous())
        self.shaping = Shaping(spec, rows=self.gl.stft.gather_in.numpy()) if shaping else None

    def magnitude(self, features: torch.Tensor, controls: torch.Tensor | None = None,
                  terms: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Unscaled layout magnitude ``[B, K2, 1, N1, T]`` (shaped by ``controls`` when the graph has knobs).

        ``terms``: the sound's :meth:`trainer.shaping.Shaping.envelope_terms` when the caller has them already (a
        two-band decoder shares them with its second band); None computes them here."""
        if features.dim() == 4:
            features = features[:, 0]
        band_power = features_to_power(features, self.spec)                        # [B, M, T]
        power = torch.matmul(self.inverse, band_power)                              # [B, K2*N1, T]
        if self.shaping is not None:
            if controls is None:
                raise ConfigError("controls", "this graph shapes its sound: knob values [B, "
                                              f"{len(KNOBS)}] are an input")
            if terms is None:
                terms = self.shaping.envelope_terms(controls, band_power)
            power = power * self.shaping.gain(controls, *terms)
        elif controls is not None:
            raise ConfigError("controls", "this graph was built without shaping (shaping=False)")
        mag = torch.sqrt(torch.clamp(power, min=0.0))
        st = self.gl.stft
        return mag.reshape(-1, st.k2, 1, st.n1, self.spec.frames)

    def forward(self, features: torch.Tensor, controls: torch.Tensor | None = None,
                terms: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        mag = self.magnitude(features, controls, terms)
        return self.gl.iterate(mag, self.gl.initial_angles(mag))


def gl_flops(spec: SpectrogramSpec, n_iter: int, n1: int | None = None) -> float:
    """Multiply-adds of the transforms of one render (for the benchmark's tables)."""
    n = spec.n_fft
    n1 = n1 or choose_split(n)
    n2 = n // n1
    per_frame = n1 * n2 * (n2 + 2) + 4 * n1 * n1 * (n2 // 2 + 1)
    return float(per_frame * spec.frames * (2 * n_iter + 1))


__all__ = ["FactorizedLogMel", "FactorizedSTFT", "GriffinLim", "MagnitudeToAudio", "choose_split", "gl_flops",
           "DEFAULT_SPLITS"]
