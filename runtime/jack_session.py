"""JACK-Client session helpers: open a client on a running server, route ports, read and set port latencies.

Both live outputs use them: the player's own JACK client (:mod:`runtime.jack_client`) and the PortAudio stream's
helper client that checks and routes PortAudio's JACK ports (:mod:`runtime.portaudio_output`); ``runtime list``
prints :func:`listing`. This module imports neither output.

JACK's latency API is not wrapped by JACK-Client 0.5.7: :class:`LatencyApi` binds the three calls the player needs
with cffi (the package JACK-Client is built on). ``KICKSPACE_AUDIO=none|no-portaudio``
(:data:`runtime.output.AUDIO_ENV`) hides the JACK server: :func:`open_client` then finds none.
"""

from __future__ import annotations

import os
from typing import Callable

from runtime.errors import KickspaceError
from runtime.output import AUDIO_ENV

CAPTURE, PLAYBACK = 0, 1  # jack_latency_callback_mode_t


def jack_module():
    """The ``jack`` module (JACK-Client), or None without libjack (``import jack`` raises OSError then)."""
    try:
        import jack
    except (ImportError, OSError):
        return None
    return jack


def open_client(name: str, *, exact: bool = True):
    """A ``jack.Client`` on the running server (never starts one), or None when no server runs or libjack is
    missing. ``exact``: refuse a name in use with one line naming ``--client-name``."""
    jack = jack_module()
    if jack is None or os.environ.get(AUDIO_ENV) in ("none", "no-portaudio"):
        return None
    if len(name.encode()) >= jack.client_name_size():
        raise KickspaceError(f"--client-name {name!r} is too long for JACK")
    quiet = lambda message: None  # noqa: E731 - no server is an answer here, not libjack's lines on stderr
    jack.set_error_function(quiet)
    jack.set_info_function(quiet)
    try:
        return jack.Client(name, use_exact_name=exact, no_start_server=True)
    except jack.JackOpenError as err:
        if err.status.name_not_unique:
            raise KickspaceError(f"a JACK client named {name!r} is already running; stop it or pass another "
                                 f"--client-name") from None
        return None
    finally:
        jack.set_error_function(None)
        jack.set_info_function(None)


# --------------------------------------------------------------------------------------- JACK's latency API

class LatencyApi:
    """``jack_port_{get,set}_latency_range`` and ``jack_set_latency_callback`` of the libjack JACK-Client loaded,
    bound with cffi in ABI mode (JACK-Client 0.5.7 has no call for them)."""

    _CDEF = """
        typedef struct { uint32_t min; uint32_t max; } jack_latency_range_t;
        typedef void (*JackLatencyCallback)(int mode, void *arg);
        void jack_port_get_latency_range(void *port, int mode, jack_latency_range_t *range);
        void jack_port_set_latency_range(void *port, int mode, jack_latency_range_t *range);
        int jack_set_latency_callback(void *client, JackLatencyCallback callback, void *arg);
    """
    _instance: "LatencyApi | None" = None

    def __init__(self) -> None:
        import cffi

        jack = jack_module()
        self.ffi = cffi.FFI()
        self.ffi.cdef(self._CDEF)
        self.lib = self.ffi.dlopen(jack._libname)
        self._jack_ffi = jack._ffi
        self._range = self.ffi.new("jack_latency_range_t *")

    @classmethod
    def get(cls) -> "LatencyApi":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def pointer(self, owner):
        """The C pointer of a JACK-Client ``Client`` or ``Port`` as this binding's ``void *``."""
        return self.ffi.cast("void *", int(self._jack_ffi.cast("uintptr_t", owner._ptr)))

    def range(self, port, mode: int) -> tuple[int, int]:
        self.lib.jack_port_get_latency_range(self.pointer(port), mode, self._range)
        return int(self._range.min), int(self._range.max)

    def set_range(self, port, mode: int, low: int, high: int) -> None:
        self._range.min, self._range.max = low, high
        self.lib.jack_port_set_latency_range(self.pointer(port), mode, self._range)

    def set_callback(self, client, callback: Callable[[int], None]):
        """Register ``callback(mode)`` as the client's latency callback (before activation); returns the cffi
        callback object, which must stay alive as long as the client."""
        def on_latency(mode, _arg):
            try:
                callback(int(mode))
            except Exception:  # noqa: BLE001 - a JACK notification thread: nothing may escape into C
                pass

        handle = self.ffi.callback("JackLatencyCallback", on_latency)
        self.lib.jack_set_latency_callback(self.pointer(client), handle, self.ffi.NULL)
        return handle


def port_latency(client, port: str, mode: int = PLAYBACK) -> tuple[int, int]:
    """``(min, max)`` frames of ``port``'s capture (``mode`` :data:`CAPTURE`) or playback latency as JACK reports
    it, read through ``client`` (any JACK-Client ``Client``); (0, 0) for a port that does not exist."""
    try:
        handle = client.get_port_by_name(port)
    except Exception:  # noqa: BLE001 - jack.JackError: no such port
        return 0, 0
    return LatencyApi.get().range(handle, mode)


def route(client, ports: list[str], *, connect: bool) -> None:
    """Connect ``ports`` (our outputs) to the system playback ports in turn (``connect``), or leave them unconnected:
    a connection made by someone else is taken away."""
    playback = [p.name for p in client.get_ports(is_audio=True, is_input=True, is_physical=True)]
    for i, port in enumerate(ports):
        current = [p.name for p in client.get_all_connections(port)]
        if connect and playback and not current:
            client.connect(port, playback[i % len(playback)])
        elif not connect:
            for other in current:
                client.disconnect(port, other)


def listing() -> list[str]:
    """``runtime list``'s JACK lines: the running server (rate, period) and the MIDI output ports ``--midi-port``
    connects the player's input to; one line saying none runs otherwise."""
    client = open_client("kickspace-list", exact=False)
    if client is None:
        return ["JACK: no server running (the player then plays through PortAudio)"]
    try:
        midi = [p.name for p in client.get_ports(is_midi=True, is_output=True)]
        playback = [p.name for p in client.get_ports(is_audio=True, is_input=True, is_physical=True)]
        lines = [f"JACK server at {client.samplerate} Hz, period {client.blocksize} frames: `runtime play` is a "
                 f"JACK client (NAME:midi_in, NAME:out_0/out_1); --connect routes to "
                 f"{', '.join(playback[:2]) or 'no playback port'}",
                 "JACK MIDI outputs (use --midi-port NUMBER or a name substring):"]
        lines.extend(f"  {i}: {port}" for i, port in enumerate(midi))
        return lines + ([] if midi else ["  (none)"])
    finally:
        client.close()
