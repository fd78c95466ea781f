"""The voice engine as a user hears it: onsets, velocity gains, stealing without clicks, chokes, a safe output."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from runtime.engine import Engine, PadSettings

RATE, BLOCK = 48000, 256


def run(engine: Engine, blocks: int, *, hits: dict[int, list[tuple[int, int, int]]] | None = None) -> np.ndarray:
    """Step ``blocks`` blocks; ``hits[b]`` lists (note, velocity, offset) queued before block ``b``."""
    out = np.zeros((BLOCK, engine.channels), np.float32)
    chunks = []
    for b in range(blocks):
        for note, velocity, offset in (hits or {}).get(b, []):
            engine.note_on(note, velocity, offset)
        engine.process(out)
        chunks.append(out.copy())
    return np.concatenate(chunks)


def sine(n: int, hz: float, amplitude: float) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(n) / RATE)).astype(np.float32)


def test_note_starts_at_its_offset_with_the_velocity_curve_gain():
    engine = Engine(RATE, BLOCK, channels=2, velocity_curve=2.0)
    sound = sine(1000, 200.0, 0.5) + 0.01  # nonzero from its first sample
    engine.set_pad_buffer(36, sound)
    engine.set_pads({36: PadSettings(gain=0.5)})
    out = run(engine, 8, hits={2: [(36, 64, 100)]})
    onset = 2 * BLOCK + 100
    assert np.all(out[:onset] == 0.0) and out[onset, 0] != 0.0
    expected = 0.5 * (64 / 127) ** 2 * sound
    np.testing.assert_allclose(out[onset:onset + 1000, 0], expected, atol=1e-6)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])
    assert np.all(out[onset + 1000:] == 0.0)


def test_velocity_layers_pick_by_velocity():
    engine = Engine(RATE, BLOCK, channels=1, velocity_curve=0.0)
    layers = np.stack([np.full((300, 1), 0.1 * (i + 1), np.float32) for i in range(4)])
    engine.set_pad_buffer(36, layers)
    out = run(engine, 8, hits={0: [(36, 10, 0)], 4: [(36, 127, 0)]})
    assert out[0, 0] == pytest.approx(0.1) and out[4 * BLOCK, 0] == pytest.approx(0.4)


def test_seventeenth_voice_steals_the_oldest_with_a_fade_not_a_click():
    engine = Engine(RATE, BLOCK, channels=1, max_voices=16, fade_ms=5.0)
    hz, amp, length = 8.25 * RATE / (16 * BLOCK), 0.04, 48000  # the oldest voice is at a peak when stolen
    sound = sine(length, hz, amp)
    engine.set_pad_buffer(36, sound)
    hits = {b: [(36, 127, 7)] for b in range(17)}  # one hit per block: voice 0 is the oldest when hit 17 arrives
    out = run(engine, 40, hits=hits)[:, 0]
    steal = 16 * BLOCK + 7
    # what 16 voices sounding play, and the stolen voice's sine at the steal point (a hard cut would jump by it)
    starts = [b * BLOCK + 7 for b in range(17)]
    newest = np.zeros(out.shape[0])
    for s in starts[1:]:
        newest[s:s + length] += sound[:out.shape[0] - s]
    assert abs(sound[steal - starts[0]]) > 0.6 * amp  # the test is meaningful: the cut lands far from a zero crossing
    smooth_step = 16 * amp * 2 * np.pi * hz / RATE
    assert np.max(np.abs(np.diff(out[steal - 50:steal + 400]))) < 2 * smooth_step < 0.5 * amp
    fade_end = steal + int(0.005 * RATE)
    np.testing.assert_allclose(out[fade_end:], newest[fade_end:], atol=1e-5)  # then only the 16 newest remain
    assert engine.active_voices == 16


def test_choke_group_silences_the_choked_pad_within_the_fade():
    engine = Engine(RATE, BLOCK, channels=1, fade_ms=4.0)
    open_hat, closed_hat = sine(20000, 3000.0, 0.3), sine(2000, 5000.0, 0.3)
    engine.set_pad_buffer(46, open_hat)
    engine.set_pad_buffer(42, closed_hat)
    engine.set_pads({46: PadSettings(choke=1), 42: PadSettings(choke=1), 36: PadSettings()})
    engine.set_pad_buffer(36, sine(20000, 50.0, 0.3))
    out = run(engine, 40, hits={0: [(46, 127, 0), (36, 127, 0)], 3: [(42, 127, 50)]})[:, 0]
    choke = 3 * BLOCK + 50
    fade = int(0.004 * RATE)
    kick = sine(out.shape[0], 50.0, 0.3)
    open_hat = open_hat[:out.shape[0]]
    rest = kick.copy()
    rest[choke:choke + 2000] += closed_hat
    np.testing.assert_allclose(out[:choke], kick[:choke] + open_hat[:choke], atol=1e-6)  # rings until the choke
    np.testing.assert_allclose(out[choke + fade:], rest[choke + fade:], atol=1e-6)  # then open hat gone, kick not


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e30])
def test_output_is_always_finite_and_within_full_scale(bad):
    engine = Engine(RATE, BLOCK, channels=2, output_gain=16.0)
    sound = sine(4000, 100.0, 1.0)
    sound[::7] = bad
    for note in range(36, 52):
        engine.set_pad_buffer(note, sound)
        engine.set_pads({n: PadSettings(gain=16.0) for n in range(36, 52)})
    out = run(engine, 20, hits={b: [(n, 127, b) for n in range(36, 52)] for b in range(4)})
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0
    assert np.max(np.abs(out)) > 0.9  # loud, limited, not muted


def _harmonics_db(x: np.ndarray, hz: float) -> float:
    """Energy of harmonics 2-10 relative to the fundamental (dB) of a steady tone ``x`` at ``hz``."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    band = lambda f: spectrum[int(round(f * x.size / RATE)) - 3: int(round(f * x.size / RATE)) + 4].sum()  # noqa: E731
    return 10 * np.log10(sum(band(k * hz) for k in range(2, 11)) / band(hz))


def test_limiter_passes_a_mix_under_its_threshold_bit_exact():
    engine = Engine(RATE, BLOCK, channels=1, limiter_threshold=0.8)
    tone = sine(RATE // 2, 60.0, 0.79)
    engine.set_pad_buffer(36, tone)
    y = run(engine, RATE // 2 // BLOCK, hits={0: [(36, 127, 0)]})[:, 0]
    np.testing.assert_array_equal(y, tone[:y.size])
    assert engine.limiter_gain == 1.0


def test_limiter_turns_a_hot_mix_down_cleanly_and_recovers():
    """Two voices of a 60 Hz tone summing to 2.4 (7.6 dB over full scale) for 0.5 s, then a quiet tone: the output
    never passes full scale, settles at the threshold without the harmonics a clipper adds, and the quiet tone
    comes back at its own level once the limiter has released."""
    engine = Engine(RATE, BLOCK, channels=1, limiter_threshold=0.8, attack_ms=0.5, release_ms=80.0)
    engine.set_pad_buffer(36, sine(RATE // 2, 60.0, 1.2))
    engine.set_pad_buffer(38, sine(RATE, 60.0, 0.1))
    loud_blocks = RATE // 2 // BLOCK
    y = run(engine, 2 * loud_blocks + 100, hits={0: [(36, 127, 0), (36, 127, 0)], loud_blocks + 2: [(38, 127, 0)]})
    y = y[:, 0]
    assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0
    settled = y[RATE // 10: loud_blocks * BLOCK]  # after 100 ms of the loud tone
    assert 0.78 <= np.abs(settled).max() <= 0.81
    clipped = np.abs(sine(settled.size, 60.0, 2.4))  # the memoryless knee alone on the same tone, for contrast
    knee = np.sign(sine(settled.size, 60.0, 2.4)) * np.minimum(
        np.minimum(clipped, 0.8) + 0.2 * np.tanh(np.maximum(clipped - 0.8, 0) / 0.2), 1.0)
    assert _harmonics_db(settled[:RATE // 3], 60.0) < -50.0 < -20.0 < _harmonics_db(knee[:RATE // 3], 60.0)
    start = (loud_blocks + 2) * BLOCK
    quiet = y[start + RATE // 2: start + RATE - 1000]  # from 0.5 s after the quiet tone starts (release 80 ms)
    np.testing.assert_allclose(quiet, sine(RATE, 60.0, 0.1)[RATE // 2: RATE - 1000], atol=2e-4)
    assert engine.limiter_gain == 1.0


def test_processing_many_blocks_allocates_no_block_sized_arrays():
    engine = Engine(RATE, 4096, channels=2)
    engine.set_pad_buffer(36, sine(48000, 60.0, 0.9))
    engine.set_pad_buffer(38, sine(9000, 200.0, 0.9))
    out = np.zeros((4096, 2), np.float32)
    for _ in range(3):  # warm-up: first-call caches
        engine.note_on(36, 100)
        engine.process(out)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for b in range(200):
            if b % 10 == 0:
                engine.note_on(36 + 2 * (b % 20 == 0), 100, b % 64)
            engine.process(out)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    block_bytes = out.nbytes  # 32 KiB: one temporary block-sized array would show up in the peak
    assert peak - before < block_bytes / 4
    assert after - before < 4096


def test_tracemalloc_sees_numpy_temporaries():
    """The allocation test above can fail: a block-sized temporary is visible to tracemalloc."""
    out = np.zeros((4096, 2), np.float32)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        _ = out * 2.0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - before >= out.nbytes
