"""Live runtime on JACK dummy: note -> onset latency, knob -> new-sound-ready time, worker CPU, xruns, RSS growth.

    .venv/bin/python benchmarks/runtime_latency.py [--seconds 60] [--notes 16] [--cc 100] [--cc-pause S]
                                                    [--realtime] [--view] [--no-recorder] [--rt-priority N]
                                                    [--no-reference] [--preset PATH]
                                                    [--out results.json]

Starts its own ``jackd -d dummy -r 48000 -p 128`` under a unique server name (``--no-realtime`` unless
``--realtime``), runs ``python -m runtime play --quiet`` as a subprocess (default preset: the tiny 48 kHz linear kick
model of tests/onnx_fixtures.py, 1024 samples = 21 ms so hits
16/s do not overlap; pass ``--preset`` for a real exported model), drives it from a python-rtmidi JACK
client (notes at ``--notes``/s, velocity 100, and a triangle CC sweep at ``--cc`` messages/s on CC 20 all the time)
and records its outputs and the same MIDI with a JACK-Client recorder on one frame clock.

Reported:

* note -> onset latency (frames and ms): recorder frame of the MIDI note-on -> first output sample above 1e-3, and
  the share of sounds that start (first sample above 1e-6) at exactly the frame the player promises: the note's
  frame + the frames the kick itself takes to leave 0 (the preset rendered offline) + the latency its JACK client
  reports (``added_latency_frames``, 0: each note sounds from its own frame in
  the cycle that carries it, :mod:`runtime.jack_client`);
* knob -> ready (ms): player-side, MIDI timestamp of the oldest CC a render serves -> the first new buffer (the pad
  played last) swapped in: the preview decoder's sound when the model has one (``decoder_preview.onnx``);
* knob rests -> full quality (ms): MIDI timestamp of the last CC -> the full decoder's buffer swapped in (only when
  the sweep pauses long enough for a full render: ``--cc-pause``);
* render worker CPU share: the worker thread's CPU seconds / wall seconds (``time.thread_time``);
* xruns: the server xruns the player's JACK client was told of (its xrun callback: every server xrun, whoever
  caused it), all of them and those between the first note and the end of the last one (the player
  stamps each with ``time.monotonic()``; the benchmark's own clients open before that window), with the JACK
  server's log as context (the dummy driver's own xruns and the clients it blamed, by state) and the do-nothing
  recorder's xruns beside them, counted and placed on the same time axis (``recorder_xruns_at_s``);
* RSS growth: player RSS at the end minus at 2 s.

``--no-recorder`` leaves the recorder out (no latency or onset figures): the player's xruns without the measuring
client in the server's chain. The server's log blames the recorder for more cycles than every other client
together (it runs last in the chain, so it is the one caught unfinished), but leaving it out changed the player's
underflow count little (benchmarks/README.md, "With the shipped kick model").

The reference client: ``jack_midisine`` (jackd2's example C client: a MIDI input and an audio output that
starts a sine at each note-on's own frame in the same cycle) runs in the same server at the same time, fed the same
MIDI from the same sender (each note released 30 ms later, so its sine stops), recorded on the recorder's second
input. Its note -> onset latency and the cycles the server blamed on it are printed beside the player's
(``reference``), so "as good as a C client on this machine" is a figure: on a VM whose scheduler wakes threads
late, a C client that does nothing but copy MIDI to a sine is blamed too. Leave it out with ``--no-reference``.

Goals: latency <= one period added, each note at its own frame plus the reported latency, knob -> ready <= 20 ms,
0 xruns, RSS growth < 5 MB. Beside "0 xruns" (every client's) the goals say whether the server blamed no cycle on
the player's own clients (``server_xruns_blamed_on_the_player``): the xruns the player caused. ``--rt-priority N``
passes the player's flag (0: its audio thread stays an ordinary thread under ``--no-realtime``).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.jack_fixtures import (PERIOD, RATE, JackServer, PlayerProcess, Recorder, Sender,  # noqa: E402
                                 count_onsets, onsets_after, underflows_between, write_test_preset)


# rich draws the live view into the player's log as it would on a terminal (the drawing cost is the real one)
VIEW_ENV = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "120", "LINES": "40"}
# the reference client (jackd2's example jack_midisine) and its ports
REFERENCE = "midisine"
REFERENCE_IN, REFERENCE_OUT = f"{REFERENCE}:midi_in", f"{REFERENCE}:audio_out"
RELEASE_S = 0.03  # each note's note-off follows this much later (the reference's sine stops; the player ignores it)
START = 1e-6  # a sound's first sample: above this (silence is exactly 0 on the player's outputs)


def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="kickspace-bench-"))
    server = JackServer(work, name=f"kickspace-bench-{int(time.time())}", realtime=args.realtime).start()
    recorder = None
    try:
        preset = Path(args.preset) if args.preset else write_test_preset(work / "preset", samples=1024)
        extra = [] if args.rt_priority is None else ["--rt-priority", str(args.rt_priority)]
        player = PlayerProcess(preset, work, client="ks-bench", quiet=not args.view, extra=extra,
                               env={**os.environ, **VIEW_ENV} if args.view else None)
        sender = Sender("ks-bench-snd")  # before the recorder: opening it took seconds at times, off the recording
        reference = None if args.no_reference else _start_reference(work)
        sources = player.outputs[:1] + ([REFERENCE_OUT] if reference else [])
        if args.no_recorder:
            _connect(sender.port, player.midi_in)
        else:
            recorder = Recorder("ks-bench-rec", args.seconds + 5, channels=len(sources))
            recorder.connect_audio(sources)
            recorder.connect(sender.port, player.midi_in)
            recorder.connect(sender.port, "ks-bench-rec:midi_in")
        if reference:
            _connect(sender.port, REFERENCE_IN)
        time.sleep(0.5)
        log_at = server.log_size()
        t0 = time.monotonic()
        sent_notes, sent_cc = _drive(sender, args)
        time.sleep(0.5)
        t_end = time.monotonic()
        rc, stats = player.interrupt()
        sender.close()
        if recorder is not None:
            recorder.close()
        xruns = server.xrun_report(log_at)
        reference_blamed = server.blamed([REFERENCE], log_at) if reference else None
    finally:
        if reference:
            reference.terminate()
            reference.wait(10)
        server.stop()
    result = {
        "machine_load": _load(), "realtime_jackd": server.realtime, "seconds": args.seconds, "exit_status": rc,
        "notes_sent": sent_notes, "notes_played": stats.get("notes"), "cc_sent": sent_cc, "cc_applied": stats.get("cc"),
        **(_recorded(recorder, args) if recorder is not None else {"recorder": None}),
        "reference": None if reference is None else {
            "client": f"{REFERENCE} (jack_midisine, C)", "server_xruns_blamed": reference_blamed,
            **(_reference_recorded(recorder, args) if recorder is not None else {})},
        "knob_to_ready_ms": stats.get("ready_ms"), "knob_rests_to_full_quality_ms": stats.get("final_ms"),
        "render_ms": stats.get("render_ms"), "preview_iterations": stats.get("preview_iterations"),
        "previews": stats.get("previews"), "renders": stats.get("renders"),
        "cancelled_full_renders": stats.get("cancelled_renders"), "worker_cpu_share": stats.get("worker_cpu_share"),
        "worker_nice": stats.get("worker_nice"), "audio_thread": stats.get("audio_thread"), "gc": stats.get("gc"),
        "player_cpu_share": round(stats.get("process_cpu_s", 0) / max(stats.get("wall_s", 1), 1e-9), 4),
        "xruns_player_callback": stats.get("underflows"), "blocks": stats.get("blocks"),
        "xruns_player_during_stress": underflows_between(stats, t0, t_end),
        "xruns_player_at_s": [round(t - t0, 3) for t in stats.get("underflow_times", [])],
        "max_callback_ms": stats.get("max_callback_ms"), "callback_wait_ms": stats.get("callback_wait_ms"),
        "jack_server_log": xruns,
        "server_xruns_blamed_on_the_player": sum(n for k, n in xruns["clients"].items()
                                                 if k.split(" (")[0] == "ks-bench"),  # one JACK client
        "added_latency_frames": stats.get("added_latency_frames"), "kick_rise_frames": _rise(preset),
        "rss_start_mb": stats.get("rss_start_mb"), "rss_end_mb": stats.get("rss_end_mb"),
        "rss_growth_mb": round(stats.get("rss_end_mb", 0) - stats.get("rss_start_mb", 0), 2),
        "rss_every_10s_mb": stats.get("rss_every_10s_mb"),
    }
    result["goals"] = _goals(result)
    return result


def _goals(result: dict) -> dict:
    """Each goal: the player's figure, the reference client's in the same run where it has one, and whether the
    player met it."""
    ready = result["knob_to_ready_ms"] or {}
    mine = (result.get("latency_frames") or {}).get("p95")
    promised = (result["added_latency_frames"] or 0) + result["kick_rise_frames"]
    exact = (result.get("start_frames_share") or {}).get(str(promised), 0.0)
    ref = result["reference"] or {}
    theirs = (ref.get("latency_frames") or {}).get("p95")
    blamed = result["server_xruns_blamed_on_the_player"]
    rows = {
        "note -> onset <= one period added (p95, frames)": (mine, theirs, None if mine is None else mine <= PERIOD + 8),
        f"every sound starts at note + reported latency ({promised} frames)": (exact, None, exact == 1.0),
        "knob -> ready <= 20 ms (p95)": (ready.get("p95"), None, bool(ready.get("n") and ready["p95"] <= 20.0)),
        "0 xruns (every client's, as the player saw them)": (result["xruns_player_during_stress"], None,
                                                             result["xruns_player_during_stress"] == 0),
        "0 cycles the server blamed on the player": (blamed, ref.get("server_xruns_blamed"), blamed == 0),
        "RSS growth < 5 MB": (result["rss_growth_mb"], None, result["rss_growth_mb"] < 5.0),
    }
    return {goal: {"player": a, "reference": b, "met": met} for goal, (a, b, met) in rows.items()}


def _goal_table(goals: dict) -> str:
    """The goals as a plain-text table: goal, player, reference client, met."""
    lines = [f"{'goal':52} {'player':>10} {'reference':>10}  met"]
    for goal, row in goals.items():
        ref = "-" if row["reference"] is None else row["reference"]
        lines.append(f"{goal:52} {row['player']!s:>10} {ref!s:>10}  {row['met']}")
    return "\n".join(lines)


def _start_reference(work: Path) -> subprocess.Popen | None:
    """``jack_midisine`` on the current server, waited on until its ports exist; None (said on stderr) when jackd2's
    example clients are not installed."""
    import jack

    if shutil.which("jack_midisine") is None:
        print("runtime_latency: jack_midisine not found (jackd2's example clients): no reference client", file=sys.stderr)
        return None
    log = open(work / "reference.log", "w")
    proc = subprocess.Popen(["jack_midisine"], stdout=log, stderr=subprocess.STDOUT)
    probe = jack.Client("ks-bench-probe", no_start_server=True)
    try:
        deadline = time.monotonic() + 10
        while not probe.get_ports(REFERENCE_OUT):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"jack_midisine did not start: {(work / 'reference.log').read_text()[-500:]}")
            time.sleep(0.05)
    finally:
        probe.close()
    return proc


def _connect(source: str, destination: str) -> None:
    import jack

    client = jack.Client("ks-bench-connect", no_start_server=True)
    try:
        client.connect(source, destination)
    finally:
        client.close()


def _drive(sender: Sender, args) -> tuple[int, int]:
    """Notes at ``args.notes``/s (each released :data:`RELEASE_S` later) and a triangle sweep on CC 20 at
    ``args.cc``/s for ``args.seconds``; returns (notes sent, CCs sent)."""
    sent_notes = sent_cc = 0
    t0 = time.monotonic()
    next_note, next_cc, next_off, step = t0, t0, None, 0
    while (now := time.monotonic()) - t0 < args.seconds:
        if next_off is not None and now >= next_off:
            sender.note_off(36)
            next_off = None
        if now >= next_note:
            sender.note(36, 100)
            sent_notes += 1
            next_off = now + RELEASE_S
            next_note += 1.0 / args.notes
        if args.cc and now >= next_cc:
            sender.cc(20, abs(step % 254 - 127))
            step += 2
            sent_cc += 1
            next_cc += 1.0 / args.cc
            if args.cc_pause and step % 50 == 0:  # every 25 messages the knob rests
                next_cc += args.cc_pause
        due = [next_note] + ([next_cc] if args.cc else []) + ([next_off] if next_off is not None else [])
        time.sleep(max(0.0, min(due) - time.monotonic()))
    return sent_notes, sent_cc


def _latency(recorder: Recorder, args, channel: int) -> dict:
    """Note -> onset latency of the sound on the recorder's input ``channel``, on the notes that land on silence."""
    notes = [f for f, _ in recorder.note_frames()]
    audio = recorder.audio[:, channel:channel + 1]
    # a note lands on silence only when the previous sound has died away: a real kick (0.74 s) at 16 notes/s never
    # does, so latency is measured on the notes with 2 quiet periods before them (use --notes 1 with a real preset)
    quiet = [f for f in notes if 2 * PERIOD <= f <= len(audio) and np.abs(audio[f - 2 * PERIOD:f, 0]).max() <= 1e-3]
    hits = onsets_after(audio, quiet, window=min(2000, int(RATE / args.notes) - 200))
    lat = np.array([h for h, _ in hits if h is not None], dtype=float)
    pct = lambda v, q: round(float(np.percentile(v, q)), 3) if v.size else None  # noqa: E731
    return {
        "notes_on_silence": len(quiet), "missing_onsets": int(sum(h is None for h, _ in hits)),
        "latency_frames": {"period": PERIOD, "median": pct(lat, 50), "p95": pct(lat, 95), "p99": pct(lat, 99),
                           "max": float(lat.max()) if lat.size else None,
                           "share_within_one_period": round(float(np.mean(lat <= PERIOD + 8)), 4) if lat.size
                           else None},
        # where each sound starts (its first sample above START, whatever its level: the knob sweep moves the level,
        # and with it the frame a 1e-3 threshold is crossed), as shares of the notes
        "start_frames_share": _shares([h for h, _ in onsets_after(audio, quiet, window=2000, threshold=START)]),
        "latency_ms": {"median": pct(lat * 1e3 / RATE, 50), "p95": pct(lat * 1e3 / RATE, 95),
                       "max": round(float(lat.max() * 1e3 / RATE), 3) if lat.size else None},
    }


def _recorded(recorder: Recorder, args) -> dict:
    """What the recorder saw of the player: notes, onsets, note -> onset latency, its own xruns (on the stress's
    time axis)."""
    notes = [f for f, _ in recorder.note_frames()]
    return {
        "notes_seen_by_recorder": len(notes), "onsets": count_onsets(recorder.audio, seen=recorder.seen),
        **_latency(recorder, args, 0),
        "recorder_xrun_callbacks": recorder.xruns,
        # on the recorder's frame clock, from the first note (sent at the stress's time 0)
        "recorder_xruns_at_s": [round((x - notes[0]) / RATE, 3) for x in recorder.xrun_frames] if notes else [],
    }


def _reference_recorded(recorder: Recorder, args) -> dict:
    """Note -> onset latency of the reference client (the recorder's second input)."""
    return _latency(recorder, args, 1) if recorder.audio.shape[1] > 1 else {}


def _rise(preset: Path) -> int:
    """Frames from a hit's start to its first sample above :data:`START`, rendered offline."""
    from runtime.render import render_one_shot

    sound = np.abs(render_one_shot(str(preset), velocity=100, sample_rate=RATE)[:, 0])
    return int(np.flatnonzero(sound > START)[0])


def _shares(values: list) -> dict:
    """``{value: share of the values}`` (None counts as "none")."""
    keys = ["none" if v is None else str(int(v)) for v in values]
    return {k: round(keys.count(k) / len(keys), 4) for k in sorted(set(keys))} if keys else {}


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()
    except OSError:
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--notes", type=float, default=16.0, help="notes per second")
    parser.add_argument("--cc", type=float, default=100.0,
                        help="CC messages per second (a continuous sweep; 0: no knob moves)")
    parser.add_argument("--cc-pause", type=float, default=0.0,
                        help="seconds the knob rests after every 25 CC messages (0: a sweep without pause)")
    parser.add_argument("--realtime", action="store_true", help="jackd -R instead of --no-realtime")
    parser.add_argument("--view", action="store_true",
                        help="run the player with its status view (drawn as on a 120x40 terminal) instead of --quiet")
    parser.add_argument("--no-recorder", action="store_true",
                        help="no recording client (no latency or onset figures): the xruns of the player and the "
                             "MIDI sender alone, without the measuring client's own")
    parser.add_argument("--rt-priority", type=int, default=None, metavar="N",
                        help="the player's --rt-priority (default: the player's own default; 0: an ordinary thread)")
    parser.add_argument("--no-reference", action="store_true",
                        help="no reference C client (jack_midisine) beside the player")
    parser.add_argument("--preset", default=None, help="preset to play (default: the tiny test model)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    # a JACK client call that never returns (seen once: the run stalled before the first note) dumps every
    # thread's stack and exits instead of hanging
    faulthandler.dump_traceback_later(args.seconds + 120, exit=True)
    result = run(args)
    faulthandler.cancel_dump_traceback_later()
    text = json.dumps(result, indent=1)
    print(text)
    print(_goal_table(result["goals"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
