"""``runtime play`` against a real JACK server (dummy driver, 48 kHz / 128 frames), with real parts only: the player
runs as a subprocess, a python-rtmidi JACK client sends notes and CCs to its virtual MIDI port, a JACK-Client
recorder records its output ports and the same MIDI events on one frame clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from runtime import cli
from runtime.audio import UNDERFLOW_LOG
from runtime.process import REALTIME_PRIORITY, WORKER_NICE, realtime_permitted
from tests.jack_fixtures import (PERIOD, ROOT, PlayerProcess, Rig, count_onsets, jack_server,  # noqa: F401
                                 onsets_after, sender, thread_scheduling, underflows_between,
                                 write_test_preset)

DETECT = 8  # frames the threshold detector needs on the kick's 1 ms rise (velocity 32: ~3 frames)


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return write_test_preset(tmp_path_factory.mktemp("live"))


def test_one_kick_per_note_velocity_scaling_and_latency(jack_server, sender, preset, tmp_path):
    rig = Rig(preset, tmp_path, sender, "notes", seconds=8.0)
    velocities = [127, 96, 64, 32] * 4
    try:
        for v in velocities:
            rig.sender.note(36, v)
            time.sleep(0.2)
        time.sleep(0.4)
        port_latency = rig.recorder.port_latency(rig.player.outputs[0])
    finally:
        rc, stats = rig.close()
    assert rc == 0
    assert stats["notes"] == len(velocities) and stats["dropped_notes"] == 0
    audio = rig.recorder.audio
    assert count_onsets(audio, seen=rig.recorder.seen) == len(velocities)  # one kick per note, nothing else
    # the recorder is a JACK client too: a cycle it misses (an xrun) loses that cycle's MIDI for it, not the player
    notes = rig.recorder.note_frames()
    assert len(notes) >= len(velocities) - 2
    hits = onsets_after(audio, [f for f, _ in notes], window=20 * PERIOD)
    assert all(lat is not None for lat, _ in hits)
    latency = np.array([lat for lat, _ in hits])
    peaks = np.array([p for _, p in hits])
    per_velocity = peaks / np.array([v for _, v in notes])
    np.testing.assert_allclose(per_velocity, np.median(per_velocity), rtol=0.03)  # gain = velocity / 127
    np.testing.assert_allclose(audio[:, 1], audio[:, 0])  # mono sound on both outputs
    bound = PERIOD + port_latency + DETECT
    calm = np.array([not rig.recorder.disturbed(f) for f, _ in notes])
    print(f"note->onset latency (frames at 48 kHz, period {PERIOD}, port latency {port_latency}): "
          f"median {np.median(latency):.0f}, max {latency.max()}, all {latency.tolist()}; "
          f"{calm.sum()} notes with no server xrun near them; player underflows {stats['underflows']}; "
          f"server xruns {jack_server.xrun_report()}")
    # A JACK MIDI note starts at the first frame of the block after the cycle that carried it (one period) when the
    # MIDI -> control -> audio threads keep up. With --no-realtime on a loaded 2-core machine the server misses
    # cycles (xruns), and a note near one may reach every client a period or two late. The bound holds for every
    # note with no server xrun within 4 periods before to 8 after it; no note may come later than 4 periods.
    if calm.sum() < 4:
        pytest.skip(f"only {calm.sum()} of {len(notes)} notes came without a server xrun near them: the machine is "
                    f"too loaded to measure a one-period latency")
    assert np.all(latency[calm] <= bound), f"latencies {latency.tolist()} exceed one period + port latency"
    assert latency.max() <= 4 * PERIOD, f"latencies {latency.tolist()}"


def test_cc_sweep_changes_the_next_kick(jack_server, sender, preset, tmp_path):
    rig = Rig(preset, tmp_path, sender, "cc", seconds=6.0)
    log_at = jack_server.log_size()
    try:
        def sweep(a, b):
            for value in np.linspace(a, b, 24).round().astype(int):
                rig.sender.cc(20, int(value))
                time.sleep(0.005)
            time.sleep(0.05)
            rig.sender.cc(20, b)  # the knob at rest, sent again: a cycle JACK drops under load may hold the last value
            time.sleep(0.15)  # the render worker swaps the new sound in well before this

        rig.sender.note(36, 100)          # sub 0 (preset default): amplitude x1
        time.sleep(0.2)
        sweep(64, 0)                      # sub -1: x0.5
        rig.sender.note(36, 100)
        time.sleep(0.2)
        sweep(0, 127)                     # sub +1: x1.5
        rig.sender.note(36, 100)
        time.sleep(0.3)
    finally:
        rc, stats = rig.close()
    assert rc == 0
    notes = rig.recorder.note_frames()
    hits = onsets_after(rig.recorder.audio, [f for f, _ in notes], window=20 * PERIOD)
    default, low, high = (p for _, p in hits)
    assert low < default < high
    np.testing.assert_allclose([low / default, high / default], [0.5, 1.5], rtol=0.03)
    assert abs(stats["cc"] - 50) <= jack_server.midi_misses(rig.midi_clients, log_at), stats["cc"]
    assert stats["ready_ms"]["n"] >= 2
    # each move was heard through the preview decoder first, then the full decoder once the knob rested
    assert stats["previews"] >= 2 and stats["renders"] >= 2 and stats["final_ms"]["n"] >= 2
    assert stats["preview_iterations"] == 2


def test_twenty_seconds_of_notes_and_cc_sweeps_stay_glitch_free(jack_server, sender, preset, tmp_path):
    """8 notes/s for 20 s with a CC sweep running all the time (about 100 CC/s: the worker re-renders constantly).

    The issue's goal is zero xruns. Whether the player glitches is whether it makes the server miss cycles, and the
    server says so itself: jackd2 logs each cycle at whose start a client had been triggered and had not finished
    (:meth:`JackServer.blamed`). The assertion is on those cycles for the player's two JACK clients, its audio
    stream and its MIDI input: at most one block in a thousand each, or as many as the sender (a python-rtmidi
    client that only hands over queued bytes, in C++) when the machine stalls every client more often than that.
    A callback that waits for the GIL, a lock, an allocation or inference is caught unfinished on every such block
    (mutation-checked: a callback that sleeps 4 ms every 50th block was blamed for 153 cycles in this run).

    Zero is not asserted because this VM does not give it to any client: a thread that does nothing but sleep to
    period deadlines wakes more than a period late 6-15 times a minute (``benchmarks/wakeup_latency.py``), and the
    sender and the do-nothing recorder are blamed too (measured: 0-3 and 1-10 cycles in this run). The player's
    own underflow count cannot tell whose cycle it was: PortAudio flags every server xrun as an underflow of every
    client. It is checked for what it is, the server's xruns as the player saw them, at most one per callback:
    never more than the recorder's xrun callbacks. The exact counts are printed;
    ``benchmarks/runtime_latency.py`` keeps the zero goal and its figures.
    """
    seconds, rate = 20.0, 8
    rig = Rig(preset, tmp_path, sender, "stress", seconds=seconds + 3)
    log_at = jack_server.log_size()
    sent = 0
    try:
        t0 = time.monotonic()
        next_note, cc_step = t0, 0
        while time.monotonic() - t0 < seconds:
            now = time.monotonic()
            if now >= next_note:
                rig.sender.note(36, 100)
                sent += 1
                next_note += 1.0 / rate
            rig.sender.cc(20, abs(cc_step % 254 - 127))  # a triangle sweep 0..127..0
            cc_step += 3
            time.sleep(0.01)
        time.sleep(0.4)
        t_end = time.monotonic()
    finally:
        rc, stats = rig.close()
    server = jack_server.xrun_report(log_at)
    # the run's own underflows: the recorder's client opening after the player's stream started is not the run
    during = underflows_between(stats, t0, t_end)
    sender_client, midi_client = rig.midi_clients
    caused = {client: jack_server.blamed([client], log_at) for client in (rig.player.client, midi_client)}
    gauge = jack_server.blamed([sender_client], log_at)
    context = (f"cycles the server blamed on the player's clients: {caused}, on the sender: {gauge}; "
               f"audio thread {stats.get('audio_thread')}; "
               f"player: {during} underflows in the 20 s run ({stats.get('underflows')} in all) in "
               f"{stats.get('blocks')} blocks, callback max "
               f"{stats.get('max_callback_ms')} ms, knob->ready {stats.get('ready_ms')}, render "
               f"{stats.get('render_ms')}, worker CPU {stats.get('worker_cpu_share')}; server log: {server}; "
               f"recorder saw {rig.recorder.xruns} xrun callbacks; realtime={jack_server.realtime}")
    print(context)
    assert rc == 0 and stats["errors"] == 0 and stats["dropped_notes"] == 0
    # live play ran with the start-up heap frozen out of the collector and the render worker niced (runtime.process)
    assert stats["gc"]["frozen_objects"] > 10_000 and stats["worker_nice"] == WORKER_NICE
    # exact unless a MIDI client missed cycles, each of which JACK may repeat or drop (tests/jack_fixtures.py)
    misses = jack_server.midi_misses(rig.midi_clients, log_at)
    assert abs(stats["notes"] - sent) <= misses, context
    # one sound per note sent: a note JACK repeats one cycle later restarts the same sound (no silence between, so
    # no extra onset), one it drops makes none, and the recorder may miss the cycles of a whole onset under load
    missed = sum(not rig.recorder.seen[f:f + 20 * PERIOD].all() for f, _ in rig.recorder.note_frames())
    onsets = count_onsets(rig.recorder.audio, seen=rig.recorder.seen)
    heard = f"{onsets} sounds for {sent} notes sent, {stats['notes']} played ({missed} partly unrecorded); {context}"
    assert sent - misses - missed <= onsets <= stats["notes"], heard
    # the xruns the player caused, by the server's account
    assert max(caused.values()) <= max(stats["blocks"] // 1000, gauge), context
    if realtime_permitted():  # the audio thread asked for SCHED_FIFO (runtime.process.realtime_thread) and got it
        assert stats["audio_thread"].startswith("SCHED_FIFO"), context
    # the player's underflows are the server's xruns as PortAudio reports them (at most one per callback)
    assert during <= rig.recorder.xruns, context


def test_a_stalled_server_cycle_counts_as_an_underflow_at_its_time(jack_server, preset, tmp_path):
    """The xrun count is not a number that cannot move: a JACK client that sleeps 20 ms in its process callback
    makes the server miss cycles, and the player's callback counts the underflow PortAudio flags, stamped with when
    it came (the ``underflow_times`` a benchmark uses to count the xruns of its stress window only)."""
    import jack

    player = PlayerProcess(preset, tmp_path, client="ks-stall")
    staller = jack.Client("ks-staller", no_start_server=True)
    armed, stalled = threading.Event(), threading.Event()

    @staller.set_process_callback
    def _process(frames):
        if armed.is_set() and not stalled.is_set():
            stalled.set()
            time.sleep(0.02)

    staller.activate()
    try:
        time.sleep(1.0)
        before = time.monotonic()
        armed.set()
        stalled.wait(5.0)
        time.sleep(0.5)
    finally:
        rc, stats = player.interrupt()
        staller.deactivate()
        staller.close()
    assert rc == 0 and stalled.is_set()
    near = [t for t in stats["underflow_times"] if before <= t <= before + 0.3]
    assert stats["underflows"] >= 1 and near, (stats["underflows"], stats["underflow_times"], before)
    assert len(stats["underflow_times"]) == min(stats["underflows"], UNDERFLOW_LOG)


def test_sigint_closes_ports_and_streams_and_save_writes_wav_and_preset(jack_server, preset, tmp_path):
    import jack
    import soundfile as sf

    player = PlayerProcess(preset, tmp_path, client="ks-exit")
    probe = jack.Client("ks-exit-probe", no_start_server=True)
    try:
        names = {p.name for p in probe.get_ports("ks-exit")}
        assert names == {"ks-exit:out_0", "ks-exit:out_1", "ks-exit-midi:in"}
        player.proc.send_signal(signal.SIGUSR1)  # "save current sound"
        deadline = time.monotonic() + 10
        while not list((tmp_path / "saves").glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        rc, stats = player.interrupt()
        assert rc == 0
        assert not probe.get_ports("ks-exit")  # the client's ports are gone
    finally:
        probe.close()
    out = player.output()
    assert "Traceback" not in out and out.strip().splitlines()[-1].startswith("kickspace: ")
    wav = list((tmp_path / "saves").glob("*.wav"))
    saved = list((tmp_path / "saves").glob("*.json"))
    assert len(wav) == 1 and len(saved) == 1
    info = sf.info(str(wav[0]))
    assert info.subtype == "PCM_24" and info.samplerate == 48000 and info.frames == 4096
    from runtime.preset import load_preset

    again = load_preset(saved[0])
    assert again.model == preset.parent.joinpath("model").resolve() and again.knobs[0].axis == "sub"


def test_musician_errors(jack_server, preset, tmp_path, capsys):
    bad = json.loads(preset.read_text())
    bad["knobs"][0]["cc"] = 300
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    (tmp_path / "model").symlink_to(preset.parent / "model")
    assert cli.main(["play", "--preset", str(tmp_path / "bad.json"), "--quiet"]) == 2
    assert "knobs[0].cc: must be an integer 0-127" in capsys.readouterr().err
    assert cli.main(["play", "--preset", str(preset), "--rt-priority", "100", "--quiet"]) == 2
    assert "--rt-priority: must be 0 (leave the audio thread alone) to 99, got 100" in capsys.readouterr().err
    base = [sys.executable, "-m", "runtime", "play", "--preset", str(preset), "--quiet", "--duration", "0.2"]
    missing = subprocess.run(base + ["--midi-port", "no-such-port", "--client-name", "ks-err"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert "MIDI port 'no-such-port' not found" in missing.stderr and "Ports you can connect to" in missing.stderr
    env = {**os.environ, "JACK_DEFAULT_SERVER": "kickspace-no-such-server"}
    nodev = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert nodev.returncode == 2
    assert "no audio output device" in nodev.stderr and "runtime list" in nodev.stderr
    running = PlayerProcess(preset, tmp_path, client="ks-dup")
    try:
        twice = subprocess.run(base + ["--client-name", "ks-dup"], cwd=ROOT, capture_output=True, text=True,
                               timeout=120)
    finally:
        rc, _ = running.interrupt()
    assert twice.returncode == 2 and rc == 0
    assert "a JACK client named 'ks-dup' is already running" in twice.stderr and "--client-name" in twice.stderr


def test_the_audio_thread_runs_sched_fifo_where_permitted_unless_told_not_to(jack_server, preset, tmp_path):
    """Under ``jackd --no-realtime`` libjack leaves the player's process thread an ordinary one; the callback asks
    for SCHED_FIFO on its first block (runtime.process.realtime_thread). Seen from outside, in /proc: exactly one
    thread of the player runs SCHED_FIFO at the default priority, and none with ``--rt-priority 0``."""
    if not realtime_permitted():
        pytest.skip("this process may not use realtime scheduling (not root, no rtprio limit)")
    if jack_server.realtime:
        pytest.skip("jackd -R makes every client's process thread realtime itself")
    asked = PlayerProcess(preset, tmp_path, client="ks-fifo")
    try:
        plain = PlayerProcess(preset, tmp_path, client="ks-plain", extra=["--rt-priority", "0"])
        try:
            time.sleep(0.3)
            seen = {name: [prio for policy, prio in thread_scheduling(player.proc.pid) if policy == os.SCHED_FIFO]
                    for name, player in (("asked", asked), ("plain", plain))}
        finally:
            plain_rc, plain_stats = plain.interrupt()
    finally:
        asked_rc, asked_stats = asked.interrupt()
    assert asked_rc == 0 and plain_rc == 0
    assert seen == {"asked": [REALTIME_PRIORITY], "plain": []}
    assert asked_stats["audio_thread"] == f"SCHED_FIFO {REALTIME_PRIORITY}"
    assert plain_stats["audio_thread"] == "SCHED_OTHER (left as it is)"
