"""THE preset schema: how a model is played (knobs, pads, velocity, output, MIDI channel, program changes).

A preset is a versioned JSON document, validated on load and never code. Paths inside it (the model folder, a pad's
user sample, the presets that program changes switch to) are relative to the preset file, so a preset folder can be
moved or shipped as a whole. Every invalid, unknown or missing field raises :class:`~runtime.errors.ConfigError`
naming the field path, e.g. ``knobs[2].cc: must be an integer 0-127, got 300``.

Example (``presets/kicks/preset.json``)::

    {
      "format": "kickspace-preset", "format_version": 1, "name": "kicks",
      "model": ".",
      "midi_channel": null,
      "knobs": [{"cc": 20, "axis": "sub", "min": -1.0, "max": 1.0, "default": 0.0, "curve": "linear",
                 "osc": "/1/fader1"}],
      "pads": [{"note": 36, "name": "kick", "label": null, "anchor": null, "sample": null, "gain": 1.0,
                "choke": null}],
      "velocity": {"curve": 1.0, "axis": null, "amount": 0.0, "layers": 4},
      "output": {"gain": 1.0, "fade_ms": 5.0, "channels": 2},
      "programs": {"1": "../kit/preset.json"}
    }

Required: ``format``, ``format_version``, ``model``, ``knobs``, ``pads`` (and ``axis`` of a knob, ``note`` of a pad);
everything else has the default shown above, but a knob's ``cc`` and ``osc`` default to null (no MIDI CC, no OSC
address of its own: ``/kickspace/knob/<axis>`` still moves it, :mod:`runtime.osc`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError, KickspaceError
from runtime.schema import check_fields
from runtime.files import write_text
from runtime.model import ModelMetadata

FORMAT_NAME = "kickspace-preset"
MAX_PRESET_BYTES = 1 << 20  # a preset with 128 pads of 64-value anchors is about 60 KiB
FORMAT_VERSION = 1
PRESET_FILE = "preset.json"
CURVES = ("linear", "quadratic", "sqrt", "smooth")
FIRST_KNOB_CC = 20
MAX_DEFAULT_KNOBS = 12  # CC 20-31 are undefined in the MIDI spec: free for a synth's own knobs
OSC_ROOT = "/kickspace"  # the player's own OSC addresses (runtime.osc); a knob's own address lies outside it
MAX_OSC_ADDRESS = 256

# General MIDI percussion notes for common drum class names (a CVAE kit's labels).
GM_NOTES = {"kick": 36, "bd": 36, "bass drum": 36, "rim": 37, "rimshot": 37, "snare": 38, "sd": 38, "clap": 39,
            "hat": 42, "hihat": 42, "hi-hat": 42, "closed hat": 42, "closed_hat": 42, "chh": 42, "open hat": 46,
            "open_hat": 46, "ohh": 46, "tom": 45, "low tom": 45, "mid tom": 47, "high tom": 50, "crash": 49,
            "ride": 51, "cymbal": 49, "cowbell": 56, "shaker": 70, "perc": 60, "percussion": 60}
HAT_NOTES = (42, 46)  # closed and open hat choke each other by default

_SHORT = reprlib.Repr()  # values in messages: a few items, levels and characters
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 2, 4, 4, 40, 40, 40


@dataclass(frozen=True)
class Knob:
    """A control that moves one named knob of the model: a MIDI CC, an OSC address, or both.

    ``axis`` names a shaping control of the model (``metadata.controls``: the value is fed to the decoder graph's
    ``controls`` input) or a latent axis (``metadata.axes``). A position ``x`` in 0..1 of the control's travel (CC
    value / 127, or an OSC float) maps to ``min + curve(x) * (max - min)``, the knob value: the control's value, or
    the latent move in ``z = anchor + value * scale * direction``; ``default``
    is the value before the first move. ``cc`` None: no MIDI CC; ``osc``: an OSC address of the knob's own (e.g. a
    TouchOSC fader's ``/1/fader1``) besides ``/kickspace/knob/<axis>``, which moves it always.
    """

    cc: int | None
    axis: str
    min: float = -1.0
    max: float = 1.0
    default: float = 0.0
    curve: str = "linear"
    osc: str | None = None


@dataclass(frozen=True)
class Pad:
    """A MIDI note that fires a sound.

    The sound's latent point is ``anchor`` (a latent vector; the origin when neither it nor ``sample`` is given) or
    the encoder's mean for ``sample`` (a user's own one-shot), plus the knobs; ``label`` picks the class of a CVAE.
    ``gain`` is linear; pads sharing a ``choke`` group cut each other off (open/closed hat).
    """

    note: int
    name: str = ""
    label: str | None = None
    anchor: tuple[float, ...] | None = None
    sample: Path | None = None
    gain: float = 1.0
    choke: int | None = None


@dataclass(frozen=True)
class Velocity:
    """Velocity -> gain ``(velocity / 127) ** curve`` (0 = every hit at full level), and optionally -> a knob.

    With ``axis`` set (a latent axis or a shaping control, as :class:`Knob`'s), a hit adds
    ``amount * (2 * velocity / 127 - 1)`` to that knob's value (soft hits below the knob's
    value, hard hits above); the runtime pre-renders ``layers`` velocity layers per pad so a hit needs no inference.
    """

    curve: float = 1.0
    axis: str | None = None
    amount: float = 0.0
    layers: int = 4


@dataclass(frozen=True)
class Output:
    """Master gain (linear), the fade (ms) used when a voice is stolen or choked, and output channels (1 or 2)."""

    gain: float = 1.0
    fade_ms: float = 5.0
    channels: int = 2


@dataclass(frozen=True)
class Preset:
    """One playable instrument: a model plus its control mapping. Paths are absolute once loaded."""

    model: Path
    knobs: tuple[Knob, ...]
    pads: tuple[Pad, ...]
    name: str = ""
    velocity: Velocity = field(default_factory=Velocity)
    output: Output = field(default_factory=Output)
    midi_channel: int | None = None
    programs: dict[int, Path] = field(default_factory=dict)
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def pad(self, note: int) -> Pad | None:
        """The pad on ``note``, or None."""
        for pad in self.pads:
            if pad.note == note:
                return pad
        return None

    def to_dict(self, *, relative_to: str | Path | None = None) -> dict[str, Any]:
        """JSON-ready dict; paths are written relative to the folder ``relative_to`` when given."""
        def rel(path: Path | None) -> str | None:
            if path is None:
                return None
            return Path(os.path.relpath(path, relative_to)).as_posix() if relative_to is not None else str(path)

        return {"format": self.format, "format_version": self.format_version, "name": self.name,
                "model": rel(self.model), "midi_channel": self.midi_channel,
                "knobs": [{key: value for key, value in dataclasses.asdict(k).items()
                           if key != "osc" or value is not None} for k in self.knobs],
                "pads": [{**dataclasses.asdict(p), "anchor": None if p.anchor is None else list(p.anchor),
                          "sample": rel(p.sample)} for p in self.pads],
                "velocity": dataclasses.asdict(self.velocity), "output": dataclasses.asdict(self.output),
                "programs": {str(k): rel(v) for k, v in sorted(self.programs.items())}}

    def save(self, path: str | Path) -> Path:
        """Write the preset atomically (temporary file + rename); paths become relative to its folder."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text(path, json.dumps(self.to_dict(relative_to=path.parent.resolve()), indent=2) + "\n")

    def check_against(self, metadata: ModelMetadata) -> None:
        """Refuse axes, labels and anchors the model does not have, naming the preset field. A knob's (or
        velocity's) ``axis`` may name a latent axis or one of the model's shaping controls."""
        names = list(metadata.knob_names())
        for i, knob in enumerate(self.knobs):
            _need_axis(knob.axis, names, f"knobs[{i}].axis")
        if self.velocity.axis is not None:
            _need_axis(self.velocity.axis, names, "velocity.axis")
        for i, pad in enumerate(self.pads):
            where = f"pads[{i}]"
            if pad.label is not None and pad.label not in metadata.labels:
                known = ", ".join(metadata.labels) or "none: the model is not conditioned on a class"
                raise ConfigError(f"{where}.label", f"the model has no class {pad.label!r} (it has: {known})")
            if pad.label is None and metadata.conditional:
                raise ConfigError(f"{where}.label", f"missing: this model needs a class, one of "
                                                    f"{', '.join(metadata.labels)}")
            if pad.anchor is not None and len(pad.anchor) != metadata.latent:
                raise ConfigError(f"{where}.anchor", f"has {len(pad.anchor)} values, the model's latent size is "
                                                     f"{metadata.latent}")


def _need_axis(name: str, names: list[str], where: str) -> None:
    if name not in names:
        raise ConfigError(where, f"the model has no axis {name!r} (it has: {', '.join(names) or 'none'})")


# ----------------------------------------------------------------------------------------------------------- loading

def load_preset(path: str | Path) -> Preset:
    """Read and validate a preset JSON file (or a folder holding ``preset.json``).

    Every way a file can fail to be a preset fails with one line naming the file: missing or unreadable, over
    :data:`MAX_PRESET_BYTES`, not UTF-8, not JSON (a key twice in one object included), nested too deeply for the
    decoder, not an object, or a field of the wrong type or range (``PATH: pads[0].note: ...``).

    Raises
    ------
    ConfigError
        An invalid, unknown or missing field, named by the file and its path in the document (``pads[0].note``).
    KickspaceError
        The file is missing, unreadable, too large, not UTF-8 JSON, or of another format version.
    """
    path = Path(path)
    try:
        if path.is_dir():
            path = path / PRESET_FILE
        data = read_json(path, what="preset")
        return preset_from_dict(data, base=path.parent.resolve())
    except ConfigError as err:
        raise ConfigError(f"{path}: {err.field}", err.problem) from None
    except RecursionError:
        raise KickspaceError(f"{path}: not a preset (its values are nested too deeply)") from None
    except OSError as err:
        raise KickspaceError(f"{path}: cannot read the preset ({err.strerror or err})") from None


def read_json(path: Path, *, what: str, max_bytes: int = MAX_PRESET_BYTES) -> Any:
    """The JSON document in the file ``path`` (a ``what`` file), read defensively: at most ``max_bytes`` read,
    strict UTF-8 (a byte-order mark allowed), no key twice in one object. Raises :class:`KickspaceError` with one
    line naming the file; ``OSError`` from opening it passes through."""
    if not path.exists():
        raise KickspaceError(f"{path}: {what} file not found")
    if not path.is_file():
        raise KickspaceError(f"{path}: not a {what} file (a folder, device or pipe)")
    with open(path, "rb") as handle:
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise KickspaceError(f"{path}: larger than {max_bytes // 1024} KiB, too large to be a {what}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise KickspaceError(f"{path}: not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}); save it "
                             f"as UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise KickspaceError(f"{path}: not a {what} (nested too deeply)") from None
    except ValueError as err:  # JSONDecodeError, a key twice, an integer of thousands of digits
        raise KickspaceError(f"{path}: not valid JSON ({err})") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a JSON object naming a key twice is refused (the decoder would keep the last one, so
    an edit of the first would silently do nothing)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {_shown(key)} appears twice in one object")
        out[key] = value
    return out


def preset_from_dict(data: Any, *, base: str | Path) -> Preset:
    """Validate a preset document; relative paths resolve against the folder ``base``."""
    base = Path(base)
    d = _obj(data, "preset", Preset, required=("format", "format_version", "model", "knobs", "pads"))
    if d["format"] != FORMAT_NAME:
        raise ConfigError("format", f"must be {FORMAT_NAME!r}, got {_shown(d['format'])} (is this a Kickspace "
                                    f"preset?)")
    if d["format_version"] != FORMAT_VERSION:
        raise ConfigError("format_version", f"version {_shown(d['format_version'])} is not supported by this runtime "
                                            f"(it reads version {FORMAT_VERSION}); update Kickspace or re-save the "
                                            f"preset")
    knobs = tuple(_knob(k, f"knobs[{i}]") for i, k in enumerate(_list(d["knobs"], "knobs")))
    _unique([k.cc for k in knobs], "knobs", "cc")
    _unique([k.osc for k in knobs], "knobs", "osc")
    pads = tuple(_pad(p, f"pads[{i}]", base) for i, p in enumerate(_list(d["pads"], "pads")))
    if not pads:
        raise ConfigError("pads", "needs at least one pad (a MIDI note that fires a sound)")
    _unique([p.note for p in pads], "pads", "note")
    channel = d.get("midi_channel")
    return Preset(model=_path(d["model"], "model", base), knobs=knobs, pads=pads,
                  name=_str(d.get("name", ""), "name"),
                  velocity=_velocity(d.get("velocity", {}), "velocity"), output=_output(d.get("output", {}), "output"),
                  midi_channel=None if channel is None else _int(channel, "midi_channel", 1, 16),
                  programs=_programs(d.get("programs", {}), "programs", base))


def _knob(data: Any, where: str) -> Knob:
    d = _obj(data, where, Knob, required=("axis",))
    cc, osc = d.get("cc"), d.get("osc")
    knob = Knob(cc=None if cc is None else _int(cc, f"{where}.cc", 0, 127), axis=_str(d["axis"], f"{where}.axis"),
                min=_float(d.get("min", -1.0), f"{where}.min"), max=_float(d.get("max", 1.0), f"{where}.max"),
                default=_float(d.get("default", 0.0), f"{where}.default"), curve=d.get("curve", "linear"),
                osc=None if osc is None else _osc_address(osc, f"{where}.osc"))
    if knob.curve not in CURVES:
        raise ConfigError(f"{where}.curve", f"must be one of {', '.join(CURVES)}, got {_shown(knob.curve)}")
    lo, hi = sorted((knob.min, knob.max))
    if not lo <= knob.default <= hi:
        raise ConfigError(f"{where}.default", f"must lie between min and max ({knob.min} .. {knob.max}), got "
                                              f"{knob.default}")
    return knob


def _pad(data: Any, where: str, base: Path) -> Pad:
    d = _obj(data, where, Pad, required=("note",))
    anchor = d.get("anchor")
    if anchor is not None:
        anchor = tuple(_float(v, f"{where}.anchor[{j}]") for j, v in enumerate(_list(anchor, f"{where}.anchor")))
    sample = d.get("sample")
    if anchor is not None and sample is not None:
        raise ConfigError(f"{where}.sample", "a pad takes either an anchor or a sample, not both")
    label = d.get("label")
    choke = d.get("choke")
    gain = _float(d.get("gain", 1.0), f"{where}.gain")
    if not 0.0 <= gain <= 16.0:
        raise ConfigError(f"{where}.gain", f"must be a linear gain 0-16 (1 = unchanged), got {gain}")
    return Pad(note=_int(d["note"], f"{where}.note", 0, 127), name=_str(d.get("name", ""), f"{where}.name"),
               label=None if label is None else _str(label, f"{where}.label"), anchor=anchor,
               sample=None if sample is None else _path(sample, f"{where}.sample", base), gain=gain,
               choke=None if choke is None else _int(choke, f"{where}.choke", 0, 127))


def _velocity(data: Any, where: str) -> Velocity:
    d = _obj(data, where, Velocity, required=())
    curve = _float(d.get("curve", 1.0), f"{where}.curve")
    if not 0.0 <= curve <= 8.0:
        raise ConfigError(f"{where}.curve", f"must be an exponent 0-8 (0 = fixed level, 1 = linear), got {curve}")
    axis = d.get("axis")
    return Velocity(curve=curve, axis=None if axis is None else _str(axis, f"{where}.axis"),
                    amount=_float(d.get("amount", 0.0), f"{where}.amount"),
                    layers=_int(d.get("layers", 4), f"{where}.layers", 1, 16))


def _output(data: Any, where: str) -> Output:
    d = _obj(data, where, Output, required=())
    gain = _float(d.get("gain", 1.0), f"{where}.gain")
    if not 0.0 <= gain <= 16.0:
        raise ConfigError(f"{where}.gain", f"must be a linear gain 0-16 (1 = unchanged), got {gain}")
    fade = _float(d.get("fade_ms", 5.0), f"{where}.fade_ms")
    if not 0.1 <= fade <= 100.0:
        raise ConfigError(f"{where}.fade_ms", f"must be 0.1-100 ms, got {fade}")
    return Output(gain=gain, fade_ms=fade, channels=_int(d.get("channels", 2), f"{where}.channels", 1, 2))


def _programs(data: Any, where: str, base: Path) -> dict[int, Path]:
    if not isinstance(data, dict):
        raise ConfigError(where, f"must be an object mapping program numbers 0-127 to preset files, got "
                                 f"{type(data).__name__}")
    out = {}
    for key, value in data.items():
        if not (isinstance(key, str) and key.isdigit() and 0 <= int(key) <= 127):
            raise ConfigError(f"{where}.{key}", "the key must be a program number 0-127")
        out[int(key)] = _path(value, f"{where}.{key}", base)
    return out


# ----------------------------------------------------------------------------------------------- field validators

def _obj(data: Any, where: str, cls: type, *, required: tuple[str, ...]) -> dict[str, Any]:
    check_fields(data, cls, where=where, prefix="" if where == "preset" else where)
    for key in required:
        if key not in data:
            raise ConfigError(f"{_join(where, key)}", "missing (a required field)")
    return data


def _join(where: str, key: str) -> str:
    return key if where == "preset" else f"{where}.{key}"


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(where, f"must be a list, got {type(value).__name__}")
    return value


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(where, f"must be an integer {lo}-{hi}, got {_shown(value)}")
    return value


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(where, f"must be a finite number, got {_shown(value)}")
    return float(value)


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(where, f"must be a string, got {_shown(value)}")
    return value


def _osc_address(value: Any, where: str) -> str:
    """An OSC address a controller sends (``/1/fader1``): ``/`` then printable ASCII without spaces or the pattern
    characters ``#*,?[]{}``, at most :data:`MAX_OSC_ADDRESS` characters, outside :data:`OSC_ROOT` (reserved)."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > MAX_OSC_ADDRESS or \
            any(not "!" <= c <= "~" or c in "#*,?[]{}" for c in value) or len(value) < 2:
        raise ConfigError(where, f"must be an OSC address such as '/1/fader1' (a '/' then up to "
                                 f"{MAX_OSC_ADDRESS - 1} printable characters, no spaces or #*,?[]{{}}), got "
                                 f"{_shown(value)}")
    if value == OSC_ROOT or value.startswith(OSC_ROOT + "/"):
        raise ConfigError(where, f"{OSC_ROOT}/... addresses are the player's own (/kickspace/knob/<axis> moves "
                                 f"this knob already); give the address your controller sends, got {_shown(value)}")
    return value


def _path(value: Any, where: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(where, f"must be a path (relative to the preset file), got {_shown(value)}")
    try:
        return (base / value).resolve()
    except (ValueError, OSError) as err:  # a NUL byte, a path the system refuses
        raise ConfigError(where, f"not a usable path ({err})") from None


def _shown(value: Any) -> str:
    """``repr(value)`` cut short (a few items, levels and characters), for a one-line message about any value."""
    return _SHORT.repr(value)


def _unique(values: list[Any], where: str, name: str) -> None:
    seen = set()
    for i, value in enumerate(values):
        if value in seen and value is not None:
            raise ConfigError(f"{where}[{i}].{name}", f"{value} is used twice; each {name} may appear once")
        seen.add(value)


# ----------------------------------------------------------------------------------------------- default preset

def default_preset(metadata: ModelMetadata, model_dir: str | Path, *, name: str = "") -> Preset:
    """The default mapping for a model: its knob names (shaping controls, then latent axes) on CC 20, 21, ..., one
    pad per class label (or pad 36 at the origin).

    Labels that are General MIDI drum names get their GM note (kick 36, snare 38, clap 39, hat 42, open hat 46,
    tom 45, ...); others take the next free note from 36 up. Closed and open hat share choke group 1.
    """
    knobs = tuple(Knob(cc=FIRST_KNOB_CC + i, axis=name)
                  for i, name in enumerate(metadata.knob_names()[:MAX_DEFAULT_KNOBS]))
    return Preset(model=Path(model_dir).resolve(), knobs=knobs, pads=_default_pads(metadata.labels), name=name)


def _default_pads(labels: tuple[str, ...]) -> tuple[Pad, ...]:
    if not labels:
        return (Pad(note=36, name="kick"),)
    wanted = {label: GM_NOTES.get(label.strip().lower().replace("-", " ").replace("_", " "),
                                  GM_NOTES.get(label.strip().lower())) for label in labels}
    used: set[int] = set()
    pads = []
    for label in labels:
        note = wanted[label]
        if note is None or note in used:
            note = next(n for n in range(36, 128) if n not in used and n not in wanted.values())
        used.add(note)
        pads.append(Pad(note=note, name=label, label=label, choke=1 if note in HAT_NOTES else None))
    return tuple(sorted(pads, key=lambda p: p.note))
