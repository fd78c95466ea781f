"""The status view of ``runtime play`` (rich): knob values, notes as they arrive, last render and knob -> ready times,
xruns, output peak, MIDI learn state. A player thread reads its counters without locks (single attribute reads) at
:data:`REFRESH_HZ` and hands them as JSON lines to a drawing process (``python -m runtime.status``: :func:`draw`),
so rich's drawing never competes with the audio callback for the GIL (:class:`StatusView` says what that cost).
With ``--quiet`` there is no view; :func:`summary_line` prints one line at exit either way.

Keys (when stdin is a terminal): ``l`` MIDI learn (cycles through the model's axes, then off: the next moved CC
binds to the chosen axis), ``s`` save the current sound (WAV + preset), ``q`` quit.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import sys
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


def key_command(key: str, axes: list[str], learning: str | None) -> tuple[str, str | None] | None:
    """The player command a key stands for: ``s`` save, ``q`` quit, ``l`` MIDI learn on the next axis.

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

    Drawing a rich view is about 7 ms of Python per refresh. In the player's process that made the audio callback
    wait for the GIL (p99.9 2.0-2.5 ms against 0.7 with ``--quiet``) and raised the player's underflows in 30 s
    stress runs on JACK (``benchmarks/runtime_latency.py --view``) from 9 to 41-45. So a thread here only reads the
    player's counters into a small dict (:meth:`snapshot`, ~0.1 ms) and writes it as one JSON line to a child
    process (``python -m runtime.status``), which draws it with rich on the same terminal; the GIL wait is then
    the quiet one's. The drawing process runs ``SCHED_IDLE`` (a core only when nothing else wants it) and draws
    only the newest snapshot it has (:func:`newest_lines`): 8, 7 and 15 underflows in 30 s stress runs against
    20, 19 and 26 at nice 19 drawing every snapshot, interleaved.
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
        for axis in p.controller.model.metadata.axes:
            knob = bound.get(axis.name)
            lo, hi = (knob.min, knob.max) if knob else (-1.0, 1.0)
            v = float(values.get(axis.name, 0.0))
            knobs.append({"axis": axis.name, "cc": knob.cc if knob else None, "value": v,
                          "fraction": 0.0 if hi == lo else min(max((v - lo) / (hi - lo), 0.0), 1.0),
                          "learning": p.learn_axis == axis.name})
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
        axes = [a.name for a in self.player.controller.model.metadata.axes]
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
             "keys: l learn   s save sound   q quit   (Ctrl-C quits too)", *snap["messages"]]
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
