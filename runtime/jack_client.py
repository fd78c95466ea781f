"""Live play on a JACK server as ONE JACK client (the ``JACK-Client`` package): a MIDI input and the audio outputs.

Where a JACK server runs (jackd, or PipeWire's JACK layer), :func:`runtime.output_plan.plan_output` opens the
client ``NAME``; :class:`JackOutput` registers the ports ``NAME:midi_in`` and ``NAME:out_0`` (``NAME:out_1``). Its
process callback (:meth:`JackOutput._process`) does, once per JACK cycle, what
:mod:`runtime.portaudio_output`'s sounddevice callback does and the MIDI reading that :mod:`runtime.midi` leaves to
RtMidi:

1. read the MIDI events of THIS cycle; each one's bytes go into a preallocated, lock-free hand-off
   (:class:`runtime.jack_midi.MidiRing`) for the control path, and a well-formed note-on on an accepted channel
   starts its voice at its own frame offset in this cycle (:meth:`runtime.engine.Engine.note_on`);
2. fill the block (:meth:`runtime.engine.Engine.process`) and copy it to the output ports;
3. keep the counters the player reports (blocks, peak, longest callback, wait from the cycle's start).

It never logs, blocks or waits on a lock, and allocates no numpy data: the arrays it writes are preallocated, or views
of JACK's port buffers (as python-sounddevice's ``outdata`` is of PortAudio's). So a note at
frame ``f`` of a cycle sounds from frame ``f`` of the same cycle: note -> onset is constant to the sample and the
client adds no latency of its own (:data:`ADDED_LATENCY` = 0 frames). It says so to the JACK graph through JACK's
latency API, which JACK-Client 0.5.7 does not wrap (:class:`runtime.jack_session.LatencyApi` binds the calls with
cffi): the client's latency callback sets, per JACK's recipe, the capture latency
of each output to the MIDI input's plus :data:`ADDED_LATENCY`, and the playback latency of the MIDI input to the
outputs' plus the same; hosts that compensate latency (Ardour) read these, and so does ``jack_lsp -l``.

Server xruns reach the client's xrun callback (counted as the player's ``underflows``, with their times), the
server going away reaches its shutdown callback (:attr:`JackOutput.lost`: the player ends with one line). On a
server without realtime scheduling the process thread asks for ``SCHED_FIFO`` on its first cycle
(:func:`runtime.scheduling.realtime_thread`), and the GIL switch interval is shortened as for PortAudio
(:data:`runtime.output.SWITCH_INTERVAL_S`).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable

import numpy as np

from runtime.jack_midi import MidiRing
from runtime.jack_session import CAPTURE, PLAYBACK, LatencyApi, route
from runtime.output import JACK_STOPPED, SWITCH_INTERVAL_S, OutputMeter
from runtime.scheduling import REALTIME_PRIORITY, realtime_thread

ADDED_LATENCY = 0  # frames between a MIDI event and its sound beyond the event's own frame: none (same cycle)
CLOSE_TIMEOUT_S = 3.0  # closing a client whose server died must not hang the exit


# ------------------------------------------------------------------------------------------------- the client

class JackOutput(OutputMeter):
    """The player as one JACK client: MIDI input, audio outputs, process callback (see the module docstring).

    Parameters
    ----------
    client : jack.Client
        Opened by :func:`open_client`, not active yet; :meth:`start` activates it, :meth:`close` closes it.
    engine : Engine
        Filled once per cycle; its ``blocksize`` must be at least the server's period.
    connect : bool
        Connect the outputs to the system playback ports; otherwise leave them unconnected.
    rt_priority : int
        ``SCHED_FIFO`` priority the process thread asks for on its first cycle when it is not realtime already.
    """

    is_jack = True

    def __init__(self, client, engine, *, connect: bool = False, rt_priority: int = REALTIME_PRIORITY) -> None:
        super().__init__(engine, samplerate=client.samplerate, blocksize=client.blocksize)
        self.client = client
        self._client = client  # for the callbacks: :meth:`close` clears :attr:`client` while they may still run
        self.client_name = client.name
        self.connect = connect
        self._rt_priority = int(rt_priority)
        self._midi = client.midi_inports.register("midi_in")
        self._outs = [client.outports.register(f"out_{c}") for c in range(engine.channels)]
        self.ports = [p.name for p in self._outs]
        self.midi_port = self._midi.name
        self.midi_source: str | None = None  # an output port to connect to the MIDI input at start
        self.ring = MidiRing()
        #: MIDI channel (0-15) a note must be on to play, or None; and the player's check of the preset's channel
        self.channel: int | None = None
        self.accepts: Callable[[int], bool] = lambda channel: True
        self._mix = np.zeros((engine.blocksize, engine.channels), np.float32)
        self._lost = False
        self._old_switch = None
        self.latency_frames = ADDED_LATENCY
        self._latency = LatencyApi.get()
        self._latency_handle = self._latency.set_callback(client, self._on_latency)
        client.set_process_callback(self._process)
        client.set_xrun_callback(self._on_xrun)
        client.set_shutdown_callback(self._on_shutdown)

    # ------------------------------------------------------------------------------------------ JACK threads

    def _process(self, frames: int) -> None:
        t = time.monotonic()
        if not self.thread_policy:  # the first cycle: one system call, then never again
            self.thread_policy = realtime_thread(self._rt_priority)
        wait = self._client.frames_since_cycle_start / self.samplerate
        self.block_time = t
        self.block_frames = frames
        mix = self._mix[:frames]
        try:
            self._read_midi(t)
            self.engine.process(mix)
        except Exception:  # never expected: play silence rather than stop the client
            mix.fill(0.0)
            self.callback_errors += 1
        for c, port in enumerate(self._outs):
            port.get_array()[:] = mix[:, c]
        self.count_block(mix, t, wait)

    def _read_midi(self, t: float) -> None:
        """Hand this cycle's MIDI events to the control path; start each accepted note-on at its own frame."""
        ring, rate = self.ring, self.samplerate
        for offset, data in self._midi.incoming_midi_events():
            note = ring.put(data, t + offset / rate)
            if note >= 0:
                channel = note >> 16
                if (self.channel is None or channel == self.channel) and self.accepts(channel):
                    self.engine.note_on((note >> 8) & 0x7F, note & 0x7F, offset)

    def _on_xrun(self, _delay_usecs: float) -> None:
        self.count_underflow(time.monotonic())

    def _on_shutdown(self, _status, _reason: str) -> None:
        self._lost = True

    def _on_latency(self, mode: int) -> None:
        """JACK's latency callback: propagate the latency around this client, adding :attr:`latency_frames`."""
        lat, extra = self._latency, self.latency_frames
        if mode == CAPTURE:
            low, high = lat.range(self._midi, CAPTURE)
            for port in self._outs:
                lat.set_range(port, CAPTURE, low + extra, high + extra)
        else:
            spans = [lat.range(port, PLAYBACK) for port in self._outs]
            lat.set_range(self._midi, PLAYBACK, min(s[0] for s in spans) + extra, max(s[1] for s in spans) + extra)

    # ----------------------------------------------------------------------------------------- control side

    @property
    def ended(self) -> bool:
        """Whether the server stopped or dropped this client (its shutdown callback came)."""
        return self._lost

    @property
    def lost(self) -> bool:
        return self._lost

    def end_message(self) -> str:
        """One line for a musician: why the audio stopped and what to do."""
        return JACK_STOPPED

    def playback_latency(self) -> tuple[int, int]:
        """``(min, max)`` frames from our outputs to the speakers (or to whatever they feed), as JACK reports it."""
        spans = [self._latency.range(port, PLAYBACK) for port in self._outs]
        return min(s[0] for s in spans), max(s[1] for s in spans)

    def start(self) -> None:
        """Activate the client (shortening the GIL switch interval first) and make the connections asked for."""
        self._old_switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.client.activate()
        route(self.client, self.ports, connect=self.connect)
        if self.midi_source is not None:
            self.client.connect(self.midi_source, self.midi_port)
        self.latency_s = (self.playback_latency()[1] + self.latency_frames) / self.samplerate

    def close(self) -> None:
        """Deactivate and close the client (idempotent, at most :data:`CLOSE_TIMEOUT_S` when the server is gone);
        restores the GIL switch interval."""
        client, self.client = self.client, None
        if client is not None:
            closer = threading.Thread(target=_close_client, args=(client, not self._lost), daemon=True,
                                      name="kickspace-jack-close")
            closer.start()
            closer.join(CLOSE_TIMEOUT_S)
        if self._old_switch is not None:
            sys.setswitchinterval(self._old_switch)
            self._old_switch = None


def _close_client(client, deactivate: bool) -> None:
    try:
        if deactivate:
            client.deactivate(ignore_errors=True)
        client.close(ignore_errors=True)
    except Exception:  # noqa: BLE001 - a dead server: nothing left to release
        pass
