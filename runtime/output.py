"""What both live audio outputs share: the counters the player reads, the GIL switch interval, the no-audio switch.

Live play sounds through one of two outputs, chosen by :func:`runtime.output_plan.plan_output`: the player's own
JACK client (:class:`runtime.jack_client.JackOutput`) or a PortAudio stream
(:class:`runtime.portaudio_output.AudioOutput`). Both derive from :class:`OutputMeter`, whose counters their audio
callback writes and the player reads (status view, ``--stats-json``), and this module imports neither of them.

The callbacks are Python and need the GIL: each output's ``start`` shortens CPython's switch interval (5 ms by
default, longer than a 128-frame period) to :data:`SWITCH_INTERVAL_S`, so another Python thread holds the GIL for at
most that long before the callback gets it (DESIGN.md, "Realtime audio": 1,577 underflows of ~3,000 blocks beside
one busy thread with the default, 3 with 0.2 ms).

``KICKSPACE_AUDIO`` (:data:`AUDIO_ENV`) ``=none``: PortAudio finds no output device and no JACK server is seen;
``=no-portaudio``: as if libportaudio were not installed, JACK hidden too. It simulates a machine without any audio
(tests of the no-device path, and a way to try ``runtime play --fallback-render`` on a machine with sound).
"""

from __future__ import annotations

import time

import numpy as np

SWITCH_INTERVAL_S = 0.0002
WAIT_BINS = 100  # callback wait histogram: 0.1 ms bins up to 10 ms
UNDERFLOW_LOG = 256  # the times of the first this-many underflows are kept (when in the run they came)
AUDIO_ENV = "KICKSPACE_AUDIO"
JACK_STOPPED = "the JACK server stopped (audio stream ended); restart jackd and run again"


class OutputMeter:
    """What every audio output keeps for the player (status view, ``--stats-json``), written by its audio callback
    only (plain attribute stores: atomic under the GIL; preallocated scratch, no numpy allocation).

    Parameters
    ----------
    engine : Engine
        What the callback plays.
    samplerate, blocksize : int
        The output's rate and frames per callback (0: the device's own period).
    """

    is_jack = False

    def __init__(self, engine, *, samplerate: int, blocksize: int) -> None:
        self.engine = engine
        self.samplerate = int(samplerate)
        self.blocksize = int(blocksize)
        self.channels = engine.channels
        self.ports: list[str] = []
        self.block_time = 0.0
        self.block_frames = max(1, self.blocksize)
        self.blocks = 0
        self.underflows = 0
        self.callback_errors = 0
        self.peak = 0.0
        self.max_callback_s = 0.0
        # blocks by the wait from the start of the cycle (PortAudio: its C callback) to this Python callback (the
        # GIL, cffi), in 0.1 ms bins (the last: 10 ms and more). On PortAudio's JACK stream clock a wait across a
        # server xrun reads high.
        self.wait_histogram = [0] * WAIT_BINS
        #: ``time.monotonic()`` at the callback of each of the first :data:`UNDERFLOW_LOG` underflows
        self.underflow_times = [0.0] * UNDERFLOW_LOG
        #: the callback thread's scheduling, set on the first block ("" until then)
        self.thread_policy = ""
        self.latency_s = 0.0
        self._mag = np.zeros((engine.blocksize, engine.channels), np.float32)

    def count_underflow(self, t: float) -> None:
        """One underflow (an xrun) at ``t`` (``time.monotonic()``)."""
        if self.underflows < UNDERFLOW_LOG:
            self.underflow_times[self.underflows] = t
        self.underflows += 1

    def count_block(self, out: np.ndarray, t: float, wait: float) -> None:
        """One block ``out`` ``[frames, channels]`` played, its callback begun at ``t`` after ``wait`` seconds."""
        mag = self._mag[:out.shape[0]]
        np.abs(out, out=mag)
        peak = float(mag.max())
        if peak > self.peak:
            self.peak = peak
        self.blocks += 1
        spent = time.monotonic() - t
        if spent > self.max_callback_s:
            self.max_callback_s = spent
        self.wait_histogram[min(int(wait * 1e4), WAIT_BINS - 1) if wait > 0 else 0] += 1

    def offset_for(self, event_time: float) -> int:
        """Sample offset in the next block for an event at ``event_time`` (``time.monotonic()`` seconds).

        The next block plays one period after the current one began; placing the event at its distance from the
        current block's start keeps note-on to onset latency constant (one period) instead of jittering with the
        moment the event reached Python. An event older than the current block starts at offset 0 (as soon as
        possible); the engine clamps offsets past the block's end.
        """
        start = self.block_time
        if not start or event_time <= start:
            return 0
        return min(int((event_time - start) * self.samplerate), self.block_frames - 1)

    def take_peak(self) -> float:
        """The output peak since the last call (for a meter), then reset."""
        peak, self.peak = self.peak, 0.0
        return peak
