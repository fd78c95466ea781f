"""Choosing where live play sounds: the player's own JACK client where a JACK server runs, else a PortAudio device.

This module sits above both outputs (:mod:`runtime.jack_client`, :mod:`runtime.portaudio_output`), which import
only what is below them (:mod:`runtime.output`, :mod:`runtime.jack_session`), so neither knows of the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.errors import KickspaceError
from runtime.jack_client import JackOutput
from runtime.jack_session import open_client
from runtime.output import OutputMeter
from runtime.portaudio_output import AudioOutput, find_output_device, set_jack_client_name


@dataclass
class OutputPlan:
    """Where live play sounds: a JACK client (``client``) or a PortAudio device (``device``), at ``samplerate``."""

    device: dict
    samplerate: int
    client: object | None = None
    client_name: str = "kickspace"

    def output(self, engine, *, blocksize: int, connect: bool, rt_priority: int) -> OutputMeter:
        """The output object for ``engine``: :class:`JackOutput` or :class:`AudioOutput`."""
        if self.client is not None:
            return JackOutput(self.client, engine, connect=connect, rt_priority=rt_priority)
        return AudioOutput(engine, self.device, samplerate=self.samplerate, blocksize=blocksize,
                           client_name=self.client_name, connect=connect, rt_priority=rt_priority)


def plan_output(device: str | None, client_name: str, samplerate: int | None) -> OutputPlan:
    """Open the JACK client ``client_name`` when no ``device`` (or a JACK one) is asked for and a server runs;
    else find the PortAudio ``device``. Raises :class:`KickspaceError` for a ``samplerate`` JACK does not run at, a
    name in use, and what :func:`runtime.portaudio_output.find_output_device` raises."""
    wants_jack = device is None or device == "" or "jack" in str(device).lower()
    client = open_client(client_name) if wants_jack else None
    if client is None:
        set_jack_client_name(client_name)
        found = find_output_device(device)
        return OutputPlan(found, int(samplerate or found["default_samplerate"]), client_name=client_name)
    rate = int(client.samplerate)
    if samplerate is not None and int(samplerate) != rate:
        client.close()
        raise KickspaceError(f"JACK runs at {rate} Hz, not {samplerate}: leave out --samplerate or start jackd with "
                             f"-r {samplerate}")
    found = {"index": None, "name": f"JACK client {client_name}", "hostapi_name": "JACK (JACK-Client)",
             "max_output_channels": 2, "default_samplerate": rate}
    return OutputPlan(found, rate, client=client, client_name=client_name)
