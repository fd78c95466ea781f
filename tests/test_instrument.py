"""One instrument builder (runtime.instrument), the preset's engine settings applied in one place, the knob-move
time carried with each render request, and learn through ``Controller.bind``."""

from __future__ import annotations

import dataclasses
import json
import time

import mido
import numpy as np
import pytest

from runtime.engine import PadSettings, fade_ramp
from runtime.errors import ConfigError
from runtime.instrument import build_instrument
from runtime.live_worker import LiveWorker, Timings
from runtime.preset import Knob, load_preset
from runtime.render import offline_instrument
from runtime.worker import RenderWorker
from tests import onnx_fixtures as fx

RATE = 8000


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """``a/preset.json`` (stereo, pads 36 and 38, CC 20 -> sub, program 1 -> b) and ``b/preset.json`` (stereo, pad
    40 only, other gain, curve and fade)."""
    root = tmp_path_factory.mktemp("presets")
    fx.linear_kick_model(root / "model", sample_rate=RATE, samples=1024)

    def write(name, pads, output, curve, programs):
        doc = {"format": "kickspace-preset", "format_version": 1, "name": name, "model": "../model",
               "knobs": [{"cc": 20, "axis": "sub", "min": -1.0, "max": 1.0, "default": 0.0}],
               "pads": pads, "velocity": {"curve": curve}, "output": output, "programs": programs}
        (root / name).mkdir()
        (root / name / "preset.json").write_text(json.dumps(doc))
        return root / name / "preset.json"

    a = write("a", [{"note": 36, "anchor": [1.0, 0.0, 0.0], "gain": 0.5, "choke": 1},
                    {"note": 38, "anchor": [0.0, 1.0, 0.0]}],
              {"gain": 0.7, "fade_ms": 3.0, "channels": 2}, 2.0, {"1": "../b/preset.json"})
    write("b", [{"note": 40, "anchor": [0.0, 0.0, 1.0], "gain": 0.25}],
          {"gain": 1.5, "fade_ms": 8.0, "channels": 2}, 0.5, {})
    return root


class _Recording(RenderWorker):
    """A plain worker that keeps the keyword arguments of every request."""

    def __init__(self, engine):
        super().__init__(engine)
        self.calls: list[dict] = []

    def request(self, requests, *, replace=False, stamp=None):
        self.calls.append({"notes": [r.note for r in requests], "replace": replace, "stamp": stamp})
        super().request(requests, replace=replace, stamp=stamp)


def _engine_matches(engine, preset):
    assert engine.output_gain == preset.output.gain and engine.velocity_curve == preset.velocity.curve
    np.testing.assert_array_equal(engine._ramp, fade_ramp(round(preset.output.fade_ms * 1e-3 * engine.sample_rate)))
    assert engine._pads == {p.note: PadSettings(p.gain, p.choke) for p in preset.pads}


def test_the_builder_applies_the_presets_engine_settings_and_a_program_change_applies_the_new_ones(presets):
    preset = load_preset(presets / "a" / "preset.json")
    built = build_instrument(preset, sample_rate=RATE, blocksize=64, max_voices=3, worker_factory=_Recording)
    engine, controller, worker = built.engine, built.controller, built.worker
    assert isinstance(worker, _Recording) and controller.engine is engine and controller.worker is worker
    assert (engine.sample_rate, engine.blocksize, engine.channels, engine.max_voices) == (RATE, 64, 2, 3)
    _engine_matches(engine, preset)
    assert worker.calls == [{"notes": [36, 38], "replace": True, "stamp": None}]  # requested, not yet rendered
    assert worker.render_now() == 2 and engine.notes == [36, 38]
    assert controller.handle(mido.Message("program_change", program=1), stamp=12.5)
    _engine_matches(engine, load_preset(presets / "b" / "preset.json"))
    assert worker.calls[-1] == {"notes": [40], "replace": True, "stamp": 12.5}
    assert engine.notes == []  # pads the new preset lacks are gone; its own one is still to render
    assert worker.render_now() == 1 and engine.notes == [40]


def test_a_preset_with_more_channels_than_the_output_plays_on_the_outputs_and_says_so(presets):
    preset = load_preset(presets / "a" / "preset.json")
    built = build_instrument(preset, sample_rate=RATE, blocksize=64, max_channels=1)
    assert built.engine.channels == 1 and built.preset.output.channels == 1
    assert built.controller.preset.output.channels == 1
    assert build_instrument(preset, sample_rate=RATE, blocksize=64, max_channels=8).engine.channels == 2


def test_offline_render_builds_the_same_instrument_with_every_pad_rendered(presets):
    built = offline_instrument(presets / "a" / "preset.json", blocksize=32, max_voices=4)
    assert type(built.worker) is RenderWorker and built.worker.pending == 0
    assert built.engine.notes == [36, 38] and built.engine.sample_rate == RATE and built.engine.max_voices == 4
    _engine_matches(built.engine, built.preset)


def test_the_knob_move_time_travels_with_the_request(presets):
    built = build_instrument(load_preset(presets / "a" / "preset.json"), sample_rate=RATE, blocksize=64,
                             worker_factory=_Recording)
    controller, worker = built.controller, built.worker
    assert controller.handle(mido.Message("control_change", control=20, value=127), stamp=3.25)
    assert worker.calls[-1] == {"notes": [36, 38], "replace": False, "stamp": 3.25}
    assert controller.move_knob("sub", 0.25, stamp=4.5)
    assert worker.calls[-1]["stamp"] == 4.5
    controller.handle(mido.Message("note_on", note=36, velocity=100), stamp=5.0)  # no render asked
    assert worker.calls[-1]["stamp"] == 4.5 and worker.focus == 36


def test_live_worker_times_knob_to_ready_from_the_events_stamp(presets):
    built = build_instrument(load_preset(presets / "a" / "preset.json"), sample_rate=RATE, blocksize=64,
                             worker_factory=lambda engine: LiveWorker(engine, nice=None))
    worker = built.worker
    worker.render_now()
    worker.reset_timings()
    assert len(worker.ready_ms) == 0 and worker.cpu_s == 0.0
    built.controller.handle(mido.Message("control_change", control=20, value=0), stamp=time.monotonic() - 2.0)
    worker.render_now()
    assert len(worker.ready_ms) == 1 and 2000.0 <= worker.ready_ms.last < 60_000.0
    assert worker.render_ms.summary()["n"] == 1


def test_timings_summary_reads_median_p95_and_max():
    timings = Timings(capacity=4)
    assert timings.summary() == {"n": 0}
    for value in (9.0, 1.0, 3.0, 5.0, 7.0):  # the first one falls out of the ring
        timings.append(value)
    v = np.array([1.0, 3.0, 5.0, 7.0])
    assert timings.summary() == {"n": 4, "median": 4.0, "p95": round(float(np.percentile(v, 95)), 3), "max": 7.0}


def test_learn_binds_through_the_controller_and_the_current_preset_keeps_it(presets):
    controller = build_instrument(load_preset(presets / "a" / "preset.json"), sample_rate=RATE,
                                  blocksize=64).controller
    knob = controller.bind("click", cc=21)
    assert knob == Knob(cc=21, axis="click") and controller.state.values["click"] == 0.0
    assert controller.handle(mido.Message("control_change", control=21, value=127))
    assert controller.state.values["click"] == 1.0
    controller.bind("sub", osc="/1/fader1")
    with pytest.raises(ConfigError, match="no axis named 'punch'"):
        controller.bind("punch", cc=22)
    controller.state.values["sub"] = 3.0  # beyond the knob's range: saved clamped
    saved = controller.current_preset("mine")
    assert saved.name == "mine" and controller.preset.name == "a"
    assert {(k.axis, k.cc, k.osc, k.default) for k in saved.knobs} == {("sub", 20, "/1/fader1", 1.0),
                                                                      ("click", 21, None, 1.0)}
    assert dataclasses.replace(saved, knobs=controller.preset.knobs, name="a") == controller.preset
