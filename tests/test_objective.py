"""The VAE objective: KL, free bits, beta schedules, reconstruction terms."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from runtime.errors import ConfigError
from trainer.objective import (ObjectiveConfig, beta_at, frame_level, kl_per_dim, multires_mse, reconstruction,
                               vae_loss)


def test_kl_matches_torch_distributions() -> None:
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))
    assert torch.allclose(kl_per_dim(mu, logvar), expected, atol=1e-5)
    assert kl_per_dim(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0


def test_free_bits_clamp_per_dimension_and_stop_its_gradient() -> None:
    x = torch.zeros(4, 1, 8, 8)
    mu = torch.tensor([[0.1, 3.0]] * 4, requires_grad=True)  # dim 0: KL 0.005 < 0.5 nats; dim 1: KL 4.5
    logvar = torch.zeros(4, 2)
    parts = vae_loss(x, x, mu, logvar, step=0, config=ObjectiveConfig(beta=1.0, beta_schedule="constant",
                                                                        free_bits=0.5))
    assert parts.kl.item() == pytest.approx(0.005 + 4.5)
    assert parts.kl_free_bits.item() == pytest.approx(0.5 + 4.5)
    parts.total.backward()
    assert mu.grad[:, 0].abs().max() == 0 and mu.grad[:, 1].abs().min() > 0


def test_total_is_recon_plus_beta_times_free_bits_kl() -> None:
    target, recon = torch.zeros(2, 1, 8, 8), torch.full((2, 1, 8, 8), 0.5)
    mu, logvar = torch.ones(2, 3), torch.zeros(2, 3)
    parts = vae_loss(recon, target, mu, logvar, step=50,
                     config=ObjectiveConfig(beta=0.1, beta_warmup_steps=100, free_bits=0.0))
    assert parts.beta == pytest.approx(0.05)
    assert parts.recon.item() == pytest.approx(0.25)
    assert parts.total.item() == pytest.approx(0.25 + 0.05 * 1.5)


def test_beta_schedules() -> None:
    linear = ObjectiveConfig(beta=2.0, beta_schedule="linear", beta_warmup_steps=10)
    assert [beta_at(s, linear) for s in (0, 5, 10, 99)] == [0.0, 1.0, 2.0, 2.0]
    cyc = ObjectiveConfig(beta=1.0, beta_schedule="cyclical", beta_cycle_steps=10, beta_cycle_ratio=0.5)
    assert [beta_at(s, cyc) for s in (0, 2, 5, 9, 10, 12)] == [0.0, 0.4, 1.0, 1.0, 0.0, 0.4]
    assert beta_at(0, ObjectiveConfig(beta=0.3, beta_schedule="constant")) == 0.3


def test_low_frequency_weighting_and_multires_term() -> None:
    target = torch.zeros(1, 1, 16, 8)
    low, high = target.clone(), target.clone()
    low[:, :, 0] += 0.5
    high[:, :, -1] += 0.5
    weighted = ObjectiveConfig(low_freq_weight=3.0)
    assert reconstruction(low, target, weighted) > reconstruction(high, target, weighted)
    plain = ObjectiveConfig()
    assert reconstruction(low, target, plain) == pytest.approx(reconstruction(high, target, plain).item())
    assert multires_mse(target, target) == 0
    checker = (torch.arange(16)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1.0  # averages out when pooled
    assert multires_mse(checker[None, None], target) == pytest.approx(0.0, abs=1e-7)
    assert multires_mse(low, target) > 0


def test_envelope_term_prices_a_moved_peak_more_than_a_quiet_bin() -> None:
    """The frame level follows the loudest bin (a level meter), so moving the body's peak a few frames earlier costs
    less than an error spread over quiet bins under the element-wise MSE, and far more with the envelope term."""
    target = torch.full((1, 1, 32, 12), -1.0)
    target[:, :, 2, 4] = 0.8  # the body peaks in frame 4
    early = target.clone()
    early[:, :, 2, 4], early[:, :, 2, 1] = -1.0, 0.8  # the same peak three frames early
    quiet = target.clone()
    quiet[:, :, 20:, :] += 0.35  # the same element-wise error order, in bins far below the peak
    plain, enveloped = ObjectiveConfig(), ObjectiveConfig(envelope_weight=1.0)
    assert reconstruction(target, target, enveloped) == 0
    assert frame_level(target).shape == (1, 1, 12)
    assert int(frame_level(target)[0, 0].argmax()) == 4 and int(frame_level(early)[0, 0].argmax()) == 1
    assert reconstruction(early, target, plain) < reconstruction(quiet, target, plain)
    assert reconstruction(early, target, enveloped) > 3 * reconstruction(quiet, target, enveloped)
    with pytest.raises(ConfigError, match="objective.envelope_weight"):
        ObjectiveConfig(envelope_weight=-1.0)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="objective.beta_schedule"):
        ObjectiveConfig(beta_schedule="cosine")
    with pytest.raises(ConfigError, match="objective.gamma"):
        ObjectiveConfig.from_dict({"gamma": 1.0})
    with pytest.raises(ConfigError, match="objective.free_bits"):
        ObjectiveConfig(free_bits=-1)
