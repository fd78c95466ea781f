"""Tiny deterministic test signals (numpy only), shared by the test modules."""

from __future__ import annotations

import numpy as np


def simple_kick(*, sample_rate: int = 44100, seconds: float = 0.6, start_hz: float = 180.0, end_hz: float = 48.0,
                sweep_s: float = 0.03, decay_s: float = 0.25, click: float = 0.3, seed: int = 0,
                amplitude: float = 0.9) -> np.ndarray:
    """A pitch-swept decaying sine plus a short noise click. Shape ``[samples]`` float32 in [-1, 1]."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    freq = end_hz + (start_hz - end_hz) * np.exp(-t / sweep_s)
    body = np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * np.exp(-t / decay_s)
    noise = np.random.default_rng(seed).standard_normal(t.size) * np.exp(-t / 0.004)
    x = body + click * noise
    return (amplitude * x / np.max(np.abs(x))).astype(np.float32)
