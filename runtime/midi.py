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
sample offset in the next audio block (see :meth:`runtime.audio.AudioOutput.offset_for`).
"""

from __future__ import annotations

import queue
import threading
import time

import mido

from runtime.errors import KickspaceError

APIS = ("auto", "jack", "alsa")
DEFAULT_CLIENT = "kickspace"
POLL_S = 0.001  # how often the MIDI thread drains RtMidi's queue
QUEUE_SIZE = 4096  # RtMidi's ring buffer (events): 4 s of a dense 1,000 events/s stream


def _rtmidi():
    import rtmidi

    return rtmidi


def api_id(name: str) -> int:
    """The rtmidi API constant for ``jack``/``alsa``."""
    rtmidi = _rtmidi()
    return {"jack": rtmidi.API_UNIX_JACK, "alsa": rtmidi.API_LINUX_ALSA}[name]


def available_ports(api: str) -> list[str]:
    """Output ports other programs offer (the ports a MIDI input can connect to) on ``api`` (``jack``/``alsa``)."""
    rtmidi = _rtmidi()
    try:
        midi = rtmidi.MidiIn(api_id(api), name=f"{DEFAULT_CLIENT}-list")
    except (rtmidi.SystemError, rtmidi.RtMidiError) as err:
        raise KickspaceError(f"the {api.upper()} MIDI API is unavailable ({err})") from None
    try:
        return midi.get_ports()
    finally:
        midi.delete()


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


class MidiDecoder:
    """python-rtmidi events -> ``(mido message, event time)``, with the channel filter and the timestamp anchor.

    Parameters
    ----------
    channel : int, optional
        Keep only channel messages on this MIDI channel (1-16); None keeps all. System messages always pass.
    """

    def __init__(self, *, channel: int | None = None) -> None:
        self.channel = None if channel is None else channel - 1  # mido numbering
        self.received = 0
        self.filtered = 0
        self._sum = 0.0
        self._anchor = float("inf")

    def decode(self, event: tuple[list[int], float], seen: float) -> tuple | None:
        """``(message, seconds)`` for one ``(bytes, delta)`` event first seen at ``seen`` (``time.monotonic()``);
        None for a malformed message or another channel's. ``seconds`` = the anchor + the sum of all deltas so
        far, the anchor being the smallest ``seen - sum`` yet: never later than ``seen``."""
        data, delta = event
        self._sum += delta
        anchor = seen - self._sum
        if anchor < self._anchor:
            self._anchor = anchor
        try:
            message = mido.Message.from_bytes(data)
        except (ValueError, TypeError):
            return None  # a malformed or unsupported message: ignore it
        if self.channel is not None and getattr(message, "channel", self.channel) != self.channel:
            self.filtered += 1
            return None
        self.received += 1
        return message, self._anchor + self._sum


class MidiInput:
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
        if channel is not None and not 1 <= channel <= 16:
            raise KickspaceError(f"--channel must be a MIDI channel 1-16, got {channel}")
        self.events = events
        self.decoder = MidiDecoder(channel=channel)
        self.poll_s = float(poll_s)
        self._midi = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
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
        self._thread = threading.Thread(target=self._run, args=(midi,), name="kickspace-midi", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ the MIDI thread

    def _run(self, midi) -> None:
        while not self._stop.is_set():
            while (event := midi.get_message()) is not None:
                item = self.decoder.decode(event, time.monotonic())
                if item is not None:
                    self.events.put_nowait(item)
            time.sleep(self.poll_s)

    @property
    def received(self) -> int:
        return self.decoder.received

    @property
    def filtered(self) -> int:
        return self.decoder.filtered

    # ----------------------------------------------------------------------------------------------- any

    def close(self) -> None:
        """Stop the thread and close the port (idempotent)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        midi, self._midi = self._midi, None
        if midi is None:
            return
        midi.close_port()
        midi.delete()
