"""Live play's render worker: a :class:`~runtime.worker.RenderWorker` that times itself.

It renders as the plain worker does live (previews first, one pad per decoder call: ``split_pads``, ``preview``)
and keeps the figures ``runtime play`` reports (:func:`runtime.status.run_stats`, the status view):

- ``ready_ms``: for every batch of new requests, time from the oldest knob move it serves (the ``stamp`` the
  request carried: the MIDI or OSC event's arrival) to the moment the first new buffer is in the engine: the pad
  played last (:attr:`RenderWorker.focus`), rendered before the others.
- ``final_ms``: time from the latest knob move to the first full-quality buffer of that state (when a preview came
  first: how long after the knob rests the sound is final).
- ``render_ms``: the whole render, all pads; ``cpu_s``: the worker thread's CPU seconds.

The timings live in preallocated ring buffers (:class:`Timings`), so a long session adds nothing to the player's
memory. The worker thread runs at nice ``nice`` (:data:`runtime.scheduling.WORKER_NICE`; None leaves it): when JACK's
threads are not realtime, the scheduler runs them first when they wake instead of sharing the core with it.
"""

from __future__ import annotations

import time
from typing import Iterable

import numpy as np

from runtime.engine import Engine
from runtime.scheduling import WORKER_NICE, lower_thread_priority, thread_nice
from runtime.worker import KNOB_SETTLE_S, PadRequest, RenderWorker


class Timings:
    """The last ``capacity`` timings (ms) in a ring buffer allocated and touched up front, so a long session's
    statistics add nothing to the player's memory."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._values = np.full(capacity, np.nan)
        self._count = 0

    def append(self, value: float) -> None:
        self._values[self._count % self._values.size] = value
        self._count += 1

    def clear(self) -> None:
        self._count = 0

    def __len__(self) -> int:
        return min(self._count, self._values.size)

    @property
    def last(self) -> float:
        """The newest value (NaN when empty)."""
        return float(self._values[(self._count - 1) % self._values.size]) if self._count else float("nan")

    def sorted(self) -> list[float]:
        return sorted(self._values[:len(self)].tolist())

    def summary(self) -> dict:
        """``{"n", "median", "p95", "max"}`` of the kept values in ms, rounded to µs (``{"n": 0}`` when empty)."""
        if not len(self):
            return {"n": 0}
        v = self._values[:len(self)]
        return {"n": int(v.size), "median": round(float(np.median(v)), 3), "p95": round(float(np.percentile(v, 95)), 3),
                "max": round(float(v.max()), 3)}


class LiveWorker(RenderWorker):
    """The render worker of live play, timing itself (see the module's docstring for what each timing means).

    Parameters
    ----------
    engine : Engine
        As for :class:`RenderWorker`.
    nice : int or None
        Nice value of the worker thread (None: left as it is).
    settle_s : float
        How long a knob rests before the other pads and full-quality renders are rendered
        (:data:`runtime.worker.KNOB_SETTLE_S`).
    """

    def __init__(self, engine: Engine, *, nice: int | None = WORKER_NICE, settle_s: float = KNOB_SETTLE_S) -> None:
        super().__init__(engine, split_pads=True, preview=True, settle_s=settle_s)
        self.nice_wanted = nice
        self.nice: int | None = None  # the worker thread's nice value once it runs
        self.render_ms, self.ready_ms, self.final_ms = Timings(), Timings(), Timings()
        self.cpu_s = 0.0
        self._since: dict[int, float] = {}
        self._latest: dict[int, float] = {}
        self._serving: list[float] = []
        self._refining = False

    def reset_timings(self) -> None:
        """Forget every timing and the CPU time so far (the player's first renders, before it plays, do not count)."""
        self.render_ms.clear()
        self.ready_ms.clear()
        self.final_ms.clear()
        self.cpu_s = 0.0

    def _run(self) -> None:
        if self.nice_wanted is not None:
            lower_thread_priority(self.nice_wanted)
        self.nice = thread_nice()
        super()._run()

    def request(self, requests: Iterable[PadRequest], *, replace: bool = False, stamp: float | None = None) -> None:
        """:meth:`RenderWorker.request`, remembering per pad when the oldest unserved and the latest request's
        event arrived (``stamp``; None: now)."""
        requests = list(requests)
        now = stamp if stamp is not None else time.monotonic()
        with self._cond:
            if replace:
                self._since = {}
            for req in requests:
                self._since.setdefault(req.note, now)
                self._latest[req.note] = now
        super().request(requests, replace=replace, stamp=stamp)

    def _render(self, batch, generation, *, preview: bool = False) -> None:
        with self._cond:
            self._serving = [self._since.pop(note) for note in batch if note in self._since]
            self._refining = not preview  # full-quality renders of pads heard through their preview
        t0, c0 = time.monotonic(), time.thread_time()
        super()._render(batch, generation, preview=preview)
        self.cpu_s += time.thread_time() - c0
        self.render_ms.append((time.monotonic() - t0) * 1e3)

    def _swapped(self, notes, *, preview: bool = False) -> None:
        now = time.monotonic()
        played = self.focus is None or self.focus in notes  # timed: the pad played last
        if self._serving and played:
            self.ready_ms.append((now - min(self._serving)) * 1e3)
        self._serving = []
        if self._refining and not preview and played:
            self.final_ms.append((now - self._latest.get(notes[0], now)) * 1e3)
        self._refining = False
