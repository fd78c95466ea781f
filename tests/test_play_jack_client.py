"""The player as ONE JACK client (:mod:`runtime.jack_client`), on a real JACK server (dummy driver, 48 kHz / 128
frames): each note sounds from its own frame in the cycle that carries it, and the latency it adds is reported on
its ports (JACK's latency API), where ``jack_lsp -l`` and the client API read it.

The notes come from a JACK-Client sender that writes each note-on at a chosen frame offset in its own process
callback; a JACK-Client recorder records the same MIDI and the player's outputs on one frame clock."""

from __future__ import annotations

import collections
import re
import subprocess
import time

import numpy as np
import pytest

from runtime.jack_session import CAPTURE, PLAYBACK, port_latency
from tests.jack_fixtures import PERIOD, RATE, PlayerProcess, Rig, jack_server, write_test_preset  # noqa: F401

THRESHOLD = 1e-3
SENDER_LATENCY = 32  # capture latency the sender claims for its output (as a hardware MIDI input would)
OFFSETS = [0, 1, 37, 64, 100, 127]  # frames into the sender's cycle


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return write_test_preset(tmp_path_factory.mktemp("exact"), samples=2048)


class FrameSender:
    """A JACK-Client MIDI output (``NAME:out``) that writes each queued event at its own frame offset in the next
    cycle of its process callback, one event per cycle, and reports :data:`SENDER_LATENCY` as its capture latency."""

    def __init__(self, name: str) -> None:
        import jack

        from runtime.jack_session import LatencyApi

        self.client = jack.Client(name, no_start_server=True)
        self.out = self.client.midi_outports.register("out")
        self.port = self.out.name
        self.pending: collections.deque = collections.deque()
        latency = LatencyApi.get()
        self._handle = latency.set_callback(
            self.client, lambda mode: mode == CAPTURE and latency.set_range(self.out, CAPTURE, SENDER_LATENCY,
                                                                            SENDER_LATENCY))
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        self.out.clear_buffer()
        if self.pending:
            offset, data = self.pending.popleft()
            self.out.write_midi_event(offset, data)

    def send(self, offset: int, data: bytes) -> None:
        self.pending.append((offset, data))

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def frame_rig(preset, workdir, name: str, seconds: float, extra: list[str] | None = None) -> Rig:
    """:class:`tests.jack_fixtures.Rig` (player ``ks-NAME``, recorder ``rec-NAME``) fed by a :class:`FrameSender`
    ``ks-NAME-snd``; close the rig, then ``rig.sender``."""
    sender = FrameSender(f"ks-{name}-snd")
    try:
        return Rig(preset, workdir, sender, name, seconds, extra=extra)
    except BaseException:
        sender.close()
        raise


def first_loud(x: np.ndarray) -> int | None:
    loud = np.flatnonzero(np.abs(x) > THRESHOLD)
    return int(loud[0]) if loud.size else None


def test_each_note_sounds_from_its_own_frame_plus_the_reported_latency(jack_server, preset, tmp_path):
    """For notes at several offsets within a period, onset frame == note frame + the player's reported latency +
    the frames the kick itself takes to cross the threshold (read from the same preset rendered offline) exactly.
    The two-client player (PortAudio + RtMidi) started every note at the next block's first frame: off by one
    period minus the offset."""
    from runtime.render import render_one_shot

    rise = first_loud(render_one_shot(str(preset), note=36, velocity=100, sample_rate=RATE)[:, 0])
    rig = frame_rig(preset, tmp_path, "exact", seconds=len(OFFSETS) * 3 * 0.12 + 3.0)
    player, sender, recorder = rig.player, rig.sender, rig.recorder
    try:
        for offset in OFFSETS * 3:
            sender.send(offset, bytes([0x90, 36, 100]))
            time.sleep(0.12)  # a 43 ms kick: silence before the next note
        time.sleep(0.3)
        out_capture = port_latency(recorder.client, player.outputs[0], CAPTURE)
        in_playback = port_latency(recorder.client, player.midi_in, PLAYBACK)
        out_playback = port_latency(recorder.client, player.outputs[0], PLAYBACK)
        listing = subprocess.run(["jack_lsp", "-l", "ks-exact"], capture_output=True, text=True, timeout=30).stdout
    finally:
        rc, stats = rig.close()
        rig.sender.close()
    assert rc == 0 and stats["callback_errors"] == 0, player.output()[-2000:]
    added = stats["added_latency_frames"]
    # the latency it reports: through the client API, and as jack_lsp -l prints it
    assert out_capture == (SENDER_LATENCY + added, SENDER_LATENCY + added)
    assert in_playback == (out_playback[0] + added, out_playback[1] + added)
    block = listing.split("ks-exact:out_0")[1].split("ks-exact:")[0]
    assert re.search(rf"port capture latency = \[ {SENDER_LATENCY + added} {SENDER_LATENCY + added} \]", block), listing
    # each note the recorder heard in full, away from server xruns: its onset sits exactly where the latency says
    audio, seen = recorder.audio[:, 0], recorder.seen
    notes = [f for f, note, velocity in recorder.note_ons() if (note, velocity) == (36, 100)]
    calm = [f for f in notes if seen[f - PERIOD:f + 4 * PERIOD].all() and not recorder.disturbed(f)]
    onsets = {f: first_loud(audio[f - PERIOD:f + 4 * PERIOD]) for f in calm}
    delays = {f: None if onset is None else onset - PERIOD for f, onset in onsets.items()}
    context = f"delays by note frame {delays}, kick rise {rise}, added latency {added}, {len(notes)} notes recorded"
    if len(calm) < len(OFFSETS):
        pytest.skip(f"only {len(calm)} notes came with no server xrun near them: too loaded to judge; {context}")
    assert set(delays.values()) == {added + rise}, context
    assert len({f % PERIOD for f in calm}) >= 4, context  # at several offsets within a period


def test_the_player_is_one_jack_client_with_a_midi_input_and_audio_outputs(jack_server, preset, tmp_path):
    import jack

    player = PlayerProcess(preset, tmp_path, client="ks-one")
    probe = jack.Client("ks-one-probe", no_start_server=True)
    try:
        ports = {p.name: (p.is_midi, p.is_input) for p in probe.get_ports("ks-one")}
        clients = {p.name.split(":")[0] for p in probe.get_ports()} - {"system", "ks-one-probe"}
    finally:
        probe.close()
        rc, stats = player.interrupt()
    assert rc == 0
    assert ports == {"ks-one:midi_in": (True, True), "ks-one:out_0": (False, False), "ks-one:out_1": (False, False)}
    assert "ks-one" in clients and not [c for c in clients if c.startswith("ks-one-")]
    assert stats["jack"] and stats["added_latency_frames"] == 0 and stats["midi_guard_unreturned"] == 0


def test_midi_port_connects_a_jack_output_to_the_input_and_runtime_list_names_it(jack_server, preset, tmp_path):
    import jack

    from runtime.jack_session import listing  # runtime list's JACK lines (its PortAudio part would open a client here)

    sender = FrameSender("ks-pick")
    try:
        listed = "\n".join(listing())
        player = PlayerProcess(preset, tmp_path, client="ks-picked", extra=["--midi-port", "ks-pick"])
        probe = jack.Client("ks-picked-probe", no_start_server=True)
        try:
            sources = [p.name for p in probe.get_all_connections(player.midi_in)]
        finally:
            probe.close()
            rc, stats = player.interrupt()
    finally:
        sender.close()
    assert rc == 0 and sources == ["ks-pick:out"]
    assert stats["midi_port"] == "ks-pick:out -> ks-picked:midi_in (JACK)"
    assert f"JACK server at {RATE} Hz, period {PERIOD} frames" in listed and "ks-pick:out" in listed


def test_the_callback_plays_only_the_channel_asked_for(jack_server, preset, tmp_path):
    """``--channel 1``: a note-on on channel 2 reaches the callback too, which must not start it (the control thread,
    which counts it as filtered, no longer starts notes on JACK)."""
    from tests.jack_fixtures import count_onsets

    rig = frame_rig(preset, tmp_path, "chan", seconds=3.0, extra=["--channel", "1"])
    try:
        for status in (0x91, 0x90, 0x91, 0x90):  # channel 2, 1, 2, 1
            rig.sender.send(10, bytes([status, 36, 100]))
            time.sleep(0.15)
        time.sleep(0.3)
    finally:
        rc, stats = rig.close()
        rig.sender.close()
    recorder = rig.recorder
    assert rc == 0 and stats["notes"] == 2 and stats["midi_received"] == 2, stats
    assert count_onsets(recorder.audio, seen=recorder.seen) == 2


# ---------------------------------------------------------------------------------- the hand-off (no server)

def test_the_ring_hands_events_over_in_order_and_counts_what_does_not_fit():
    from runtime.jack_midi import OVERFLOW, MidiRing, _RingSource
    from runtime.midi import MidiDecoder

    ring = MidiRing(slots=2, size=8)
    assert ring.put(bytes([0x93, 36, 100]), 1.0) == (3 << 16 | 36 << 8 | 100)  # a note-on: channel, note, velocity
    assert ring.put(bytes([0xF8]), 1.1) == -1 and ring.written == 1  # clock: ignored, not handed over
    assert ring.put(bytes([0x90, 36, 0]), 1.2) == -1  # velocity 0: a note-off
    assert ring.put(bytes([0x90, 38, 90]), 1.3) != -1 and ring.overflows == 1  # full: still played, not handed over
    decoder = MidiDecoder(absolute=True)
    source = _RingSource(ring, decoder)
    assert source.get_message() == ([0x93, 36, 100], 1.0) and decoder.dropped_kinds[OVERFLOW] == 1
    assert source.get_message() == ([0x90, 36, 0], 1.2) and source.get_message() is None
    long = bytes([0xF0] + [1] * 20 + [0xF7])  # longer than a slot: its head and its F7 end
    ring.put(long, 2.0)
    data, when = source.get_message()
    assert data == [0xF0] + [1] * 6 + [0xF7] and when == 2.0
    assert decoder.decode((data, when), 0.0)[1] == 2.0  # absolute: the event's own time
