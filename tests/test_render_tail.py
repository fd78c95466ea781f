"""A rendered sound ends when the decoder ends it: the runtime's DC blocker does not outlast it.

The one-pole blocker of the runtime's preparation (``runtime.worker.render_sounds``: ``runtime.dsp.sanitize``, then
the resampler) holds its estimate (about 34 dB under a noise's level, decaying over 32 ms) after its input stops; a
sound the decoder fades to silence must not end in that decay. These tests pin the end of a synthetic clap (a noise
sustained to the buffer's end, faded by the decoder's render envelope), the level of 40 Hz and 25 Hz kicks (a
kick's sub must survive the blocker) and the floor gate's soft knee.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from runtime import model as M
from runtime.dsp import dc_block, fade_out_curve, sanitize, sound_end
from runtime.model import ExportedModel
from runtime.worker import PadRequest, render_sounds
from tests import onnx_fixtures as fx
from trainer.spec import render_envelope

RATE, SAMPLES, ENGINE_RATE = 22050, 16384, 48000


def _spec():
    hop = SAMPLES // fx.FRAMES
    return dataclasses.replace(fx.SPEC, sample_rate=RATE, hop_length=hop, frames=fx.FRAMES, n_fft=hop,
                               win_length=hop)


def _clap() -> np.ndarray:
    """Noise sustained to the buffer's end, shaped by the decoder's render envelope: white plus as much noise
    low-passed at 50 Hz (the kit's rendered claps hold half their power under 100 Hz)."""
    white = np.random.default_rng(1).standard_normal(SAMPLES)
    low = white - dc_block(white, RATE, 50.0)  # one-pole low-pass: the blocker's complement
    return 0.3 * (white + low / low.std()) * render_envelope(_spec())


def _kick(hz: float = 40.0) -> np.ndarray:
    """A sine kick (250 ms decay) under the render envelope."""
    t = np.arange(SAMPLES) / RATE
    return np.sin(2 * np.pi * hz * t) * np.exp(-t / 0.25) * render_envelope(_spec())


def end_db(audio: np.ndarray, rate: int) -> float:
    """RMS of the 10 ms before the last 10 ms re peak, dB (``benchmarks/render_quality.py``'s end level)."""
    n = int(round(0.01 * rate))
    part = audio[-2 * n:-n]
    return float(10 * np.log10(np.mean(part ** 2) / np.max(np.abs(audio)) ** 2))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ExportedModel:
    """A decoder playing ``z[0] * clap + z[1] * kick(40 Hz) + z[2] * kick(25 Hz)`` at 22.05 kHz."""
    folder = fx.linear_kick_model(tmp_path_factory.mktemp("tail"), sample_rate=RATE, samples=SAMPLES)
    meta = M.read_metadata(folder / M.DECODER_FILE)
    fx.write_decoder(folder / M.DECODER_FILE, meta.to_json(), weights=np.stack([_clap(), _kick(), _kick(25.0)]))
    return ExportedModel(folder)


def _render(model: ExportedModel, z) -> np.ndarray:
    out = render_sounds([PadRequest(36, model, np.array([z], np.float32))], ENGINE_RATE)[0]
    return np.asarray(out[0], dtype=np.float64).reshape(-1)


def test_a_clap_ends_below_60_db_through_the_runtime(model):
    blocked = dc_block(_clap(), RATE)
    blocked[-220:] *= fade_out_curve(220)
    assert end_db(blocked, RATE) > -60.0  # the cause: the blocker's held estimate outlasts the faded noise
    out = _render(model, (1.0, 0.0, 0.0))
    assert end_db(out, ENGINE_RATE) < -60.0
    peak = np.max(np.abs(out))
    assert abs(out[0]) <= 0.01 * peak and abs(out[-1]) < 1e-9 * peak  # starts and ends in silence


@pytest.mark.parametrize("z, hz", [((0.0, 1.0, 0.0), 40.0), ((0.0, 0.0, 1.0), 25.0)])
def test_a_sub_kick_keeps_its_level(model, z, hz):
    out = _render(model, z)
    body = slice(0, int(0.5 * ENGINE_RATE))
    t = np.arange(out.size) / ENGINE_RATE
    reference = np.sin(2 * np.pi * hz * t) * np.exp(-t / 0.25)
    ratio_db = 10 * np.log10(np.mean(out[body] ** 2) / np.mean(reference[body] ** 2))
    assert abs(ratio_db) < (0.1 if hz == 40.0 else 0.25)  # a 5 Hz one-pole: -0.07 dB at 40 Hz, -0.17 dB at 25 Hz


def test_the_input_passes_unblocked_after_it_has_ended():
    kick = np.zeros(SAMPLES)
    kick[:8000] = _kick()[:8000] + 0.01  # a 0.01 offset: the blocker removes it while the sound lasts
    out = sanitize(kick[None], RATE)[0]
    end = sound_end(kick)
    assert end == 8000
    assert abs(out[4000:4100].mean()) < abs(kick[4000:4100].mean())
    np.testing.assert_array_equal(out[end:-220], kick[end:-220])  # silence after the end, not the blocker's decay


def test_a_sound_to_the_buffer_end_is_only_blocked_and_faded():
    x = 0.5 + 0.5 * np.sin(2 * np.pi * 80 * np.arange(4000) / 8000)
    out = sanitize(x[None], 8000)[0]
    blocked = dc_block(x, 8000)
    np.testing.assert_allclose(out[:-80], blocked[:-80])
    np.testing.assert_allclose(out[-80:], blocked[-80:] * fade_out_curve(80))


def test_sound_end():
    x = np.zeros(2000)
    assert sound_end(x) == 0
    x[10] = -1.0
    x[1500] = 0.002  # within 60 dB of the peak
    x[1700] = 0.0005  # under it
    assert sound_end(x) == 1501
    assert sound_end(x, -70.0) == 1701
    assert sound_end(x, block=64) == 1501


def test_the_floor_gate_has_a_soft_knee():
    """A band fading toward the floor keeps fading before it is gated (not silenced from near its own level);
    bands 12 dB or more over the floor come back exactly."""
    import torch

    from runtime.spec import get_spec
    from trainer.spec import FLOOR_GATE_DB, FLOOR_KNEE_DB, features_to_power, power_to_features, ref_db

    spec = get_spec("kick-22k")
    over = torch.tensor([FLOOR_GATE_DB - 0.1, FLOOR_GATE_DB + 0.4, FLOOR_GATE_DB + 3.0,
                         FLOOR_GATE_DB + FLOOR_KNEE_DB, 40.0], dtype=torch.float64)  # dB over the floor
    features = over / (0.5 * spec.top_db) - 1.0
    power = features_to_power(features, spec)
    loss_db = (over + ref_db(spec) - spec.top_db) - 10 * torch.log10(power)
    assert power[0] == 0.0
    assert loss_db[1] > 20.0 and 5.0 < loss_db[2] < 7.0
    assert torch.allclose(power_to_features(power[3:], spec), features[3:], atol=1e-6)
