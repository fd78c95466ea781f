"""MIDI input for live play (python-rtmidi): open a port, decode, timestamp, push to a queue. Nothing else.

:class:`MidiInput` opens either a virtual input port (the default: other programs connect to it) or an existing
output port picked by a case-insensitive name substring or its number, on the JACK or ALSA MIDI API. Its callback
runs on python-rtmidi's thread and does the minimum DESIGN.md allows: decode the bytes with mido, drop other
channels when a channel filter is set, estimate the event's time and ``put_nowait`` ``(message, time)`` on a
:class:`queue.SimpleQueue`. The control thread does everything else.

Timestamps: python-rtmidi hands the callback the time since the previous message (measured by the MIDI API when the
event came in, e.g. in JACK's process cycle), not an absolute time. The callback sums those deltas and anchors the sum
to ``time.monotonic()`` with a running minimum of ``arrival - sum``: the anchor is the earliest delivery seen, so
event times are free of the callback thread's wake-up jitter and never later than the actual arrival. The control
thread turns them into a sample offset in the next audio block (see :meth:`runtime.audio.AudioOutput.offset_for`).
"""

from __future__ import annotations

import queue
import time

import mido

from runtime.errors import KickspaceError

APIS = ("auto", "jack", "alsa")
DEFAULT_CLIENT = "kickspace"


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


class MidiInput:
    """A python-rtmidi input whose callback pushes ``(mido message, event time)`` onto ``events``.

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
    """

    def __init__(self, events: queue.SimpleQueue, *, port: str | None = None, api: str = "auto",
                 client_name: str = DEFAULT_CLIENT, port_name: str = "midi_in", channel: int | None = None,
                 prefer_jack: bool = False) -> None:
        if api not in APIS:
            raise KickspaceError(f"--midi-api must be one of {', '.join(APIS)}, got {api!r}")
        if channel is not None and not 1 <= channel <= 16:
            raise KickspaceError(f"--channel must be a MIDI channel 1-16, got {channel}")
        self.events = events
        self.channel = None if channel is None else channel - 1  # mido numbering
        self.received = 0
        self.filtered = 0
        self._sum = 0.0
        self._anchor = float("inf")
        self._midi = None
        self.api = ""
        self.port_label = ""
        order = [api] if api != "auto" else (["jack", "alsa"] if prefer_jack else ["alsa", "jack"])
        rtmidi = _rtmidi()
        problems = []
        for name in order:
            try:
                midi = rtmidi.MidiIn(api_id(name), name=client_name)
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
        midi.set_callback(self._callback)

    # ------------------------------------------------------------------------------------- rtmidi's thread

    def _callback(self, event, _data=None) -> None:
        arrival = time.monotonic()
        data, delta = event
        self._sum += delta
        anchor = arrival - self._sum
        if anchor < self._anchor:
            self._anchor = anchor
        try:
            message = mido.Message.from_bytes(data)
        except (ValueError, TypeError):
            return  # a malformed or unsupported message: ignore it
        if self.channel is not None and getattr(message, "channel", self.channel) != self.channel:
            self.filtered += 1
            return
        self.received += 1
        self.events.put_nowait((message, self._anchor + self._sum))

    # ----------------------------------------------------------------------------------------------- any

    def close(self) -> None:
        """Stop the callback and close the port (idempotent)."""
        midi, self._midi = self._midi, None
        if midi is None:
            return
        try:
            midi.cancel_callback()
        except Exception:  # not set yet
            pass
        midi.close_port()
        midi.delete()
