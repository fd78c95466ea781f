"""Kickspace's realtime runtime: onnxruntime + numpy + python-rtmidi + sounddevice, never torch.

numpy's OpenBLAS gets one thread unless the environment says otherwise (set here, before numpy loads, when the
runtime is imported first: ``runtime`` and ``python -m runtime`` do). The render worker is the runtime's only BLAS
user (resampling), and OpenBLAS's pool threads spin on a core after each call: measured under a knob sweep on this
2-core machine, one pool thread burned 98 % of a core beside the worker, the player used 1.9 cores instead of 1,
and the audio callback's underflows tripled. One thread is as fast here for a pad-sized product (0.3-0.5 ms).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
