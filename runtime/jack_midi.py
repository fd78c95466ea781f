"""MIDI of the player's own JACK client (:mod:`runtime.jack_client`): the hand-off from its process callback to the
control path, and the thread that decodes what it hands over.

:class:`MidiRing` is preallocated once: ``slots`` fixed-size byte slots in one ``bytearray``, each event's length
and time in lists, a write and a read counter. Only the process callback writes (:meth:`MidiRing.put`: one slice
copy of the event's bytes into its slot, then the counter moves), only the MIDI thread reads
(:meth:`MidiRing.take`); under the GIL each of those steps is atomic and neither side ever waits for the other.
When the ring is full the event is still looked at (a note-on still plays) but not handed over: counted as
:attr:`MidiRing.overflows` and reported as a dropped message of its own kind. An event longer than a slot keeps its
first ``size - 1`` bytes and its last one (a sysex keeps its ``F7``).

:class:`JackMidiInput` is a :class:`runtime.midi.MidiThread` like :class:`runtime.midi.MidiInput`: its thread
drains the ring every :data:`runtime.midi.POLL_S` (:func:`runtime.midi.pump`), decodes each event with the same
defensive decoder (:class:`runtime.midi.MidiDecoder`: malformed bytes dropped and counted by kind) and puts
``(message, time)`` on the player's queue. JACK MIDI events are whole messages, so no sysex needs assembling and no
guard client is needed (RtMidi's input needed one: :class:`runtime.midi.SysexGuard`). Clock and active sensing are
ignored in the callback (as :mod:`runtime.midi` tells RtMidi to). Note-ons were already started by the process callback
(:attr:`JackMidiInput.started_notes`): the control thread only counts and shows them.
"""

from __future__ import annotations

import queue

from runtime.midi import POLL_S, MidiDecoder, MidiThread, check_channel, match_port

SLOTS, SLOT_BYTES = 1024, 256
IGNORED = (0xF8, 0xFE)  # clock and active sensing: RtMidi ignored them (ignore_types), so does the callback
OVERFLOW = "hand-off from the JACK callback full"


class MidiRing:
    """A single-writer, single-reader ring of MIDI events, allocated once (see the module docstring).

    Parameters
    ----------
    slots : int
        Events it holds at most between two reads.
    size : int
        Bytes kept per event.
    """

    def __init__(self, slots: int = SLOTS, size: int = SLOT_BYTES) -> None:
        self.slots, self.size = int(slots), int(size)
        self._bytes = bytearray((self.slots + 1) * self.size)  # the last slot: scratch for an event that does not fit
        self._length = [0] * self.slots
        self._time = [0.0] * self.slots
        self.written = 0
        self.read = 0
        self.overflows = 0

    def put(self, data, when: float) -> int:
        """Hand one event over (process callback). ``data``: its bytes (any buffer), ``when``: its time
        (``time.monotonic()`` seconds). Returns ``channel << 16 | note << 8 | velocity`` when it is a well-formed
        note-on with a velocity above 0, else -1."""
        n = len(data)
        full = self.written - self.read >= self.slots
        slot = self.slots if full else self.written % self.slots
        base, size, buf = slot * self.size, self.size, self._bytes
        if n <= size:
            buf[base:base + n] = data
        else:
            buf[base:base + size - 1] = data[:size - 1]
            buf[base + size - 1:base + size] = data[n - 1:n]
        status = buf[base] if n else 0
        if n == 1 and status in IGNORED:
            return -1
        if full:
            self.overflows += 1
        else:
            self._length[slot] = n
            self._time[slot] = when
            self.written += 1  # published: the reader takes the slot from now on
        if n == 3 and status & 0xF0 == 0x90 and buf[base + 1] < 0x80 and 0 < buf[base + 2] < 0x80:
            return (status & 0x0F) << 16 | buf[base + 1] << 8 | buf[base + 2]
        return -1

    def take(self) -> tuple[list[int], float] | None:
        """The oldest event not read yet as ``(bytes, time)`` (MIDI thread), or None."""
        if self.read >= self.written:
            return None
        slot = self.read % self.slots
        n, base = min(self._length[slot], self.size), slot * self.size
        item = list(self._bytes[base:base + n]), self._time[slot]
        self.read += 1
        return item


class JackMidiInput(MidiThread):
    """The MIDI input of the player's JACK client: a thread decoding what its process callback hands over.

    Parameters
    ----------
    audio : runtime.jack_client.JackOutput
        The client (not active yet); its :attr:`~runtime.jack_client.JackOutput.ring` is drained.
    events : queue.SimpleQueue
        Receives ``(message, seconds)`` with ``seconds`` on the ``time.monotonic()`` clock (the event's own frame).
    port : str, optional
        Substring (or number) of a JACK MIDI output port to connect to the input when the client starts.
    channel : int, optional
        Keep only channel messages on this MIDI channel (1-16); None keeps all. The callback plays only notes on it.
    poll_s : float
        Seconds between two drains of the ring.
    """

    api = "jack"
    started_notes = True  # note-ons sound from the process callback; the control thread only counts them

    def __init__(self, audio, events: queue.SimpleQueue, *, port: str | None = None, channel: int | None = None,
                 poll_s: float = POLL_S) -> None:
        check_channel(channel)
        super().__init__(events, MidiDecoder(channel=channel, absolute=True), poll_s)
        audio.channel = self.decoder.channel
        self.port_label = f"{audio.midi_port} (JACK)"
        if port is not None:
            ports = [p.name for p in audio.client.get_ports(is_midi=True, is_output=True)]
            audio.midi_source = ports[match_port(ports, port)]
            self.port_label = f"{audio.midi_source} -> {audio.midi_port} (JACK)"
        self._start_thread(_RingSource(audio.ring, self.decoder))

    def close(self) -> None:
        """Stop the thread (idempotent); the port closes with the client."""
        self._stop_thread()


class _RingSource:
    """A :class:`MidiRing` read like python-rtmidi's queue (``get_message()``) by :func:`runtime.midi.pump`; the
    events the ring could not take are counted as dropped, of their own kind, as they are found."""

    def __init__(self, ring: MidiRing, decoder: MidiDecoder) -> None:
        self.ring, self.decoder = ring, decoder
        self._overflows = 0

    def get_message(self) -> tuple[list[int], float] | None:
        while self._overflows < self.ring.overflows:
            self._overflows += 1
            self.decoder.drop(OVERFLOW)
        return self.ring.take()


def open_midi_input(audio, events: queue.SimpleQueue, *, port: str | None, api: str, client_name: str,
                    channel: int | None):
    """The player's MIDI input: the JACK client's own port (:class:`JackMidiInput`) when the audio is
    :class:`runtime.jack_client.JackOutput` and ``api`` is ``auto`` or ``jack``; else a python-rtmidi
    :class:`runtime.midi.MidiInput` (client ``CLIENT-midi``, port ``in``)."""
    if getattr(audio, "ring", None) is not None and api in ("auto", "jack"):
        return JackMidiInput(audio, events, port=port, channel=channel)
    from runtime.midi import MidiInput

    return MidiInput(events, port=port, api=api, client_name=f"{client_name}-midi", port_name="in", channel=channel,
                     prefer_jack=audio.is_jack)
