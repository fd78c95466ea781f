"""The MIDI thread's decoding step (:class:`runtime.midi.MidiDecoder`): timestamps, channel filter, bad bytes.

The real-port path (python-rtmidi on JACK, drained by the MIDI thread) is exercised by tests/test_play_realtime.py.
"""

import pytest

from runtime.midi import MidiDecoder


def test_event_times_undo_the_polling_delay_and_are_never_late():
    arrivals = [100.0, 100.010, 100.020, 100.5]        # when the MIDI API got each event
    lags = [0.0008, 0.0003, 0.0009, 0.0001]            # how late the MIDI thread saw it
    deltas = [0.0] + [b - a for a, b in zip(arrivals, arrivals[1:])]  # what python-rtmidi hands over
    decoder = MidiDecoder()
    times = [decoder.decode(([0x90, 36, 100], d), t + lag)[1] for t, d, lag in zip(arrivals, deltas, lags)]
    for k, (t, got) in enumerate(zip(arrivals, times)):
        # the anchor is the earliest sighting so far: the error is the smallest lag seen up to this event
        assert got == pytest.approx(t + min(lags[:k + 1]), abs=1e-9)
        assert got <= t + lags[k] + 1e-12
    assert decoder.received == 4


def test_channel_filter_keeps_system_messages_and_counts():
    decoder = MidiDecoder(channel=10)
    on_10 = decoder.decode(([0x99, 36, 100], 0.0), 1.0)
    assert on_10[0].type == "note_on" and on_10[0].channel == 9 and on_10[0].velocity == 100
    assert decoder.decode(([0x90, 36, 100], 0.0), 1.0) is None           # channel 1: filtered
    assert decoder.decode(([0xB0, 20, 64], 0.0), 1.0) is None            # CC on channel 1: filtered
    assert decoder.decode(([0xFA], 0.0), 1.0)[0].type == "start"         # a system message passes
    assert (decoder.received, decoder.filtered) == (2, 2)


def test_malformed_bytes_are_ignored():
    decoder = MidiDecoder()
    assert decoder.decode(([0x90, 200, 1], 0.0), 1.0) is None            # data byte over 127
    assert decoder.decode(([0xB0, 20], 0.0), 1.0) is None                # truncated
    assert decoder.received == 0
    assert decoder.decode(([0xB0, 20, 5], 0.0), 1.0)[0].value == 5
