"""The status view of ``runtime play`` (rich): knob values, notes as they arrive, last render and knob -> ready times,
xruns, output peak, MIDI learn state. A player thread reads its counters without locks (single attribute reads) at
:data:`REFRESH_HZ` and hands them as JSON lines to a drawing process (``python -m runtime.status``: :func:`draw`),
so rich's drawing never competes with the audio callback for the GIL (:class:`StatusView` says why that matters).
With ``--quiet`` there is no view. At exit the player gathers the run's figures with :func:`run_stats` (what
``--stats-json`` writes) and prints :func:`summary_line` either way.

This module imports only the standard library at its top: the drawing process imports it too, and stays small.

Keys (when stdin is a terminal): ``l`` MIDI learn (cycles through the model's axes, then off: the next moved CC
binds to the chosen axis), ``r`` a new random sound on the pad played last, ``s`` save the current sound
(WAV + preset), ``q`` quit.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import os
import select
import signal
import subprocess
import sys
import resource
import threading
import time

REFRESH_HZ = 4.0
DRAW_NICE = 19  # the drawing process's nice value where SCHED_IDLE is not available


def db(x: float) -> str:
    return f"{20 * math.log10(x):.1f} dBFS" if x > 0 else "-inf dBFS"


def summary_line(stats: dict) -> str:
    """One line about a finished run (what ``--quiet`` prints at exit)."""
    ready = stats.get("ready_ms", {})
    render = stats.get("render_ms", {})
    final = stats.get("final_ms", {})
    ready_text = f"knob->ready median {ready['median']:.1f} ms (max {ready['max']:.1f})" if ready.get("n") else \
        "no knob moves"
    if final.get("n"):
        ready_text += f", full quality {final['median']:.1f} ms after the knob rests"
    render_text = f"{stats['renders']} pad renders ({render['median']:.1f} ms median)" if render.get("n") else \
        f"{stats['renders']} pad renders"
    dropped = f", {stats['midi_dropped']} malformed MIDI messages dropped" if stats.get("midi_dropped") else ""
    if stats.get("osc_dropped"):
        dropped += f", {stats['osc_dropped']} OSC messages dropped"
    if stats.get("nonfinite_renders"):
        dropped += f", {stats['nonfinite_renders']} renders NaN or infinite (played as silence)"
    return (f"kickspace: {stats['wall_s']:.1f} s, {stats['notes']} notes, {stats['cc']} CC, {render_text}, "
            f"{ready_text}, {stats['underflows']} xruns in {stats['blocks']} blocks, peak {db(stats['peak'])}, "
            f"RSS {stats['rss_end_mb']:.1f} MB{dropped}")


def run_stats(player) -> dict:
    """Counters and timings of a ``runtime play`` run (a :class:`runtime.play.Player`), JSON-ready: what
    ``--stats-json`` writes and :func:`summary_line` reads. ``underflow_times`` keeps the ``time.monotonic()``
    time of each of the first underflows, so a benchmark can count those of its own measuring window."""
    p = player
    a, w, midi, model = p.audio, p.worker, p.midi, p.controller.model
    wall = (time.monotonic() - p.started) if p.started else 0.0
    ready = w.ready_ms.sorted()
    rss = [r for _, r in p.rss]
    warm = [r for t, r in p.rss if t >= 2.0] or rss
    return {
        "wall_s": round(wall, 3), "samplerate": p.samplerate, "blocksize": a.blocksize,
        "block_frames": a.block_frames, "stream_latency_s": a.latency_s, "jack": a.is_jack,
        "ports": a.ports, "midi_port": midi.port_label if midi else "",
        "added_latency_frames": getattr(a, "latency_frames", None),
        "blocks": a.blocks, "underflows": a.underflows, "callback_errors": a.callback_errors,
        "underflow_times": a.underflow_times[:min(a.underflows, len(a.underflow_times))],
        "max_callback_ms": round(a.max_callback_s * 1e3, 3),
        "callback_wait_ms": histogram_summary(a.wait_histogram, 0.1), "peak": max(p.peak_max, a.peak),
        "notes": p.counts["notes"], "cc": p.counts["cc"], "programs": p.counts["programs"],
        "errors": p.counts["errors"] + len(w.stats.errors), "dropped_notes": p.engine.dropped,
        "midi_received": midi.received if midi else 0,
        "midi_dropped": midi.dropped if midi else 0,
        "midi_dropped_kinds": dict(midi.decoder.dropped_kinds) if midi else {},
        "midi_guard_unreturned": midi.unreturned if midi else 0,
        "osc_knobs": p.counts["osc_knobs"], **(p.osc.stats() if p.osc else {"osc_dropped": 0}),
        "nonfinite_renders": w.stats.nonfinite, "warnings": list(w.stats.warnings),
        "renders": w.stats.renders, "previews": w.stats.previews, "cancelled_renders": w.stats.cancelled,
        "decode_calls": w.stats.decode_calls,
        # Griffin-Lim iterations of the sound heard while a knob moves (0: no preview decoder, the full one plays)
        "preview_iterations": model.metadata.preview_iterations if model.has_preview else 0,
        "render_ms": w.render_ms.summary(), "ready_ms": w.ready_ms.summary(),
        "ready_ms_all": [round(x, 3) for x in ready], "final_ms": w.final_ms.summary(),
        "audio_thread": a.thread_policy, "worker_nice": w.nice,
        "gc": {**p.gc_pauses.summary(), "frozen_objects": p.frozen_objects},
        "worker_cpu_s": round(w.cpu_s, 4), "worker_cpu_share": round(w.cpu_s / wall, 5) if wall else 0.0,
        "process_cpu_s": round(time.process_time(), 3),
        "rss_start_mb": round(warm[0], 2) if warm else 0.0, "rss_end_mb": round(rss[-1], 2) if rss else 0.0,
        "rss_max_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, 2),
        "rss_every_10s_mb": [round(r, 1) for _, r in p.rss[::10]],
        "messages": list(p.messages), "failure": p.failure,
    }


def histogram_summary(counts: list[int], width: float) -> dict:
    """Median, p99, p99.9 and max (upper bin edges) of a histogram with bins ``width`` wide (``{"n": 0}`` when
    empty): the audio callback's GIL-wait histogram, counted without allocating in the callback."""
    cumulative = list(itertools.accumulate(counts))
    total = cumulative[-1] if cumulative else 0
    if not total:
        return {"n": 0}

    def edge(q: float) -> float:
        return round(float((bisect.bisect_left(cumulative, q * total) + 1) * width), 3)

    last = max(i for i, c in enumerate(counts) if c)
    return {"n": int(total), "median": edge(0.5), "p99": edge(0.99), "p999": edge(0.999),
            "max": round(float((last + 1) * width), 3)}


def key_command(key: str, axes: list[str], learning: str | None) -> tuple[str, str | None] | None:
    """The player command a key stands for: ``s`` save, ``r`` random sound, ``q`` quit, ``l`` MIDI learn on the
    next axis.

    Parameters
    ----------
    key : str
        One typed character (case-insensitive).
    axes : list of str
        The model's axes, in order.
    learning : str or None
        The axis MIDI learn is armed for now (None: off).

    Returns
    -------
    tuple or None
        ``(name, argument)`` for :meth:`runtime.play.Player.command`, or None for a key that does nothing. ``l``
        steps through the axes and then off: off -> first axis -> ... -> last axis -> off.
    """
    key = key.lower()
    if key == "s":
        return ("save", None)
    if key == "r":
        return ("random", None)
    if key == "q":
        return ("quit", None)
    if key == "l" and axes:
        if learning not in axes:
            return ("learn", axes[0])
        i = axes.index(learning) + 1
        return ("learn", axes[i] if i < len(axes) else None)
    return None


class StatusView:
    """The status view of a :class:`runtime.play.Player`: its drawing runs in a child process, its keys here.

    Drawing a rich view costs milliseconds of Python per refresh: in the player's process it made the audio
    callback wait for the GIL and raised the player's underflows (``benchmarks/runtime_latency.py --view``). So a
    thread here only reads the player's counters into a small dict (:meth:`snapshot`, a fraction of a millisecond)
    and writes it as one JSON line to a child process (``python -m runtime.status``), which draws it with rich on
    the same terminal; the GIL wait is then the quiet one's. The drawing process runs ``SCHED_IDLE`` (a core only
    when nothing else wants it) and draws only the newest snapshot it has (:func:`newest_lines`), which
    underflowed less than drawing every snapshot at nice 19.
    The child is started by :meth:`prepare`, before the audio stream, and ends when its input closes
    (:meth:`stop`); it ignores SIGINT, so Ctrl-C at the terminal reaches the player only.
    """

    def __init__(self, player) -> None:
        self.player = player
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._peak = 0.0
        self._child: subprocess.Popen | None = None

    def prepare(self) -> None:
        """Start the drawing process (before the audio stream starts: its start-up is ~0.2 s of CPU)."""
        self._child = subprocess.Popen([sys.executable, "-m", "runtime.status"], stdin=subprocess.PIPE,
                                       text=True, bufsize=1)

    def start(self) -> None:
        """Feed the view and read keys (each in its own thread) until :meth:`stop`."""
        if self._child is None:
            self.prepare()
        self._threads.append(threading.Thread(target=self._run, name="kickspace-status", daemon=True))
        if sys.stdin.isatty():
            self._threads.append(threading.Thread(target=self._keys, name="kickspace-keys", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop feeding, let the drawing process draw its last frame and exit."""
        self._stop.set()
        for thread in self._threads:
            thread.join(2.0)
        child, self._child = self._child, None
        if child is None:
            return
        try:
            child.stdin.close()
            child.wait(3.0)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            child.wait(3.0)

    # ------------------------------------------------------------------------------------------------- view

    def _run(self) -> None:
        child = self._child
        while not self._stop.wait(1.0 / REFRESH_HZ):
            try:
                child.stdin.write(json.dumps(self.snapshot()) + "\n")
            except (OSError, ValueError):  # the drawing process is gone: play on without a view
                return

    def snapshot(self) -> dict:
        """What the view shows, as plain JSON-ready data (read without locks: single attribute reads)."""
        p = self.player
        a, w = p.audio, p.worker
        peak = a.take_peak()
        p.peak_max = max(p.peak_max, peak)
        self._peak = max(peak, self._peak * 0.5)  # a meter that falls 6 dB per refresh
        values = p.controller.state.values
        bound = {k.axis: k for k in p.controller.preset.knobs}
        knobs = []
        for name in p.controller.model.metadata.knob_names():  # shaping controls and latent axes
            knob = bound.get(name)
            lo, hi = (knob.min, knob.max) if knob else (-1.0, 1.0)
            v = float(values.get(name, 0.0))
            knobs.append({"axis": name, "cc": knob.cc if knob else None, "value": v,
                          "fraction": 0.0 if hi == lo else min(max((v - lo) / (hi - lo), 0.0), 1.0),
                          "learning": p.learn_axis == name})
        now = time.monotonic()
        return {"title": f"Kickspace  {p.controller.preset.name or p.preset_path}   {p.describe()}",
                "knobs": knobs, "recent": [(round(now - when, 1), text) for when, text in list(p.recent)[-8:]],
                "render_ms": w.render_ms.last, "ready_ms": w.ready_ms.last, "final_ms": w.final_ms.last,
                "pending": w.pending, "xruns": a.underflows, "blocks": a.blocks, "voices": p.engine.active_voices,
                "peak": self._peak, "notes": p.counts["notes"], "cc": p.counts["cc"],
                "midi": p.midi.port_label if p.midi else "-", "audio_thread": a.thread_policy or "-",
                "midi_dropped": p.midi.dropped if p.midi else 0,
                "midi_last_dropped": p.midi.decoder.last_dropped if p.midi else "",
                "osc": p.osc.label if p.osc else "", "osc_dropped": p.osc.dropped if p.osc else 0,
                "osc_last_dropped": p.osc.last_dropped if p.osc else "",
                "nonfinite": w.stats.nonfinite, "last_warning": w.stats.warnings[-1] if w.stats.warnings else "",
                "messages": list(p.messages)[-3:]}

    # -------------------------------------------------------------------------------------------------- keys

    def _keys(self) -> None:
        import termios
        import tty

        fd = sys.stdin.fileno()
        try:
            old = termios.tcgetattr(fd)
        except termios.error:
            return
        axes = list(self.player.controller.model.metadata.knob_names())  # latent axes and shaping controls
        try:
            tty.setcbreak(fd)
            while not self._stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.2)
                if not ready:
                    continue
                try:
                    data = os.read(fd, 1)
                except OSError:  # the terminal went away
                    return
                if not data:
                    return
                action = key_command(data.decode(errors="ignore"), axes, self.player.learn_axis)
                if action is not None:
                    self.player.command(*action)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)


# ----------------------------------------------------------------------------------------- the drawing process

def render(snap: dict):
    """The view of one :meth:`StatusView.snapshot` as a rich renderable."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    knobs = Table(title="knobs", expand=False, show_edge=False)
    for col in ("axis", "CC", "value", ""):
        knobs.add_column(col)
    for k in snap["knobs"]:
        bar = int(round(k["fraction"] * 20))
        knobs.add_row(k["axis"], "-" if k["cc"] is None else str(k["cc"]), f"{k['value']:+.2f}",
                      "#" * bar + "." * (20 - bar) + ("  <- move a knob" if k["learning"] else ""))
    notes = Table(title="MIDI", expand=False, show_edge=False)
    notes.add_column("ago")
    notes.add_column("event")
    for ago, text in snap["recent"]:
        notes.add_row(f"{ago:5.1f} s", text)
    lines = [f"last render {snap['render_ms']:.1f} ms   knob->ready {snap['ready_ms']:.1f} ms (full quality "
             f"{snap['final_ms']:.1f} ms)   pending {snap['pending']}",
             f"xruns {snap['xruns']}   blocks {snap['blocks']}   voices {snap['voices']}   peak {db(snap['peak'])}   "
             f"notes {snap['notes']}   CC {snap['cc']}",
             f"MIDI in {snap['midi']}   {'OSC in ' + snap['osc'] + '   ' if snap.get('osc') else ''}audio thread "
             f"{snap.get('audio_thread', '-')}",
             *problem_lines(snap),
             "keys: l learn   r random sound   s save sound   q quit   (Ctrl-C quits too)", *snap["messages"]]
    return Group(Text(snap["title"], style="bold"), knobs, notes, Text("\n".join(lines)))


def problem_lines(snap: dict) -> list[str]:
    """The view's lines about hostile input in a :meth:`StatusView.snapshot`: malformed MIDI messages and OSC
    messages dropped (how many, the last one), renders a broken model made NaN or infinite (how many, the last model
    and pad); none when there were none."""
    lines = []
    if snap.get("midi_dropped"):
        lines.append(f"MIDI: {snap['midi_dropped']} malformed messages dropped (last: {snap['midi_last_dropped']})")
    if snap.get("osc_dropped"):
        lines.append(f"OSC: {snap['osc_dropped']} messages dropped (last: {snap['osc_last_dropped']})")
    if snap.get("nonfinite"):
        lines.append(f"model: {snap['nonfinite']} renders were NaN or infinite ({snap['last_warning']})")
    return lines


def newest_lines(fd: int):
    """Complete lines read from file descriptor ``fd`` until end of file, each time only the newest of those that
    have arrived: a drawing process that falls behind draws the present, not its backlog."""
    pending = b""
    while chunk := os.read(fd, 1 << 16):
        pending += chunk
        ended = False
        while not ended and select.select([fd], [], [], 0)[0]:  # take whatever else is already there
            more = os.read(fd, 1 << 16)
            pending += more
            ended = not more
        *complete, pending = pending.split(b"\n")
        if complete:
            yield complete[-1].decode(errors="replace")
        if ended:
            return


def _yield_the_cpu() -> None:
    """The drawing process runs ``SCHED_IDLE`` (only on a core nothing else wants) where the platform has it,
    else at nice :data:`DRAW_NICE`."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(DRAW_NICE)


def draw(lines) -> int:
    """Draw each JSON snapshot line from ``lines`` in a rich ``Live`` view until they end (the drawing process)."""
    from rich.live import Live

    live = None
    try:
        for line in lines:
            try:
                view = render(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue  # a torn line at exit: skip it
            if live is None:
                live = Live(view, refresh_per_second=REFRESH_HZ, auto_refresh=False, transient=False,
                            redirect_stdout=False, redirect_stderr=False)
                live.start()
            live.update(view, refresh=True)
    finally:
        if live is not None:
            live.stop()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the player's; this process ends when its input does
    _yield_the_cpu()
    sys.exit(draw(newest_lines(sys.stdin.fileno())))
