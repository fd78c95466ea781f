"""Offline render: the realtime engine stepped block by block without an audio device, to a 24-bit WAV.

``render_midi`` plays a MIDI file through the instrument live play builds (:func:`offline_instrument`, through
:func:`runtime.instrument.build_instrument`: the same controller, render worker and engine): notes start at their
exact sample (the file's tempo map honoured), a CC or program change re-renders the pads synchronously at its own
sample (the block is split there), so later hits sound different and ringing ones keep their sound. Everything runs
in one thread, so the same input renders bit-identically. ``render_one_shot`` renders one hit at given axis values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.engine import Engine
from runtime.errors import ConfigError, KickspaceError
from runtime.instrument import Instrument, build_instrument
from runtime.model import DECODER_FILE, read_metadata
from runtime.preset import Preset, load_preset
from runtime.worker import RenderWorker

CONTROL_TYPES = ("control_change", "program_change")


def midi_events(midi_path: str | Path, sample_rate: int) -> tuple[list[tuple[int, object]], int]:
    """Channel messages of a MIDI file with their sample positions, in play order, and the file's length in samples.

    Positions follow the file's tempo map (mido converts ticks to seconds per tempo change).
    """
    import mido

    try:
        midi = mido.MidiFile(str(midi_path))
        seconds, events = 0.0, []
        for message in midi:  # merged tracks, message.time = seconds since the previous message
            seconds += message.time
            if not message.is_meta and hasattr(message, "channel"):
                events.append((int(round(seconds * sample_rate)), message))
    except (OSError, EOFError, ValueError, TypeError) as err:
        raise KickspaceError(f"{midi_path}: cannot read this MIDI file ({err})") from None
    return events, int(round(seconds * sample_rate))


def output_rate(preset: Preset | str | Path, sample_rate: int | None = None) -> int:
    """The rate a render runs at: ``sample_rate`` when given, else the preset's model rate."""
    if sample_rate:
        return int(sample_rate)
    if not isinstance(preset, Preset):
        preset = load_preset(preset)
    return read_metadata(preset.model / DECODER_FILE).sample_rate


def offline_instrument(preset: Preset | str | Path, *, sample_rate: int | None = None, blocksize: int = 256,
                       max_voices: int = 16) -> Instrument:
    """The instrument an offline render steps (:func:`runtime.instrument.build_instrument`, plain worker), every
    pad already rendered (:func:`render_pending`); ``sample_rate`` None: the model's rate (:func:`output_rate`)."""
    if not isinstance(preset, Preset):
        preset = load_preset(preset)
    instrument = build_instrument(preset, sample_rate=output_rate(preset, sample_rate), blocksize=blocksize,
                                  max_voices=max_voices)
    render_pending(instrument.worker)
    return instrument


def render_pending(worker: RenderWorker) -> int:
    """Render every pending pad now (:meth:`RenderWorker.render_now`); returns the number rendered.

    Raises
    ------
    KickspaceError
        A decoder output NaN or infinite samples: one line naming the model and the pad (an offline render of a
        broken model would be silence where the hits should be).
    """
    rendered = worker.render_now()
    if worker.stats.warnings:
        raise KickspaceError(worker.stats.warnings[0])
    return rendered


def render_midi(preset: Preset | str | Path, midi_path: str | Path, *, sample_rate: int | None = None,
                blocksize: int = 256, max_voices: int = 16) -> np.ndarray:
    """Render a MIDI file offline.

    Parameters
    ----------
    preset : Preset or path
        The instrument (a preset file, its folder, or a loaded preset).
    midi_path : path
        Standard MIDI file; notes, CC automation and program changes are honoured, note-offs ignored (one-shots).
    sample_rate : int, optional
        Output rate; default the model's rate (other rates are resampled in the worker).
    blocksize : int
        Engine block size; the result does not depend on it except through where blocks split.

    Returns
    -------
    ndarray
        ``[frames, channels]`` float32 in [-1, 1]: the file's length or until the last hit has rung out.
    """
    instrument = offline_instrument(preset, sample_rate=sample_rate, blocksize=blocksize, max_voices=max_voices)
    controller, engine, worker = instrument.controller, instrument.engine, instrument.worker
    events, length = midi_events(midi_path, engine.sample_rate)
    block = np.zeros((blocksize, engine.channels), dtype=np.float32)
    chunks, clock, i = [], 0, 0
    while i < len(events) or engine.pending_events or engine.active_voices or clock < length:
        stop = clock + blocksize
        for sample, message in events[i:]:  # split the block at the next control event
            if sample >= stop:
                break
            if sample > clock and message.type in CONTROL_TYPES:
                stop = sample
                break
        while i < len(events) and events[i][0] < stop:
            sample, message = events[i]
            if controller.handle(message, max(0, sample - clock)):
                render_pending(worker)
            i += 1
        engine.process(block[:stop - clock])
        chunks.append(block[:stop - clock].copy())
        clock = stop
    return np.concatenate(chunks) if chunks else np.zeros((0, engine.channels), np.float32)


def render_one_shot(preset: Preset | str | Path, axes: dict[str, float] | None = None, *, note: int | None = None,
                    velocity: int = 127, sample_rate: int | None = None, blocksize: int = 256) -> np.ndarray:
    """Render one hit of a pad (default: the preset's first) at the given knob values (others at their knob
    default); a name is one of the model's latent axes or shaping controls (``ControlState.check_axis``).

    Returns
    -------
    ndarray
        ``[frames, channels]`` float32, the whole sound.
    """
    instrument = offline_instrument(preset, sample_rate=sample_rate, blocksize=blocksize)
    controller, engine, worker = instrument.controller, instrument.engine, instrument.worker
    note = _pad_note(controller.preset, note)
    if axes:
        controller.set_axes(axes)
        render_pending(worker)
    return play_hit(engine, note, velocity)


def render_random(preset: Preset | str | Path, count: int, *, seed: int, note: int | None = None,
                  velocity: int = 127, sample_rate: int | None = None,
                  blocksize: int = 256) -> tuple[list[tuple[np.ndarray, Preset]], str]:
    """``count`` random sounds on one pad (default: the preset's first): codes drawn from the model's prior
    (:meth:`~runtime.controls.Controller.randomize`; ``seed`` makes them reproducible), the pad's label and the
    knobs at their defaults, one hit each.

    Returns
    -------
    sounds : list of (ndarray, Preset)
        Per sound, ``[frames, channels]`` float32 (as :func:`render_one_shot`) and the preset that plays it again
        (the pad at its drawn latent point: what "save current sound" writes).
    source : str
        Where the codes came from, one line (:meth:`runtime.prior.LatentPrior.describe`).
    """
    if not isinstance(count, int) or count < 1:
        raise ConfigError("--random", f"must be a positive number of sounds, got {count!r}")
    instrument = offline_instrument(preset, sample_rate=sample_rate, blocksize=blocksize)
    controller, engine, worker = instrument.controller, instrument.engine, instrument.worker
    note = _pad_note(controller.preset, note)
    rng = np.random.default_rng(seed)
    sounds = []
    for i in range(count):
        controller.randomize(note, rng=rng)
        render_pending(worker)
        sounds.append((play_hit(engine, note, velocity), controller.current_preset(f"random-s{seed}-{i + 1:03d}")))
    return sounds, controller.model.metadata.random_prior().describe(controller.preset.pad(note).label)


def _pad_note(preset: Preset, note: int | None) -> int:
    """``note``, or the preset's first pad's when None; ConfigError (``--note``) when the preset has no such pad."""
    note = preset.pads[0].note if note is None else note
    if preset.pad(note) is None:
        notes = ", ".join(str(p.note) for p in preset.pads)
        raise ConfigError("--note", f"the preset has no pad on note {note} (it has: {notes})")
    return note


def play_hit(engine: Engine, note: int, velocity: int) -> np.ndarray:
    """Play one note on an idle engine until every voice has ended: ``[frames, channels]`` float32, the pad's length.

    What the output hears: the velocity gain, the limiter and the output stage included. A limiter still
    recovering from an earlier hit is first run on silence until it has released (at most 10 s), so each hit
    sounds as on a fresh engine (:func:`render_random` plays many in a row).
    """
    block = np.zeros((engine.blocksize, engine.channels), dtype=np.float32)
    for _ in range(int(10 * engine.sample_rate / engine.blocksize)):
        if engine.limiter_gain == 1.0:
            break
        engine.process(block)
    engine.note_on(note, velocity)
    chunks = []
    while engine.pending_events or engine.active_voices:
        engine.process(block)
        chunks.append(block.copy())
    frames = engine.pad_buffer(note).shape[1]
    return np.concatenate(chunks)[:frames]


def parse_axes(text: str) -> dict[str, float]:
    """``"sub=0.8,decay=0.3"`` -> ``{"sub": 0.8, "decay": 0.3}`` (knob values: axis units for a latent axis,
    typically -1..1; -1..1 for a shaping control, 0 = no shaping)."""
    values = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError("--axes", f"{item!r} is not NAME=NUMBER (example: sub=0.8,decay=0.3)")
    return values
