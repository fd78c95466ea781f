"""Scheduling of live play: the process- and thread-wide settings that keep the audio callback from waiting on the
rest of Python (thread priorities and niceness, the garbage collector, the heap).

The audio callback runs on a JACK process thread and needs the GIL (on JACK it reads the cycle's MIDI there too:
:mod:`runtime.jack_client`). Whatever holds the GIL or the CPU when the cycle starts makes it late, and a late
client is an xrun for the whole JACK graph.
Measured sources, and what this module does about each:

- **Cyclic garbage collection.** A full (generation 2) collection walks every tracked object while holding the GIL:
  6-8 ms with the runtime's modules and a model loaded, two to three 128-frame periods, in whichever thread happens
  to allocate (the audio callback's too). :func:`freeze_gc` moves everything alive after start-up out of the
  collector's reach (``gc.freeze``): a full collection then walks only what was created since (measured: 0.001 ms).
  :class:`GcPauses` times every collection of the run, so the figure is in the player's statistics.
- **CPU share.** The render worker keeps a core busy while a knob moves; under ``jackd --no-realtime`` (or any
  server that cannot get realtime scheduling) JACK's threads are ordinary threads beside it.
  :func:`lower_thread_priority` gives the worker thread a higher nice value, so the scheduler runs the JACK threads
  first when they wake. (numpy's OpenBLAS threads: see :mod:`runtime`.)
- **The audio thread's scheduling.** A ``jackd -R`` server makes each client's process thread ``SCHED_FIFO``
  itself; a server without realtime scheduling (``--no-realtime``, or one that could not get it) leaves it an
  ordinary thread, which the scheduler wakes late when another thread has the core. The audio callback then calls
  :func:`realtime_thread` once, on its first block, where the system allows it (root, or an ``rtprio`` limit), so
  the player's own thread is not the one JACK waits for. On JACK dummy ``--no-realtime`` under knob sweeps the
  server then blamed the player's audio client for less than half as many cycles: those it had been woken for too
  late ("Triggered") all but disappear, those it was still running at the next cycle (waiting for the GIL, or a
  stalled vCPU) remain (benchmarks/README.md, "Live runtime on JACK dummy").
- **glibc heap growth.** :func:`pin_mmap_threshold` keeps large temporaries mapped (RSS stays flat).

All of it is Linux/CPython-specific and best effort: each setting returns whether (or, for the freeze, how much)
it took effect.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import signal
import threading
import time

WORKER_NICE = 10  # the render worker's nice value in live play (0 = as the audio threads; 19 = lowest)
REALTIME_PRIORITY = 5  # the audio thread's SCHED_FIFO priority: what libjack gives clients of a `jackd -R` server


def pin_mmap_threshold(size: int = 128 * 1024) -> bool:
    """Keep glibc's mmap threshold at ``size`` bytes (its default start), so the render worker's large temporary
    arrays (a pad's render is ~0.3 MB) are mapped and unmapped instead of settling in the heap once glibc has raised
    the threshold on its own; measured with the shipped preset under a knob sweep: RSS grew 4.8 MB before it
    levelled off, 3.6 MB with the threshold pinned. True when set (glibc only)."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, int(size)))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def freeze_gc() -> int:
    """Collect once, then move every object alive now into the collector's permanent generation (``gc.freeze``).

    Call after start-up (modules imported, models loaded and warmed): later collections, full ones included, only
    walk objects created after this call. Automatic collection stays on for those. Returns the number of objects
    frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcPauses:
    """Times every cyclic garbage collection while installed (``gc.callbacks``): count and longest pause per
    generation, between :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.max_ms = [0.0, 0.0, 0.0]
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        generation = info["generation"]
        spent = (time.perf_counter() - self._t0) * 1e3
        self.count[generation] += 1
        if spent > self.max_ms[generation]:
            self.max_ms[generation] = spent

    def start(self) -> None:
        """Time collections from now on (idempotent)."""
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        """Stop timing (idempotent); the figures stay."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def summary(self) -> dict:
        """``{"collections": [gen0, gen1, gen2], "max_ms": [...]}`` (JSON-ready)."""
        return {"collections": list(self.count), "max_ms": [round(m, 3) for m in self.max_ms]}


def lower_thread_priority(nice: int = WORKER_NICE) -> bool:
    """Give the calling thread (only it: Linux takes a thread id here) the nice value ``nice``. True when set."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), int(nice))
        return True
    except (AttributeError, OSError):
        return False


def realtime_thread(priority: int = REALTIME_PRIORITY) -> str:
    """Give the calling thread (only it) ``SCHED_FIFO`` at ``priority``, unless it already runs a realtime policy.

    Best effort: where the system does not allow it the thread stays as it was. ``priority`` 0 leaves it alone.
    Returns what the thread runs now, for the player's statistics: ``"SCHED_FIFO 5"``, ``"SCHED_FIFO 5 (already)"``
    when the server gave it, or ``"SCHED_OTHER (...)"`` saying why not.
    """
    try:
        policy = os.sched_getscheduler(0)  # 0: the calling thread (Linux)
        if policy in (os.SCHED_FIFO, os.SCHED_RR):
            name = "SCHED_FIFO" if policy == os.SCHED_FIFO else "SCHED_RR"
            return f"{name} {os.sched_getparam(0).sched_priority} (already)"
        if priority <= 0:
            return "SCHED_OTHER (left as it is)"
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(priority)))
        return f"SCHED_FIFO {int(priority)}"
    except AttributeError:
        return "unknown (this platform has no sched_setscheduler)"
    except OSError as err:  # PermissionError: no CAP_SYS_NICE and no rtprio limit
        return f"SCHED_OTHER (realtime not permitted: {err.strerror or err})"


def realtime_permitted(priority: int = REALTIME_PRIORITY) -> bool:
    """Whether this process may give a thread ``SCHED_FIFO`` at ``priority``: root, or an ``rtprio`` limit (Linux)
    at least that high."""
    try:
        import resource

        return os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_RTPRIO)[0] >= priority
    except (ImportError, AttributeError, OSError):
        return False


def thread_nice() -> int | None:
    """The calling thread's nice value (None where the platform cannot say)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except (AttributeError, OSError):
        return None


def thread_failure(thread: threading.Thread | None, failure: str | None, stop: threading.Event,
                   died: str) -> str | None:
    """Why an input thread ended on its own: its recorded ``failure``, else ``died`` when ``thread`` is no longer
    alive though nobody set ``stop``; None while it runs (or after a requested stop)."""
    if failure is None and thread is not None and not thread.is_alive() and not stop.is_set():
        return died
    return failure


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


def dump_stacks_on(sig: int = getattr(signal, "SIGUSR2", 0)) -> bool:
    """``kill -USR2 PID`` prints every thread's stack to stderr (to see where a stuck player is), when stderr is a
    real file (not under a test runner's capture) and the platform has the signal. True when registered."""
    try:
        faulthandler.register(sig, all_threads=True)
        return True
    except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False
