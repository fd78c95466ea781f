"""MIDI input for live play (python-rtmidi): open a port, decode, timestamp, push to a queue. Nothing else.

:class:`MidiInput` opens either a virtual input port (the default: other programs connect to it) or an existing
output port picked by a case-insensitive name substring or its number, on the JACK or ALSA MIDI API.

No Python runs on the MIDI API's thread. With a callback, python-rtmidi calls it on JACK's process thread, where
it needs the GIL: a render worker or control thread holding the GIL then makes the MIDI client, and so the whole
JACK cycle, late (measured under a knob sweep on JACK dummy: the server blamed the player's MIDI client for 4-18
xruns in 20 s). Without one, RtMidi keeps incoming events in its own lock-free ring buffer
(:data:`QUEUE_SIZE` events), and :class:`MidiInput`'s thread drains it every :data:`POLL_S`: decode the bytes with
mido, drop other channels when a channel filter is set, estimate the event's time and ``put_nowait``
``(message, time)`` on a :class:`queue.SimpleQueue`. The control thread does everything else. A note reaches the
engine within about one poll interval, well inside the one-period budget (128 frames at 48 kHz = 2.7 ms).

Timestamps: python-rtmidi gives each event the time since the previous one (measured by the MIDI API when the
event came in, e.g. in JACK's process cycle), not an absolute time. The thread sums those deltas and anchors the sum
to ``time.monotonic()`` with a running minimum of ``seen - sum``: the anchor is the earliest sighting, so event
times are free of the polling delay and never later than the actual arrival. The control thread turns them into a
sample offset in the next audio block (see :meth:`runtime.output.OutputMeter.offset_for`).

Hostile input: a live instrument never stops listening. Every event is checked against the MIDI message grammar
(:func:`malformed`) before mido sees it, and anything else that goes wrong decoding it is caught too: a bad event
is dropped and counted by kind (:attr:`MidiDecoder.dropped_kinds`), the next one decodes. The drain loop
(:func:`drain`) catches whatever a single pass raises, so the MIDI thread cannot die of an event; if it ends anyway,
:attr:`MidiInput.failure` says why and the player stops with that line. System realtime bytes (clock, start,
continue, stop, active sensing, reset) are ignored: RtMidi filters clock and active sensing (and MTC quarter
frames) itself, the others reach the control thread, which does nothing with them.

RtMidi's JACK input treats an event that starts a sysex (``F0``) without ending it (``F7``) as the first part of
a longer one: it then swallows every later event whose last byte is not ``F7``, before any Python sees it
(measured: every note after ``F0 7E 01`` was lost until an event ending in ``F7`` came). On JACK,
:class:`SysexGuard` therefore sends the player's own input a probe ending in ``F7`` every :data:`GUARD_S`, from a
MIDI output of its own (JACK client ``<client>-midi-guard``): it ends such a sysex (the port stays deaf for at
most that long) and otherwise comes back, recognised and not counted. One that does not come back ended a sysex
like that, or was lost with a cycle JACK dropped (an xrun; seen 3 times in 1.6 s of clean MIDI on a loaded
machine): it is counted apart (:attr:`SysexGuard.unreturned`), never as a malformed message.
"""

from __future__ import annotations

import collections
import math
import queue
import threading
import time
from typing import Callable, Sequence

import mido

from runtime.errors import KickspaceError
from runtime.scheduling import thread_failure

APIS = ("auto", "jack", "alsa")
DEFAULT_CLIENT = "kickspace"
POLL_S = 0.001  # how often the MIDI thread drains RtMidi's queue
QUEUE_SIZE = 4096  # RtMidi's ring buffer (events): 4 s of a dense 1,000 events/s stream
GUARD_S = 0.01  # how often SysexGuard sends a probe (the longest an unterminated sysex keeps the JACK port deaf)
GUARD_OUT = 64  # probes SysexGuard remembers as not back yet
GUARD_STATUS = 0xF4  # the probe's status byte: undefined in MIDI, so no gear's message is taken for a probe
SYSEX_END = 0xF7

# status byte -> (name, message length in bytes) for every message but sysex; the channel ones by their high nibble
CHANNEL_MESSAGES = {0x80: ("note off", 3), 0x90: ("note on", 3), 0xA0: ("poly aftertouch", 3),
                    0xB0: ("control change", 3), 0xC0: ("program change", 2), 0xD0: ("channel aftertouch", 2),
                    0xE0: ("pitch bend", 3)}
SYSTEM_MESSAGES = {0xF1: ("MTC quarter frame", 2), 0xF2: ("song position", 3), 0xF3: ("song select", 2),
                   0xF6: ("tune request", 1), 0xF8: ("clock", 1), 0xFA: ("start", 1), 0xFB: ("continue", 1),
                   0xFC: ("stop", 1), 0xFE: ("active sensing", 1), 0xFF: ("reset", 1)}
UNDEFINED_STATUS = (0xF4, 0xF5, 0xF9, 0xFD)


def _rtmidi():
    import rtmidi

    return rtmidi


def api_id(name: str) -> int:
    """The rtmidi API constant for ``jack``/``alsa``."""
    rtmidi = _rtmidi()
    return {"jack": rtmidi.API_UNIX_JACK, "alsa": rtmidi.API_LINUX_ALSA}[name]


def match_port(ports: list[str], wanted: str) -> int:
    """Index of the port ``wanted`` names: its number, or a case-insensitive substring (an exact name wins)."""
    if wanted.isdigit() and int(wanted) < len(ports):
        return int(wanted)
    exact = [i for i, p in enumerate(ports) if p.lower() == wanted.lower()]
    hits = exact or [i for i, p in enumerate(ports) if wanted.lower() in p.lower()]
    if not hits:
        listing = "\n".join(f"  {i}: {p}" for i, p in enumerate(ports)) or "  (none)"
        raise KickspaceError(f"MIDI port {wanted!r} not found. Ports you can connect to:\n{listing}\n"
                             f"(leave out --midi-port to open a virtual input port other programs connect to; "
                             f"`runtime list` shows every port)")
    return hits[0]


def malformed(data: Sequence[int]) -> str | None:
    """Why ``data`` (one MIDI event's bytes) is not exactly one well-formed MIDI message, or None when it is.

    The reason names the kind, not the bytes (it is the key of :attr:`MidiDecoder.dropped_kinds`): empty, bytes
    outside 0-255, data bytes without a status byte, an undefined status byte (F4, F5, F9, FD), a lone sysex end
    (F7), a sysex without its end, a message with too few or too many data bytes for its status, a data byte over
    0x7F. Running status and realtime bytes inside another message are not accepted: a JACK or ALSA event carries
    one complete message.
    """
    if len(data) == 0:
        return "empty message"
    if any(not isinstance(b, int) or isinstance(b, bool) or not 0 <= b <= 0xFF for b in data):
        return "not a list of bytes 0-255"
    status = data[0]
    if status < 0x80:
        return "data bytes without a status byte"
    if status in UNDEFINED_STATUS:
        return f"undefined status byte {status:02X}"
    if status == SYSEX_END:
        return "sysex end (F7) without its start"
    if status == 0xF0:
        if len(data) < 2 or data[-1] != SYSEX_END:
            return "sysex without its end (F7)"
        name, body = "sysex", data[1:-1]
    else:
        name, length = CHANNEL_MESSAGES[status & 0xF0] if status < 0xF0 else SYSTEM_MESSAGES[status]
        if len(data) != length:
            return f"{name} ({status & 0xF0 if status < 0xF0 else status:02X}) with {len(data) - 1} data " \
                   f"byte{'' if len(data) == 2 else 's'}, needs {length - 1}"
        body = data[1:]
    if any(b > 0x7F for b in body):
        return f"{name} with a data byte over 7F"
    return None


class MidiDecoder:
    """python-rtmidi events -> ``(mido message, event time)``, with the channel filter and the timestamp anchor.

    Never raises: an event that is not one well-formed message (:func:`malformed`), or that fails to decode for any
    other reason, is dropped and counted (:attr:`dropped`, :attr:`dropped_kinds`, :attr:`last_dropped`).

    Parameters
    ----------
    channel : int, optional
        Keep only channel messages on this MIDI channel (1-16); None keeps all. System messages always pass.
    absolute : bool
        Events carry their time (``time.monotonic()`` seconds), not python-rtmidi's delta since the previous one.
    """

    def __init__(self, *, channel: int | None = None, absolute: bool = False) -> None:
        self.channel = None if channel is None else channel - 1  # mido numbering
        self.absolute = absolute
        self.received = 0
        self.filtered = 0
        self.dropped = 0
        self.dropped_kinds: collections.Counter = collections.Counter()
        self.last_dropped = ""
        self._sum = 0.0
        self._anchor = float("inf")

    def message(self, data: Sequence[int]):
        """The mido message of one event's bytes ``data``; None for a dropped (malformed) message or another
        channel's."""
        try:
            reason = malformed(data)
            if reason is not None:
                return self.drop(reason, data)
            message = mido.Message.from_bytes(data)
        except Exception as err:  # noqa: BLE001 - whatever a hostile event makes the decoding raise
            return self.drop(f"undecodable ({type(err).__name__})", data)
        if self.channel is not None and getattr(message, "channel", self.channel) != self.channel:
            self.filtered += 1
            return None
        self.received += 1
        return message

    def decode(self, event: tuple[list[int], float], seen: float) -> tuple | None:
        """``(message, seconds)`` for one ``(bytes, delta)`` event first seen at ``seen`` (``time.monotonic()``);
        None for a dropped (malformed) message or another channel's. ``seconds`` = the anchor + the sum of all
        deltas so far, the anchor being the smallest ``seen - sum`` yet: never later than ``seen``. With
        ``absolute`` the event carries its own time instead of a delta (the JACK client's hand-off)."""
        try:
            data, delta = event
            delta = float(delta)
            if self.absolute:
                when = delta
            else:
                self._sum += delta if math.isfinite(delta) else 0.0
                self._anchor = min(self._anchor, seen - self._sum)
                when = self._anchor + self._sum
        except Exception as err:  # noqa: BLE001 - whatever a hostile event makes the decoding raise
            return self.drop(f"undecodable ({type(err).__name__})", event)
        message = self.message(data)
        return None if message is None else (message, when)

    def drop(self, reason: str, data: object = (), *, detail: str = "") -> None:
        """Count one dropped event of kind ``reason``; its bytes ``data`` (or ``detail``) go into
        :attr:`last_dropped`, the one line the status view shows."""
        self.dropped += 1
        self.dropped_kinds[reason] += 1
        if not detail:
            try:
                shown = list(data)
                detail = " ".join(f"{b:02X}" for b in shown[:8]) + (" ..." if len(shown) > 8 else "")
            except (TypeError, ValueError):
                detail = repr(data)[:40]
        self.last_dropped = f"{reason}: {detail}" if detail else reason


class SysexGuard:
    """Ends an unterminated sysex in RtMidi's JACK input (see the module docstring): every ``interval_s`` it sends
    the guarded port a numbered probe, ``F4 n F7``: an undefined status byte no gear sends, ending in ``F7``.

    RtMidi ends a sysex it holds open at any event whose last byte is ``F7`` and swallows that event; otherwise the
    probe comes back. Probes arrive in the order sent, so one that comes back tells that every older one still out
    did not (:attr:`unreturned`): each ended a sysex without its end or was lost in a cycle JACK dropped. At most
    :data:`GUARD_OUT` probes are remembered (one whose port was disconnected never comes back; none is counted then).

    Parameters
    ----------
    send : callable
        Sends one MIDI message (a list of bytes) to the guarded input port.
    interval_s : float
        Seconds between two probes: the longest the port stays deaf after a sysex without its end.
    """

    def __init__(self, send: Callable[[list[int]], None], *, interval_s: float = GUARD_S) -> None:
        self.send = send
        self.interval_s = float(interval_s)
        self.sent = 0
        self.unreturned = 0
        self._out: collections.deque = collections.deque(maxlen=GUARD_OUT)  # numbers of the probes not back yet
        self._last_back: int | None = None
        self._next = 0.0

    def returned(self, data: list[int]) -> bool:
        """Whether an incoming event is one of our probes (drop it uncounted; older ones not back are added to
        :attr:`unreturned`) or not (decode it)."""
        if len(data) != 3 or data[0] != GUARD_STATUS or data[2] != SYSEX_END:
            return None
        number = data[1]
        if number not in self._out:
            return number == self._last_back  # a cycle JACK repeated, or not ours
        while self._out.popleft() != number:
            self.unreturned += 1
        self._last_back = number
        return True

    def tick(self, now: float) -> None:
        """Send the next probe when it is due (``now``: ``time.monotonic()``)."""
        if now >= self._next:
            number = self.sent % 128
            self.send([GUARD_STATUS, number, SYSEX_END])
            self.sent += 1
            self._out.append(number)
            self._next = now + self.interval_s


def drain(midi, decoder: MidiDecoder, events: queue.SimpleQueue, guard: SysexGuard | None = None) -> None:
    """One pass of the MIDI thread: decode every event waiting in ``midi`` (``get_message()``, python-rtmidi's
    queue) onto ``events``, then let ``guard`` send its ``F7``. Whatever a pass raises is counted as a dropped
    event (:meth:`MidiDecoder.drop`) and the pass ends; the next one goes on."""
    try:
        while (event := midi.get_message()) is not None:
            if guard is not None and guard.returned(event[0]):
                continue
            item = decoder.decode(event, time.monotonic())
            if item is not None:
                events.put_nowait(item)
        if guard is not None:
            guard.tick(time.monotonic())
    except Exception as err:  # noqa: BLE001 - the MIDI thread must not die of one bad event or call
        decoder.drop(f"error in the MIDI thread ({type(err).__name__})", detail=str(err)[:80])


def pump(midi, decoder: MidiDecoder, events: queue.SimpleQueue, stop: threading.Event, *,
         guard: SysexGuard | None = None, poll_s: float = POLL_S) -> str | None:
    """The MIDI thread: :func:`drain` every ``poll_s`` seconds until ``stop`` is set. Returns None then, or one line
    saying why it ended on its own (it cannot, short of something :func:`drain` does not catch)."""
    try:
        while not stop.is_set():
            drain(midi, decoder, events, guard)
            time.sleep(poll_s)
    except BaseException as err:  # noqa: BLE001 - said once by the player (MidiInput.failure), not as a traceback
        return f"the MIDI input thread stopped ({type(err).__name__}: {err}); no note would be heard"
    return None


def check_channel(channel: int | None) -> None:
    """Refuse a ``--channel`` that is not a MIDI channel 1-16 (None: every channel)."""
    if channel is not None and not 1 <= channel <= 16:
        raise KickspaceError(f"--channel must be a MIDI channel 1-16, got {channel}")


class MidiThread:
    """What both MIDI inputs share: a :class:`MidiDecoder`, a thread that :func:`pump` s a source (anything with
    python-rtmidi's ``get_message()``) onto ``events``, its counters and :attr:`failure`."""

    api = ""
    started_notes = False  # True: note-ons already sound when they reach the control thread (runtime.jack_midi)
    guard: SysexGuard | None = None

    def __init__(self, events: queue.SimpleQueue, decoder: MidiDecoder, poll_s: float) -> None:
        self.events = events
        self.decoder = decoder
        self.poll_s = float(poll_s)
        self._failure: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start_thread(self, source) -> None:
        self._thread = threading.Thread(target=self._run, args=(source,), name="kickspace-midi", daemon=True)
        self._thread.start()

    def _run(self, source) -> None:
        self._failure = pump(source, self.decoder, self.events, self._stop, guard=self.guard, poll_s=self.poll_s)

    def _stop_thread(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    @property
    def failure(self) -> str | None:
        """Why the MIDI thread ended on its own (the player then stops and says so), or None while it runs."""
        return thread_failure(self._thread, self._failure, self._stop,
                              "the MIDI input thread stopped; no note would be heard")

    @property
    def received(self) -> int:
        return self.decoder.received

    @property
    def filtered(self) -> int:
        return self.decoder.filtered

    @property
    def dropped(self) -> int:
        """Malformed events dropped (:class:`MidiDecoder`)."""
        return self.decoder.dropped

    @property
    def unreturned(self) -> int:
        """Guard probes that did not come back (:attr:`SysexGuard.unreturned`); 0 without a guard."""
        return self.guard.unreturned if self.guard is not None else 0


class MidiInput(MidiThread):
    """A python-rtmidi input whose thread pushes ``(mido message, event time)`` onto ``events``.

    Parameters
    ----------
    events : queue.SimpleQueue
        Receives ``(message, seconds)`` with ``seconds`` on the ``time.monotonic()`` clock.
    port : str, optional
        Substring (or number) of an existing port to connect to; None opens a virtual port named ``port_name``.
    api : str
        ``jack``, ``alsa`` or ``auto`` (JACK when ``prefer_jack``, else ALSA, falling back to the other one).
    client_name, port_name : str
        Names of the MIDI client and of the virtual port (JACK shows ``client_name:port_name``).
    channel : int, optional
        Keep only channel messages on this MIDI channel (1-16); None keeps all. System messages always pass.
    prefer_jack : bool
        With ``api="auto"``: try JACK first (the audio runs on JACK).
    poll_s : float
        Seconds between two drains of RtMidi's queue.
    """

    def __init__(self, events: queue.SimpleQueue, *, port: str | None = None, api: str = "auto",
                 client_name: str = DEFAULT_CLIENT, port_name: str = "midi_in", channel: int | None = None,
                 prefer_jack: bool = False, poll_s: float = POLL_S) -> None:
        if api not in APIS:
            raise KickspaceError(f"--midi-api must be one of {', '.join(APIS)}, got {api!r}")
        check_channel(channel)
        super().__init__(events, MidiDecoder(channel=channel), poll_s)
        self._guard_out = None
        self._midi = None
        self.api = ""
        self.port_label = ""
        order = [api] if api != "auto" else (["jack", "alsa"] if prefer_jack else ["alsa", "jack"])
        rtmidi = _rtmidi()
        problems = []
        for name in order:
            try:
                midi = rtmidi.MidiIn(api_id(name), name=client_name, queue_size_limit=QUEUE_SIZE)
            except (rtmidi.SystemError, rtmidi.RtMidiError) as err:
                problems.append(f"{name.upper()}: {err}")
                continue
            self._midi, self.api = midi, name
            break
        if self._midi is None:
            raise KickspaceError("no MIDI API is usable (" + "; ".join(problems) + "). Start a JACK server "
                                 "(jackd) or load the ALSA sequencer (snd-seq), or render offline with "
                                 "`runtime render`")
        midi = self._midi
        midi.ignore_types(sysex=True, timing=True, active_sense=True)
        try:
            if port is None:
                midi.open_virtual_port(port_name)
                self.port_label = f"{client_name}:{port_name} (virtual, {self.api.upper()})"
            else:
                ports = midi.get_ports()
                index = match_port(ports, port)
                midi.open_port(index, port_name)
                self.port_label = f"{ports[index]} ({self.api.upper()})"
        except (rtmidi.SystemError, rtmidi.RtMidiError) as err:
            self.close()
            raise KickspaceError(f"cannot open the MIDI port ({err})") from None
        except KickspaceError:
            self.close()
            raise
        if self.api == "jack":
            self._open_guard(f"{client_name}:{port_name}", f"{client_name}-guard")
        self._start_thread(midi)

    def _open_guard(self, port: str, client_name: str) -> None:
        """Connect a :class:`SysexGuard` (a JACK MIDI output of its own, ``client_name:f7``) to our input ``port``;
        without it (the port is not found, JACK refuses a client) the input plays on unguarded."""
        rtmidi = _rtmidi()
        try:
            out = rtmidi.MidiOut(api_id("jack"), name=client_name)
        except (rtmidi.SystemError, rtmidi.RtMidiError):
            return
        try:
            out.open_port(out.get_ports().index(port), "f7")
        except (ValueError, rtmidi.SystemError, rtmidi.RtMidiError):
            out.delete()
            return
        self._guard_out = out
        self.guard = SysexGuard(out.send_message)

    # ----------------------------------------------------------------------------------------------- any

    def close(self) -> None:
        """Stop the thread and close the port (idempotent)."""
        self._stop_thread()
        for attribute in ("_guard_out", "_midi"):
            port = getattr(self, attribute)
            setattr(self, attribute, None)
            if port is not None:
                port.close_port()
                port.delete()
