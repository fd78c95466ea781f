"""How late this machine wakes a thread that does nothing: the floor under any audio client's xrun count.

    .venv/bin/python benchmarks/wakeup_latency.py [--seconds 20] [--period-frames 128] [--rate 48000] [--busy]

A thread sleeps to an absolute deadline every audio period (128 frames at 48 kHz = 2.67 ms) and records how late it
woke. It computes nothing, takes no lock and holds the GIL only to read the clock, so a wake-up later than one period
is a deadline an audio client would have missed through the OS scheduler (or the hypervisor under it) alone. It runs
under ``SCHED_OTHER`` and, where the process may, ``SCHED_FIFO`` (priority 80, what ``jackd -R`` gives its clients).
``--busy`` keeps one other process spinning (as the render worker does while a knob moves).

Compare the misses per minute here with the player's underflows in ``benchmarks/runtime_latency.py``: a player
cannot do better than a thread that only sleeps.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time

import numpy as np


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def measure(*, seconds: float, period_s: float, fifo: bool) -> dict:
    """Wake-up lateness (ms) of a thread sleeping to ``period_s`` deadlines for ``seconds``."""
    if fifo:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(80))
        except (PermissionError, OSError) as err:
            return {"policy": "SCHED_FIFO", "error": f"not permitted here ({err})"}
    late = []
    start = time.monotonic()
    deadline = start
    try:
        while deadline - start < seconds:
            deadline += period_s
            pause = deadline - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            late.append(time.monotonic() - deadline)
    finally:
        if fifo:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    ms = np.array(late) * 1e3
    misses = int((ms > period_s * 1e3).sum())
    return {"policy": "SCHED_FIFO" if fifo else "SCHED_OTHER", "wakeups": int(ms.size),
            "median_ms": round(float(np.median(ms)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "p999_ms": round(float(np.percentile(ms, 99.9)), 3), "max_ms": round(float(ms.max()), 3),
            "later_than_one_period": misses, "per_minute": round(misses * 60.0 / seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per scheduling policy")
    parser.add_argument("--period-frames", type=int, default=128)
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--busy", action="store_true", help="keep one other process spinning meanwhile")
    args = parser.parse_args()
    period_s = args.period_frames / args.rate
    stop = multiprocessing.Event()
    spinner = multiprocessing.Process(target=_spin, args=(stop,), daemon=True) if args.busy else None
    if spinner is not None:
        spinner.start()
    try:
        load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else "?"
        print(f"{os.cpu_count()} CPUs, load {load}, period {period_s * 1e3:.3f} ms, "
              f"{'one spinning process beside it' if args.busy else 'nothing else of ours running'}")
        for fifo in (False, True):
            print(measure(seconds=args.seconds, period_s=period_s, fifo=fifo), flush=True)
    finally:
        stop.set()
        if spinner is not None:
            spinner.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
