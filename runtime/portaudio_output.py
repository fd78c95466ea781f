"""Live play through PortAudio: find an output device, and a sounddevice stream whose callback steps the engine.

The callback does what DESIGN.md allows and nothing more: note the block's start time, count the output underflows
PortAudio reports in its status flags, fill the block with :meth:`runtime.engine.Engine.process`, track the output
peak in a preallocated scratch array. No inference, logging, locks or numpy allocation of its own. On its first
block only, it asks for realtime scheduling of its own thread where the server did not give it
(:func:`runtime.scheduling.realtime_thread`). :meth:`AudioOutput.start` shortens the GIL switch interval
(:data:`runtime.output.SWITCH_INTERVAL_S` says why).

On JACK, PortAudio is a JACK client: :func:`set_jack_client_name` names it (ports ``NAME:out_0``, ``NAME:out_1``),
and since PortAudio connects its ports to the device's ports by itself, :class:`AudioOutput` undoes that unless
``connect`` is set (``--connect``: to the system playback ports), through a helper client of the JACK-Client
package (:mod:`runtime.jack_session`). This is the path for PortAudio's other hosts (ALSA, CoreAudio, WASAPI) and
for ``--device`` naming a PortAudio device: where a JACK server runs and no other device is asked for, the player is
a JACK client of its own (:mod:`runtime.jack_client`; :func:`runtime.output_plan.plan_output` chooses).

When the JACK server goes away under a running stream (jackd killed or stopped), PortAudio's JACK host API marks the
stream inactive from libjack's shutdown callback (measured: ``stream.active`` False within 5 ms of SIGKILL to jackd,
``stream.stopped`` still False, the finished callback never called) and the callback is never called again. Stopping,
aborting or closing that stream then waits for a JACK process cycle that never comes (``Pa_StopStream`` waits on a
condition for 10 minutes), and so does sounddevice's exit handler (``Pa_Terminate``). :attr:`AudioOutput.lost` tells
the player, and :meth:`AudioOutput.close` leaves such a stream alone and takes that exit handler out.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import sys
import time

from runtime.errors import AudioUnavailable, KickspaceError
from runtime.jack_session import open_client, route
from runtime.output import AUDIO_ENV, JACK_STOPPED, SWITCH_INTERVAL_S, OutputMeter
from runtime.scheduling import REALTIME_PRIORITY, realtime_thread

NO_DEVICE_HELP = ("Run `runtime list` to see the devices PortAudio finds, start a JACK server (e.g. `jackd -d alsa` "
                  "for a sound card, or `jackd --no-realtime -d dummy -r 48000 -p 128` to run without one), or "
                  "render offline with `runtime render`.")
_client_name_buffer = None  # PortAudio keeps the pointer PaJack_SetClientName gets: keep the bytes alive


def _sd():
    try:
        if os.environ.get(AUDIO_ENV) == "no-portaudio":
            raise OSError(f"{AUDIO_ENV}=no-portaudio")
        import sounddevice as sd
    except OSError as err:  # libportaudio missing
        raise AudioUnavailable("portaudio", f"PortAudio is not available ({err})",
                               "Install libportaudio2, or render offline with `runtime render`.") from None
    return sd


def set_jack_client_name(name: str) -> None:
    """Name the JACK client PortAudio opens (re-initialises PortAudio; call before opening a stream)."""
    global _client_name_buffer
    sd = _sd()
    try:
        lib = ctypes.CDLL(sd._libname)
        setter = lib.PaJack_SetClientName
    except (OSError, AttributeError):
        return  # a PortAudio without JACK support: nothing to name
    setter.argtypes, setter.restype = [ctypes.c_char_p], ctypes.c_int
    _client_name_buffer = ctypes.create_string_buffer(name.encode())
    if setter(_client_name_buffer) != 0:
        raise KickspaceError(f"--client-name {name!r} is too long for JACK")
    sd._terminate()
    sd._initialize()


def output_devices() -> list[dict]:
    """Every device with output channels, as sounddevice describes it (with ``index`` and ``hostapi_name``)."""
    sd = _sd()
    apis = sd.query_hostapis()
    if os.environ.get(AUDIO_ENV) == "none":
        return []
    return [dict(d, hostapi_name=apis[d["hostapi"]]["name"]) for d in sd.query_devices()
            if d["max_output_channels"] > 0]


def find_output_device(spec: str | int | None) -> dict:
    """The output device ``spec`` names: a number, a case-insensitive name substring, or None for the default."""
    sd = _sd()
    devices = output_devices()
    if not devices:
        raise AudioUnavailable("device", "no audio output device found", NO_DEVICE_HELP)
    listing = "\n".join(f"  {d['index']}: {d['name']} ({d['hostapi_name']}, {d['max_output_channels']} out)"
                        for d in devices)
    if spec is None or spec == "":
        default = sd.default.device[1]
        if default is None or default < 0:
            jack = [d for d in devices if "JACK" in d["hostapi_name"]]
            return (jack or devices)[0]
        return next((d for d in devices if d["index"] == default), devices[0])
    text = str(spec)
    if text.isdigit():
        hit = [d for d in devices if d["index"] == int(text)]
    else:
        hit = [d for d in devices if text.lower() in d["name"].lower()]
        hit = hit or [d for d in devices if text.lower() in d["hostapi_name"].lower()]
    if not hit:
        raise KickspaceError(f"audio output device {text!r} not found. Output devices:\n{listing}\n"
                             f"(`runtime list` shows them all)")
    return hit[0]


# ------------------------------------------------------------------------------------------------- the stream

class AudioOutput(OutputMeter):
    """A sounddevice output stream that plays an engine.

    Parameters
    ----------
    engine : Engine
        Filled once per block from the callback; its ``blocksize`` must be at least the stream's block size.
    device : dict
        From :func:`find_output_device`.
    samplerate : int
        Stream rate (on JACK: the server's rate).
    blocksize : int
        Frames per callback; 0 = the device's own period (JACK: the server's period, no extra buffering).
    client_name : str
        JACK client name (already set with :func:`set_jack_client_name`); its ports are ``NAME:out_N``.
    connect : bool
        On JACK: connect the outputs to the system playback ports; otherwise leave them unconnected.
    rt_priority : int
        ``SCHED_FIFO`` priority the callback's thread asks for on its first block when it is not realtime already
        (:func:`runtime.scheduling.realtime_thread`); 0 leaves its scheduling alone.
    """

    def __init__(self, engine, device: dict, *, samplerate: int, blocksize: int = 0, client_name: str = "kickspace",
                 connect: bool = False, rt_priority: int = REALTIME_PRIORITY) -> None:
        super().__init__(engine, samplerate=samplerate, blocksize=blocksize)
        self.device = device
        self.client_name = client_name
        self.connect = connect
        self.is_jack = "JACK" in device["hostapi_name"]
        self._rt_priority = int(rt_priority)
        self._stream = None
        self._jack = None  # a JACK-Client helper (port checks and routing) while a JACK stream runs
        self._finished = False  # set by PortAudio's finished callback: the stream ended from our side
        self._old_switch = None

    # ------------------------------------------------------------------------------------------ audio thread

    def _callback(self, outdata, frames, time_info, status) -> None:
        t = time.monotonic()
        if not self.thread_policy:  # the first block: one system call, then never again
            self.thread_policy = realtime_thread(self._rt_priority)
        wait = 0.0
        try:
            if self._stream is not None and time_info.currentTime:
                wait = self._stream.time - time_info.currentTime
        except Exception:  # the stream clock is a diagnostic: never let it stop the sound
            pass
        self.block_time = t
        self.block_frames = frames
        if status.output_underflow:
            self.count_underflow(t)
        try:
            self.engine.process(outdata)
        except Exception:  # never expected: play silence rather than kill the stream
            outdata.fill(0.0)
            self.callback_errors += 1
        self.count_block(outdata, t, wait)

    # ----------------------------------------------------------------------------------------- control side

    @property
    def ended(self) -> bool:
        """Whether a started stream stopped playing without :meth:`close` (cheap: one PortAudio flag read)."""
        stream = self._stream
        return stream is not None and not stream.active

    @property
    def lost(self) -> bool:
        """Whether the stream ended from the host's side: on JACK the server stopped or dropped this client.

        PortAudio calls the finished callback when the stream ends from our side (a stop, an abort, a callback
        error), never when libjack's shutdown callback marks it inactive.
        """
        return self.ended and not self._finished

    def end_message(self) -> str:
        """One line for a musician: why the audio stopped and what to do."""
        if self.lost and self.is_jack:
            return JACK_STOPPED
        if self.lost:
            return (f"the audio device {self.device['name']} stopped (audio stream ended); check that it is still "
                    f"connected and run again")
        return (f"the audio stream stopped by itself ({self.callback_errors} audio callback errors); check the audio "
                f"device and run again")

    def _on_finished(self) -> None:
        self._finished = True

    def start(self) -> None:
        """Open and start the stream (shortening the GIL switch interval first); connect JACK ports as asked."""
        sd = _sd()
        if self.is_jack:
            # one helper client for the whole stream, opened before it starts and closed after it stops: on a
            # loaded JACK server a client opening or closing was measured to coincide with a server xrun
            self._jack = open_client("kickspace-ports", exact=False)
            if self._jack is not None and self._jack.get_ports(f"^{_re(self.client_name)}:"):
                self.close()
                raise KickspaceError(f"a JACK client named {self.client_name!r} is already running; stop it or "
                                     f"pass another --client-name")
        self._old_switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        try:
            self._stream = sd.OutputStream(samplerate=self.samplerate, blocksize=self.blocksize,
                                           device=self.device["index"], channels=self.channels, dtype="float32",
                                           latency="low", callback=self._callback,
                                           finished_callback=self._on_finished)
            self._stream.start()
        except sd.PortAudioError as err:
            self.close()
            hint = (f" JACK runs at {int(self.device['default_samplerate'])} Hz: leave out --samplerate or start "
                    f"jackd with -r {self.samplerate}." if self.is_jack else "")
            raise KickspaceError(f"cannot open audio device {self.device['index']} ({self.device['name']}) at "
                                 f"{self.samplerate} Hz, block {self.blocksize or 'auto'}: {err}.{hint} "
                                 f"{NO_DEVICE_HELP}") from None
        self.latency_s = float(self._stream.latency)
        if self.is_jack:
            self._route_jack_ports()

    def _route_jack_ports(self) -> None:
        if self._jack is None:
            return
        self.ports = [p.name for p in self._jack.get_ports(f"^{_re(self.client_name)}:", is_output=True)]
        route(self._jack, self.ports, connect=self.connect)

    def close(self) -> None:
        """Stop and close the stream (idempotent); restores the GIL switch interval.

        A :attr:`lost` stream is left as it is (stopping or closing it would block for minutes, see the module
        docstring) and PortAudio is not terminated at exit, for the same reason.
        """
        lost = self.lost
        stream, self._stream = self._stream, None
        if stream is not None and lost:
            _skip_portaudio_exit_handler()
        elif stream is not None:
            try:
                stream.stop()
            finally:
                stream.close()
        if self._old_switch is not None:
            sys.setswitchinterval(self._old_switch)
            self._old_switch = None
        jack, self._jack = self._jack, None
        if jack is not None:
            jack.close(ignore_errors=True)


def _skip_portaudio_exit_handler() -> None:
    """Take sounddevice's exit handler (stop and close the last stream, ``Pa_Terminate``) out of ``atexit``."""
    handler = getattr(_sd(), "_exit_handler", None)
    if handler is not None:
        atexit.unregister(handler)


def _re(name: str) -> str:
    """Escape a client name for JACK's port regex."""
    return "".join("\\" + c if not c.isalnum() and c not in "-_ " else c for c in name)
