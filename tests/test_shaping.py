"""trainer/shaping.py: each knob's gain acts where its definition puts it, by the amount it states, and nowhere else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.spec import get_spec
from trainer import shaping as S
from trainer.spec import MelInverse, features_to_power

SPEC = get_spec("kick-22k")
K = len(S.KNOBS)


def _values(**knobs: float) -> np.ndarray:
    v = np.zeros((1, K))
    for name, value in knobs.items():
        v[0, S.KNOBS.index(name)] = value
    return v


def _decaying(spec=SPEC, rate_db_s: float = 100.0) -> np.ndarray:
    """Mel band power ``[1, M, T]``, the same in every band, of a sound peaking in frame 2 and falling
    ``rate_db_s`` dB per second."""
    times = np.arange(spec.frames) * spec.hop_length / spec.sample_rate
    db = -rate_db_s * np.maximum(times - times[2], 0.0)
    db[:2] = -6.0
    return np.repeat((10.0 ** (db / 10.0))[None, None], spec.n_mels, axis=1) / spec.n_mels


def _db_at(gain: np.ndarray, hz: float, seconds: float, spec=SPEC) -> float:
    f = int(round(hz * spec.n_fft / spec.sample_rate))
    t = int(round(seconds * spec.sample_rate / spec.hop_length))
    return float(10.0 * np.log10(gain[0, f, t]))


def test_all_knobs_at_zero_are_the_identity():
    gain = S.power_gain_np(SPEC, np.zeros((2, K)), np.concatenate([_decaying(), _decaying(rate_db_s=30.0)]))
    assert np.array_equal(gain, np.ones_like(gain))
    power = torch.rand(2, SPEC.n_mels, SPEC.frames)
    assert torch.equal(S.Shaping(SPEC)(torch.zeros(2, K), power), torch.ones(2, SPEC.n_freq, SPEC.frames))


@pytest.mark.parametrize("name, hz, inside_s, region_db", [
    ("sub", 40.0, 0.2, 12.0), ("punch", 400.0, 0.01, 12.0), ("click", 5000.0, 0.005, 18.0)])
def test_level_knobs_act_in_their_region_only(name, hz, inside_s, region_db):
    power = _decaying()
    for value, sign in ((1.0, 1.0), (-1.0, -1.0)):
        gain = S.power_gain_np(SPEC, _values(**{name: value}), power)
        assert _db_at(gain, hz, inside_s) == pytest.approx(sign * region_db, abs=0.01)
    gain = S.power_gain_np(SPEC, _values(**{name: 1.0}), power)
    outside = {"sub": [(400.0, 0.2), (40.0, 0.0)], "punch": [(40.0, 0.01), (400.0, 0.2), (5000.0, 0.01)],
               "click": [(400.0, 0.005), (5000.0, 0.1)]}[name]
    for f, t in outside:
        assert _db_at(gain, f, t) == pytest.approx(0.0, abs=1e-9), (name, f, t)


def test_brightness_is_a_tilt_above_the_pivot_that_rises_with_frequency_at_the_same_power():
    power = _decaying()
    gain = S.power_gain_np(SPEC, _values(brightness=1.0), power)
    row = 10.0 * np.log10(gain[0, :, 20])
    base = _db_at(gain, 100.0, 0.1)
    assert _db_at(gain, 2 * S.BRIGHT_PIVOT_HZ, 0.1) - base == pytest.approx(S.BRIGHT_DB_PER_OCT[0], abs=0.5)
    assert np.all(np.diff(row) >= -1e-9) and row.max() - base == pytest.approx(S.BRIGHT_CAP_DB, abs=1e-6)
    dark = S.power_gain_np(SPEC, _values(brightness=-1.0), power)
    assert _db_at(dark, 4000.0, 0.1) - _db_at(dark, 100.0, 0.1) < -10.0
    # a tone control, not a volume control: the mel bands, each tilted at its centre, keep their total power
    centres = S.mel_centres(SPEC)
    for g in (gain, dark):
        at_centres = g[0][np.round(centres * SPEC.n_fft / SPEC.sample_rate).astype(int)]      # [M, T]
        assert (power[0] * at_centres).sum() == pytest.approx(power.sum(), rel=0.05)


def test_decay_scales_the_drop_after_the_attack_and_leaves_the_floor():
    power = _decaying(rate_db_s=100.0)                      # -20 dB at 0.2 s after the peak
    t = 0.2 + 2 * SPEC.hop_length / SPEC.sample_rate
    longer = S.power_gain_np(SPEC, _values(decay=1.0), power)
    shorter = S.power_gain_np(SPEC, _values(decay=-1.0), power)
    assert _db_at(longer, 300.0, t) == pytest.approx(10.0, abs=0.3)       # -20 dB comes out at -10
    assert _db_at(shorter, 300.0, t) == pytest.approx(-20.0, abs=0.3)     # ... or at -40
    assert _db_at(longer, 300.0, 0.7) == pytest.approx(0.0, abs=1e-6)     # -68 dB: under the floor, left alone
    assert _db_at(longer, 300.0, 0.01) == pytest.approx(0.0, abs=1e-6)    # the attack is not touched
    # frequency-flat: the same gain in every bin of a frame
    assert np.ptp(10.0 * np.log10(longer[0, :, 40])) < 1e-9


def test_decay_keeps_the_envelope_falling():
    """Out level = drop + gain must fall wherever the input falls, at both ends (no new peak, no plateau)."""
    d = -np.linspace(0.0, 80.0, 801)[None]
    for value in (1.0, -1.0, 0.5):
        out = d + S.decay_gain_db(d, np.array([value]))
        assert np.all(np.diff(out[0]) < 0.0), value


def test_knob_gain_is_monotonic_in_the_value():
    values = np.linspace(-1.0, 1.0, 9)
    power = _decaying()
    for k, name in enumerate(S.KNOBS):
        v = np.zeros((len(values), K))
        v[:, k] = values
        gains = 10.0 * np.log10(S.power_gain_np(SPEC, v, np.repeat(power, len(values), axis=0)))
        if name == "brightness":   # its level is kept: the tilt, re the lowest bin, rises with the value
            gains = gains - gains[:, :1]
        assert np.all(np.diff(gains, axis=0) >= -1e-9), name


def test_torch_module_matches_the_numpy_reference_and_clamps():
    rng = np.random.default_rng(0)
    values = rng.uniform(-1.5, 1.5, (3, K))
    mel_power = rng.uniform(0.0, 1.0, (3, SPEC.n_mels, SPEC.frames)) * _decaying()
    torch_gain = S.Shaping(SPEC)(torch.tensor(values, dtype=torch.float32),
                                 torch.tensor(mel_power, dtype=torch.float32)).numpy()
    ref = S.power_gain_np(SPEC, values, mel_power)
    np.testing.assert_allclose(10 * np.log10(torch_gain), 10 * np.log10(ref), atol=2e-3)
    assert np.array_equal(S.power_gain_np(SPEC, values, mel_power),
                          S.power_gain_np(SPEC, np.clip(values, -1, 1), mel_power))


def test_rows_select_bins_in_the_given_order():
    rows = np.array([5, 0, 3, 3])
    values = torch.tensor(_values(sub=1.0, brightness=-0.5), dtype=torch.float32)
    power = torch.ones(1, SPEC.n_mels, SPEC.frames)
    full = S.Shaping(SPEC)(values, power)
    assert torch.equal(S.Shaping(SPEC, rows=rows)(values, power), full[:, rows])


def test_silence_stays_silent_at_every_knob_extreme():
    floor = -torch.ones(1, 1, SPEC.n_mels, SPEC.frames)
    magnitude = MelInverse(SPEC)(floor)
    assert torch.count_nonzero(features_to_power(floor, SPEC)) == 0
    module = S.Shaping(SPEC)
    for value in (1.0, -1.0):
        shaped = module.magnitude(floor, magnitude, torch.full((1, K), value))
        assert torch.count_nonzero(shaped) == 0 and torch.isfinite(shaped).all()


def test_sub_edge_spans_at_least_one_bin_on_a_coarse_spec():
    """On 43 Hz bins (44.1 kHz, n_fft 1024) a one-bin edge would raise the 43 Hz bin alone and pull a 70 Hz
    fundamental (shared by the 43 and 86 Hz bins) toward 43 Hz: the edge widens so the 86 Hz bin is raised too."""
    coarse = get_spec("kick")
    gain = S.power_gain_np(coarse, _values(sub=1.0), _decaying(coarse))
    assert _db_at(gain, 43.0, 0.2, coarse) == pytest.approx(12.0, abs=0.01)
    assert 0.5 < _db_at(gain, 86.0, 0.2, coarse) < 11.5
    assert _db_at(gain, 172.0, 0.2, coarse) == pytest.approx(0.0, abs=1e-9)
    fine = S.power_gain_np(SPEC, _values(sub=1.0), _decaying())       # 21.5 Hz bins: the 0.5-octave edge stands
    assert _db_at(fine, 86.0, 0.2) == pytest.approx(0.0, abs=1e-9)
