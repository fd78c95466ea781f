"""Initial phases for the exported Griffin-Lim (measured by benchmarks/phase_init.py; the tables and the choice:
benchmarks/README.md#the-in-graph-phase-pipeline-initial-phase-k-and-stft-formulation).

Two kinds:

* **fixed** (precomputed ``[n_freq, frames]`` radians; stored in the graph as cos/sin constants, zero runtime
  cost): :func:`random_phase`, :func:`zero_phase`, :func:`bin_advance_phase`, :func:`template_phase` (circular
  mean of training kicks' phases), :func:`linear_phase` (per-bin ``a_k + b_k * t`` fitted to kicks);
* **from the magnitude** (computed per render): :class:`PhaseGradient` is an ``nn.Module`` that exports to ONNX
  (Log, Slice/Sub, CumSum, elementwise) and integrates the phase gradient that a Gaussian-window STFT implies from
  its log-magnitude (the PGHI relations of Prusa, Balazs & Sondergaard 2017), along a fixed path (down the
  frequency axis in the first frame, then along time in each bin); :func:`pghi_heap` is the full heap-ordered
  integration (numpy, data-dependent order, *not* exportable; a quality reference only).

Phase convention: ``torch.stft`` (the spec) measures phase from the frame start with the window centred at
``n_fft/2``; PGHI's relations hold for phase measured at the window centre. The two differ by ``pi*k``.

Relations used (centre-referenced phase ``phi``, log-magnitude ``L = ln|V|``, hop ``a``, FFT size ``N``, Gaussian
``gamma = 0.25645 * win_length**2`` matching a Hann window):

    dphi/dt [rad per hop] = 2 pi k a / N + (a N / (2 gamma)) * (L[k+1] - L[k-1])
    dphi/dk [rad per bin] = -(gamma / (a N)) * (L[t+1] - L[t-1]) / 2
"""

from __future__ import annotations

import heapq

import numpy as np
import torch
from torch import nn

from runtime.errors import ConfigError
from runtime.spec import SpectrogramSpec
from trainer.spec import window

#: Gaussian ``lambda`` (in samples^2, relative to win_length^2) that best matches a Hann window (ltfat's pghi).
HANN_GAMMA = 0.25645

#: The recommended initialisation: on the kick spec the only init within 1 dB of the 32-iteration reference at
#: K <= 8, and nothing is fitted to a data set, so it does not go stale when the model is retrained (the
#: measurement: benchmarks/README.md#the-in-graph-phase-pipeline-initial-phase-k-and-stft-formulation).
DEFAULT_INIT = "pghi"
#: K, the Griffin-Lim iterations of the exported decoder graph (benchmarks/README.md, "The in-graph phase pipeline",
#: Decisions); `trainer axes` renders its knob sweeps the same way.
DEFAULT_ITERATIONS = 8


# ================================================================================================ fixed inits
def random_phase(spec: SpectrogramSpec, seed: int = 0) -> np.ndarray:
    """Uniform random phase ``[n_freq, frames]`` (what librosa's ``init='random'`` does, fixed by ``seed``)."""
    return np.random.default_rng(seed).uniform(0, 2 * np.pi, (spec.n_freq, spec.frames))


def zero_phase(spec: SpectrogramSpec) -> np.ndarray:
    return np.zeros((spec.n_freq, spec.frames))


def bin_advance_phase(spec: SpectrogramSpec) -> np.ndarray:
    """Each bin advancing at its centre frequency: ``2 pi k hop t / n_fft`` (torch frame-start convention)."""
    k = np.arange(spec.n_freq)[:, None]
    t = np.arange(spec.frames)[None, :]
    return 2 * np.pi * k * spec.hop_length * t / spec.n_fft


def stft_of(audio: np.ndarray, spec: SpectrogramSpec) -> np.ndarray:
    """Complex STFT ``[B, n_freq, frames]`` of ``[B, n_samples]`` audio with the spec's convention."""
    x = torch.as_tensor(np.asarray(audio, dtype=np.float64))
    win = torch.tensor(window(spec))
    z = torch.stft(x, spec.n_fft, spec.hop_length, spec.n_fft, win, center=True, pad_mode="constant",
                   return_complex=True)
    return z[..., : spec.frames].numpy()


def template_phase(audio: np.ndarray, spec: SpectrogramSpec, *, weighted: bool = True) -> np.ndarray:
    """Circular mean over training kicks ``[B, n_samples]`` of their STFT phase per (bin, frame).

    ``weighted``: each kick's unit phasor weighted by its magnitude (loud kicks and loud bins count more).
    """
    z = stft_of(audio, spec)
    w = np.abs(z) if weighted else 1.0
    return np.angle(np.sum(w * np.exp(1j * np.angle(z)), axis=0))


def linear_phase(audio: np.ndarray, spec: SpectrogramSpec) -> np.ndarray:
    """Per-bin linear phase ``a_k + b_k t`` fitted to training kicks (magnitude-weighted circular fits)."""
    z = stft_of(audio, spec)
    mag = np.abs(z)
    step = z[..., 1:] * np.conj(z[..., :-1])                   # phasor of the frame-to-frame advance
    b = np.angle(np.sum(step, axis=(0, 2)))                     # [n_freq], magnitude^2-weighted circular mean
    t = np.arange(spec.frames)
    a = np.angle(np.sum(mag * np.exp(1j * (np.angle(z) - b[None, :, None] * t)), axis=(0, 2)))
    return a[:, None] + b[:, None] * t[None, :]


# ======================================================================================= magnitude-derived
def _gamma(spec: SpectrogramSpec) -> float:
    return HANN_GAMMA * spec.win_length ** 2


class PhaseGradient(nn.Module):
    """In-graph phase from the magnitude: PGHI's gradients integrated along a fixed path (see module docstring).

    Input: scaled magnitude ``[B, n_freq, T]`` (natural bin order); output: phase ``[B, n_freq, T]`` in the
    spec's (frame-start) convention. Bins more than ``floor_db`` below the kick's peak get a clamped log
    magnitude (as PGHI does), so noise in the -80 dB floor does not steer the phase. Cost: ~10 elementwise ops and
    two CumSum on ``[B, n_freq, T]`` (measured by benchmarks/gl_onnx_latency.py; figures in benchmarks/README.md).
    """

    def __init__(self, spec: SpectrogramSpec, floor_db: float = 70.0, time_weight: float = 0.75,
                 freq_weight: float = 1.0) -> None:
        super().__init__()
        self.spec = spec
        gamma = _gamma(spec)
        a, n = spec.hop_length, spec.n_fft
        self.c_time = time_weight * a * n / (2 * gamma)         # times (L[k+1] - L[k-1])
        self.c_freq = -freq_weight * gamma / (a * n) / 2        # times (L[t+1] - L[t-1])
        self.floor = floor_db / 20 * np.log(10)                 # natural-log units
        k = np.arange(spec.n_freq, dtype=np.float64)
        t = np.arange(spec.frames, dtype=np.float64)
        # centre-frequency advance plus the shift to the frame-start convention, wrapped in float64: the raw
        # values reach 1e5 rad, where float32 cos/sin in torch and onnxruntime would disagree
        base = np.mod(2 * np.pi * k[:, None] * a * t[None, :] / n - np.pi * k[:, None], 2 * np.pi)
        self.register_buffer("base", torch.tensor(base, dtype=torch.float32))

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        if magnitude.dim() == 4:
            magnitude = magnitude[:, 0]
        logm = torch.log(magnitude + 1e-12)
        peak = torch.amax(logm.reshape(logm.shape[0], -1), dim=1).reshape(-1, 1, 1)   # one-axis reduce: fast in ORT
        logm = torch.maximum(logm, peak - self.floor)
        # d/dk by central differences (one-sided at the ends), d/dt likewise
        pad_k = torch.cat([logm[:, :1], logm, logm[:, -1:]], dim=1)
        dk = pad_k[:, 2:] - pad_k[:, :-2]                       # L[k+1] - L[k-1]
        pad_t = torch.cat([logm[:, :, :1], logm, logm[:, :, -1:]], dim=2)
        dt = pad_t[:, :, 2:] - pad_t[:, :, :-2]                 # L[t+1] - L[t-1]
        tgrad = self.c_time * dk                                # deviation from the bin's centre advance
        fgrad = self.c_freq * dt
        # first frame: integrate along frequency (trapezoid); then along time in every bin (trapezoid)
        f0 = fgrad[:, :, :1]
        col0 = torch.cumsum(torch.cat([torch.zeros_like(f0[:, :1]), (f0[:, 1:] + f0[:, :-1]) * 0.5], dim=1), dim=1)
        steps = (tgrad[:, :, 1:] + tgrad[:, :, :-1]) * 0.5
        dev = torch.cumsum(torch.cat([torch.zeros_like(steps[:, :, :1]), steps], dim=2), dim=2)
        return col0 + dev + self.base


def pghi_heap(magnitude: np.ndarray, spec: SpectrogramSpec, floor_db: float = 50.0, seed: int = 0) -> np.ndarray:
    """Full phase-gradient heap integration (Prusa et al. 2017) of one scaled magnitude ``[n_freq, T]``.

    Integrates from the loudest bin outwards, always continuing from the loudest bin already reached; bins below
    ``floor_db`` under the peak get random phase. Sequential and data-dependent: a quality reference, not a graph.
    """
    gamma = _gamma(spec)
    a, n = spec.hop_length, spec.n_fft
    logm = np.log(np.asarray(magnitude, dtype=np.float64) + 1e-12)
    floor = logm.max() - floor_db / 20 * np.log(10)
    logc = np.maximum(logm, floor)
    dk = np.gradient(logc, axis=0) * 2                          # L[k+1] - L[k-1]
    dt = np.gradient(logc, axis=1) * 2
    k = np.arange(spec.n_freq)[:, None]
    tgrad = 2 * np.pi * k * a / n + a * n / (2 * gamma) * dk
    fgrad = -gamma / (a * n) / 2 * dt
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, logm.shape)
    todo = logm > floor
    F, T = logm.shape
    heap: list = []
    while todo.any():
        idx = np.unravel_index(np.argmax(np.where(todo, logm, -np.inf)), logm.shape)
        phase[idx] = 0.0
        todo[idx] = False
        heapq.heappush(heap, (-logm[idx], idx[0], idx[1]))
        while heap:
            _, kk, tt = heapq.heappop(heap)
            for dk_, dt_ in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                k2, t2 = kk + dk_, tt + dt_
                if 0 <= k2 < F and 0 <= t2 < T and todo[k2, t2]:
                    if dt_:
                        phase[k2, t2] = phase[kk, tt] + dt_ * (tgrad[kk, tt] + tgrad[k2, t2]) / 2
                    else:
                        phase[k2, t2] = phase[kk, tt] + dk_ * (fgrad[kk, tt] + fgrad[k2, t2]) / 2
                    todo[k2, t2] = False
                    heapq.heappush(heap, (-logm[k2, t2], k2, t2))
    return phase - np.pi * k                                     # centre -> frame-start convention


FIXED = ("random", "zero", "bin_advance", "template", "linear")
FROM_MAGNITUDE = ("pghi", "pghi_heap")


def make_init(name: str, spec: SpectrogramSpec, train_audio: np.ndarray | None = None, seed: int = 0):
    """An init by name: a fixed ``[n_freq, frames]`` array, or a :class:`PhaseGradient` module for ``pghi``.

    ``template`` and ``linear`` need ``train_audio`` ``[B, n_samples]``; ``pghi_heap`` is not exportable.
    """
    if name == "random":
        return random_phase(spec, seed)
    if name == "zero":
        return zero_phase(spec)
    if name == "bin_advance":
        return bin_advance_phase(spec)
    if name in ("template", "linear"):
        if train_audio is None:
            raise ConfigError("init", f"{name!r} is fitted to kicks: pass train_audio")
        return template_phase(train_audio, spec) if name == "template" else linear_phase(train_audio, spec)
    if name == "pghi":
        return PhaseGradient(spec)
    raise ConfigError("init", f"unknown init {name!r} (exportable: {', '.join(FIXED + ('pghi',))})")
