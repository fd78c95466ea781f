"""Signal processing shared by the trainer and the runtime: numpy only (no torch, no scipy, no trainer).

- :func:`fade_out_curve`: the one fade shape of the project (stolen and choked voices, rendered buffers' tails,
  prepared one-shots);
- :func:`sanitize` and :func:`dc_block`: what makes a rendered sound safe to play (finite, bounded, DC-free, ending
  when its input ends, faded);
- :func:`resample`: the render worker's rate conversion (below);
- the one-shot preparation (:func:`prepare_one_shot`: :func:`align_onset`, :func:`fit_length`, :func:`normalise`,
  with its settings in :class:`Preparation`): how a sound at the model's rate becomes what the encoder was trained
  on. The trainer (``trainer.data.audio.prepare``) and the runtime (a user's own sample on a pad) call the same
  functions with the same settings, which the exported model carries in its metadata.

Resampling (:func:`resample`) is a polyphase Kaiser-windowed sinc in numpy (no scipy at runtime): 32 zero crossings
per side, beta 8.6, cutoff at 94.5 % of the lower Nyquist. Measured: flat (< 0.01 dB) up to 85 % of the lower
Nyquist (18.7 kHz at 44.1 kHz), -0.4 dB at 90 %, -7 dB at 95 %; rejection -66 dB just past Nyquist (102 %), below
-89 dB from 104 % on; linear phase, output aligned with the input (no delay). All filter phases form one matrix
(:func:`_block_matrix`, cached per rate pair), so a pad is one matrix product instead of a Python loop over the
320 phases (fewer GIL hand-overs beside the audio callback): 0.33 ms for the shipped model's 0.74 s pad
(22.05 -> 48 kHz, one OpenBLAS thread, see :mod:`runtime`), 0.47 ms as the loop, which now serves only ratios
with a few phases or with a matrix too large.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import numpy as np

from runtime.errors import ConfigError, KickspaceError
from runtime.schema import check_fields, require

MAX_SOUND_LEVEL = 8.0  # sounds are clipped to +-8 (18 dB over full scale) when set: the mix stays finite
BLOCK_MATRIX_MAX = 1 << 21  # entries (16 MB) of resample's one-matrix form; larger ratios loop over phases
BLOCK_MATRIX_MIN_PHASES = 8  # ratios with this many phases or fewer loop over them (faster there)
LOUDNESS_MODES = ("lufs", "peak", "none")
#: A rendered sound has ended once every later sample stays this far under its peak (dB): :func:`sanitize` stops
#: DC-blocking there, so the blocker's held estimate does not outlast the sound.
END_SILENCE_DB = -60.0


def fade_out_curve(length: int) -> np.ndarray:
    """A raised-cosine fade-out from 1 to 0, shape ``[length]`` float64 (the last value is 0).

    The one fade shape of the project: stolen and choked voices, rendered buffers' tails, prepared training audio.
    """
    t = np.arange(1, length + 1, dtype=np.float64) / length
    return 0.5 + 0.5 * np.cos(np.pi * t)


# ===================================================================================== rendered sounds
def sanitize(audio: np.ndarray, sample_rate: int, *, fade_out_ms: float = 10.0, dc_cutoff_hz: float = 5.0,
             silence_db: float = END_SILENCE_DB) -> np.ndarray:
    """Finite, bounded, DC-free audio ``[B, samples]`` that ends when its input ends, faded over its last
    ``fade_out_ms`` (raised cosine).

    The DC blocker (:func:`dc_block`) holds the DC it has estimated (its input minus its output, a low-pass of the
    input) for about ``1 / (2 pi dc_cutoff_hz)`` after its input stops (32 ms at 5 Hz), and a noise leaves that
    estimate about 34 dB under the noise's level: a sound the decoder fades to silence would end in that decay
    instead. So where a row's input has ended before the final fade (its last sample within ``silence_db`` of its
    peak lies before the last ``fade_out_ms``), the estimate is faded out (raised cosine) over the ``fade_out_ms``
    before that sample and the input passes as it is after it. A row that still sounds up to its end is only
    DC-blocked (a constant offset stays removed up to the final fade). Allocates what the blocker does, plus
    block-sized scratch while looking for each row's end.
    """
    x = np.nan_to_num(np.asarray(audio, dtype=np.float64), nan=0.0, posinf=MAX_SOUND_LEVEL,
                      neginf=-MAX_SOUND_LEVEL)
    np.clip(x, -MAX_SOUND_LEVEL, MAX_SOUND_LEVEL, out=x)
    y = dc_block(x, sample_rate, dc_cutoff_hz)
    n = min(x.shape[-1], max(1, int(round(fade_out_ms * 1e-3 * sample_rate))))
    for row in np.ndindex(x.shape[:-1]):
        _release_at_end(x[row], y[row], fade=n, silence_db=silence_db)
    y[..., -n:] *= fade_out_curve(n)
    return y


def _release_at_end(x: np.ndarray, y: np.ndarray, *, fade: int, silence_db: float) -> None:
    """In place on the blocked row ``y`` ``[N]`` of input ``x`` ``[N]``: when ``x`` has ended more than ``fade``
    samples before ``N`` (see :func:`sound_end`), cross-fade ``y`` into ``x`` over the ``fade`` samples before
    that end and copy ``x`` after it."""
    end = sound_end(x, silence_db)
    if end > x.shape[-1] - fade:
        return
    k = min(fade, end)
    if k:
        y[end - k:end] += (1.0 - fade_out_curve(k)) * (x[end - k:end] - y[end - k:end])
    y[end:] = x[end:]


def sound_end(x: np.ndarray, silence_db: float = END_SILENCE_DB, *, block: int = 2048) -> int:
    """One past the last sample of ``x`` ``[N]`` within ``silence_db`` (negative) of its peak; 0 for silence.

    Scans back from the end ``block`` samples at a time, so a sound that sounds up to its end costs one block.
    """
    peak = max(float(np.max(x, initial=0.0)), -float(np.min(x, initial=0.0)))
    if peak <= 0.0:
        return 0
    threshold = peak * 10.0 ** (silence_db / 20.0)
    for stop in range(x.shape[-1], 0, -block):
        start = max(0, stop - block)
        loud = np.flatnonzero(np.abs(x[start:stop]) >= threshold)
        if loud.size:
            return start + int(loud[-1]) + 1
    return 0


#: :func:`dc_block`'s chunks are as long as keeps ``r**-k`` under this (float64 then loses < 1e-12 relative).
DC_BLOCK_MAX_GROWTH = 1e3


def dc_block(x: np.ndarray, sample_rate: int, cutoff_hz: float = 5.0, *, chunk: int | None = None) -> np.ndarray:
    """One-pole DC blocker ``y[n] = x[n] - x[n-1] + r * y[n-1]`` along the last axis, vectorised per chunk.

    Within a chunk ``y[n] = r**n * (y0 + cumsum(r**-k * d[k]))``; chunks keep ``r**-k`` under
    :data:`DC_BLOCK_MAX_GROWTH` so float64 stays exact. ``chunk`` None: the longest such chunk (9,700 samples at
    5 Hz and 44.1 kHz: a pad's render is 4 numpy passes, not 64, which took the render worker 0.6 ms).
    """
    x = np.asarray(x, dtype=np.float64)
    r = math.exp(-2.0 * math.pi * cutoff_hz / sample_rate)
    if chunk is None:
        chunk = max(16, int(math.log(DC_BLOCK_MAX_GROWTH) / -math.log(r))) if r < 1.0 else x.shape[-1] or 1
    d = np.diff(x, axis=-1, prepend=0.0)
    y = np.empty_like(x)
    powers = r ** np.arange(1, chunk + 1)
    state = np.zeros(x.shape[:-1])
    for s in range(0, x.shape[-1], chunk):
        seg = d[..., s:s + chunk]
        p = powers[:seg.shape[-1]]
        acc = np.cumsum(seg * (r / p), axis=-1)  # r**-(k) scaled so that p * acc = sum r**(n-k) d[k]
        y[..., s:s + chunk] = p * (state[..., None] + acc / r)
        state = y[..., s + seg.shape[-1] - 1]
    return y


# ========================================================================================= resampling
@functools.lru_cache(maxsize=16)
def _sinc_table(up: int, down: int, zeros: int, beta: float, rolloff: float) -> tuple[np.ndarray, int]:
    """Polyphase table ``[up, taps]`` and the tap index of the sample at or before each output position."""
    cutoff = rolloff * min(1.0, up / down)          # in cycles per input sample, relative to the input Nyquist
    half = zeros / cutoff                           # window half-width, input samples
    reach = int(math.ceil(half))
    k = np.arange(-reach + 1, reach + 1)            # input sample offsets relative to floor(position)
    frac = np.arange(up)[:, None] / up              # fractional output position of each phase
    d = frac - k[None, :]                           # distance (input samples) from the output position
    window = np.i0(beta * np.sqrt(np.clip(1.0 - (d / half) ** 2, 0.0, None))) / np.i0(beta)
    table = cutoff * np.sinc(cutoff * d) * window * (np.abs(d) <= half)
    table.setflags(write=False)
    return table, reach - 1


@functools.lru_cache(maxsize=8)
def _block_matrix(up: int, down: int, zeros: int, beta: float, rolloff: float) -> np.ndarray | None:
    """All ``up`` phases as one matrix ``[down - 1 + taps, up]``: every ``down`` input samples give ``up`` outputs,
    ``out[m * up + p] = window_m @ W[:, p]`` with ``window_m`` the inputs from ``m * down - before``. None when
    it would exceed :data:`BLOCK_MATRIX_MAX` entries (an unusual rate ratio) or for a few phases (up to
    :data:`BLOCK_MATRIX_MIN_PHASES`, e.g. 2x up: a short loop is faster): the per-phase loop does those."""
    table, _ = _sinc_table(up, down, zeros, beta, rolloff)
    taps = table.shape[1]
    if up <= BLOCK_MATRIX_MIN_PHASES or (down - 1 + taps) * up > BLOCK_MATRIX_MAX:
        return None
    w = np.zeros((down - 1 + taps, up))
    for p in range(up):
        base = p * down // up
        w[base:base + taps, p] = table[p * down % up]
    w.setflags(write=False)
    return w


def resample(x: np.ndarray, src_rate: int, dst_rate: int, *, zeros: int = 32, beta: float = 8.6,
             rolloff: float = 0.945) -> np.ndarray:
    """Resample along the last axis from ``src_rate`` to ``dst_rate`` (polyphase windowed sinc, numpy only).

    Parameters
    ----------
    x : ndarray
        ``[..., samples]`` audio.
    src_rate, dst_rate : int
        Rates in Hz; their ratio is reduced to ``up / down`` exactly.

    Returns
    -------
    ndarray
        ``[..., ceil(samples * dst_rate / src_rate)]`` float64; output sample ``j`` sits at input time
        ``j * src_rate / dst_rate``.
    """
    x = np.asarray(x, dtype=np.float64)
    if src_rate == dst_rate:
        return x.copy()
    g = math.gcd(int(src_rate), int(dst_rate))
    up, down = int(dst_rate) // g, int(src_rate) // g
    table, before = _sinc_table(up, down, zeros, beta, rolloff)
    taps = table.shape[1]
    n_in = x.shape[-1]
    n_out = -(-n_in * up // down)
    lead = x.shape[:-1]
    block = _block_matrix(up, down, zeros, beta, rolloff)
    if block is not None:  # one matrix product
        span, blocks = block.shape[0], -(-n_out // up)
        xp = np.zeros(lead + (taps + n_in + blocks * down + span,))
        xp[..., taps:taps + n_in] = x
        windows = np.lib.stride_tricks.sliding_window_view(xp, span, axis=-1)[..., taps - before::down, :]
        return (windows[..., :blocks, :] @ block).reshape(lead + (blocks * up,))[..., :n_out]
    pad = taps
    xp = np.concatenate([np.zeros(lead + (pad,)), x, np.zeros(lead + (pad,))], axis=-1)
    windows = np.lib.stride_tricks.sliding_window_view(xp, taps, axis=-1)  # [..., L, taps], no copy
    out = np.empty(lead + (n_out,))
    for j0 in range(min(up, n_out)):  # outputs j0, j0 + up, ... share one filter phase and step `down` inputs
        start = j0 * down // up - before + pad
        count = len(range(j0, n_out, up))
        rows = windows[..., start: start + down * (count - 1) + 1: down, :]
        out[..., j0::up] = rows @ table[j0 * down % up]
    return out


# ================================================================================= one-shot preparation
@dataclass(frozen=True)
class Preparation:
    """How a one-shot at the model's rate becomes an encoder input (the settings the model was trained with).

    Parameters
    ----------
    loudness : {"lufs", "peak", "none"}
        BS.1770 integrated loudness to ``target_lufs``, peak to ``peak_dbfs``, or no gain (only attenuation of a
        sound that peaks above full scale).
    target_lufs : float
        Loudness target in LUFS; the gain is limited so the peak never exceeds ``peak_dbfs``.
    peak_dbfs : float
        Peak target (``loudness="peak"``) and peak ceiling (``loudness="lufs"``) in dBFS, <= 0.
    fade_ms : float
        Half-cosine fade-out at the end of the cropped one-shot.
    onset_db : float
        Onset threshold relative to the peak (dB, negative): the first sample this loud is the onset.
    preroll_ms : float
        Time kept (or zero-padded) before the onset so the attack is never cut.
    """

    loudness: str = "lufs"
    target_lufs: float = -20.0
    peak_dbfs: float = -1.0
    fade_ms: float = 10.0
    onset_db: float = -30.0
    preroll_ms: float = 1.0

    def __post_init__(self) -> None:
        check_preparation(self, where="preparation")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (exported-model metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "preparation") -> "Preparation":
        """Typed and validated settings from plain JSON; unknown, missing and bad fields fail naming ``where.field``."""
        data = check_fields(data, cls, where=where)
        for name in (f.name for f in fields(cls)):
            if name not in data:
                raise ConfigError(f"{where}.{name}", "missing")
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{where}.{err.field.split('.', 1)[1]}", err.problem) from None


def check_preparation(settings: Any, *, where: str) -> None:
    """Raise :class:`ConfigError` naming ``where.field`` unless ``settings`` (an object with the fields of
    :class:`Preparation`, e.g. the trainer's ``Preprocess``) holds valid preparation settings."""
    require(settings.loudness in LOUDNESS_MODES, f"{where}.loudness",
            f"must be 'lufs', 'peak' or 'none', got {settings.loudness!r}")
    for name in ("target_lufs", "peak_dbfs", "fade_ms", "onset_db", "preroll_ms"):
        value = getattr(settings, name)
        require(is_finite_number(value), f"{where}.{name}", f"must be a finite number, got {value!r}")
    require(-70.0 <= settings.target_lufs <= 0.0, f"{where}.target_lufs",
            f"must be in [-70, 0] LUFS, got {settings.target_lufs}")
    require(-60.0 <= settings.peak_dbfs <= 0.0, f"{where}.peak_dbfs",
            f"must be in [-60, 0] dBFS, got {settings.peak_dbfs}")
    require(settings.fade_ms >= 0.0, f"{where}.fade_ms", f"must be >= 0 ms, got {settings.fade_ms}")
    require(-120.0 < settings.onset_db < 0.0, f"{where}.onset_db",
            f"must be in (-120, 0) dB below the peak, got {settings.onset_db}")
    require(settings.preroll_ms >= 0.0, f"{where}.preroll_ms", f"must be >= 0 ms, got {settings.preroll_ms}")


def is_finite_number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def align_onset(audio: np.ndarray, sample_rate: int, *, preparation: Preparation) -> np.ndarray:
    """Put the onset (first sample within ``onset_db`` of the peak) ``preroll_ms`` after the start. ``[C, N]``."""
    level = np.abs(audio).max(axis=0)
    onset = int(np.argmax(level >= level.max() * 10 ** (preparation.onset_db / 20)))
    start = onset - int(round(preparation.preroll_ms * sample_rate / 1000))
    if start >= 0:
        return audio[:, start:]
    return np.concatenate([np.zeros((audio.shape[0], -start), np.float32), audio], axis=1)


def fit_length(audio: np.ndarray, n_samples: int, *, fade: int) -> np.ndarray:
    """Crop or zero-pad ``[C, N]`` to ``[C, n_samples]`` and fade the last ``fade`` samples out (half cosine)."""
    out = np.zeros((audio.shape[0], n_samples), np.float32)
    keep = min(n_samples, audio.shape[1])
    out[:, :keep] = audio[:, :keep]
    fade = min(fade, n_samples)
    if fade > 0:
        out[:, n_samples - fade:] *= fade_out_curve(fade).astype(np.float32)
    return out


def normalise(audio: np.ndarray, sample_rate: int, *, preparation: Preparation,
              measure: Callable[[np.ndarray, int], float]) -> np.ndarray:
    """Apply the loudness rule to ``[C, N]`` float32 with a peak above 0 (LUFS gain is limited so the peak stays
    <= ``peak_dbfs``); ``measure(audio, rate)`` gives the integrated loudness in LUFS (-inf: gated out)."""
    peak = float(np.max(np.abs(audio)))
    ceiling = 10 ** (preparation.peak_dbfs / 20)
    if preparation.loudness == "none":
        gain = min(1.0, 1.0 / peak)
    elif preparation.loudness == "peak":
        gain = ceiling / peak
    else:
        loudness = measure(audio, sample_rate)
        gain = 10 ** ((preparation.target_lufs - loudness) / 20) if math.isfinite(loudness) else ceiling / peak
        gain = min(gain, ceiling / peak)
    out = (audio * np.float32(gain)).astype(np.float32)
    limit = 1.0 if preparation.loudness == "none" else ceiling
    over = float(np.max(np.abs(out)))
    if over > limit:  # float32 rounding of the gain
        out *= np.float32(limit / over * (1 - 1e-7))
    return out


# =============================================================================== BS.1770 loudness (numpy)
#: K-weighting as two RBJ-cookbook biquads designed at the signal's rate (gain dB, Q, corner Hz, kind): the same
#: filters as pyloudnorm's default meter, so a loudness measured here equals the trainer's.
K_WEIGHTING = ((4.0, 1 / math.sqrt(2), 1500.0, "high_shelf"), (0.0, 0.5, 38.0, "high_pass"))


def _biquad(gain_db: float, q: float, corner_hz: float, rate: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """RBJ cookbook high-shelf or high-pass coefficients ``(b [3], a [3])`` normalised so ``a[0] == 1``."""
    amp = 10 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * corner_hz / rate
    cos, alpha = math.cos(w0), math.sin(w0) / (2.0 * q)
    if kind == "high_shelf":
        root = 2 * math.sqrt(amp) * alpha
        b = [amp * ((amp + 1) + (amp - 1) * cos + root), -2 * amp * ((amp - 1) + (amp + 1) * cos),
             amp * ((amp + 1) + (amp - 1) * cos - root)]
        a = [(amp + 1) - (amp - 1) * cos + root, 2 * ((amp - 1) - (amp + 1) * cos), (amp + 1) - (amp - 1) * cos - root]
    elif kind == "high_pass":
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        a = [1 + alpha, -2 * cos, 1 - alpha]
    else:
        raise ValueError(f"unknown biquad kind {kind!r}")
    return np.array(b) / a[0], np.array(a) / a[0]


def _impulse_response(b: np.ndarray, a: np.ndarray, length: int) -> np.ndarray:
    """The first ``length`` samples ``[length]`` of a biquad's impulse response, without a sample loop.

    State space of the transposed direct form: ``h[0] = b0``, ``h[k] = C A**(k-1) B``; the powers ``A**k B`` are
    built by doubling (``A**(m+k) B = A**m (A**k B)``), so a critically damped filter (a double pole, as the
    K-weighting high-pass) is as exact as any other.
    """
    state = np.array([[-a[1], 1.0], [-a[2], 0.0]])
    vectors = np.array([[b[1] - a[1] * b[0], b[2] - a[2] * b[0]]])  # A**k B for k < len(vectors), rows
    power = state
    while len(vectors) < length - 1:
        vectors = np.concatenate([vectors, vectors @ power.T])
        power = power @ power
    h = np.empty(length)
    h[0] = b[0]
    h[1:] = vectors[:length - 1, 0]
    return h


def k_weight(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``[C, N]`` -> K-weighted ``[C, N]`` float64 (both biquads from rest, as ``lfilter``; FFT convolution)."""
    x = np.asarray(audio, dtype=np.float64)
    n = x.shape[-1]
    size = 1 << int(math.ceil(math.log2(max(2, 3 * n))))
    spectrum = np.fft.rfft(x, size)
    for stage in K_WEIGHTING:
        spectrum *= np.fft.rfft(_impulse_response(*_biquad(*stage[:3], sample_rate, stage[3]), n), size)
    return np.fft.irfft(spectrum, size)[..., :n]


def integrated_loudness(audio: np.ndarray, sample_rate: int, *, block_s: float = 0.4,
                        overlap: float = 0.75) -> float:
    """ITU-R BS.1770 integrated loudness in LUFS of ``[C, N]`` (C <= 2); -inf when every block is gated out.

    K-weighting, mean square per ``block_s`` block (75 % overlap), absolute gate -70 LUFS, relative gate 10 LU below
    the loudness of the blocks above it. The block is shortened to the signal's length for sounds shorter than
    ``block_s``. Block bounds and gates follow pyloudnorm exactly (tested against it).
    """
    x = k_weight(np.atleast_2d(audio), sample_rate)
    block = min(block_s, x.shape[-1] / sample_rate)
    step = 1.0 - overlap
    count = int(np.round((x.shape[-1] / sample_rate - block) / (block * step))) + 1
    bounds = [(int(block * (j * step) * sample_rate), int(block * (j * step + 1) * sample_rate))
              for j in range(count)]
    power = np.array([[np.sum(np.square(ch[lo:hi])) for lo, hi in bounds] for ch in x]) / (block * sample_rate)
    with np.errstate(divide="ignore", invalid="ignore"):
        level = -0.691 + 10.0 * np.log10(power.sum(axis=0))
        above = level >= -70.0
        if not above.any():
            return -math.inf
        relative = -0.691 + 10.0 * np.log10(power[:, above].mean(axis=1).sum()) - 10.0
        gated = (level > relative) & (level > -70.0)
        if not gated.any():
            return -math.inf
        return float(-0.691 + 10.0 * np.log10(power[:, gated].mean(axis=1).sum()))


def prepare_one_shot(audio: np.ndarray, sample_rate: int, n_samples: int, *, preparation: Preparation,
                     measure: Callable[[np.ndarray, int], float]) -> np.ndarray:
    """Onset-align, crop or zero-pad with a fade-out, and loudness-normalise one sound already at the model's rate.

    Parameters
    ----------
    audio : np.ndarray [C, N] float32
        Finite samples at ``sample_rate`` with a peak above 0.
    n_samples : int
        Length of the result (the model's).
    measure : callable
        ``measure(audio [C, n_samples], sample_rate) -> LUFS`` for ``loudness="lufs"``.

    Returns
    -------
    np.ndarray [C, n_samples] float32

    Raises
    ------
    KickspaceError
        When nothing is left after alignment and cropping (every kept sample is zero).
    """
    audio = align_onset(audio, sample_rate, preparation=preparation)
    audio = fit_length(audio, n_samples, fade=int(round(preparation.fade_ms * sample_rate / 1000)))
    if not np.any(audio):
        raise KickspaceError("nothing left after onset alignment and cropping")
    return normalise(audio, sample_rate, preparation=preparation, measure=measure)
