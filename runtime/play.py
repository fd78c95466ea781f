"""``runtime play``: live MIDI -> kicks, wiring preset, model, render worker, controller, MIDI input and audio output.

Threads (DESIGN.md, "Runtime threads"):

- MIDI thread: on JACK (:mod:`runtime.jack_midi`) it drains the ring the JACK client's process callback fills
  with each cycle's events (the callback itself already started every note-on at its own frame); elsewhere
  (:mod:`runtime.midi`) python-rtmidi's own queue. Every millisecond it decodes, timestamps and pushes
  ``(message, time)`` to :attr:`Player.events`.
- OSC thread (:mod:`runtime.osc`, with ``--osc-port``): parses and checks each OSC datagram, pushes ``(event, time)``
  to the same queue; the control thread applies it (:func:`runtime.osc.apply`).
- Control (:meth:`Player._control_loop`, this module): the only thread that touches the
  :class:`~runtime.controls.Controller`. It applies CCs and program changes (the controller asks the render worker
  for the new sounds), hands note-ons to the engine with a sample offset from their timestamp, and runs the musician's
  actions: MIDI learn (the next moved CC binds to the chosen axis) and "save current sound" (the current kick to a
  24-bit WAV plus the current state as a new preset). Keys, SIGUSR1 and ``--learn`` reach it through the same queue.
- Render worker (:class:`runtime.live_worker.LiveWorker`, a :class:`~runtime.worker.RenderWorker` that also times
  itself): renders the latest requested state per pad and swaps the buffers in. The engine, the worker and the
  controller are built together by :func:`runtime.instrument.build_instrument`, as offline render builds them.
- Audio callback: the player's one JACK client's process callback (:mod:`runtime.jack_client`: this cycle's MIDI
  in, voices mixed out), or PortAudio's (:mod:`runtime.portaudio_output`: voices mixed out); nothing else.
- Status view (:mod:`runtime.status`): a thread that hands the counters 4 times a second to a rich view drawn by
  a child process (out of this process's GIL), or nothing with ``--quiet``.

The audio stream starts last (on JACK: the client is activated): the render worker, the MIDI input, the control
thread and the status view's drawing process come first, then every object alive is frozen out of the garbage
collector's reach (the render worker also runs at a higher nice value; :mod:`runtime.scheduling` says what each is
worth). So no JACK client opens and no long GIL hold happens while the stream plays: on this project's test server a
client opening mid-stream coincided with server xruns, and a full collection holds the GIL for milliseconds.

The main thread waits for SIGINT/SIGTERM (or ``--duration``), then stops the status view, the audio stream (the
sound stops first), the MIDI port, the control thread and the worker, in that order, and prints a one-line
summary (:func:`runtime.status.run_stats`, :func:`runtime.status.summary_line`). It also watches the
audio stream: when it ends on its own (the JACK server stopped, the device went away) the player stops too, prints
why on one stderr line and exits with status 1 instead of playing silence forever; so it does when the MIDI
thread ends on its own (:attr:`runtime.midi.MidiInput.failure`) instead of playing on deaf. Nothing at shutdown
may block for long then: the lost stream is left alone (see :mod:`runtime.portaudio_output`) and the MIDI port gets
:data:`MIDI_CLOSE_TIMEOUT_S` to close.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import queue
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import AudioUnavailable, ConfigError, KickspaceError
from runtime.files import write_text, write_wav
from runtime.instrument import build_instrument
from runtime.jack_midi import open_midi_input
from runtime.live_worker import LiveWorker
from runtime.midi import MidiThread
from runtime.osc import OscInput, apply as apply_osc, is_event as is_osc_event
from runtime.output_plan import plan_output
from runtime.preset import Pad, Preset, load_preset
from runtime.scheduling import REALTIME_PRIORITY, GcPauses, dump_stacks_on, freeze_gc, pin_mmap_threshold, rss_mb
from runtime.status import StatusView, run_stats, summary_line

log = logging.getLogger(__name__)

ANY_BLOCK = 8192  # engine scratch size when the device picks its own block size
MIDI_CLOSE_TIMEOUT_S = 3.0  # closing a JACK MIDI client must not hang the exit (measured ~20 ms, server gone too)


@dataclass
class PlayConfig:
    """Everything ``runtime play`` takes from its command line."""

    preset: str
    midi_port: str | None = None
    midi_api: str = "auto"
    device: str | None = None
    blocksize: int = 0
    samplerate: int | None = None
    channel: int | None = None
    connect: bool = False
    client_name: str = "kickspace"
    learn: str | None = None
    pads: dict[int, str] = field(default_factory=dict)
    save_dir: str = "kickspace-saves"
    quiet: bool = False
    duration: float | None = None
    stats_json: str | None = None
    max_voices: int = 16
    rt_priority: int = REALTIME_PRIORITY
    fallback_render: str | None = None  # no PortAudio or no device: render the demo groove here instead
    fallback_midi: str | None = None  # the groove to render then (default runtime.fallback.DEMO_GROOVE)
    osc_port: int | None = None  # OSC over UDP on this port (runtime.osc); None: no OSC
    osc_host: str = "0.0.0.0"


def parse_pad(text: str) -> tuple[int, str]:
    """``37=my_kick.wav`` -> (37, "my_kick.wav")."""
    note, sep, path = text.partition("=")
    if not sep or not note.strip().isdigit() or not 0 <= int(note) <= 127 or not path:
        raise KickspaceError(f"--pad must look like NOTE=FILE.wav with NOTE 0-127, got {text!r}")
    return int(note), path


def with_user_pads(preset: Preset, pads: dict[int, str]) -> Preset:
    """The preset with ``--pad NOTE=WAV`` pads added (or replacing the pad on that note): a user's own sample,
    placed in the latent space by the model's encoder."""
    if not pads:
        return preset
    out = {p.note: p for p in preset.pads}
    for note, path in pads.items():
        wav = Path(path).expanduser().resolve()
        if not wav.is_file():
            raise ConfigError(f"--pad {note}", f"sample file {path} not found")
        old = out.get(note)
        out[note] = Pad(note=note, name=old.name if old else wav.stem, label=old.label if old else None,
                        sample=wav, gain=old.gain if old else 1.0, choke=old.choke if old else None)
    return dataclasses.replace(preset, pads=tuple(out[n] for n in sorted(out)))


class Player:
    """A live instrument: build it (opens nothing), :meth:`run` it (opens ports, blocks until stopped)."""

    def __init__(self, config: PlayConfig) -> None:
        self.config = config
        if not 0 <= config.rt_priority <= 99:
            raise ConfigError("--rt-priority", f"must be 0 (leave the audio thread alone) to 99, got "
                                               f"{config.rt_priority}")
        # OSC's port is bound first: one in use fails before the model loads (runtime.osc)
        self.osc = OscInput(config.osc_port, host=config.osc_host) if config.osc_port is not None else None
        preset = with_user_pads(load_preset(config.preset), config.pads)
        if config.channel is not None:
            preset = dataclasses.replace(preset, midi_channel=None)  # MidiInput filters --channel for every preset
        self.preset_path = Path(config.preset)
        # where a JACK server runs, the player's one JACK client opens here (runtime.output_plan); else PortAudio's
        plan = plan_output(config.device, config.client_name, config.samplerate)
        self.device, self.samplerate = plan.device, plan.samplerate
        blocksize = ANY_BLOCK if plan.client is not None else config.blocksize or ANY_BLOCK  # JACK: any period
        instrument = build_instrument(preset, sample_rate=self.samplerate, blocksize=blocksize,
                                      max_channels=self.device["max_output_channels"], max_voices=config.max_voices,
                                      worker_factory=LiveWorker)
        self.engine, self.controller = instrument.engine, instrument.controller
        self.worker: LiveWorker = instrument.worker  # type: ignore[assignment]  # built by worker_factory
        axes = self.controller.model.metadata.knob_names()  # latent axes and shaping controls
        if config.learn is not None and config.learn not in axes:
            raise ConfigError("--learn", f"the model has no axis {config.learn!r} "
                                         f"(it has: {', '.join(axes) or 'none'})")
        self.worker.render_now()  # the first hit has a sound
        self.worker.reset_timings()
        self.audio = plan.output(self.engine, blocksize=config.blocksize, connect=config.connect,
                                 rt_priority=config.rt_priority)
        self.audio.accepts = self.controller.accepts  # the JACK callback plays a note-on only where this says so
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.midi: MidiThread | None = None
        self.learn_axis: str | None = config.learn
        self.last_note: int | None = None
        self.recent: collections.deque = collections.deque(maxlen=12)  # (time, text) for the status view
        self.messages: collections.deque = collections.deque(maxlen=6)  # saved files, learned CCs, errors
        self.counts = collections.Counter()
        self.peak_max = 0.0
        self.rss: list[tuple[float, float]] = []
        self.started = 0.0
        self.failure: str | None = None  # why the run ended on its own (the stream or MIDI thread stopped)
        self.gc_pauses = GcPauses()
        self.frozen_objects = 0
        self._stop = threading.Event()
        self._control: threading.Thread | None = None
        self._view: StatusView | None = None

    # ------------------------------------------------------------------------------------------------ lifecycle

    def stop(self, *_args) -> None:
        """Ask :meth:`run` to return (signal-handler safe)."""
        self._stop.set()

    def command(self, name: str, argument: str | None = None) -> None:
        """Queue an action for the control thread: ``save``, ``learn`` (argument: axis or None = off), ``random``
        (a new random sound on the pad played last), ``quit``."""
        self.events.put_nowait((name, argument))

    def run(self) -> dict:
        """Play until SIGINT/SIGTERM, ``quit`` or ``--duration``; returns the run's statistics
        (:func:`runtime.status.run_stats`)."""
        config = self.config
        handlers = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self.stop)
            handlers[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, lambda *_: self.command("save"))
            self._open()
            self._watch()
        finally:
            self.gc_pauses.stop()
            if self._view is not None:
                self._view.stop()
            self._shutdown()
            for sig, old in handlers.items():
                signal.signal(sig, old)
        stats = run_stats(self)
        if config.stats_json:
            write_text(config.stats_json, json.dumps(stats, indent=1) + "\n")
        log.info(summary_line(stats))
        if self.failure:
            log.error(f"kickspace: {self.failure}")
        return stats

    def _open(self) -> None:
        """Start the worker, the MIDI input, the control thread, OSC and the status view's drawing process, freeze
        the garbage collector, and start the audio stream last: no JACK client opens and no long GIL hold happens
        while it plays (a client opening mid-stream coincided with server xruns; a full collection holds the GIL
        for milliseconds)."""
        config = self.config
        self.worker.start()
        self.midi = open_midi_input(self.audio, self.events, port=config.midi_port, api=config.midi_api,
                                    client_name=config.client_name, channel=config.channel)
        self._control = threading.Thread(target=self._control_loop, name="kickspace-control", daemon=True)
        self._control.start()
        if self.osc is not None:
            self.osc.start(self.events)
            log.info(f"kickspace: OSC in: {self.osc.label}")
        if not config.quiet:
            self._view = StatusView(self)
            self._view.prepare()
        self.frozen_objects = freeze_gc()  # everything alive now: out of the collector's reach (runtime.scheduling)
        self.gc_pauses.start()
        self.audio.start()
        self.started = time.monotonic()

    def _watch(self) -> None:
        """Say what plays, start the status view, then wait until stopped, ``--duration`` passed, or the audio
        stream, the MIDI thread or the OSC thread ended on its own (:attr:`failure`); samples the RSS each second."""
        log.info(f"kickspace: playing {self.controller.preset.name or self.preset_path} | audio: {self.describe()} "
                 f"| MIDI in: {self.midi.port_label} | Ctrl-C stops")
        for line in self.worker.stats.warnings:  # the first renders' (later ones: status view, summary)
            log.warning(f"kickspace: warning: {line}")
        if self._view is not None:
            self._view.start()
        duration, next_rss = self.config.duration, 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_rss:
                self.rss.append((now - self.started, rss_mb()))
                next_rss = now + 1.0
            if duration is not None and now - self.started >= duration:
                break
            self.failure = self.audio.end_message() if self.audio.ended else self.midi.failure or \
                (self.osc.failure if self.osc is not None else None)
            if self.failure:  # the stream or the MIDI thread ended on its own
                break
            self._stop.wait(0.1)
        self.rss.append((time.monotonic() - self.started, rss_mb()))

    def _shutdown(self) -> None:
        # the sound stops first: the JACK clients closing after it cannot disturb the stream's last blocks
        self.peak_max = max(self.peak_max, self.audio.take_peak())
        self.audio.close()
        if self.midi is not None:
            self._close_midi()
        if self.osc is not None:
            self.osc.close()
        if self._control is not None:
            self.events.put_nowait(None)
            self._control.join(5.0)
            self._control = None
        self.worker.stop()

    def _close_midi(self, timeout: float = MIDI_CLOSE_TIMEOUT_S) -> bool:
        """Close the MIDI input from a helper thread, waiting at most ``timeout`` seconds; True when it closed.

        A JACK MIDI client whose server is gone must not hang the exit; one that does is left to the process's end.
        """
        closer = threading.Thread(target=self.midi.close, name="kickspace-midi-close", daemon=True)
        closer.start()
        closer.join(timeout)
        if closer.is_alive():
            self.messages.append(f"the MIDI port did not close within {timeout:g} s; left open")
            return False
        return True

    def describe(self) -> str:
        a = self.audio
        where = f"JACK client {a.client_name} ({', '.join(p.split(':', 1)[1] for p in a.ports)}" \
                f"{', connected' if a.connect else ', not connected'})" if a.is_jack else \
                f"device {self.device['index']} {self.device['name']}"
        added = getattr(a, "latency_frames", None)  # the one JACK client's, reported on its ports
        return f"{where}, {self.samplerate} Hz, block {a.blocksize or 'auto'}" + \
            ("" if added is None else f", adds {added} frames of latency (reported to JACK)")

    # ------------------------------------------------------------------------------------------ control thread

    def _control_loop(self) -> None:
        while True:
            item = self.events.get()
            if item is None:
                return
            message, when = item
            try:
                if isinstance(message, str):
                    self._action(message, when)
                elif is_osc_event(message):
                    apply_osc(self, message, when)
                else:
                    self._handle(message, when)
            except KickspaceError as err:  # a bad program-change preset, an unwritable save folder, ...
                self.messages.append(f"error: {err}")
                self.counts["errors"] += 1
            except Exception as err:  # keep playing whatever happens here
                self.messages.append(f"error: {type(err).__name__}: {err}")
                self.counts["errors"] += 1

    def _handle(self, message, when: float) -> None:
        kind = message.type
        offset = 0
        if kind == "note_on" and message.velocity > 0:
            # ALSA stamps each event when it arrives: place the hit at that distance into the next block. JACK MIDI
            # through python-rtmidi is stamped once per JACK cycle (the event's frame in the cycle is lost), so
            # there the hit starts at the next block's first frame: one period after the cycle that carried it.
            offset = self.audio.offset_for(when) if self.midi is not None and self.midi.api == "alsa" else 0
            self.last_note = message.note
            self.counts["notes"] += 1
            self.recent.append((when, f"note {message.note} vel {message.velocity}"))
            if self.midi is not None and self.midi.started_notes:  # the JACK callback started it at its own frame
                if self.controller.accepts(message.channel):
                    self.worker.focus = message.note  # its next sound renders first
                return
        elif kind == "control_change":
            self.counts["cc"] += 1
            if self.learn_axis is not None:
                self._learn(message.control)
        elif kind == "program_change":
            self.counts["programs"] += 1
            self.recent.append((when, f"program {message.program}"))
        self.controller.handle(message, offset, stamp=when)  # knob -> ready counts from the message's arrival

    def _action(self, name: str, argument: str | None) -> None:
        if name == "save":
            self.messages.append(self.save_current_sound())
        elif name == "learn":
            self.learn_axis = argument
            self.messages.append(f"learn: move a knob to bind it to {argument}" if argument else "learn: off")
        elif name == "random":
            self.messages.append(self.controller.randomize(self.last_note))
        elif name == "quit":
            self.stop()

    def _learn(self, cc: int) -> None:
        """MIDI learn: ``cc`` now moves the armed axis (:meth:`runtime.controls.Controller.bind`: a CC already bound
        to another axis is taken from it); learning is off again."""
        axis, self.learn_axis = self.learn_axis, None
        self.controller.bind(axis, cc=cc)
        self.messages.append(f"learned: CC {cc} -> {axis}")

    def save_current_sound(self) -> str:
        """Write the current kick (the last played pad, else the first) to a 24-bit WAV and the current state
        (knob values as defaults, learned CCs) to a new preset beside it; returns what was written."""
        controller = self.controller
        preset = controller.preset
        note = self.last_note if self.last_note in self.engine.notes else preset.pads[0].note
        sound = self.engine.pad_buffer(note)
        if sound is None:
            raise KickspaceError(f"pad {note} has no sound yet (still rendering)")
        folder = Path(self.config.save_dir).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", preset.name or self.preset_path.stem or "kick").strip("-") or "kick"
        stem = f"{base}-{time.strftime('%Y%m%d-%H%M%S')}"
        n = 1
        while (folder / f"{stem}.wav").exists() or (folder / f"{stem}.json").exists():
            n += 1
            stem = f"{base}-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
        wav = folder / f"{stem}.wav"
        write_wav(wav, sound[-1], self.engine.sample_rate)
        saved = controller.current_preset(stem).save(folder / f"{stem}.json")
        return f"saved {wav} and {saved}"


def play(config: PlayConfig) -> int:
    """Entry point of ``runtime play``; returns the exit status: 0 after Ctrl-C, ``quit`` or ``--duration``, 1 when
    the audio stream stopped on its own (the JACK server stopped, the device went away) or the MIDI thread did.
    Without PortAudio or an output device it raises :class:`AudioUnavailable`, or with ``fallback_render`` renders
    the demo groove there instead and returns 0 (:mod:`runtime.fallback`)."""
    dump_stacks_on()
    pin_mmap_threshold()
    try:
        player = Player(config)
    except AudioUnavailable as err:
        if config.fallback_render is None:
            raise
        from runtime.fallback import render_instead

        return render_instead(config.preset, err, config.fallback_render, midi=config.fallback_midi)
    stats = player.run()
    return 1 if player.failure or math.isnan(stats["wall_s"]) else 0
