"""The preset schema: round trip through JSON, relative paths, every kind of invalid field named by its path."""

from __future__ import annotations

import copy
import json
import os

import pytest

from runtime import model as M
from runtime.errors import ConfigError, KickspaceError
from runtime.preset import Knob, Pad, Preset, Velocity, default_preset, load_preset
from tests import onnx_fixtures as fx


def _doc() -> dict:
    return {"format": "kickspace-preset", "format_version": 1, "name": "kicks", "model": "model",
            "midi_channel": 10,
            "knobs": [{"cc": 20, "axis": "sub", "min": -1.0, "max": 1.0, "default": 0.2, "curve": "smooth"},
                      {"cc": 21, "axis": "click"}],
            "pads": [{"note": 36, "name": "kick", "anchor": [1.0, 0.0, 0.0], "gain": 0.8},
                     {"note": 42, "label": "hat", "choke": 1}, {"note": 40, "sample": "samples/mine.wav"}],
            "velocity": {"curve": 1.5, "axis": "click", "amount": 0.3, "layers": 3},
            "output": {"gain": 0.9, "fade_ms": 3.0, "channels": 1},
            "programs": {"1": "../kit/preset.json"}}


def _write(tmp_path, doc) -> str:
    path = tmp_path / "kicks" / "preset.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_round_trip_keeps_every_field_and_paths_stay_relative(tmp_path):
    path = _write(tmp_path, _doc())
    preset = load_preset(path)
    assert preset.model == (tmp_path / "kicks" / "model").resolve()
    assert preset.pads[2].sample == (tmp_path / "kicks" / "samples" / "mine.wav").resolve()
    assert preset.programs == {1: (tmp_path / "kit" / "preset.json").resolve()}
    assert preset.knobs[1] == Knob(cc=21, axis="click") and preset.pads[0].anchor == (1.0, 0.0, 0.0)
    assert preset.velocity == Velocity(curve=1.5, axis="click", amount=0.3, layers=3)

    moved = tmp_path / "elsewhere" / "copy.json"
    preset.save(moved)
    saved = json.loads(moved.read_text())
    assert saved["model"] == "../kicks/model" and saved["programs"] == {"1": "../kit/preset.json"}
    assert load_preset(moved) == preset
    assert load_preset(path.parent) == preset  # a folder means its preset.json
    assert not list(moved.parent.glob("*.tmp"))  # atomic save leaves no temporary file


def _set(doc: dict, where: str, value) -> dict:
    """Set (or with value ... delete) a field by a path like 'pads.0.note'."""
    doc = copy.deepcopy(doc)
    *parents, last = where.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is ...:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize("where, value, message", [
    ("knobs.1.cc", 300, r"knobs\[1\].cc: must be an integer 0-127, got 300"),
    ("knobs.0.cc", "20", r"knobs\[0\].cc: must be an integer 0-127, got '20'"),
    ("knobs.0.curve", "wobbly", r"knobs\[0\].curve: must be one of linear, quadratic, sqrt, smooth"),
    ("knobs.0.default", 3.0, r"knobs\[0\].default: must lie between min and max"),
    ("knobs.1.cc", 20, r"knobs\[1\].cc: 20 is used twice"),
    ("knobs.0.axis", ..., r"knobs\[0\].axis: missing"),
    ("knobs.0.colour", "red", r"knobs\[0\].colour: unknown field \(known: axis, cc, curve, default, max, min, osc\)"),
    ("pads.0.note", ..., r"pads\[0\].note: missing"),
    ("pads.1.note", True, r"pads\[1\].note: must be an integer 0-127, got True"),
    ("pads.0.anchor.1", "x", r"pads\[0\].anchor\[1\]: must be a finite number, got 'x'"),
    ("pads.0.gain", -1.0, r"pads\[0\].gain: must be a linear gain 0-16"),
    ("pads.2.anchor", [0.0, 0.0, 0.0], r"pads\[2\].sample: a pad takes either an anchor or a sample"),
    ("pads", [], r"pads: needs at least one pad"),
    ("pads", {"note": 36}, r"pads: must be a list, got dict"),
    ("velocity.layers", 0, r"velocity.layers: must be an integer 1-16, got 0"),
    ("velocity.speed", 1, r"velocity.speed: unknown field"),
    ("output.channels", 3, r"output.channels: must be an integer 1-2, got 3"),
    ("output.fade_ms", float("nan"), r"output.fade_ms: must be a finite number"),
    ("output", [], r"output: must be an object, got list"),
    ("midi_channel", 0, r"midi_channel: must be an integer 1-16, got 0"),
    ("programs", {"200": "x.json"}, r"programs.200: the key must be a program number 0-127"),
    ("model", ..., r"preset.json: model: missing"),
    ("model", 3, r"model: must be a path \(relative to the preset file\)"),
    ("format_version", 2, r"format_version: version 2 is not supported by this runtime \(it reads version 1\)"),
    ("format", "other", r"format: must be 'kickspace-preset'"),
    ("tempo", 120, r"preset.json: tempo: unknown field"),
    ("pads.0.anchor", [float("nan"), 0.0, 0.0], r"pads\[0\].anchor\[0\]: must be a finite number, got nan"),
    ("output.gain", float("inf"), r"output.gain: must be a finite number, got inf"),
    ("knobs.0.min", "-1", r"knobs\[0\].min: must be a finite number, got '-1'"),
    ("name", ["a"] * 10_000, r"name: must be a string, got \['a', 'a', 'a', 'a', \.\.\.\]$"),
    ("model", "a\u0000b", r"model: not a usable path \(embedded null byte\)"),
])
def test_invalid_fields_are_named_by_their_path(tmp_path, where, value, message):
    path = _write(tmp_path, _set(_doc(), where, value))
    with pytest.raises(ConfigError, match=message) as caught:
        load_preset(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_unreadable_files_fail_clearly(tmp_path):
    with pytest.raises(KickspaceError, match="preset file not found"):
        load_preset(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KickspaceError, match="not valid JSON"):
        load_preset(tmp_path / "bad.json")


def _hostile_files() -> dict[str, tuple[bytes, str]]:
    """File name -> (content, the one-line reason it fails with): every way a file can fail to be a preset before
    its fields are read (tests.badfiles has the audio kinds)."""
    doc = json.dumps(_doc())
    return {
        "nested deep.json": (b"[" * 100_000 + b"]" * 100_000, r"not a preset \(nested too deeply\)"),
        "objects nested deep.json": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, r"not a preset \(nested too deeply\)"),
        "huge.json": (doc[:-1].encode() + b', "name": "' + b"x" * (1 << 20) + b'"}',
                      r"larger than 1024 KiB, too large to be a preset"),
        "latin-1.json": (doc.replace('"kicks"', '"caf\u00e9"').encode("latin-1"),
                         r"not UTF-8 text \(byte 0xe9 at offset \d+\); save it as UTF-8"),
        "utf-16.json": (doc.encode("utf-16"), r"not UTF-8 text \(byte 0xff at offset 0\)"),
        "not an object.json": (b"[1, 2, 3]", r": preset: must be an object, got list"),
        "a string.json": (b'"kickspace-preset"', r": preset: must be an object, got str"),
        "duplicate key.json": (doc[:-1].encode() + b', "name": "again"}',
                               r"not valid JSON \(the key 'name' appears twice in one object\)"),
        "NaN literal.json": (doc.replace('"gain": 0.8', '"gain": NaN').encode(),
                             r"pads\[0\].gain: must be a finite number, got nan"),
        "Infinity literal.json": (doc.replace('"curve": 1.5', '"curve": -Infinity').encode(),
                                  r"velocity.curve: must be a finite number, got -inf"),
        "huge integer.json": (doc.replace('"layers": 3', '"layers": ' + "9" * 5000).encode(),
                              r"not valid JSON \(Exceeds the limit \(4300 digits\)"),
        "empty.json": (b"", r"not valid JSON \(Expecting value: line 1 column 1"),
        "binary.json": (bytes(range(256)), r"not UTF-8 text \(byte 0x80 at offset 128\)"),
    }


@pytest.mark.parametrize("name", list(_hostile_files()))
def test_a_file_that_is_no_preset_fails_with_one_line_naming_it(tmp_path, name):
    content, reason = _hostile_files()[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(KickspaceError, match=reason) as caught:
        load_preset(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 400, message


def test_a_preset_that_is_no_file_fails_with_one_line(tmp_path):
    os.mkfifo(tmp_path / "pipe.json")  # opening it would wait for a writer forever
    with pytest.raises(KickspaceError, match=r"pipe.json: not a preset file \(a folder, device or pipe\)"):
        load_preset(tmp_path / "pipe.json")
    with pytest.raises(KickspaceError, match=r"cannot read the preset \(File name too long\)"):
        load_preset(tmp_path / ("x" * 5000))
    with pytest.raises(KickspaceError, match=r"empty/preset.json: preset file not found"):
        load_preset((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_a_preset_with_a_byte_order_mark_loads(tmp_path):
    path = _write(tmp_path, _doc())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Windows Notepad saves UTF-8
    assert load_preset(path).name == "kicks"


def test_preset_is_checked_against_the_model(tmp_path):
    meta = fx.metadata(labels=("kick", "hat"))
    preset = load_preset(_write(tmp_path, _doc()))
    with pytest.raises(ConfigError, match=r"knobs\[1\].axis: the model has no axis 'click' \(it has: sub\)"):
        preset.check_against(meta)
    ok_axes = fx.metadata(labels=("kick", "hat"), axes=meta.axes + (M.Axis("click", (0.0, 1.0, 0.0)),))
    with pytest.raises(ConfigError, match=r"pads\[0\].label: missing: this model needs a class, one of kick, hat"):
        preset.check_against(ok_axes)
    unconditional = fx.metadata(axes=ok_axes.axes)
    with pytest.raises(ConfigError, match=r"pads\[1\].label: the model has no class 'hat'"):
        preset.check_against(unconditional)
    short = Preset(model=preset.model, knobs=(), pads=(Pad(note=36, anchor=(1.0,)),))
    with pytest.raises(ConfigError, match=r"pads\[0\].anchor: has 1 values, the model's latent size is 3"):
        short.check_against(unconditional)


def test_default_preset_maps_axes_to_cc_20_and_labels_to_gm_notes(tmp_path):
    axes = tuple(M.Axis(n, (1.0, 0.0, 0.0)) for n in ("sub", "punch", "decay", "click", "brightness"))
    kit = default_preset(fx.metadata(axes=axes, labels=("snare", "Kick", "clap", "closed_hat", "open_hat", "tom",
                                                        "zap")), tmp_path / "model")
    assert [(k.cc, k.axis) for k in kit.knobs] == [(20, "sub"), (21, "punch"), (22, "decay"), (23, "click"),
                                                   (24, "brightness")]
    notes = {p.label: p.note for p in kit.pads}
    assert notes == {"Kick": 36, "snare": 38, "clap": 39, "closed_hat": 42, "open_hat": 46, "tom": 45, "zap": 37}
    assert {p.label for p in kit.pads if p.choke == 1} == {"closed_hat", "open_hat"}
    kit.check_against(fx.metadata(axes=axes, labels=("snare", "Kick", "clap", "closed_hat", "open_hat", "tom",
                                                     "zap")))
    plain = default_preset(fx.metadata(), tmp_path / "model")
    assert [(p.note, p.anchor, p.label) for p in plain.pads] == [(36, None, None)]
    path = plain.save(tmp_path / "model" / "preset.json")
    assert json.loads(path.read_text())["model"] == "." and load_preset(path) == plain


@pytest.mark.parametrize("command", [["render", "--axes", "sub=0", "--out", "x.wav"], ["play", "--quiet"]])
def test_runtime_render_and_play_say_one_line_for_a_deep_preset(tmp_path, capsys, command):
    from runtime import cli

    path = tmp_path / "deep.json"
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    assert cli.main([command[0], "--preset", str(path), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err == f"runtime {command[0]}: error: {path}: not a preset (nested too deeply)\n"
