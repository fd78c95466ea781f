"""Live runtime on JACK dummy: note -> onset latency, knob -> new-sound-ready time, worker CPU, xruns, RSS growth.

    .venv/bin/python benchmarks/runtime_latency.py [--seconds 60] [--notes 16] [--cc 100] [--cc-pause S]
                                                    [--realtime] [--view] [--no-recorder] [--rt-priority N]
                                                    [--preset PATH]
                                                    [--out results.json]

Starts its own ``jackd -d dummy -r 48000 -p 128`` under a unique server name (``--no-realtime`` unless
``--realtime``), runs ``python -m runtime play --quiet`` as a subprocess (default preset: the tiny 48 kHz linear kick
model of tests/onnx_fixtures.py, 1024 samples = 21 ms so hits
16/s do not overlap; pass ``--preset`` for a real exported model), drives it from a python-rtmidi JACK
client (notes at ``--notes``/s, velocity 100, and a triangle CC sweep at ``--cc`` messages/s on CC 20 all the time)
and records its outputs and the same MIDI with a JACK-Client recorder on one frame clock.

Reported:

* note -> onset latency (frames and ms): recorder frame of the MIDI note-on -> first output sample above 1e-3;
* knob -> ready (ms): player-side, MIDI timestamp of the oldest CC a render serves -> the first new buffer (the pad
  played last) swapped in: the preview decoder's sound when the model has one (``decoder_preview.onnx``);
* knob rests -> full quality (ms): MIDI timestamp of the last CC -> the full decoder's buffer swapped in (only when
  the sweep pauses long enough for a full render: ``--cc-pause``);
* render worker CPU share: the worker thread's CPU seconds / wall seconds (``time.thread_time``);
* xruns: output underflows the player's callback counted (PortAudio flags: on JACK they report every server
  xrun, whoever caused it), all of them and those between the first note and the end of the last one (the player
  stamps each with ``time.monotonic()``; the benchmark's own clients open before that window), with the JACK
  server's log as context (the dummy driver's own xruns and the clients it blamed, by state) and the do-nothing
  recorder's xruns beside them, counted and placed on the same time axis (``recorder_xruns_at_s``);
* RSS growth: player RSS at the end minus at 2 s.

``--no-recorder`` leaves the recorder out (no latency or onset figures): the player's xruns without the measuring
client in the server's chain. The server's log blames the recorder for more cycles than every other client
together (it runs last in the chain, so it is the one caught unfinished), but leaving it out changed little here:
1, 9, 11, 11 player underflows in 30 s without it, 9, 12, 12, 13 with it, interleaved.

Goals (the runtime issue): latency <= one period added, knob -> ready <= 20 ms, 0 xruns, RSS growth < 5 MB. Beside
"0 xruns" (every client's, as PortAudio flags them) the goals say whether the server blamed no cycle on the player's
own clients (``server_xruns_blamed_on_the_player``): the xruns the player caused. ``--rt-priority N`` passes the
player's flag (0: its audio thread stays an ordinary thread under ``--no-realtime``).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
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
        if args.no_recorder:
            _connect(sender.port, player.midi_in)
        else:
            recorder = Recorder("ks-bench-rec", args.seconds + 5, channels=1)
            recorder.connect_audio(player.outputs[:1])
            recorder.connect(sender.port, player.midi_in)
            recorder.connect(sender.port, "ks-bench-rec:midi_in")
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
    finally:
        server.stop()
    result = {
        "machine_load": _load(), "realtime_jackd": server.realtime, "seconds": args.seconds, "exit_status": rc,
        "notes_sent": sent_notes, "notes_played": stats.get("notes"), "cc_sent": sent_cc, "cc_applied": stats.get("cc"),
        **(_recorded(recorder, args) if recorder is not None else {"recorder": None}),
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
                                                 if k.split(" (")[0] in ("ks-bench", "ks-bench-midi")),
        "rss_start_mb": stats.get("rss_start_mb"), "rss_end_mb": stats.get("rss_end_mb"),
        "rss_growth_mb": round(stats.get("rss_end_mb", 0) - stats.get("rss_start_mb", 0), 2),
        "rss_every_10s_mb": stats.get("rss_every_10s_mb"),
    }
    ready = stats.get("ready_ms") or {}
    p95 = (result.get("latency_frames") or {}).get("p95")
    result["goals"] = {
        "latency <= one period added (p95)": None if p95 is None else p95 <= PERIOD + 8,
        "knob -> ready <= 20 ms (p95)": bool(ready.get("n") and ready["p95"] <= 20.0),
        "0 xruns": result["xruns_player_during_stress"] == 0,
        "0 cycles the server blamed on the player": result["server_xruns_blamed_on_the_player"] == 0,
        "RSS growth < 5 MB": result["rss_growth_mb"] < 5.0,
    }
    return result


def _connect(source: str, destination: str) -> None:
    from runtime.audio import Jack

    client = Jack("ks-bench-connect")
    try:
        client.connect(source, destination)
    finally:
        client.close()


def _drive(sender: Sender, args) -> tuple[int, int]:
    """Notes at ``args.notes``/s and a triangle sweep on CC 20 at ``args.cc``/s for ``args.seconds``; returns
    (notes sent, CCs sent)."""
    sent_notes = sent_cc = 0
    t0 = time.monotonic()
    next_note, next_cc, step = t0, t0, 0
    while (now := time.monotonic()) - t0 < args.seconds:
        if now >= next_note:
            sender.note(36, 100)
            sent_notes += 1
            next_note += 1.0 / args.notes
        if args.cc and now >= next_cc:
            sender.cc(20, abs(step % 254 - 127))
            step += 2
            sent_cc += 1
            next_cc += 1.0 / args.cc
            if args.cc_pause and step % 50 == 0:  # every 25 messages the knob rests
                next_cc += args.cc_pause
        time.sleep(max(0.0, min(next_note, next_cc if args.cc else next_note) - time.monotonic()))
    return sent_notes, sent_cc


def _recorded(recorder: Recorder, args) -> dict:
    """What the recorder saw: notes, onsets, note -> onset latency, its own xruns (on the stress's time axis)."""
    notes = [f for f, _ in recorder.note_frames()]
    # a note lands on silence only when the previous sound has died away: a real kick (0.74 s) at 16 notes/s never
    # does, so latency is measured on the notes with 2 quiet periods before them (use --notes 1 with a real preset)
    quiet = [f for f in notes if 2 * PERIOD <= f <= len(recorder.audio)
             and np.abs(recorder.audio[f - 2 * PERIOD:f, 0]).max() <= 1e-3]
    hits = onsets_after(recorder.audio, quiet, window=min(2000, int(RATE / args.notes) - 200))
    lat = np.array([h for h, _ in hits if h is not None], dtype=float)
    pct = lambda v, q: round(float(np.percentile(v, q)), 3) if v.size else None  # noqa: E731
    return {
        "notes_seen_by_recorder": len(notes), "notes_on_silence": len(quiet),
        "onsets": count_onsets(recorder.audio, seen=recorder.seen),
        "missing_onsets": int(sum(h is None for h, _ in hits)),
        "latency_frames": {"period": PERIOD, "median": pct(lat, 50), "p95": pct(lat, 95), "p99": pct(lat, 99),
                           "max": float(lat.max()) if lat.size else None,
                           "share_within_one_period": round(float(np.mean(lat <= PERIOD + 8)), 4) if lat.size
                           else None},
        "latency_ms": {"median": pct(lat * 1e3 / RATE, 50), "p95": pct(lat * 1e3 / RATE, 95),
                       "max": round(float(lat.max() * 1e3 / RATE), 3) if lat.size else None},
        "recorder_xrun_callbacks": recorder.xruns,
        # on the recorder's frame clock, from the first note (sent at the stress's time 0)
        "recorder_xruns_at_s": [round((x - notes[0]) / RATE, 3) for x in recorder.xrun_frames] if notes else [],
    }


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
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
