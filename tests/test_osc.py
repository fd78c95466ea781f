"""OSC as a second control surface (issue 21 item 3): ``runtime play --osc-port``, over real loopback UDP sockets
with python-osc's client (no mocks): what the OSC thread accepts and drops, the preset's knob ``osc`` field and OSC
learn, a knob and a pad message as heard from a live player on a real JACK server, and a port in use."""

from __future__ import annotations

import json
import math
import queue
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

from runtime.controls import ControlState, bind_control, knob_value
from runtime.errors import ConfigError
from runtime.model import DECODER_FILE, read_metadata
from runtime.osc import Button, ControlMove, KnobMove, OscInput, PadHit, decode
from runtime.preset import Knob, load_preset
from runtime.status import problem_lines, render, summary_line
from tests.jack_fixtures import (RATE, ROOT, PlayerProcess, Recorder, groups, jack_server,  # noqa: F401
                                 sound_starts, write_test_preset)


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return write_test_preset(tmp_path_factory.mktemp("osc"))


def drain(events: queue.SimpleQueue, n: int, timeout: float = 5.0) -> list:
    """The next ``n`` events (without their times), waiting at most ``timeout`` seconds for each."""
    return [events.get(timeout=timeout)[0] for _ in range(n)]


# ------------------------------------------------------------------------------------------------ what is accepted

@pytest.mark.parametrize("address, params, expected", [
    ("/kickspace/knob/sub", [0.25], KnobMove("sub", 0.25)),
    ("/kickspace/knob/sub", [1], KnobMove("sub", 1.0)),
    ("/kickspace/pad/36", [100], PadHit(36, 100)),          # an int is a MIDI velocity
    ("/kickspace/pad/36", [1.0], PadHit(36, 127)),          # a float is 0..1
    ("/kickspace/pad/36", [0.5], PadHit(36, 64)),
    ("/kickspace/pad/36", [0.001], PadHit(36, 1)),
    ("/kickspace/pad/36", [], PadHit(36, 127)),
    ("/kickspace/pad/36", [0.0], None),                     # a push button's release
    ("/kickspace/pad/36", [0], None),
    ("/kickspace/learn/decay", [1.0], Button("learn", "decay")),
    ("/kickspace/learn/off", [], Button("learn", None)),
    ("/kickspace/learn/decay", [0.0], None),
    ("/kickspace/save", [1.0], Button("save")),
    ("/1/fader1", [0.75], ControlMove("/1/fader1", 0.75)),
    ("/1/fader1/z", [1.0], None),                           # TouchOSC's touch message
    ("/kickspace/knob/sub", [1.5], "out of range"),
    ("/kickspace/knob/sub", [-0.1], "out of range"),
    ("/kickspace/knob/sub", [math.nan], "out of range"),
    ("/kickspace/knob/sub", ["0.5"], "wrong type"),
    ("/kickspace/knob/sub", [True], "wrong type"),
    ("/kickspace/knob/sub", [0.1, 0.2], "wrong type"),
    ("/kickspace/knob/sub", [], "wrong type"),
    ("/kickspace/pad/36", [128], "out of range"),
    ("/kickspace/pad/36", [1.5], "out of range"),
    ("/kickspace/pad/36", [b"\x01"], "wrong type"),
    ("/kickspace/pad/200", [100], "unknown /kickspace address"),
    ("/kickspace/pad/kick", [100], "unknown /kickspace address"),
    ("/kickspace/volume", [0.5], "unknown /kickspace address"),
    ("/1/fader1", [2.0], "out of range"),
    ("/1/xy1", [0.5, 0.5], "wrong type"),
])
def test_decode_accepts_the_documented_messages_and_names_why_it_drops_the_others(address, params, expected):
    got = decode(address, params)
    if isinstance(expected, str):
        assert isinstance(got, str) and got.startswith(expected), got
    else:
        assert got == expected


def test_messages_over_loopback_reach_the_event_queue_in_order_and_hostile_datagrams_are_dropped_and_counted():
    osc = OscInput(0, host="127.0.0.1")
    events: queue.SimpleQueue = queue.SimpleQueue()
    osc.start(events)
    client = SimpleUDPClient("127.0.0.1", osc.port)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(50):  # a fast sweep arrives whole and in order
            client.send_message("/kickspace/knob/sub", i / 49)
        assert drain(events, 50) == [KnobMove("sub", float(np.float32(i / 49))) for i in range(50)]  # OSC f: 32 bits
        hostile = [b"", b"hello", b"/kick", b"/kickspace/pad/36\x00\x00\x00,i\x00", b"#bundle\x00" + b"\x00" * 3,
                   b"#bundle\x00" + b"\x00" * 8 + b"\x00\x00\x01\x00/x", b"\xff" * 64,
                   b"/kickspace/pad/36\x00\x00\x00,Q\x00\x00",  # a type tag python-osc skips
                   b"/kickspace/knob/sub\x00,f\x00\x00",  # its float missing: python-osc would read 0.0
                   b"/kickspace/knob/sub\x00,f\x00\x00\x3f\x00"]  # its float cut short
        for data in hostile:
            raw.sendto(data, ("127.0.0.1", osc.port))
        client.send_message("/kickspace/knob/sub", "loud")
        client.send_message("/kickspace/knob/sub", 7.0)
        client.send_message("/kickspace/nothing", 1.0)
        bundle = OscBundleBuilder(IMMEDIATELY)
        for address, value in (("/kickspace/pad/36", 90), ("/kickspace/pad/36", 300), ("/kickspace/knob/sub", 0.5)):
            message = OscMessageBuilder(address)
            message.add_arg(value)
            bundle.add_content(message.build())
        client.send(bundle.build())  # a bundle's messages in order, its bad one dropped alone
        assert drain(events, 2) == [PadHit(36, 90), KnobMove("sub", 0.5)]
        client.send_message("/kickspace/pad/38", 0.5)  # the thread lives on after all of that
        assert drain(events, 1) == [PadHit(38, 64)]
        assert osc.failure is None
        assert osc.dropped == len(hostile) + 4, osc.dropped_kinds
        assert osc.dropped_kinds["malformed packet"] == len(hostile)
        assert osc.dropped_kinds["out of range (pad velocity int 1-127)"] == 1
        assert osc.dropped_kinds["unknown /kickspace address"] == 1
        assert osc.stats()["osc_received"] == 53 and osc.stats()["osc_dropped"] == osc.dropped
    finally:
        raw.close()
        osc.close()


def test_an_osc_thread_that_ends_says_why():
    """Whatever the server lets through (here a SystemExit out of the packet handler) ends the thread with a line
    the player stops on, never silently."""
    osc = OscInput(0, host="127.0.0.1")

    class Fatal:
        owner = osc

        def call_handlers_for_packet(self, data, client_address):
            raise SystemExit("fatal in the handler")

    osc._server._dispatcher = Fatal()
    osc.start(queue.SimpleQueue())
    try:
        SimpleUDPClient("127.0.0.1", osc.port).send_message("/kickspace/pad/36", 100)
        deadline = time.monotonic() + 5.0
        while osc.failure is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert osc.failure is not None and "OSC input thread stopped" in osc.failure
        assert "fatal in the handler" in osc.failure and "\n" not in osc.failure
    finally:
        osc.close()


def test_the_status_view_and_the_exit_summary_say_how_many_osc_messages_were_dropped():
    lines = problem_lines({"osc_dropped": 3, "osc_last_dropped": "unbound address: /1/fader9"})
    assert lines == ["OSC: 3 messages dropped (last: unbound address: /1/fader9)"]
    assert problem_lines({"osc_dropped": 0}) == []
    from rich.console import Console

    snap = {"title": "t", "knobs": [], "recent": [], "render_ms": 1.0, "ready_ms": 1.0, "final_ms": 1.0,
            "pending": 0, "xruns": 0, "blocks": 1, "voices": 0, "peak": 0.1, "notes": 1, "cc": 0, "midi": "m",
            "osc": "udp 0.0.0.0:9000", "osc_dropped": 2, "osc_last_dropped": "unbound address: /a", "messages": []}
    console = Console(width=120, record=True)
    console.print(render(snap))
    text = console.export_text()
    assert "OSC in udp 0.0.0.0:9000" in text and "OSC: 2 messages dropped (last: unbound address: /a)" in text
    summary = {"wall_s": 1.0, "notes": 1, "cc": 0, "renders": 1, "underflows": 0, "blocks": 1, "peak": 0.1,
               "rss_end_mb": 100.0, "osc_dropped": 5}
    assert summary_line(summary).endswith(", 5 OSC messages dropped")


def test_a_port_in_use_fails_in_one_line_naming_osc_port(preset, tmp_path):
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("0.0.0.0", 0))
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=rf"--osc-port: UDP port {port} on 0.0.0.0 is in use"):
            OscInput(port)
        run = subprocess.run([sys.executable, "-m", "runtime", "play", "--preset", str(preset), "--quiet",
                              "--osc-port", str(port)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        taken.close()
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "--osc-port" in lines[0] and f"UDP port {port}" in lines[0], run.stderr
    with pytest.raises(ConfigError, match="--osc-port: must be a UDP port"):
        OscInput(70000)


# ------------------------------------------------------------------------------- the preset's mapping and learn

def _doc(**knob) -> dict:
    return {"format": "kickspace-preset", "format_version": 1, "model": "model", "pads": [{"note": 36}],
            "knobs": [{"cc": 20, "axis": "sub", **knob}]}


def test_a_knob_carries_an_osc_address_of_its_own_saved_and_loaded_and_a_bad_one_is_named(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_doc(osc="/1/fader1")))
    loaded = load_preset(path)
    assert loaded.knobs[0].osc == "/1/fader1"
    again = load_preset(loaded.save(tmp_path / "again.json"))
    assert again.knobs == loaded.knobs
    path.write_text(json.dumps(_doc()))
    plain = load_preset(path)
    assert "osc" not in plain.to_dict()["knobs"][0]  # a knob without one is written as before
    only_osc = _doc(osc="/fader_1")
    del only_osc["knobs"][0]["cc"]
    path.write_text(json.dumps(only_osc))
    assert load_preset(path).knobs[0].cc is None  # an OSC-only knob
    for bad, why in (("fader", "must be an OSC address"), ("/a b", "must be an OSC address"),
                     ("/x/*", "must be an OSC address"), (7, "must be an OSC address"),
                     ("/kickspace/knob/sub", "/kickspace/... addresses are the player.s own")):
        path.write_text(json.dumps(_doc(osc=bad)))
        with pytest.raises(ConfigError, match=rf"p.json: knobs\[0\].osc: {why}"):
            load_preset(path)
    twice = _doc(osc="/f")
    twice["knobs"].append({"cc": 21, "axis": "decay", "osc": "/f"})
    path.write_text(json.dumps(twice))
    with pytest.raises(ConfigError, match=r"knobs\[1\].osc: /f is used twice"):
        load_preset(path)


def test_learn_binds_an_osc_address_like_a_cc_and_takes_it_from_the_knob_that_had_it(preset):
    base = load_preset(preset)
    learned = bind_control(base, "sub", osc="/1/fader1")
    assert learned.knobs == (Knob(cc=20, axis="sub", osc="/1/fader1"),)  # the CC stays
    moved = bind_control(learned, "click", osc="/1/fader1")
    assert set(moved.knobs) == {Knob(cc=20, axis="sub"), Knob(cc=None, axis="click", osc="/1/fader1")}
    gone = bind_control(bind_control(base, "click", osc="/2/fader"), "sub", osc="/2/fader")
    assert gone.knobs == (Knob(cc=20, axis="sub", osc="/2/fader"),)  # click's only control was taken
    by_cc = bind_control(moved, "sub", cc=70)
    assert Knob(cc=70, axis="sub") in by_cc.knobs and Knob(cc=None, axis="click", osc="/1/fader1") in by_cc.knobs


@pytest.mark.parametrize("curve", ["linear", "quadratic", "sqrt", "smooth"])
def test_an_osc_position_moves_a_knob_through_its_curve_and_range_as_the_cc_does(preset, curve):
    import dataclasses

    base = load_preset(preset)
    knob = Knob(cc=20, axis="sub", min=-0.5, max=0.8, curve=curve)
    metadata = read_metadata(base.model / DECODER_FILE)
    by_osc = ControlState(dataclasses.replace(base, knobs=(knob,)), metadata)
    by_cc = ControlState(dataclasses.replace(base, knobs=(knob,)), metadata)
    for cc in (0, 1, 40, 64, 100, 127):
        assert by_osc.set_position("sub", cc / 127) == by_cc.set_cc(20, cc)
        assert by_osc.values["sub"] == pytest.approx(knob_value(knob, cc), abs=1e-12)
        np.testing.assert_array_equal(by_osc.pad_z(36), by_cc.pad_z(36))
    assert not by_osc.set_position("sub", 1.0)  # unchanged: no re-render
    bare = ControlState(dataclasses.replace(base, knobs=()), metadata)
    bare.set_position("click", 0.75)  # an axis without a knob travels -1..1
    assert bare.values["click"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="no axis named 'nope'"):
        bare.set_position("nope", 0.5)


# ---------------------------------------------------------------------------------- a live player on real JACK

def _player(preset: Path, tmp_path: Path, name: str, *extra: str) -> tuple[PlayerProcess, Recorder, int]:
    """A player listening for OSC on a free loopback port, and a recorder of its outputs; the port."""
    player = PlayerProcess(preset, tmp_path, client=name, extra=["--osc-port", "0", "--osc-host", "127.0.0.1",
                                                                  *extra])
    port = int(re.search(r"OSC in: udp 127\.0\.0\.1:(\d+)", player.output()).group(1))
    try:
        recorder = Recorder(f"rec-{name}", 8.0, channels=2)
        recorder.connect_audio(player.outputs)
    except BaseException:
        player.kill()
        raise
    time.sleep(0.3)
    return player, recorder, port


def test_osc_knob_and_pad_messages_play_like_midi_and_malformed_ones_are_counted(jack_server, preset, tmp_path):
    player, recorder, port = _player(preset, tmp_path, "ks-osc")
    client = SimpleUDPClient("127.0.0.1", port)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        def hit(velocity) -> None:
            client.send_message("/kickspace/pad/36", velocity)
            time.sleep(0.3)

        hit(1.0)                                            # sub 0 (the preset default), velocity 127: x1
        for x in np.linspace(0.5, 0.0, 20):                 # a fader sweep down: sub -1, x0.5
            client.send_message("/kickspace/knob/sub", float(x))
            raw.sendto(b"\x00garbage", ("127.0.0.1", port))
            time.sleep(0.005)
        time.sleep(0.3)
        hit(1.0)
        client.send_message("/kickspace/knob/sub", 1.0)     # sub +1: x1.5
        client.send_message("/kickspace/knob/sub", 3.0)     # out of range: dropped, the knob stays
        client.send_message("/kickspace/knob/nope", 0.0)    # no such axis: dropped on the control thread
        time.sleep(0.3)
        hit(1.0)
        hit(64)                                             # an int velocity: 64/127 of full level
    finally:
        raw.close()
        rc, stats = player.interrupt()
        recorder.close()
    assert rc == 0, player.output()[-2000:]
    peaks = [peak for _, peak in sound_starts(recorder.audio, seen=recorder.seen)]
    assert len(peaks) == 4, peaks
    default, low, high, soft = peaks
    np.testing.assert_allclose([low / default, high / default, soft / high], [0.5, 1.5, 64 / 127], rtol=0.03)
    assert stats["notes"] == 4 and stats["osc_knobs"] == 21 and stats["cc"] == 0
    assert stats["osc_dropped"] == 22 and stats["osc_dropped_kinds"] == {
        "malformed packet": 20, "out of range (knob position 0..1)": 1, "unknown axis": 1}, stats
    assert stats["previews"] >= 1 and stats["ready_ms"]["n"] >= 2  # re-rendered as a CC would be
    assert "22 OSC messages dropped" in player.output()


def test_osc_learn_binds_the_next_moved_address_moves_the_sound_and_the_saved_preset_keeps_it(jack_server, preset,
                                                                                               tmp_path):
    player, recorder, port = _player(preset, tmp_path, "ks-osc-learn", "--learn", "sub")
    client = SimpleUDPClient("127.0.0.1", port)
    try:
        client.send_message("/kickspace/pad/36", 1.0)       # x1
        time.sleep(0.3)
        client.send_message("/1/fader1/z", 1.0)             # TouchOSC's touch: not learned
        client.send_message("/1/fader1", 1.0)               # learned: sub moves with /1/fader1, to +1 (x1.5)
        time.sleep(0.3)
        client.send_message("/kickspace/pad/36", 1.0)
        time.sleep(0.3)
        client.send_message("/kickspace/learn/sub", 1.0)     # armed from the tablet this time
        client.send_message("/2/rotary1", 0.0)               # now this moves sub, to -1 (x0.5)
        time.sleep(0.3)
        client.send_message("/1/fader1", 1.0)               # no longer bound: dropped, the knob stays
        time.sleep(0.2)
        client.send_message("/kickspace/pad/36", 1.0)
        time.sleep(0.3)
        player.proc.send_signal(signal.SIGUSR1)             # save: WAV + preset with the learned address
        deadline = time.monotonic() + 10.0
        while not list((tmp_path / "saves").glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        rc, stats = player.interrupt()
        recorder.close()
    assert rc == 0, player.output()[-2000:]
    assert "learned: OSC /1/fader1 -> sub" in stats["messages"]
    assert "learned: OSC /2/rotary1 -> sub" in stats["messages"]
    states = groups(sound_starts(recorder.audio, seen=recorder.seen), gap=int(0.2 * RATE))
    before, learned, relearned = (max(peaks) for peaks in states)
    np.testing.assert_allclose([learned / before, relearned / before], [1.5, 0.5], rtol=0.03)
    assert stats["osc_dropped_kinds"] == {"unbound address": 1}, stats
    saved = json.loads(next((tmp_path / "saves").glob("*.json")).read_text())
    assert saved["knobs"] == [{"cc": 20, "axis": "sub", "min": -1.0, "max": 1.0, "default": -1.0,
                               "curve": "linear", "osc": "/2/rotary1"}]
