"""The status view of ``runtime play`` (rich): knob values, notes as they arrive, last render and knob -> ready times,
xruns, output peak, MIDI learn state. It runs in its own thread at :data:`REFRESH_HZ` (cheap, never on the audio
thread) and reads the player's counters without locks (single attribute reads). With ``--quiet`` there is no view;
:func:`summary_line` prints one line at exit either way.

Keys (when stdin is a terminal): ``l`` MIDI learn (cycles through the model's axes, then off: the next moved CC
binds to the chosen axis), ``s`` save the current sound (WAV + preset), ``q`` quit.
"""

from __future__ import annotations

import math
import os
import select
import sys
import threading
import time

REFRESH_HZ = 4.0


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
    return (f"kickspace: {stats['wall_s']:.1f} s, {stats['notes']} notes, {stats['cc']} CC, {render_text}, "
            f"{ready_text}, {stats['underflows']} xruns in {stats['blocks']} blocks, peak {db(stats['peak'])}, "
            f"RSS {stats['rss_end_mb']:.1f} MB")


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
    """A rich ``Live`` view of a :class:`runtime.play.Player`, refreshed from its own thread."""

    def __init__(self, player) -> None:
        self.player = player
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._peak = 0.0

    def prepare(self) -> None:
        """Import rich now, before the audio stream starts (importing holds the GIL for tens of ms)."""
        import rich.console  # noqa: F401
        import rich.live  # noqa: F401
        import rich.table  # noqa: F401
        import rich.text  # noqa: F401

    def start(self) -> None:
        """Draw the view and read keys (each in its own thread) until :meth:`stop`."""
        self._threads.append(threading.Thread(target=self._run, name="kickspace-status", daemon=True))
        if sys.stdin.isatty():
            self._threads.append(threading.Thread(target=self._keys, name="kickspace-keys", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2.0)

    # ------------------------------------------------------------------------------------------------- view

    def _run(self) -> None:
        from rich.live import Live

        with Live(self.render(), refresh_per_second=REFRESH_HZ, auto_refresh=False, transient=False,
                  redirect_stdout=False, redirect_stderr=False) as live:
            while not self._stop.wait(1.0 / REFRESH_HZ):
                live.update(self.render(), refresh=True)

    def render(self):
        """The view as a rich renderable (also usable in tests)."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        p = self.player
        a, w = p.audio, p.worker
        peak = a.take_peak()
        p.peak_max = max(p.peak_max, peak)
        self._peak = max(peak, self._peak * 0.5)  # a meter that falls 6 dB per refresh
        header = Text(f"Kickspace  {p.controller.preset.name or p.preset_path}   {p.describe()}", style="bold")
        knobs = Table(title="knobs", expand=False, show_edge=False)
        for col in ("axis", "CC", "value", ""):
            knobs.add_column(col)
        values = p.controller.state.values
        bound = {k.axis: k for k in p.controller.preset.knobs}
        for axis in p.controller.model.metadata.axes:
            v = values.get(axis.name, 0.0)
            knob = bound.get(axis.name)
            span = (knob.min, knob.max) if knob else (-1.0, 1.0)
            frac = 0.0 if span[1] == span[0] else min(max((v - span[0]) / (span[1] - span[0]), 0.0), 1.0)
            learn = "  <- move a knob" if p.learn_axis == axis.name else ""
            knobs.add_row(axis.name, str(knob.cc) if knob else "-", f"{v:+.2f}",
                          "#" * int(round(frac * 20)) + "." * (20 - int(round(frac * 20))) + learn)
        now = time.monotonic()
        notes = Table(title="MIDI", expand=False, show_edge=False)
        notes.add_column("ago")
        notes.add_column("event")
        for when, text in list(p.recent)[-8:]:
            notes.add_row(f"{now - when:5.1f} s", text)
        render_ms, ready_ms, final_ms = w.render_ms.last, w.ready_ms.last, w.final_ms.last
        lines = [f"last render {render_ms:.1f} ms   knob->ready {ready_ms:.1f} ms (full quality {final_ms:.1f} ms)   "
                 f"pending {w.pending}",
                 f"xruns {a.underflows}   blocks {a.blocks}   voices {p.engine.active_voices}   "
                 f"peak {db(self._peak)}   notes {p.counts['notes']}   CC {p.counts['cc']}",
                 f"MIDI in {p.midi.port_label if p.midi else '-'}",
                 "keys: l learn   s save sound   q quit   (Ctrl-C quits too)"]
        lines += list(p.messages)[-3:]
        return Group(header, knobs, notes, Text("\n".join(lines)))

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
