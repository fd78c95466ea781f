"""OSC input for live play (python-osc): a second control surface beside MIDI, e.g. TouchOSC or Open Stage Control.

``runtime play --osc-port N`` listens for OSC over UDP (on all interfaces unless ``--osc-host``) and takes:

- ``/kickspace/knob/<axis> x``: ``x`` a float (or the int 0 or 1) in 0..1, the position on the knob's travel. It moves
  the axis through the preset's knob (its min, max and curve) exactly as a CC value ``x * 127`` would, without the
  CC's 7-bit steps (:meth:`runtime.controls.Controller.move_knob`); an axis without a knob travels -1..1 linearly.
- ``/kickspace/pad/<note> v``: a hit on the pad at MIDI note ``<note>`` (0-127). ``v`` an int is a MIDI velocity
  1-127; a float is a velocity 0..1 (``round(v * 127)``, at least 1); no argument is velocity 127. A velocity of 0
  (a push button's release) is ignored, as a MIDI note-on at velocity 0 is a note-off.
- ``/kickspace/learn/<axis>``: arms learn for the axis, as the ``l`` key or ``--learn`` do; the next moved control,
  a MIDI CC or an OSC address of your own, then moves that axis. ``/kickspace/learn/off`` disarms it.
- ``/kickspace/save``: save the current sound (WAV + preset), as the ``s`` key or SIGUSR1.
- ``/kickspace/random``: a new random sound on the pad played last, as the ``r`` key (drawn from the model's prior:
  :mod:`runtime.prior`).
- any other address carrying one number (a TouchOSC fader's ``/1/fader1``, an Open Stage Control widget's
  ``/fader_1``): moves the knob whose ``osc`` field (the preset) names that address, as a position 0..1; while
  learn is armed, the first such address is bound to the axis (and kept in a saved preset). Addresses ending in
  ``/z`` (TouchOSC's touch on/off) are ignored. Buttons (learn, save, random) act on a value other than 0, or on none.

Threads: python-osc's :class:`~pythonosc.osc_server.BlockingOSCUDPServer` serves in one thread of its own
(``kickspace-osc``): it takes the datagrams one by one in their order of arrival (a knob sweep must not reach the
control thread out of order, as one thread per datagram, the threading server, would allow, creating a thread per
message besides) and only parses and checks them (:func:`decode`); each message it accepts goes as
``(event, time.monotonic())`` onto the player's event queue, the one the MIDI thread feeds, and the control thread
applies it (:func:`apply`). The audio callback never sees OSC. An asyncio server would need an event loop of its
own for nothing more. A bundle's messages are applied in order when it arrives (its time tag is not waited for).

Hostile input: a datagram that is no OSC packet, an unknown ``/kickspace`` address, a wrong argument type, an
out-of-range value, an address no knob is bound to or an axis the model lacks is dropped and counted by kind
(:attr:`OscInput.dropped_kinds`; stats ``osc_dropped``, a status-view line). Whatever else a datagram makes the
server raise is caught and counted too; if the thread still ends, :attr:`OscInput.failure` says why and the player
stops with that line, as it does for the MIDI thread.
"""

from __future__ import annotations

import collections
import errno
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from pythonosc import osc_packet
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_server import BlockingOSCUDPServer

from runtime.errors import ConfigError
from runtime.scheduling import thread_failure

ROOT = "/kickspace"
POLL_S = 0.2  # how often the server thread checks for shutdown between datagrams
RECEIVE_BUFFER = 1 << 20  # bytes the kernel holds for the socket (asked; capped at net.core.rmem_max)
CLOSE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class KnobMove:
    """``/kickspace/knob/<axis> x``: move ``axis`` to ``position`` 0..1 of its knob's travel."""

    axis: str
    position: float


@dataclass(frozen=True)
class ControlMove:
    """An address of the controller's own with one number: the knob bound to ``address`` (or learn) moves."""

    address: str
    position: float


@dataclass(frozen=True)
class PadHit:
    """``/kickspace/pad/<note> v``: a hit at MIDI velocity 1-127."""

    note: int
    velocity: int


@dataclass(frozen=True)
class Button:
    """``/kickspace/learn/<axis>`` (``argument`` the axis, None for ``off``), ``/kickspace/save`` or
    ``/kickspace/random``."""

    name: str
    argument: str | None = None


OscEvent = (KnobMove, ControlMove, PadHit, Button)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _velocity(params: list[Any]) -> int | str | None:
    """A pad's argument -> MIDI velocity 1-127, a drop reason, or None (velocity 0: a release, ignored)."""
    if not params:
        return 127
    if len(params) != 1 or not _number(params[0]):
        return "wrong type (a pad takes one int 1-127 or float 0..1)"
    v = params[0]
    if isinstance(v, int):
        return v if 1 <= v <= 127 else None if v == 0 else "out of range (pad velocity int 1-127)"
    if not 0.0 <= v <= 1.0:  # NaN fails too
        return "out of range (pad velocity float 0..1)"
    return max(1, round(v * 127)) if v > 0.0 else None


def _pressed(params: list[Any]) -> bool:
    """A button's message acts when it has no argument or a non-zero first one (not on a release's 0)."""
    return not params or not (_number(params[0]) and params[0] == 0)


def decode(address: str, params: list[Any]) -> object:
    """One OSC message -> an event for the control thread (:class:`KnobMove`, :class:`PadHit`, :class:`Button`,
    :class:`ControlMove`), None to ignore it silently (a button's release, a TouchOSC touch ``/z``), or the reason
    (a str, the drop kind) it is dropped. Checks syntax and ranges only: whether the axis, pad or bound address
    exists is the control thread's to say (a program change may switch the preset)."""
    parts = address.split("/")
    if address == ROOT or address.startswith(ROOT + "/"):
        kind, name = (parts[2], "/".join(parts[3:])) if len(parts) > 2 else ("", "")
        if kind == "knob" and name:
            if len(params) != 1 or not _number(params[0]):
                return "wrong type (a knob takes one float 0..1)"
            if not 0.0 <= params[0] <= 1.0:
                return "out of range (knob position 0..1)"
            return KnobMove(name, float(params[0]))
        if kind == "pad" and name.isdigit() and int(name) <= 127:
            velocity = _velocity(params)
            return velocity if not isinstance(velocity, int) else PadHit(int(name), velocity)
        if kind == "learn" and name:
            return Button("learn", None if name == "off" else name) if _pressed(params) else None
        if kind in ("save", "random") and not name:
            return Button(kind) if _pressed(params) else None
        return "unknown /kickspace address"
    if address.endswith("/z"):
        return None
    if len(params) != 1 or not _number(params[0]):
        return "wrong type (a control takes one float 0..1)"
    if not 0.0 <= params[0] <= 1.0:
        return "out of range (control position 0..1)"
    return ControlMove(address, float(params[0]))


def well_formed(message) -> bool:
    """Whether a parsed python-osc message is exactly what its bytes say: python-osc's parser forgives (it skips a
    type tag it does not know and pads a float cut short with zeros, for Reaktor), so a message counts only when
    python-osc's builder writes the same bytes back from its address, type tags and arguments. A message without a
    type tag string (OSC 1.0 allows it from old senders) is well formed when it carries no arguments."""
    from pythonosc.parsing import osc_types

    dgram = message.dgram
    _, index = osc_types.get_string(dgram, 0)
    if index >= len(dgram):
        return not message.params
    tags = osc_types.get_string(dgram, index)[0][1:]
    if len(tags) != len(message.params):
        return False
    builder = OscMessageBuilder(message.address)
    for tag, value in zip(tags, message.params):
        builder.add_arg(value, tag)
    return builder.build().dgram == dgram


class _Router(Dispatcher):
    """Parses each datagram (python-osc) and queues what :func:`decode` accepts; counts the rest."""

    def __init__(self, owner: "OscInput") -> None:
        super().__init__()
        self.owner = owner

    def call_handlers_for_packet(self, data: bytes, client_address: tuple[str, int]) -> list:
        owner = self.owner
        when = time.monotonic()
        try:
            messages = [timed.message for timed in osc_packet.OscPacket(data).messages]
            if not all(map(well_formed, messages)):
                raise ValueError("not as its type tags say")
        except Exception as err:  # noqa: BLE001 - ParseError, or whatever a hostile datagram makes parsing raise
            owner.drop("malformed packet", f"{type(err).__name__}: {data[:24]!r}")
            return []
        for message in messages:
            event = decode(message.address, list(message.params))
            if isinstance(event, str):
                owner.drop(event, f"{message.address[:60]} {list(message.params)!r:.40}")
            elif event is not None:
                owner.received += 1
                owner.events.put_nowait((event, when))
        return []


class _Server(BlockingOSCUDPServer):
    """python-osc's blocking UDP server that lets every datagram through to :class:`_Router` (its own check drops
    non-OSC datagrams uncounted) and counts what a datagram makes it raise instead of printing a traceback."""

    def server_bind(self) -> None:
        # a burst arriving while the thread waits for the GIL must not overflow the kernel's default ~200 KB (about
        # 300 datagrams): what the kernel drops, the player never sees or counts
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError:
            pass
        super().server_bind()

    def verify_request(self, request, client_address) -> bool:
        return True

    def handle_error(self, request, client_address) -> None:
        import sys

        err = sys.exc_info()[1]
        self.dispatcher.owner.drop("error in the OSC thread", f"{type(err).__name__}: {str(err)[:60]}")


class OscInput:
    """An OSC UDP server whose thread pushes ``(event, time.monotonic())`` onto an event queue (:func:`decode`).

    The port is bound here, so a port in use fails at once (:class:`ConfigError` naming ``--osc-port``), before
    the player loads its model; the thread starts with :meth:`start` and ends with :meth:`close`.

    Parameters
    ----------
    port : int
        UDP port 0-65535 (0: one the system picks; :attr:`port` tells which).
    host : str
        Interface address to listen on (default all: a tablet on the network reaches the player).
    """

    def __init__(self, port: int, *, host: str = "0.0.0.0") -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError("--osc-port", f"must be a UDP port 1-65535 (0: any free port), got {port!r}")
        self.events: queue.SimpleQueue | None = None
        self.received = 0
        self.dropped = 0
        self.dropped_kinds: collections.Counter = collections.Counter()
        self.last_dropped = ""
        self._lock = threading.Lock()  # the OSC and the control thread both count drops
        self._failure: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        try:
            self._server = _Server((host, port), _Router(self))
        except OSError as err:
            why = "is in use by another program" if err.errno == errno.EADDRINUSE else f"cannot be opened ({err})"
            raise ConfigError("--osc-port", f"UDP port {port} on {host} {why}; choose another --osc-port") from None
        self.host, self.port = host, int(self._server.server_address[1])
        self.label = f"udp {self.host}:{self.port}"

    def start(self, events: queue.SimpleQueue) -> None:
        """Start serving in the thread ``kickspace-osc``: each accepted message goes onto ``events`` (the player's
        event queue, the control thread's input) as ``(event, time.monotonic())``."""
        self.events = events
        self._thread = threading.Thread(target=self._run, name="kickspace-osc", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._server.serve_forever(poll_interval=POLL_S)
        except BaseException as err:  # noqa: BLE001 - said once by the player (failure), not as a traceback
            self._failure = f"the OSC input thread stopped ({type(err).__name__}: {err}); OSC would be ignored"

    def drop(self, reason: str, detail: str = "") -> None:
        """Count one dropped message of kind ``reason``; ``detail`` goes into :attr:`last_dropped` (the status
        view's line). Called from the OSC thread and the control thread."""
        with self._lock:
            self.dropped += 1
            self.dropped_kinds[reason] += 1
            self.last_dropped = f"{reason}: {detail}" if detail else reason

    @property
    def failure(self) -> str | None:
        """Why the OSC thread ended on its own (the player then stops and says so), or None while it runs."""
        return thread_failure(self._thread, self._failure, self._stop,
                              "the OSC input thread stopped; OSC would be ignored")

    def stats(self) -> dict:
        """``osc_port``, ``osc_received``, ``osc_dropped`` and ``osc_dropped_kinds`` for ``--stats-json``."""
        return {"osc_port": self.port, "osc_received": self.received, "osc_dropped": self.dropped,
                "osc_dropped_kinds": dict(self.dropped_kinds)}

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop the thread and close the socket (idempotent)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._server.shutdown()  # returns once serve_forever has (within POLL_S)
            thread.join(timeout)
        self._server.server_close()


def apply(player, event: object, when: float) -> None:
    """The control thread's part: apply one OSC event of :func:`decode` to ``player``
    (a :class:`runtime.play.Player`). A pad hit goes to the controller as a MIDI note-on on the preset's channel
    (starting at the next block: an OSC message carries no frame), counted among the player's notes; a knob through
    :meth:`~runtime.controls.Controller.move_knob`; an axis or address the preset lacks is dropped and counted on
    ``player.osc``; a note without a pad sounds nothing, as over MIDI."""
    controller = player.controller
    axes = controller.model.metadata.knob_names()  # latent axes and shaping controls
    if isinstance(event, PadHit):
        import mido

        channel = controller.preset.midi_channel
        player.last_note = event.note
        player.counts["notes"] += 1
        player.recent.append((when, f"OSC pad {event.note} vel {event.velocity}"))
        controller.handle(mido.Message("note_on", channel=(channel or 1) - 1, note=event.note,
                                       velocity=event.velocity))
    elif isinstance(event, Button):
        if event.name == "learn" and event.argument is not None and event.argument not in axes:
            player.osc.drop("unknown axis", f"{ROOT}/learn/{event.argument}")
        else:  # at once, as the keys' commands are: a control moved right after it is learned
            player._action(event.name, event.argument)
    elif isinstance(event, ControlMove):
        if player.learn_axis is not None:
            axis, player.learn_axis = player.learn_axis, None
            controller.bind(axis, osc=event.address)
            player.messages.append(f"learned: OSC {event.address} -> {axis}")
        knob = next((k for k in controller.preset.knobs if k.osc == event.address), None)
        if knob is None:
            player.osc.drop("unbound address", event.address[:60])
        else:
            _move(player, knob.axis, event.position, when)
    elif isinstance(event, KnobMove):
        if event.axis in axes:
            _move(player, event.axis, event.position, when)
        else:
            player.osc.drop("unknown axis", f"{ROOT}/knob/{event.axis[:40]}")


def _move(player, axis: str, position: float, when: float) -> None:
    player.counts["osc_knobs"] += 1
    player.recent.append((when, f"OSC {axis} {position:.3f}"))
    # the knob -> ready time counts from the message's arrival, as for a CC
    player.controller.move_knob(axis, position, stamp=when)


def is_event(item: object) -> bool:
    """Whether an item of the player's event queue came from OSC (:func:`apply` handles it)."""
    return isinstance(item, OscEvent)
