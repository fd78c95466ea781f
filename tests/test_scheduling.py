"""Scheduling settings of live play (runtime.scheduling): frozen garbage collector, GC pause timing, worker niceness,
the audio thread's realtime scheduling."""

import gc
import threading

import pytest

from runtime.scheduling import (REALTIME_PRIORITY, GcPauses, freeze_gc, lower_thread_priority, realtime_permitted,
                             realtime_thread, thread_nice)


@pytest.fixture
def unfrozen():
    yield
    gc.unfreeze()  # give the rest of the test session its collector back


def _cycles(n: int) -> None:
    for _ in range(n):
        a, b = [], []
        a.append(b)
        b.append(a)


def test_frozen_objects_leave_full_collections_alone(unfrozen):
    big = [[i] for i in range(200_000)]  # long-lived objects a full collection would walk
    before = gc.get_freeze_count()
    frozen = freeze_gc()
    assert frozen >= before + len(big) and gc.get_freeze_count() == frozen
    _cycles(10)
    assert gc.collect() >= 20  # what was made after the freeze is still collected
    assert gc.get_freeze_count() == frozen
    del big


def test_gc_pauses_counts_and_times_each_generation():
    pauses = GcPauses()
    pauses.start()
    pauses.start()  # idempotent: one callback
    try:
        _cycles(5)
        gc.collect(0)
        gc.collect(2)
    finally:
        pauses.stop()
    counts = list(pauses.count)
    assert counts[0] >= 1 and counts[2] >= 1 and pauses.max_ms[2] > 0.0
    gc.collect(2)
    assert pauses.count == counts  # stopped: nothing more counted
    summary = pauses.summary()
    assert summary["collections"] == counts and len(summary["max_ms"]) == 3


def test_lower_thread_priority_changes_only_the_calling_thread():
    main = thread_nice()
    if main is None:
        pytest.skip("this platform has no per-thread nice value")
    seen = {}

    def worker():
        seen["ok"] = lower_thread_priority(main + 5)
        seen["nice"] = thread_nice()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == {"ok": True, "nice": main + 5}
    assert thread_nice() == main


def _in_a_thread(priority: int) -> dict:
    """realtime_thread(priority) in a new thread: what it said, the thread's policy and priority afterwards, and
    (for a thread that became SCHED_FIFO) what a second call said."""
    import os

    seen = {}

    def audio():
        seen["said"] = realtime_thread(priority)
        seen["policy"], seen["priority"] = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
        if seen["policy"] == os.SCHED_FIFO:
            seen["again"] = realtime_thread(priority + 1)  # a realtime thread is left as it is

    t = threading.Thread(target=audio)
    t.start()
    t.join()
    return seen


def test_realtime_thread_makes_only_the_calling_thread_fifo_where_permitted():
    import os

    if not hasattr(os, "sched_setscheduler"):
        pytest.skip("this platform has no sched_setscheduler")
    main = os.sched_getscheduler(0)
    seen = _in_a_thread(REALTIME_PRIORITY)
    if realtime_permitted():
        assert seen["said"] == f"SCHED_FIFO {REALTIME_PRIORITY}"
        assert (seen["policy"], seen["priority"]) == (os.SCHED_FIFO, REALTIME_PRIORITY)
        assert seen["again"] == f"SCHED_FIFO {REALTIME_PRIORITY} (already)"
    else:
        assert seen["said"].startswith("SCHED_OTHER (realtime not permitted") and seen["policy"] == main
    assert os.sched_getscheduler(0) == main  # the test's own thread is untouched
    left = _in_a_thread(0)
    assert left["said"] == "SCHED_OTHER (left as it is)" and left["policy"] == main


@pytest.mark.parametrize("env, threads", [({}, 1), ({"OPENBLAS_NUM_THREADS": "2"}, 2)])
def test_runtime_runs_numpy_blas_on_one_thread_unless_told(env, threads):
    """OpenBLAS's pool threads spin after each call (a core lost beside the render worker): importing the runtime
    first keeps numpy to the calling thread; an explicit OPENBLAS_NUM_THREADS wins."""
    import os
    import subprocess
    import sys

    if not os.path.isdir("/proc/self/task"):
        pytest.skip("counting a process's threads needs Linux /proc")
    code = ("import runtime, os, numpy as np; a = np.ones((512, 512)); a @ a; "
            "print(len(os.listdir('/proc/self/task')))")
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert int(out.stdout) == threads


def test_sigusr2_prints_every_threads_stack():
    import os
    import signal
    import subprocess
    import sys

    if not hasattr(signal, "SIGUSR2"):
        pytest.skip("no SIGUSR2 on this platform")
    code = ("import os, signal, threading, time; from runtime.scheduling import dump_stacks_on; "
            "assert dump_stacks_on(); t = threading.Thread(target=time.sleep, args=(2,), daemon=True); t.start(); "
            "os.kill(os.getpid(), signal.SIGUSR2); time.sleep(0.2); print('still here')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0 and out.stdout.strip() == "still here"
    assert out.stderr.count("Thread 0x") == 1 and out.stderr.count("Current thread 0x") == 1  # both threads


def test_histogram_summary_reads_upper_bin_edges():
    from runtime.status import histogram_summary

    assert histogram_summary([0, 0, 0], 0.1) == {"n": 0}
    assert histogram_summary([5, 3, 0, 2], 0.1) == {"n": 10, "median": 0.1, "p99": 0.4, "p999": 0.4, "max": 0.4}
