"""The two-band decoder's upsampler and crossover (export/two_band.py): image level and power complementarity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.two_band import (FIR_BETA, FIR_CUTOFF, FIR_TAPS, RATE, HighBand, Upsample2, crossover_weight,
                             fold_high_side, lowpass_taps)
from runtime.spec import SPECS
from trainer.spec import mel_inverse

HIGH = SPECS["kick-44k-high"]
#: The image of a full-scale low sine, re the sine, that the upsampler must stay under (dB).
IMAGE_TARGET_DB = -90.0


def _impulse_response() -> np.ndarray:
    """The upsampler's taps as measured on its output: a unit impulse in the middle of a 22.05 kHz signal."""
    x = torch.zeros(1, 512)
    x[0, 256] = 1.0
    with torch.no_grad():
        return Upsample2()(x)[0].double().numpy()


def test_taps_are_the_documented_kaiser_design_centred_without_delay():
    from scipy import signal

    np.testing.assert_allclose(lowpass_taps(), signal.firwin(FIR_TAPS, FIR_CUTOFF, window=("kaiser", FIR_BETA),
                                                             fs=RATE), atol=1e-15)
    y, half = _impulse_response(), (FIR_TAPS - 1) // 2
    np.testing.assert_allclose(y[512 - half:512 + half + 1], 2.0 * lowpass_taps(), atol=1e-7)
    assert np.abs(np.delete(y, np.s_[512 - half:512 + half + 1])).max() == 0.0


@pytest.mark.parametrize("freq", [20.0, 41.0, 60.0, 100.0, 250.0, 800.0, 2000.0, 5000.0])
def test_the_image_of_a_low_sine_is_under_the_target(freq):
    n = 16384
    freq = round(freq * n / (RATE / 2)) * (RATE / 2) / n     # on a bin: the sine and its image leak nowhere
    x = torch.tensor(np.sin(2 * np.pi * freq * np.arange(n) / (RATE / 2))[None], dtype=torch.float32)
    with torch.no_grad():
        y = Upsample2()(x)[0].double().numpy()
    spectrum = np.abs(np.fft.rfft(y * np.kaiser(2 * n, 20.0)))   # sidelobes far under the target
    freqs = np.fft.rfftfreq(2 * n, 1.0 / RATE)
    sine = spectrum[np.abs(freqs - freq) < 20].max()
    image = spectrum[np.abs(freqs - (RATE / 2 - freq)) < 20].max()
    assert 20 * np.log10(image / sine) < IMAGE_TARGET_DB


def test_the_bands_are_power_complementary_on_the_high_bands_bins():
    freqs = np.arange(HIGH.n_freq) * RATE / HIGH.n_fft
    measured = np.abs(np.fft.rfft(_impulse_response() / 2.0, n=4096))[::4096 // HIGH.n_fft]  # |H| on those bins
    w_high = np.diag(fold_high_side(np.eye(HIGH.n_freq), HIGH))
    total_db = 10 * np.log10(measured ** 2 + w_high)
    band = (freqs >= 8000) & (freqs <= 12000)
    assert np.abs(total_db[band]).max() < 0.5
    np.testing.assert_allclose(crossover_weight(freqs, "low") ** 2 + crossover_weight(freqs, "high") ** 2,
                               np.maximum(1.0, crossover_weight(freqs, "low") ** 2), atol=1e-12)
    # the handover lies where the high band's mels reach (9 kHz+), and each band is alone outside it
    assert w_high[freqs < 9000].max() < 1e-3 and w_high[freqs > 11600].min() > 1 - 1e-4
    assert 9000 < freqs[np.argmin(np.abs(w_high - 0.5))] < 11000


def test_the_high_band_graph_carries_the_weight_in_its_inverse():
    band = HighBand(HIGH, 1, None, shaping=False)
    gl = band.synth.gl
    expected = fold_high_side(mel_inverse(HIGH), HIGH)[gl.stft.gather_in.numpy()] * float(gl.inv_scale) ** 2
    np.testing.assert_allclose(band.synth.inverse.numpy(), expected, rtol=1e-6, atol=0)
