"""``runtime play`` under hostile input, against a real JACK server (dummy driver, 48 kHz / 128 frames), real parts
only: every kind of malformed MIDI message a python-rtmidi JACK client can send, then valid notes that must all
sound; a model whose graph outputs NaN.

What python-rtmidi (1.5.8) and JACK let through, measured by sending each kind followed by a note: the sender
refuses an empty message and any message over 3 bytes that does not start with ``F0`` (``ValueError``), so a
song position with too many data bytes or a 4-byte note never leaves it; JACK passes everything else. The
player's JACK client reads JACK's events as they are (:mod:`runtime.jack_midi`): it ignores clock (``F8``) and
active sensing (``FE``) and hands everything else to its decoder, sysex without its end included (RtMidi's input,
before, swallowed every later event after one, until one ending in ``F7`` came).
"""

from __future__ import annotations

import time

import pytest

from tests import onnx_fixtures as fx
from tests.jack_fixtures import (PERIOD, RATE, Rig, count_onsets, jack_server, onsets_after, sender,  # noqa: F401
                                 write_test_preset)

# (bytes, reaches the player's decoder): every malformed kind python-rtmidi can send, and realtime bytes
HOSTILE = [
    ([0xF2, 0x05], True), ([0xF1], True), ([0xF3], True),             # system common, data bytes missing
    ([0xF1, 1, 2], True), ([0xF3, 1, 2], True), ([0xF6, 1], True),    # system common, data bytes extra
    ([0xF4], True), ([0xF5], True), ([0xF9], True), ([0xFD], True),   # undefined status bytes
    ([0x40, 0x40], True), ([0x24], True),                             # data bytes without a status byte
    ([0x90, 0x24], True), ([0xC0], True), ([0xE0, 1], True),          # truncated channel messages
    ([0x90, 0xC8, 0x01], True), ([0xB0, 20, 0x80], True),             # data bytes over 0x7F
    ([0xF7], True), ([0xF0, 0x7E, 0x01], True), ([0xF0, 0x90, 0xF7], True),  # sysex end alone, no end, bad byte
    ([0xF8], False), ([0xFA], True), ([0xFB], True), ([0xFC], True), ([0xFE], False), ([0xFF], True),  # realtime
]
VALID_REALTIME = (0xFA, 0xFB, 0xFC, 0xFF)  # start, continue, stop, reset: they reach the player, no error
NOTES, SPACING_S = 100, 0.06  # a 21 ms kick every 60 ms: 39 ms of silence between two sounds


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return write_test_preset(tmp_path_factory.mktemp("hostile"), samples=1024)


def test_every_note_sounds_after_and_between_malformed_midi(jack_server, sender, preset, tmp_path):
    """A burst of every malformed kind, then 100 notes, each 30 ms after one more malformed message (in turn): a
    player that goes deaf after one of them (the MIDI thread dead of a song position with one data byte, a sysex
    without its end holding the input) loses every later note, or the one after it."""
    rig = Rig(preset, tmp_path, sender, "hostile", seconds=NOTES * SPACING_S + 3.0)
    log_at = jack_server.log_size()
    try:
        for data, _ in HOSTILE:
            rig.sender.out.send_message(data)
            time.sleep(0.002)
        time.sleep(0.05)
        for i in range(NOTES):
            rig.sender.out.send_message(HOSTILE[i % len(HOSTILE)][0])
            time.sleep(SPACING_S / 2)
            rig.sender.note(36, 100)
            time.sleep(SPACING_S / 2)
        time.sleep(0.4)
    finally:
        rc, stats = rig.close()
    output = rig.player.output()
    assert rc == 0 and "Traceback" not in output and "Exception in thread" not in output, output[-2000:]
    # exact unless a MIDI client missed cycles, each of which JACK may repeat or drop (tests/jack_fixtures.py)
    misses = jack_server.midi_misses(rig.midi_clients, log_at)
    # the notes sent as the recorder got them (not the malformed 90 C8 01 it takes for one)
    notes = [f for f, note, velocity in rig.recorder.note_ons() if (note, velocity) == (36, 100)]
    missed = sum(not rig.recorder.seen[f:f + 20 * PERIOD].all() for f in notes)
    sounds = count_onsets(rig.recorder.audio, seen=rig.recorder.seen)
    context = f"{sounds} sounds, {stats['notes']} notes played of {NOTES} sent, {misses} missed MIDI cycles, " \
              f"{missed} notes partly unrecorded; dropped {stats['midi_dropped']}: {stats['midi_dropped_kinds']}"
    print(context)
    assert abs(stats["notes"] - NOTES) <= misses, context
    assert NOTES - misses - missed <= sounds <= stats["notes"], context
    # note by note: each note the recorder heard in full starts a sound before the next one is due, unless a server
    # xrun came near it (a cycle a MIDI client missed may drop or delay its events), as in test_play_realtime
    calm = [f for f in notes if rig.recorder.seen[f:f + 20 * PERIOD].all()
            and not rig.recorder.disturbed(f, before=8 * PERIOD, after=16 * PERIOD)]
    hits = onsets_after(rig.recorder.audio, calm, window=int(0.8 * SPACING_S * RATE))
    silent = [f for f, (latency, _) in zip(calm, hits) if latency is None]
    if len(calm) < 20:
        pytest.skip(f"only {len(calm)} of {NOTES} notes came with no server xrun near them: too loaded to judge")
    assert not silent, f"{len(silent)} of {len(calm)} notes away from server xruns made no sound; {context}"
    sent = [data for data, _ in HOSTILE] + [HOSTILE[i % len(HOSTILE)][0] for i in range(NOTES)]
    counted = sum(dict((bytes(d), r) for d, r in HOSTILE)[bytes(d)] and d[0] not in VALID_REALTIME for d in sent)
    assert stats["midi_dropped"] >= counted - misses, context
    kinds = stats["midi_dropped_kinds"]
    assert kinds.get("song position (F2) with 1 data byte, needs 2") and kinds.get("undefined status byte F9")
    # the JACK client's events are whole messages: a sysex without its end is one dropped event, no guard needed
    assert kinds.get("sysex without its end (F7)") and kinds.get("sysex with a data byte over 7F"), context
    assert stats["midi_guard_unreturned"] == 0, context
    assert "malformed MIDI messages dropped" in output.strip().splitlines()[-1]


def test_a_model_that_outputs_nan_is_said_once_counted_and_stays_silent(jack_server, sender, tmp_path):
    """Before, such a model played silence without a word. Now: one warning line at start naming the model and pad,
    a counter in the stats (and the status view, :func:`runtime.status.problem_lines`), the exit summary; the
    output stays finite silence and the player plays on (exit 0)."""
    preset = write_test_preset(tmp_path / "broken", samples=1024)
    model = fx.nan_kick_model(preset.parent / "model", sample_rate=RATE, samples=1024, encoder=True, preview=True)
    rig = Rig(preset, tmp_path, sender, "nan", seconds=4.0)
    try:
        rig.sender.note(36, 100)
        time.sleep(0.2)
        for value in (0, 64, 127):  # the knob: previews and full renders of the broken decoders
            rig.sender.cc(20, value)
            time.sleep(0.2)
        rig.sender.note(36, 100)
        time.sleep(0.3)
    finally:
        rc, stats = rig.close()
    output = rig.player.output()
    assert rc == 0 and "Traceback" not in output, output[-2000:]
    warned = [line for line in output.splitlines() if line.startswith("kickspace: warning:")]
    assert warned == [f"kickspace: warning: {model}: the decoder output NaN or infinite samples for pad 36 (1024 "
                      f"samples; the pad plays silence): the model is broken; retrain or re-export it"]
    assert stats["nonfinite_renders"] >= 3 and stats["notes"] >= 1, stats
    assert [w.split(" output NaN")[0] for w in stats["warnings"]] == [f"{model}: the decoder",
                                                                     f"{model}: the preview decoder"]
    assert stats["peak"] == 0.0 and not rig.recorder.audio.any()  # finite silence, nothing else
    assert "renders NaN or infinite (played as silence)" in output.strip().splitlines()[-1]


def test_the_status_view_has_a_line_for_each_kind_of_hostile_input_seen():
    from runtime.status import problem_lines

    assert problem_lines({"midi_dropped": 0, "nonfinite": 0}) == []
    assert problem_lines({"midi_dropped": 3, "midi_last_dropped": "undefined status byte F9: F9", "nonfinite": 2,
                          "last_warning": "m: the decoder output NaN ..."}) == [
        "MIDI: 3 malformed messages dropped (last: undefined status byte F9: F9)",
        "model: 2 renders were NaN or infinite (m: the decoder output NaN ...)"]
