"""The voice engine: mixes one-shot voices from per-pad immutable buffers into output blocks. Steppable offline.

The same object runs inside the sounddevice callback and inside ``runtime render``: call :meth:`Engine.process`
once per block. It never runs inference, never blocks, never logs and allocates no numpy arrays per block:

- Events (note-ons, panic) arrive through a :class:`collections.deque` (``append``/``popleft`` are thread-safe and
  never block) and are drained at the start of each block; a note-on starts at its sample ``offset`` in that block.
- Sounds are immutable arrays ``[layers, frames, channels]`` (one layer per velocity band) that the render worker
  swaps in with :meth:`Engine.set_pad_buffer`: a new dict is built off the audio thread and assigned by reference
  (atomic in CPython), so the callback only ever reads a complete old or a complete new buffer. A playing voice keeps
  the buffer it started with.
- At most ``max_voices`` voices sound; a note beyond that steals the oldest voice, which fades out over ``fade_ms``
  in one of ``max_voices`` extra tail slots (a hard cut would click). Pads in the same choke group fade each other
  out the same way.
- Gain per voice = pad gain * ``(velocity / 127) ** velocity_curve``; the sum is scaled by the output gain, then
  limited in two stages:

  1. a gain-riding peak limiter with one block of look-ahead and no added latency: each block's peak sets the gain
     that brings it to the threshold ``t``, and the gain moves from the previous block's value towards it along
     an exponential curve, fast (``attack_ms``) when it must fall, slow (``release_ms``) when it may rise, so a
     mix that is too hot is turned down as a whole instead of having its waveform bent (no added harmonics once
     the gain has settled);
  2. a memoryless soft knee for what gets past the attack: ``|x| <= t`` unchanged, the rest bent smoothly towards
     1 (``t + (1 - t) * tanh((|x| - t) / (1 - t))``), then a hard clip to [-1, 1] as the last guard.

  A mix that never exceeds ``t`` passes bit-exact. Buffers are made finite and bounded when they are set, and a
  non-finite block (never expected) is zeroed before limiting, so NaN/inf can never reach the output.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np

from runtime.dsp import MAX_SOUND_LEVEL, fade_out_curve

_NOTE_ON, _SILENCE = 0, 1


@dataclass(frozen=True)
class PadSettings:
    """Per-pad playback settings: linear ``gain`` and ``choke`` group (None = chokes nothing)."""

    gain: float = 1.0
    choke: int | None = None


_DEFAULT_PAD = PadSettings()


def fade_ramp(length: int) -> np.ndarray:
    """:func:`fade_out_curve` as a ``[length, 1]`` float32 column (multiplies ``[frames, channels]`` blocks)."""
    return fade_out_curve(length).astype(np.float32)[:, None]


def velocity_gain(velocity: int, curve: float) -> float:
    """Gain of a MIDI velocity 0-127: ``(velocity / 127) ** curve`` (curve 0 = always 1)."""
    return float(min(max(velocity, 0), 127) / 127.0) ** curve


def as_sound(buffer: np.ndarray, channels: int) -> np.ndarray:
    """Normalise a buffer to an immutable, finite, bounded float32 sound ``[layers, frames, channels]``.

    Accepts ``[frames]`` (mono), ``[frames, c]`` or ``[layers, frames, c]`` with ``c`` 1 (copied to every channel)
    or ``channels``. NaN becomes 0, values are clipped to +-:data:`MAX_SOUND_LEVEL`.
    """
    x = np.asarray(buffer, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[2] not in (1, channels) or x.shape[1] == 0:
        raise ValueError(f"a pad buffer must be [frames], [frames, c] or [layers, frames, c] with c 1 or "
                         f"{channels}, got shape {np.shape(buffer)}")
    x = np.nan_to_num(x, nan=0.0, posinf=MAX_SOUND_LEVEL, neginf=-MAX_SOUND_LEVEL)
    np.clip(x, -MAX_SOUND_LEVEL, MAX_SOUND_LEVEL, out=x)
    x = np.ascontiguousarray(np.broadcast_to(x, (x.shape[0], x.shape[1], channels)))
    x.setflags(write=False)
    return x


class Engine:
    """Polyphonic one-shot player.

    Parameters
    ----------
    sample_rate : int
        Output rate (buffers must already be at this rate; the worker resamples).
    blocksize : int
        Largest block :meth:`process` is called with (scratch arrays are preallocated to it).
    channels : int
        Output channels (1 or 2).
    max_voices : int
        Voices sounding at once; stolen voices fade out in extra tail slots.
    fade_ms : float
        Fade when a voice is stolen or choked.
    velocity_curve : float
        Exponent of the velocity -> gain curve.
    output_gain : float
        Linear master gain before the limiter.
    limiter_threshold : float
        Level below which the limiter is exactly transparent, and the peak it rides a loud mix down to
        (0 < threshold < 1).
    attack_ms, release_ms : float
        Time constants of the limiter's gain when it falls and when it recovers.
    """

    def __init__(self, sample_rate: int, blocksize: int, *, channels: int = 2, max_voices: int = 16,
                 fade_ms: float = 5.0, velocity_curve: float = 1.0, output_gain: float = 1.0,
                 limiter_threshold: float = 0.8, attack_ms: float = 0.5, release_ms: float = 80.0) -> None:
        if max_voices < 1 or blocksize < 1 or channels < 1 or not 0.0 < limiter_threshold < 1.0:
            raise ValueError("max_voices, blocksize and channels must be >= 1 and limiter_threshold in (0, 1)")
        self.sample_rate = int(sample_rate)
        self.blocksize = int(blocksize)
        self.channels = int(channels)
        self.max_voices = int(max_voices)
        self.velocity_curve = float(velocity_curve)
        self.output_gain = float(output_gain)
        self.threshold = float(limiter_threshold)
        self._ramp = fade_ramp(max(1, int(round(fade_ms * 1e-3 * sample_rate))))
        self._events: collections.deque = collections.deque()
        self._sounds: dict[int, np.ndarray] = {}
        self._pads: dict[int, PadSettings] = {}
        slots = 2 * self.max_voices
        self._buf: list[np.ndarray | None] = [None] * slots
        self._pos = [0] * slots       # next source frame
        self._start = [0] * slots     # offset in the current block where the voice starts (0 after its first)
        self._gain = [0.0] * slots
        self._age = [0] * slots       # note-on counter, to find the oldest voice
        self._fade = [-1] * slots     # frames of fade done; -1 = not fading
        self._fade_at = [0] * slots   # offset in the current block where a new fade begins
        self._choke: list[int | None] = [None] * slots
        self._counter = 0
        shape = (self.blocksize, self.channels)
        self._seg, self._abs, self._tmp = (np.zeros(shape, np.float32) for _ in range(3))
        n = np.arange(1, self.blocksize + 1, dtype=np.float64)[:, None]
        # [blocksize, channels] like the block: an in-place multiply that broadcasts would allocate a temporary
        self._attack, self._release = (
            np.repeat(1.0 - np.exp(-n / max(ms * 1e-3 * self.sample_rate, 1e-9)), self.channels, axis=1)
            .astype(np.float32) for ms in (attack_ms, release_ms))
        self._gain_curve = np.ones(shape, np.float32)
        self.limiter_gain = 1.0  # the limiter's gain at the end of the last block (1: not limiting)
        self.dropped = 0  # note-ons for pads without a buffer yet

    # ---------------------------------------------------------------- any thread (non-blocking, allocation allowed)

    def note_on(self, note: int, velocity: int, offset: int = 0) -> None:
        """Queue a hit; it starts ``offset`` frames into the next block :meth:`process` fills."""
        self._events.append((_NOTE_ON, int(note), int(velocity), int(offset)))

    def silence(self, offset: int = 0) -> None:
        """Queue a panic: every voice fades out (``fade_ms``) from ``offset`` in the next block."""
        self._events.append((_SILENCE, 0, 0, int(offset)))

    def set_pad_buffer(self, note: int, buffer: np.ndarray) -> None:
        """Swap in the sound of a pad (see :func:`as_sound` for shapes); playing voices keep their old one."""
        sounds = dict(self._sounds)
        sounds[int(note)] = as_sound(buffer, self.channels)
        self._sounds = sounds

    def remove_pad(self, note: int) -> None:
        """Forget a pad's sound (later hits on it are ignored)."""
        self._sounds = {k: v for k, v in self._sounds.items() if k != note}

    def set_pads(self, pads: dict[int, PadSettings]) -> None:
        """Replace every pad's gain and choke group at once."""
        self._pads = dict(pads)

    def configure(self, *, output_gain: float | None = None, velocity_curve: float | None = None,
                  fade_ms: float | None = None) -> None:
        """Change the master gain, velocity curve or fade time (a preset switch); each is one atomic assignment."""
        if output_gain is not None:
            self.output_gain = float(output_gain)
        if velocity_curve is not None:
            self.velocity_curve = float(velocity_curve)
        if fade_ms is not None:
            self._ramp = fade_ramp(max(1, int(round(fade_ms * 1e-3 * self.sample_rate))))

    @property
    def notes(self) -> list[int]:
        """Notes that currently have a sound."""
        return sorted(self._sounds)

    def pad_buffer(self, note: int) -> np.ndarray | None:
        """The current sound of a pad ``[layers, frames, channels]`` (read-only), or None."""
        return self._sounds.get(note)

    @property
    def active_voices(self) -> int:
        """Voices still producing sound (sounding or fading)."""
        return sum(b is not None for b in self._buf)

    @property
    def pending_events(self) -> int:
        return len(self._events)

    # --------------------------------------------------------------------------------------------- audio thread

    def process(self, out: np.ndarray) -> None:
        """Fill ``out`` ``[frames, channels]`` (float32, ``frames <= blocksize``) with the next block, in place."""
        frames = out.shape[0]
        if frames > self.blocksize:
            raise ValueError(f"block of {frames} frames is larger than the engine's blocksize {self.blocksize}")
        self._drain(frames)
        out.fill(0.0)
        for v in range(len(self._buf)):
            if self._buf[v] is not None:
                self._render_voice(v, out, frames)
        self._finish(out, frames)

    def _drain(self, frames: int) -> None:
        events = self._events
        while events:
            kind, note, velocity, offset = events.popleft()
            offset = min(max(offset, 0), frames - 1)
            if kind == _NOTE_ON:
                self._start_voice(note, velocity, offset)
            else:
                for v in range(len(self._buf)):
                    if self._buf[v] is not None:
                        self._begin_fade(v, offset)

    def _start_voice(self, note: int, velocity: int, offset: int) -> None:
        sound = self._sounds.get(note)
        if sound is None or velocity <= 0:
            self.dropped += sound is None
            return
        pad = self._pads.get(note, _DEFAULT_PAD)
        if pad.choke is not None:
            for v in range(len(self._buf)):
                if self._buf[v] is not None and self._choke[v] == pad.choke:
                    self._begin_fade(v, offset)
        v = self._free_slot(offset)
        layers = sound.shape[0]
        self._buf[v] = sound[min(layers - 1, velocity * layers // 128)]
        self._pos[v], self._start[v], self._fade[v], self._fade_at[v] = 0, offset, -1, 0
        self._gain[v] = pad.gain * velocity_gain(velocity, self.velocity_curve)
        self._choke[v] = pad.choke
        self._counter += 1
        self._age[v] = self._counter

    def _free_slot(self, offset: int) -> int:
        sounding = [v for v in range(len(self._buf)) if self._buf[v] is not None and self._fade[v] < 0]
        if len(sounding) >= self.max_voices:
            self._begin_fade(min(sounding, key=self._age.__getitem__), offset)
        for v in range(len(self._buf)):
            if self._buf[v] is None:
                return v
        # every tail slot is busy: reuse the fade closest to its end (nearly silent already)
        return max(range(len(self._buf)), key=self._fade.__getitem__)

    def _begin_fade(self, v: int, offset: int) -> None:
        if self._fade[v] < 0:
            self._fade[v] = 0
            self._fade_at[v] = offset

    def _render_voice(self, v: int, out: np.ndarray, frames: int) -> None:
        buf, pos, start, gain = self._buf[v], self._pos[v], self._start[v], self._gain[v]
        n = min(frames - start, buf.shape[0] - pos)
        ended = pos + n >= buf.shape[0]
        if self._fade[v] >= 0:
            plain = min(n, max(0, self._fade_at[v] - start))
            self._add(out, start, buf, pos, plain, gain, None)
            done = self._fade[v]
            m = min(n - plain, self._ramp.shape[0] - done)
            self._add(out, start + plain, buf, pos + plain, m, gain, self._ramp[done:done + m])
            self._fade[v] = done + m
            ended = ended or done + m >= self._ramp.shape[0]
        else:
            self._add(out, start, buf, pos, n, gain, None)
        self._pos[v], self._start[v], self._fade_at[v] = pos + n, 0, 0
        if ended:
            self._buf[v] = None

    def _add(self, out: np.ndarray, dst: int, buf: np.ndarray, src: int, n: int, gain: float,
             ramp: np.ndarray | None) -> None:
        if n <= 0:
            return
        seg = self._seg[:n]
        np.multiply(buf[src:src + n], gain, out=seg)
        if ramp is not None:
            seg *= ramp
        out[dst:dst + n] += seg

    def _finish(self, out: np.ndarray, frames: int) -> None:
        if self.output_gain != 1.0:
            out *= self.output_gain
        if not math.isfinite(float(np.add.reduce(out, axis=None))):
            np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)  # never expected; see as_sound
        self._limit(out, frames)

    def _limit(self, out: np.ndarray, frames: int) -> None:
        """Gain-riding limiter, then the soft knee, in place (see the module docstring)."""
        t, mag = self.threshold, self._abs[:frames]
        np.abs(out, out=mag)
        peak = float(mag.max())
        need = t / peak if peak > t else 1.0
        start = self.limiter_gain
        if need != 1.0 or start != 1.0:
            curve = self._attack if need < start else self._release
            gain = self._gain_curve[:frames]
            np.multiply(curve[:frames], need - start, out=gain)
            gain += start
            out *= gain
            end = float(gain[frames - 1, 0])
            self.limiter_gain = 1.0 if end > 0.9999 else end  # released: bit-exact again
            np.abs(out, out=mag)
        self._knee(out, mag, frames)

    def _knee(self, out: np.ndarray, mag: np.ndarray, frames: int) -> None:
        """Memoryless soft knee in place on ``out`` with ``mag = |out|``: identity below the threshold, tanh above,
        never beyond +-1."""
        t = self.threshold
        excess = self._tmp[:frames]
        np.subtract(mag, t, out=excess)
        np.maximum(excess, 0.0, out=excess)
        excess *= 1.0 / (1.0 - t)
        np.tanh(excess, out=excess)
        excess *= 1.0 - t
        np.minimum(mag, t, out=mag)
        mag += excess
        np.copysign(mag, out, out=out)
        np.clip(out, -1.0, 1.0, out=out)
