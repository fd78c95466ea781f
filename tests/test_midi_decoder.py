"""The MIDI thread's decoding step (:class:`runtime.midi.MidiDecoder`): timestamps, channel filter, bad bytes; its
loop (:func:`runtime.midi.drain`, :func:`runtime.midi.pump`) and the sysex guard.

The real-port path (python-rtmidi on JACK, drained by the MIDI thread) is exercised by tests/test_play_realtime.py,
hostile MIDI through it by tests/test_play_hostile_midi.py.
"""

import queue
import threading

import pytest

from runtime.midi import MidiDecoder, SysexGuard, drain, pump


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


NOTE = [0x99, 36, 100]

# every kind of malformed event a MIDI cable, a buggy controller or a hostile sender produces, with the kind it is
# counted under (MidiDecoder.dropped_kinds)
MALFORMED = [
    ([0x90, 36], "note on (90) with 1 data byte, needs 2"),                         # truncated channel messages
    ([0xC0], "program change (C0) with 0 data bytes, needs 1"),
    ([0xE5, 0], "pitch bend (E0) with 1 data byte, needs 2"),
    ([0x90, 36, 100, 5], "note on (90) with 3 data bytes, needs 2"),                # too long
    ([0xF1], "MTC quarter frame (F1) with 0 data bytes, needs 1"),                  # system common, short
    ([0xF2, 1], "song position (F2) with 1 data byte, needs 2"),
    ([0xF3], "song select (F3) with 0 data bytes, needs 1"),
    ([0xF1, 1, 2], "MTC quarter frame (F1) with 2 data bytes, needs 1"),            # system common, long
    ([0xF2, 1, 2, 3], "song position (F2) with 3 data bytes, needs 2"),
    ([0xF3, 1, 2], "song select (F3) with 2 data bytes, needs 1"),
    ([0xF6, 1], "tune request (F6) with 1 data byte, needs 0"),
    ([0xF4], "undefined status byte F4"), ([0xF5, 1], "undefined status byte F5"),  # undefined status bytes
    ([0xF9], "undefined status byte F9"), ([0xFD], "undefined status byte FD"),
    ([0x40, 0x40], "data bytes without a status byte"), ([36], "data bytes without a status byte"),
    ([0xF0, 0x7E, 0x01], "sysex without its end (F7)"), ([0xF0], "sysex without its end (F7)"),
    ([0xF7], "sysex end (F7) without its start"),
    ([0x90, 200, 1], "note on with a data byte over 7F"), ([0xB0, 20, 0xF8], "control change with a data byte over 7F"),
    ([0xF0, 0x90, 0xF7], "sysex with a data byte over 7F"),
    ([], "empty message"),
    ([0x90, 36, 300], "not a list of bytes 0-255"), ([0x90, 36.5, 3], "not a list of bytes 0-255"),
]


@pytest.mark.parametrize("data, kind", MALFORMED, ids=[bytes(d).hex() if all(
    isinstance(b, int) and 0 <= b < 256 for b in d) else repr(d) for d, _ in MALFORMED])
def test_each_malformed_message_is_dropped_counted_and_the_next_note_decodes(data, kind):
    decoder = MidiDecoder()
    assert decoder.decode((data, 0.0), 1.0) is None
    assert decoder.dropped == 1 and decoder.dropped_kinds == {kind: 1} and decoder.last_dropped.startswith(kind)
    message, _ = decoder.decode((NOTE, 0.001), 1.0)
    assert (message.type, message.note, message.velocity) == ("note_on", 36, 100)
    assert (decoder.received, decoder.dropped) == (1, 1)


@pytest.mark.parametrize("status", [0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF])
def test_realtime_bytes_are_no_error_and_change_nothing(status):
    decoder = MidiDecoder()
    message, _ = decoder.decode(([status], 0.0), 1.0)
    assert not hasattr(message, "channel") and decoder.dropped == 0  # the controller ignores it
    assert decoder.decode((NOTE, 0.0), 1.0)[0].note == 36


def test_an_event_that_is_not_even_a_pair_of_bytes_and_time_is_dropped_too():
    decoder = MidiDecoder()
    assert decoder.decode(None, 1.0) is None and decoder.decode(([0x90, 36, 1], "soon"), 1.0) is None
    assert decoder.dropped == 2 and set(decoder.dropped_kinds) == {"undecodable (TypeError)",
                                                                   "undecodable (ValueError)"}
    assert decoder.decode((NOTE, 0.0), 1.0)[0].note == 36


class _Source:
    """A python-rtmidi input stand-in: hands out ``events`` (an exception in the list is raised instead)."""

    def __init__(self, events):
        self.events = list(events)

    def get_message(self):
        if not self.events:
            return None
        event = self.events.pop(0)
        if isinstance(event, BaseException):
            raise event
        return event


def test_drain_counts_an_error_of_the_midi_api_and_the_next_pass_goes_on():
    decoder, events = MidiDecoder(), queue.SimpleQueue()
    source = _Source([([0xF2, 1], 0.0), RuntimeError("driver hiccup"), (NOTE, 0.0)])
    drain(source, decoder, events)
    assert decoder.dropped == 2 and "error in the MIDI thread (RuntimeError)" in decoder.dropped_kinds
    assert events.empty()
    drain(source, decoder, events)
    assert events.get_nowait()[0].note == 36


def test_the_midi_thread_that_still_ends_says_why_in_one_line():
    class Dead(BaseException):
        pass

    stop = threading.Event()
    assert pump(_Source([Dead("gone")]), MidiDecoder(), queue.SimpleQueue(), stop, poll_s=0.0) == \
        "the MIDI input thread stopped (Dead: gone); no note would be heard"
    stop.set()
    assert pump(_Source([]), MidiDecoder(), queue.SimpleQueue(), stop) is None


def test_the_sysex_guard_takes_its_probes_back_uncounted_and_counts_the_ones_not_back():
    sent = []
    guard = SysexGuard(sent.append, interval_s=0.0)  # a probe on every pass
    decoder, events = MidiDecoder(), queue.SimpleQueue()
    for _ in range(4):
        drain(_Source([]), decoder, events, guard)
    assert sent == [[0xF4, n, 0xF7] for n in range(4)]
    drain(_Source([([0xF4, 0, 0xF7], 0.0), (NOTE, 0.0)]), decoder, events, guard)  # probe 0 back: not counted
    assert decoder.dropped == 0 and guard.unreturned == 0 and events.get_nowait()[0].note == 36
    # probes 1 and 2 ended a sysex each (RtMidi swallowed them): probe 3 coming back says so; a repeat of it (JACK
    # repeats a late client's cycle) is no message either; a stray F7 and an F4 of no probe are the gear's errors
    drain(_Source([([0xF4, 3, 0xF7], 0.0), ([0xF4, 3, 0xF7], 0.0), ([0xF7], 0.0), ([0xF4, 9, 0xF7], 0.0)]),
          decoder, events, guard)
    assert guard.unreturned == 2
    assert decoder.dropped_kinds == {"sysex end (F7) without its start": 1, "undefined status byte F4": 1}
    assert events.empty()
