"""Control state and the control logic: MIDI messages -> knob values, latent points per pad, engine and worker calls.

:class:`ControlState` is the pure part: knob values per name (CC -> value through the knob's curve and range) and each
pad's decoder inputs, one row per velocity layer when velocity moves a knob: latent rows ``z = anchor + sum(value *
scale * direction)`` over the knobs on latent axes, and the shaping controls' row (the values of the knobs on the
model's shaping controls, ``metadata.controls``, fed to the decoder graph's ``controls`` input; issue 20). A knob name
is one or the other, never both (the metadata refuses a name that is both); a model without shaping controls moves
every knob through its latent axes, as before. :class:`Controller` is the control thread's job from DESIGN.md: it
applies CC and program changes to the state and asks the render worker for the sounds the new state needs; note-ons go
straight to the engine (no inference on the note path). Offline render drives the same :class:`Controller` and renders
synchronously. An OSC knob (:mod:`runtime.osc`) is a position 0..1 on the same knob, through the same curve and range
as a CC (:func:`knob_position`, :meth:`Controller.move_knob`); MIDI and OSC learn bind a knob alike
(:meth:`Controller.bind`). A preset's engine settings reach the engine in one place only, :func:`configure_engine`.
Every request the controller makes carries the time of the event that caused it (``stamp``), so live play measures
knob -> ready from the event.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable

import numpy as np

from runtime.dsp import integrated_loudness, prepare_one_shot, resample
from runtime.engine import Engine, PadSettings
from runtime.errors import ConfigError, KickspaceError
from runtime.model import ExportedModel, ModelMetadata
from runtime.preset import Knob, Preset, load_preset
from runtime.worker import PadRequest, RenderWorker

CURVE_FUNCTIONS: dict[str, Callable[[float], float]] = {
    "linear": lambda x: x,
    "quadratic": lambda x: x * x,
    "sqrt": math.sqrt,
    "smooth": lambda x: x * x * (3.0 - 2.0 * x),
}


def knob_value(knob: Knob, cc_value: int) -> float:
    """The knob value of a CC value 0-127: ``min + curve(cc / 127) * (max - min)`` (:func:`knob_position`)."""
    return knob_position(knob, min(max(int(cc_value), 0), 127) / 127.0)


def knob_position(knob: Knob, position: float) -> float:
    """The knob value at ``position`` 0..1 of the control's travel (a CC value / 127, an OSC fader's float):
    ``min + curve(position) * (max - min)``; a position outside 0..1 is clamped."""
    x = min(max(float(position), 0.0), 1.0)
    return knob.min + CURVE_FUNCTIONS[knob.curve](x) * (knob.max - knob.min)


def bind_control(preset: Preset, axis: str, *, cc: int | None = None, osc: str | None = None) -> Preset:
    """MIDI or OSC learn: the preset with ``axis`` moved by MIDI CC ``cc`` or the OSC address ``osc`` from now on.

    The axis's knob keeps its range, curve, default and its other control (an axis without a knob gets one with the
    default range); another knob that had this control loses it, and is left out when that was its only control.
    """
    old = next((k for k in preset.knobs if k.axis == axis), None)
    changes = {"cc": cc} if cc is not None else {"osc": osc}
    knobs = []
    for knob in preset.knobs:
        if knob.axis == axis:
            continue
        taken = {key: None for key, value in changes.items() if getattr(knob, key) == value}
        if taken:
            knob = dataclasses.replace(knob, **taken)
            if knob.cc is None and knob.osc is None:
                continue
        knobs.append(knob)
    knob = dataclasses.replace(old, **changes) if old else Knob(cc=cc, axis=axis, osc=osc)
    return dataclasses.replace(preset, knobs=tuple(knobs) + (knob,))


def velocity_layer_offsets(layers: int, amount: float) -> np.ndarray:
    """Axis (or shaping control) offset of each velocity layer ``[layers]``: ``amount * (2 * v / 127 - 1)`` at the
    layer's centre velocity (the engine picks layer ``velocity * layers // 128``)."""
    centres = (np.arange(layers) + 0.5) * 128.0 / layers
    return amount * (2.0 * np.minimum(centres, 127.0) / 127.0 - 1.0)


class ControlState:
    """Knob values and latent points of one preset on one model.

    Parameters
    ----------
    preset : Preset
        Checked against ``metadata`` here (axes, labels, anchor sizes).
    metadata : ModelMetadata
        The model's axes, shaping controls, labels and latent size.
    anchors : dict, optional
        Note -> latent anchor ``[latent]`` for pads whose anchor is not in the preset (user samples, encoded by
        :func:`encode_samples`); pads without either sit at the origin.
    """

    def __init__(self, preset: Preset, metadata: ModelMetadata, anchors: dict[int, np.ndarray] | None = None) -> None:
        preset.check_against(metadata)
        self.preset = preset
        self.metadata = metadata
        self.values: dict[str, float] = {knob.axis: knob.default for knob in preset.knobs}
        self._anchors = {p.note: np.asarray(p.anchor, dtype=np.float64) if p.anchor is not None
                         else np.asarray((anchors or {}).get(p.note, np.zeros(metadata.latent)), dtype=np.float64)
                         for p in preset.pads}

    def set_cc(self, cc: int, value: int) -> bool:
        """Apply a CC; True when it moved a knob (the sounds must be re-rendered)."""
        changed = False
        for knob in self.preset.knobs:
            if knob.cc == cc:
                new = knob_value(knob, value)
                changed |= self.values.get(knob.axis) != new
                self.values[knob.axis] = new
        return changed

    def set_position(self, axis: str, position: float) -> bool:
        """Move ``axis`` to ``position`` 0..1 of its knob's travel, through the knob's curve and range as a CC
        would (:func:`knob_position`; an axis the preset has no knob for travels -1..1 linearly); True when it
        moved. ``axis`` may name a latent axis or a shaping control; any other name raises :class:`ConfigError`."""
        knob = next((k for k in self.preset.knobs if k.axis == axis), None)
        if knob is None:
            self.check_axis(axis)
            knob = Knob(cc=None, axis=axis)
        new = knob_position(knob, position)
        changed = self.values.get(axis) != new
        self.values[axis] = new
        return changed

    def set_axis(self, name: str, value: float) -> None:
        """Set a knob value directly (one-shot render, tests); the name must be one of the model's axes or shaping
        controls."""
        self.check_axis(name)
        if not math.isfinite(value):
            raise ConfigError(f"axes.{name}", f"must be a finite number, got {value}")
        self.values[name] = float(value)

    def check_axis(self, name: str) -> None:
        """Raise :class:`ConfigError` unless ``name`` is one of the model's knob names (shaping controls and latent
        axes, :meth:`~runtime.model.ModelMetadata.knob_names`)."""
        known = self.metadata.knob_names()
        if name not in known:
            what = "axis or shaping control" if self.metadata.controls else "axis"
            raise ConfigError("axes", f"the model has no {what} named {name!r} (it has: {', '.join(known) or 'none'})")

    def set_anchor(self, note: int, code: np.ndarray) -> None:
        """Move pad ``note``'s latent point to ``code`` ``[latent]`` (a random sound); the knobs keep acting on it."""
        code = np.asarray(code, dtype=np.float64).reshape(-1)
        if note not in self._anchors:
            raise ConfigError("pad", f"the preset has no pad on note {note}")
        if code.shape != (self.metadata.latent,) or not np.all(np.isfinite(code)):
            raise ConfigError("anchor", f"must be {self.metadata.latent} finite numbers (the model's latent size)")
        self._anchors[note] = code

    def anchor(self, note: int) -> np.ndarray:
        """Pad ``note``'s latent point ``[latent]`` (a copy), before the knobs."""
        return self._anchors[note].copy()

    @property
    def layers(self) -> int:
        """Velocity layers per pad (1 unless velocity moves an axis or a shaping control)."""
        return self.preset.velocity.layers if self.preset.velocity.axis is not None else 1

    def pad_z(self, note: int) -> np.ndarray:
        """Latent rows of a pad ``[layers, latent]`` float32 for the current values of the knobs on latent axes
        (knobs on shaping controls leave z alone: :meth:`pad_controls`)."""
        controls = self.metadata.controls
        z = self._anchors[note].copy()
        for name, value in self.values.items():
            if name not in controls:
                axis = self.metadata.axis(name)
                z += value * axis.scale * np.asarray(axis.direction)
        rows = np.repeat(z[None], self.layers, axis=0)
        velocity = self.preset.velocity
        if velocity.axis is not None and velocity.axis not in controls:
            axis = self.metadata.axis(velocity.axis)
            offsets = velocity_layer_offsets(self.layers, velocity.amount)
            rows += offsets[:, None] * axis.scale * np.asarray(axis.direction)[None]
        return rows.astype(np.float32)

    def pad_controls(self, note: int) -> np.ndarray:
        """The shaping controls' rows of a pad ``[layers, len(metadata.controls)]`` float32, columns in the order
        of ``metadata.controls`` (the decoder graph's ``controls`` input): each control's knob value (0, no shaping,
        for a control no knob moves), plus the velocity layer's offset (:func:`velocity_layer_offsets`) when
        velocity moves that control. ``[layers, 0]`` for a model without shaping controls. The same for every pad
        today; ``note`` keeps the per-pad contract of :meth:`pad_z`."""
        controls = self.metadata.controls
        row = np.array([self.values.get(name, 0.0) for name in controls], dtype=np.float64)
        rows = np.repeat(row[None], self.layers, axis=0)
        velocity = self.preset.velocity
        column = None if velocity.axis is None else self.metadata.control_index(velocity.axis)
        if column is not None:
            rows[:, column] += velocity_layer_offsets(self.layers, velocity.amount)
        return rows.astype(np.float32)

    def pad_label(self, note: int) -> int | None:
        """Class index of a pad for a conditional model, else None."""
        pad = self.preset.pad(note)
        return None if pad is None or pad.label is None else self.metadata.labels.index(pad.label)

    def requests(self, model: ExportedModel) -> list[PadRequest]:
        """One render request per pad for the current state (with its shaping controls' rows when the model has
        shaping controls, else ``controls=None``)."""
        shaped = bool(self.metadata.controls)
        return [PadRequest(p.note, model, self.pad_z(p.note), self.pad_label(p.note),
                           self.pad_controls(p.note) if shaped else None) for p in self.preset.pads]


def encode_samples(preset: Preset, model: ExportedModel) -> dict[int, np.ndarray]:
    """Latent anchors ``{note: [latent]}`` of the pads that use a user's own sample, through the encoder graph.

    The sample is read with soundfile, mixed to mono, resampled to the model rate and prepared as the training
    one-shots were (:func:`prepare_sample`); its anchor is the encoder's mean. A sample that cannot be read or
    prepared fails with one line naming the pad.
    """
    anchors = {}
    for i, pad in enumerate(preset.pads):
        if pad.sample is None:
            continue
        where = f"pads[{i}].sample"
        if not model.has_encoder:
            raise ConfigError(where, f"the model at {model.folder} was exported without an encoder, "
                                     f"so it cannot place your own sample; use an anchor or a label")
        try:
            mono = read_sample(pad.sample, model.metadata)
        except KickspaceError as err:
            raise ConfigError(where, str(err)) from None
        label = None if pad.label is None else model.metadata.labels.index(pad.label)
        mu, _ = model.encode(mono[None], label=label)
        anchors[pad.note] = mu[0].astype(np.float64)
    return anchors


def read_sample(path: str | Path, metadata: ModelMetadata) -> np.ndarray:
    """A sound file -> the encoder's input ``[metadata.n_samples]`` float32 (read with soundfile, then
    :func:`prepare_sample`). Raises :class:`KickspaceError` (one line naming the file) for a file that cannot be
    read or prepared."""
    import soundfile as sf

    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as err:
        raise KickspaceError(f"cannot read {path} ({err})") from None
    try:
        return prepare_sample(audio.T, rate, metadata)
    except KickspaceError as err:
        raise KickspaceError(f"{path}: {err}") from None


def prepare_sample(audio: np.ndarray, sample_rate: int, metadata: ModelMetadata) -> np.ndarray:
    """A user's sample ``[C, N]`` at ``sample_rate`` -> the encoder's input ``[metadata.n_samples]`` float32.

    Mixed to mono, resampled to the model rate, then onset-aligned, cropped or zero-padded with the fade-out and
    loudness-normalised with the model's own settings (:attr:`ModelMetadata.preparation`), as
    ``trainer.data.audio.prepare`` prepared the training one-shots. Raises :class:`KickspaceError` (one line) for
    an empty, non-finite or silent sample.
    """
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    if audio.shape[-1] == 0:
        raise KickspaceError("the file holds no samples")
    if not np.all(np.isfinite(audio)):
        raise KickspaceError("it holds NaN or infinite samples: the file is damaged")
    mono = resample(audio.mean(axis=0), sample_rate, metadata.sample_rate).astype(np.float32)[None]
    if not np.any(mono):
        raise KickspaceError("every sample is zero")
    prepared = prepare_one_shot(mono, metadata.sample_rate, metadata.n_samples, preparation=metadata.preparation,
                                measure=integrated_loudness)
    return prepared[0]


class Controller:
    """Applies MIDI to an instrument: notes -> engine, CC -> knobs (+ re-render), program change -> preset switch.

    Parameters
    ----------
    preset : Preset
        The preset to start with; its ``programs`` name the presets program changes switch to.
    engine : Engine
        Where hits go and sounds end up.
    worker : RenderWorker
        Renders the pads' sounds; threaded for live play, or call ``worker.render_now()`` after :meth:`handle`
        (offline render).
    """

    def __init__(self, preset: Preset, engine: Engine, worker: RenderWorker) -> None:
        self.engine = engine
        self.worker = worker
        self._models: dict[Path, ExportedModel] = {}
        self._presets: dict[Path, Preset] = {}
        self.preset = preset
        self.model = self._model(preset)
        self.state = ControlState(preset, self.model.metadata, encode_samples(preset, self.model))
        self._rng = np.random.default_rng()
        self._randomized: set[int] = set()  # pads whose latent point a random sound replaced
        self._apply_preset()

    def _model(self, preset: Preset) -> ExportedModel:
        if preset.model not in self._models:
            model = ExportedModel(preset.model)
            model.warm_up()  # the first knob move renders as fast as the next ones
            self._models[preset.model] = model
        return self._models[preset.model]

    def _apply_preset(self, stamp: float | None = None) -> None:
        configure_engine(self.engine, self.preset)
        self.worker.request(self.state.requests(self.model), replace=True, stamp=stamp)

    def accepts(self, channel: int) -> bool:
        """Whether a message on MIDI channel ``channel`` (0-15, mido numbering) passes the preset's filter."""
        return self.preset.midi_channel is None or channel == self.preset.midi_channel - 1

    def handle(self, message, offset: int = 0, *, stamp: float | None = None) -> bool:
        """Apply one mido message; True when it changed the sounds (a render is pending).

        ``offset``: the note-on's sample offset into the next block. ``stamp``: when the message arrived
        (``time.monotonic()`` seconds), handed to the worker with the requests it causes
        (:meth:`RenderWorker.request`), so live play times knob -> ready from the event.
        """
        if not hasattr(message, "channel") or not self.accepts(message.channel):
            return False
        if message.type == "note_on" and message.velocity > 0:
            self.engine.note_on(message.note, message.velocity, offset)
            self.worker.focus = message.note  # its next sound renders first
        elif message.type == "control_change":
            if self.state.set_cc(message.control, message.value):
                self.worker.request(self.state.requests(self.model), stamp=stamp)
                return True
        elif message.type == "program_change":
            return self.program_change(message.program, stamp=stamp)
        return False

    def move_knob(self, axis: str, position: float, *, stamp: float | None = None) -> bool:
        """Move ``axis`` to ``position`` 0..1 of its knob's travel (:meth:`ControlState.set_position`, an OSC
        fader) and request the new sounds as a CC would (``stamp`` as in :meth:`handle`); True when it changed
        the sounds."""
        if self.state.set_position(axis, position):
            self.worker.request(self.state.requests(self.model), stamp=stamp)
            return True
        return False

    def bind(self, axis: str, *, cc: int | None = None, osc: str | None = None) -> Knob:
        """MIDI or OSC learn: ``axis`` moves with CC ``cc`` or OSC address ``osc`` from now on (:func:`bind_control`);
        returns the axis's knob. The current preset (what "save current sound" writes) keeps the binding.

        Raises :class:`ConfigError` for a name that is neither one of the model's axes nor one of its shaping
        controls: a knob on an unknown name would break every later render.
        """
        self.state.check_axis(axis)
        self.preset = self.state.preset = bind_control(self.preset, axis, cc=cc, osc=osc)
        knob = next(k for k in self.preset.knobs if k.axis == axis)
        self.state.values.setdefault(axis, knob.default)
        return knob

    def current_preset(self, name: str) -> Preset:
        """The current state as a preset named ``name``: the knobs' current values (clamped to their ranges) as
        their defaults, learned bindings included, and the pads a random sound replaced (:meth:`randomize`) at
        their new latent point; what "save current sound" writes beside the WAV."""
        values = self.state.values
        knobs = tuple(dataclasses.replace(k, default=_clamp(values.get(k.axis, k.default), k.min, k.max))
                      for k in self.preset.knobs)
        pads = tuple(dataclasses.replace(p, anchor=tuple(self.state.anchor(p.note).tolist()), sample=None)
                     if p.note in self._randomized else p for p in self.preset.pads)
        return dataclasses.replace(self.preset, knobs=knobs, pads=pads, name=name)

    def randomize(self, note: int | None = None, *, rng: np.random.Generator | None = None,
                  stamp: float | None = None) -> str:
        """Give pad ``note`` (default: the preset's first) a new random sound: a code drawn from the model's prior
        (:meth:`~runtime.model.ModelMetadata.random_prior`: fitted to real sounds when the export shipped one; the
        Gaussian of the pad's class when the prior has one), its label and the knobs as they are; request its
        render (``stamp`` as in :meth:`handle`). Returns one line for the user."""
        note = self.preset.pads[0].note if note is None or self.preset.pad(note) is None else note
        label = self.preset.pad(note).label
        prior = self.model.metadata.random_prior()
        self.state.set_anchor(note, prior.for_label(label).sample(1, rng if rng is not None else self._rng)[0])
        self._randomized.add(note)
        self.worker.request([r for r in self.state.requests(self.model) if r.note == note], stamp=stamp)
        return f"pad {note}: a new random sound, drawn from {prior.describe(label)}"

    def set_axes(self, values: dict[str, float]) -> None:
        """Set knob values (latent axes or shaping controls) directly and request the new sounds."""
        for name, value in values.items():
            self.state.set_axis(name, value)
        self.worker.request(self.state.requests(self.model))

    def program_change(self, program: int, *, stamp: float | None = None) -> bool:
        """Switch to the preset the current one maps ``program`` to; False when it maps none."""
        path = self.preset.programs.get(program)
        if path is None:
            return False
        if path not in self._presets:
            self._presets[path] = load_preset(path)
        self.switch(self._presets[path], stamp=stamp)
        return True

    def switch(self, preset: Preset, *, stamp: float | None = None) -> None:
        """Play ``preset`` from now on (ringing voices finish with their old sounds); ``stamp`` as in
        :meth:`handle`."""
        if preset.output.channels != self.engine.channels:
            raise KickspaceError(f"preset {preset.name or preset.model}: output.channels is "
                                 f"{preset.output.channels}, the running engine has {self.engine.channels}")
        model = self._model(preset)
        state = ControlState(preset, model.metadata, encode_samples(preset, model))
        merged = dict(preset.programs)
        for number, path in self.preset.programs.items():
            merged.setdefault(number, path)  # keep the way back to the presets we came from
        self.preset, self.model, self.state = dataclasses.replace(preset, programs=merged), model, state
        self._randomized = set()
        self._apply_preset(stamp)


def configure_engine(engine: Engine, preset: Preset) -> None:
    """Apply ``preset``'s engine settings to ``engine``: master gain, velocity curve, fade time, each pad's gain and
    choke group; pads the preset lacks are removed. The one place a preset reaches the engine (the engine is built
    with its rate, block size, channels and voices only: :func:`runtime.instrument.build_instrument`), so live play,
    a program change and offline render cannot configure it differently."""
    engine.configure(output_gain=preset.output.gain, velocity_curve=preset.velocity.curve,
                     fade_ms=preset.output.fade_ms)
    engine.set_pads({p.note: PadSettings(p.gain, p.choke) for p in preset.pads})
    keep = {p.note for p in preset.pads}
    for note in engine.notes:
        if note not in keep:
            engine.remove_pad(note)


def _clamp(value: float, a: float, b: float) -> float:
    lo, hi = min(a, b), max(a, b)
    return min(max(float(value), lo), hi)
