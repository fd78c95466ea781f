"""The render worker: coalesced knob renders that end on the final state, batching, safe buffers, resampling."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from runtime.engine import Engine
from runtime.model import ExportedModel
from runtime import worker as worker_module
from runtime.dsp import dc_block, resample, sanitize
from runtime.worker import PadRequest, RenderWorker
from tests import onnx_fixtures as fx

RATE = 8000


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ExportedModel:
    return ExportedModel(fx.linear_kick_model(tmp_path_factory.mktemp("model"), sample_rate=RATE, samples=1024))


def _kick(amplitude: float) -> np.ndarray:
    return amplitude * fx.kick_shape(1024, RATE)


def _requests(model, amplitude: float, notes=(36,)) -> list[PadRequest]:
    return [PadRequest(n, model, np.array([[amplitude, 0.0, 0.0]], np.float32)) for n in notes]


def test_rapid_knob_changes_render_once_with_the_final_state(model):
    engine = Engine(RATE, 128, channels=1)
    worker = RenderWorker(engine, fade_out_ms=10.0)
    for i in range(100):  # a knob swept through 100 values before the worker gets to run
        worker.request(_requests(model, 0.01 * (i + 1), notes=(36, 38)))
    assert worker.pending == 2
    worker.start()
    try:
        assert worker.wait_idle(30.0)
    finally:
        worker.stop()
    assert worker.stats.renders == 2 and worker.stats.decode_calls == 1  # both pads in one batched decoder call
    final = engine.pad_buffer(36)[0, :, 0]
    body = slice(0, 1024 - 80)  # before the end fade (10 ms at 8 kHz)
    np.testing.assert_allclose(final[body], dc_block(_kick(1.0), RATE)[body], atol=1e-4)


class _Order(RenderWorker):
    """Records which pads each swap brought in."""

    def __init__(self, engine):
        super().__init__(engine)
        self.swaps: list[list[int]] = []

    def _swapped(self, notes, *, preview=False):
        self.swaps.append(notes)


def test_the_pad_played_last_renders_alone_first_and_sounds_the_same(model):
    engine = Engine(RATE, 128, channels=1)
    worker = _Order(engine)
    worker.request(_requests(model, 0.5, notes=(36, 37, 38, 39)))
    worker.render_now()
    assert worker.swaps == [[36, 37, 38, 39]] and worker.stats.decode_calls == 1  # no focus yet: one batch
    batched = engine.pad_buffer(38).copy()
    worker.focus = 38  # the player's note path sets this on every note-on
    worker.request(_requests(model, 0.5, notes=(36, 37, 38, 39)))
    worker.render_now()
    assert worker.swaps[1:] == [[38], [36, 37, 39]] and worker.stats.decode_calls == 3
    np.testing.assert_allclose(engine.pad_buffer(38), batched, atol=1e-6)  # alone or batched: the same sound
    worker.focus = 40  # a pad with nothing pending: plain batching
    worker.request(_requests(model, 0.25, notes=(36, 37)))
    worker.render_now()
    assert worker.swaps[3:] == [[36, 37]]


class _Sweeping(_Order):
    """A knob that keeps moving: a newer request for every pad arrives while the first pad renders."""

    def _swapped(self, notes, *, preview=False):
        super()._swapped(notes, preview=preview)
        if len(self.swaps) == 1:
            self.request(_requests(self.model, 0.75, notes=(36, 37, 38)))


def test_live_worker_renders_pads_one_by_one_and_skips_superseded_ones(model):
    engine = Engine(RATE, 128, channels=1)
    worker = _Sweeping(engine)
    worker.model, worker.split_pads, worker.focus = model, True, 37
    worker.request(_requests(model, 0.25, notes=(36, 37, 38)))
    worker.render_now()
    assert worker.swaps == [[37]]  # 36 and 38 of the old state are skipped: their newer requests are pending
    worker.render_now()
    assert worker.swaps[1:] == [[37], [36], [38]] and worker.stats.decode_calls == 4
    reference = RenderWorker(Engine(RATE, 128, channels=1))
    reference.request(_requests(model, 0.75, notes=(36,)))
    reference.render_now()
    np.testing.assert_allclose(engine.pad_buffer(36), reference.engine.pad_buffer(36), atol=1e-6)  # the latest state


class _Heard(RenderWorker):
    """Records (note, preview?, the pad's peak) at every swap; sets :attr:`full_started` when a full render starts."""

    def __init__(self, engine, **kwargs):
        super().__init__(engine, **kwargs)
        self.heard: list[tuple[int, bool, float]] = []
        self.full_started = threading.Event()

    def _arm(self, groups, *, fresh):
        token = super()._arm(groups, fresh=fresh)
        if token and not fresh:
            self.full_started.set()
        return token

    def _swapped(self, notes, *, preview=False):
        self.heard += [(n, preview, round(float(np.abs(self.engine.pad_buffer(n)).max()), 3)) for n in notes]


def _live(worker):
    worker.start()
    try:
        assert worker.wait_idle(30.0)
    finally:
        worker.stop()


def test_a_moved_knob_is_heard_through_the_preview_then_at_full_quality(tmp_path):
    quick_model = ExportedModel(fx.linear_kick_model(tmp_path / "m", sample_rate=RATE, preview=True))
    worker = _Heard(Engine(RATE, 128, channels=1), preview=True, split_pads=True)
    worker.focus = 37
    worker.request(_requests(quick_model, 1.0, notes=(36, 37)))
    _live(worker)
    full = round(float(np.abs(dc_block(_kick(1.0), RATE)).max()), 3)
    quick = round(fx.PREVIEW_LEVEL * full, 3)
    # the pad played last: its preview, then its full render; then the other pad the same way
    assert [(n, p) for n, p, _ in worker.heard] == [(37, True), (37, False), (36, True), (36, False)]
    assert [peak for *_, peak in worker.heard] == pytest.approx([quick, full, quick, full], abs=2e-3)
    assert (worker.stats.previews, worker.stats.renders, worker.stats.cancelled) == (2, 2, 0)
    offline = _Heard(Engine(RATE, 128, channels=1), preview=True)  # offline render: full quality only
    offline.request(_requests(quick_model, 1.0))
    offline.render_now()
    assert offline.heard == [(36, False, full)] and offline.stats.previews == 0


def test_live_play_of_a_model_without_preview_renders_each_pad_once(model):
    worker = _Heard(Engine(RATE, 128, channels=1), preview=True, split_pads=True)
    worker.focus = 37
    worker.request(_requests(model, 1.0, notes=(36, 37)))
    _live(worker)
    full = float(np.abs(dc_block(_kick(1.0), RATE)).max())
    assert [(n, p) for n, p, _ in worker.heard] == [(37, False), (36, False)]  # full quality straight away
    assert [peak for *_, peak in worker.heard] == pytest.approx([full, full], abs=2e-3)
    assert (worker.stats.previews, worker.stats.renders) == (0, 2)


def test_a_knob_moved_during_a_full_render_cancels_it(tmp_path):
    slow_model = ExportedModel(fx.linear_kick_model(tmp_path / "m", sample_rate=RATE, preview=True, slow=150))
    worker = _Heard(Engine(RATE, 128, channels=1), preview=True, split_pads=True)
    worker.request(_requests(slow_model, 1.0))
    worker.start()
    try:
        assert worker.full_started.wait(30.0)  # the full render of 1.0 is running (about 0.1 s on this model)
        worker.request(_requests(slow_model, 0.5))
        assert worker.wait_idle(30.0)
    finally:
        worker.stop()
    full = float(np.abs(dc_block(_kick(1.0), RATE)).max())
    # 1.0's full render never arrives: 0.5's preview comes next, then its full render ends on the latest state
    assert [(n, p) for n, p, _ in worker.heard] == [(36, True), (36, True), (36, False)]
    assert [peak for *_, peak in worker.heard] == pytest.approx([fx.PREVIEW_LEVEL * full, fx.PREVIEW_LEVEL * full / 2,
                                                                 full / 2], abs=2e-3)
    assert worker.stats.cancelled == 1 and not worker.stats.errors


def test_new_requests_cancel_every_render_but_the_pad_played_last(tmp_path, monkeypatch):
    """A knob moves while the pad played last renders its preview (that render completes: the next hit plays it)
    and again while another pad's preview renders (that one is cancelled and never heard)."""
    quick_model = ExportedModel(fx.linear_kick_model(tmp_path / "m", sample_rate=RATE, preview=True))
    worker = _Heard(Engine(RATE, 128, channels=1), preview=True, split_pads=True)
    worker.focus = 36
    real, calls = worker_module.render_sounds, []

    def render_sounds(reqs, *args, **kwargs):
        calls.append(reqs[0].note)
        if len(calls) in (1, 4):  # during 36's first preview, then during 37's preview of the second state
            worker.request(_requests(quick_model, 0.5 if len(calls) == 1 else 0.25, notes=(36, 37)))
        return real(reqs, *args, **kwargs)

    monkeypatch.setattr(worker_module, "render_sounds", render_sounds)
    worker.request(_requests(quick_model, 1.0, notes=(36, 37)))
    _live(worker)
    full = float(np.abs(dc_block(_kick(1.0), RATE)).max())
    q = fx.PREVIEW_LEVEL * full
    assert calls == [36, 36, 36, 37, 36, 36, 37, 37]  # 36: preview, preview, full; 37 cancelled; then the last state
    assert [(n, p) for n, p, _ in worker.heard] == [(36, True), (36, True), (36, False), (36, True), (36, False),
                                                   (37, True), (37, False)]
    assert [peak for *_, peak in worker.heard] == pytest.approx([q, q / 2, full / 2, q / 4, full / 4, q / 4, full / 4],
                                                                abs=2e-3)
    assert worker.stats.cancelled == 1 and not worker.stats.errors


class _Clock:
    """A monotonic clock the test moves by hand (the worker's knob-settle decisions read it)."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def _wait_heard(worker, count: int, timeout: float = 30.0) -> None:
    deadline = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if len(worker.heard) >= count:
            return
        deadline.wait(0.01)
    raise AssertionError(f"heard {worker.heard}, waited for {count} swaps")


def test_while_a_knob_moves_only_the_pad_played_last_is_previewed(tmp_path, monkeypatch):
    """With a settle time, the other pads and every full render wait until the knob has rested: a full render
    started between two CCs would mostly be cancelled and delay the next preview."""
    clock = _Clock()
    monkeypatch.setattr(worker_module, "time", clock)
    quick_model = ExportedModel(fx.linear_kick_model(tmp_path / "m", sample_rate=RATE, preview=True))
    worker = _Heard(Engine(RATE, 128, channels=1), preview=True, split_pads=True, settle_s=0.05)
    worker.focus = 36
    worker.start()
    try:
        worker.request(_requests(quick_model, 1.0, notes=(36, 37)))
        _wait_heard(worker, 1)
        clock.now += 0.01  # the knob moves on, 10 ms later: the pad played last is previewed again at once
        worker.request(_requests(quick_model, 0.5, notes=(36, 37)))
        _wait_heard(worker, 2)
        threading.Event().wait(0.3)  # real time passes, but the worker's clock says the knob moved 0 ms ago
        assert [(n, p) for n, p, _ in worker.heard] == [(36, True), (36, True)]
        assert worker.pending == 2  # 36's full render and 37's new request wait for the knob to rest
        clock.now += 0.05
        assert worker.wait_idle(30.0)
    finally:
        worker.stop()
    full = float(np.abs(dc_block(_kick(1.0), RATE)).max())
    q = fx.PREVIEW_LEVEL * full
    assert [(n, p) for n, p, _ in worker.heard] == [(36, True), (36, True), (36, False), (37, True), (37, False)]
    assert [peak for *_, peak in worker.heard] == pytest.approx([q, q / 2, full / 2, q / 2, full / 2], abs=2e-3)
    assert worker.stats.cancelled == 0 and not worker.stats.errors


def test_requests_while_running_end_on_the_latest_state(model):
    engine = Engine(RATE, 128, channels=1)
    worker = RenderWorker(engine)
    worker.start()
    try:
        for i in range(100):
            worker.request(_requests(model, 0.01 * (i + 1)))
        assert worker.wait_idle(30.0)
    finally:
        worker.stop()
    assert 1 <= worker.stats.renders <= 100 and not worker.stats.errors
    np.testing.assert_allclose(engine.pad_buffer(36)[0, :900, 0], dc_block(_kick(1.0), RATE)[:900], atol=1e-4)


def test_preset_switch_discards_the_old_requests(model):
    engine = Engine(RATE, 128, channels=1)
    worker = RenderWorker(engine)
    worker.request(_requests(model, 1.0, notes=(36, 38)))
    worker.request(_requests(model, 0.5, notes=(40,)), replace=True)
    assert worker.render_now() == 1
    assert engine.notes == [40]


def test_buffers_are_finite_dc_free_and_faded_at_the_end():
    t = np.arange(4000) / RATE
    audio = np.stack([0.5 + 0.5 * np.sin(2 * np.pi * 80 * t), np.where(t < 0.1, np.nan, 1e9)])
    out = sanitize(audio, RATE, fade_out_ms=10.0, dc_cutoff_hz=5.0)
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 8.0
    assert abs(out[0, 2000:].mean()) < 0.01  # the 0.5 offset is gone after the DC blocker settles
    assert out[0, -1] == 0.0 and np.max(np.abs(out[:, -8:])) < 0.05  # fade to silence


def test_dc_block_matches_the_recursive_filter():
    x = np.random.default_rng(1).standard_normal(3000)
    r = np.exp(-2 * np.pi * 5.0 / RATE)
    y, prev_x, prev_y = np.empty_like(x), 0.0, 0.0
    for n, v in enumerate(x):
        prev_y = v - prev_x + r * prev_y
        prev_x, y[n] = v, prev_y
    np.testing.assert_allclose(dc_block(x, RATE, 5.0, chunk=256), y, atol=1e-9)


@pytest.mark.parametrize("src, dst, hz", [(8000, 48000, 440.0), (8000, 48000, 3400.0), (48000, 44100, 1000.0)])
def test_resampling_keeps_a_sines_frequency_and_level(src, dst, hz):
    n = src // 2
    x = np.sin(2 * np.pi * hz * np.arange(n) / src)
    y = resample(x, src, dst)
    assert y.shape == (n * dst // src,)
    mid = y[dst // 20: -dst // 20]  # away from the edges
    spectrum = np.abs(np.fft.rfft(mid * np.hanning(mid.size)))
    peak_hz = np.argmax(spectrum) * dst / mid.size
    assert abs(peak_hz - hz) <= dst / mid.size
    reference = np.sin(2 * np.pi * hz * (np.arange(y.size) / dst))
    assert np.max(np.abs(mid - reference[dst // 20: -dst // 20])) < 1e-3  # in time and in level (no delay)


def test_downsampling_removes_what_the_new_rate_cannot_hold():
    x = np.sin(2 * np.pi * 30000 * np.arange(48000) / 96000)  # 30 kHz: above 24 kHz Nyquist of the target
    y = resample(x, 96000, 48000)
    assert np.max(np.abs(y[1000:-1000])) < 1e-3


@pytest.mark.parametrize("src, dst", [(44100, 48000), (48000, 44100), (8000, 48000), (44100, 22050)])
def test_resample_equals_its_polyphase_definition(src, dst):
    """Both evaluations (one block matrix: 44.1 <-> 48 kHz; the per-phase loop: 8 -> 48 kHz, 44.1 -> 22.05 kHz)
    compute exactly y[j] = sum_t h[phase(j), t] * x[base(j) - before + t]."""
    import math

    from runtime.dsp import _sinc_table, resample

    x = np.random.default_rng(0).standard_normal((2, 300))
    g = math.gcd(src, dst)
    up, down = dst // g, src // g
    table, before = _sinc_table(up, down, 32, 8.6, 0.945)
    got = resample(x, src, dst)
    want = np.zeros_like(got)
    for j in range(got.shape[-1]):
        base, phase = j * down // up, j * down % up
        for t in range(table.shape[1]):
            i = base - before + t
            if 0 <= i < x.shape[-1]:
                want[:, j] += table[phase, t] * x[:, i]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_live_timings_keep_the_newest_values_in_a_fixed_ring():
    from runtime.live_worker import Timings

    timings = Timings(capacity=3)
    assert len(timings) == 0 and np.isnan(timings.last) and timings.sorted() == []
    for value in (5.0, 1.0, 4.0, 2.0, 3.0):
        timings.append(value)
    assert len(timings) == 3 and timings.last == 3.0 and timings.sorted() == [2.0, 3.0, 4.0]
    timings.clear()
    timings.append(7.0)
    assert timings.sorted() == [7.0] and timings.last == 7.0


def test_a_decoder_that_outputs_nan_is_counted_said_once_and_plays_silence(tmp_path):
    broken = ExportedModel(fx.nan_kick_model(tmp_path / "broken", sample_rate=RATE, samples=1024, preview=True))
    engine = Engine(RATE, 128, channels=1)
    worker = RenderWorker(engine, preview=True)
    for amplitude in (1.0, 0.5, 0.25):
        worker.request(_requests(broken, amplitude, notes=(36, 38)))
        worker.render_now()
    assert worker.stats.nonfinite == 6 and worker.stats.renders == 6
    assert worker.stats.warnings == [
        f"{broken.folder}: the decoder output NaN or infinite samples for pad {note} (1024 samples; the pad plays "
        f"silence): the model is broken; retrain or re-export it" for note in (36, 38)]
    for note in (36, 38):
        assert np.all(engine.pad_buffer(note) == 0.0)
    live = RenderWorker(engine, preview=True)  # live play: its preview decoder is said apart
    live.request(_requests(broken, 1.0))
    live.start()
    try:
        assert live.wait_idle(10.0)
    finally:
        live.stop()
    assert live.stats.nonfinite == 2 and len(live.stats.warnings) == 2
    assert "the preview decoder output NaN" in live.stats.warnings[0]
