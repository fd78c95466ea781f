"""The VAE objective: reconstruction + beta * free-bits KL, with a beta warm-up schedule.

Units. ``recon`` is the mean squared error per feature element on the normalised [-1, 1] log-mel (so it compares
directly with the error of predicting the mean spectrogram), plus optional weighted terms. ``kl`` is the KL divergence
of the diagonal Gaussian posterior from N(0, I) in nats per example, summed over latent dimensions. Because the
reconstruction is a per-element mean, useful ``beta`` values are small (about 1e-5 .. 1e-4: most log-mel
bins sit at the -1 floor, so the mean-spectrogram error is only ~0.01 - 0.05).

Free bits (Kingma et al. 2016) are per latent dimension: each dimension's batch-mean KL is clamped from below at
``free_bits`` nats, so the optimiser gains nothing by pushing a dimension below that and the posterior does not
collapse. ``total = recon + beta * kl_free_bits + control_weight * control``; every part and beta are reported
separately. ``control`` (control-conditioned models only) is the MSE of the encoder's predicted controls against the
true standardised descriptors, in standard deviations squared.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch.nn import functional as F

from runtime.schema import check_fields, require

BETA_SCHEDULES = ("constant", "linear", "cyclical")
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: Cov_x(E[z|x]) above this counts as an active unit


@dataclass(frozen=True)
class ObjectiveConfig:
    """Loss terms and the beta schedule.

    Parameters
    ----------
    beta : float
        Final KL weight (see the module docstring for units).
    beta_schedule : {"constant", "linear", "cyclical"}
        ``linear``: 0 -> beta over ``beta_warmup_steps``, then constant. ``cyclical`` (Fu et al. 2019): repeat
        cycles of ``beta_cycle_steps`` steps, ramping 0 -> beta over the first ``beta_cycle_ratio`` of each.
    beta_warmup_steps, beta_cycle_steps : int
    beta_cycle_ratio : float
    free_bits : float
        Minimum KL per latent dimension in nats (0 disables).
    multires_weight : float
        Weight of a multi-resolution term: MSE of 2x, 4x and 8x average-pooled features (0 disables).
    low_freq_weight : float
        Extra weight on low bins: per-bin weights rise linearly from 1 (top bin) to ``1 + low_freq_weight``
        (bottom bin), normalised to mean 1, applied to the element-wise MSE term (0 = plain MSE).
    envelope_weight : float
        Weight of an envelope term (0 disables): the MSE between each frame's level (the log of the power summed
        over all bins, in feature units) of the reconstruction and of the target. The element-wise MSE weighs a
        frame's loudest bins like any other of its 128, so a decoder can shift the body's peak into the first
        frames (an attack faster than the sound's) at little cost; this term prices the frame level itself.
    control_weight : float
        Weight of the control-prediction MSE (models with ``model.controls`` only).
    consistency_weight : float
        Weight of the control-consistency term (models with controls; 0 disables): each example's ``z`` is also
        decoded with another example's controls, and a frozen copy of the encoder (refreshed every epoch) must read
        those controls back from the result. It teaches the decoder to *follow* its control inputs with ``z``
        held, which is what a knob does, instead of taking the sound's character from ``z`` alone.
    """

    beta: float = 1e-5
    beta_schedule: str = "linear"
    beta_warmup_steps: int = 2000
    beta_cycle_steps: int = 4000
    beta_cycle_ratio: float = 0.5
    free_bits: float = 0.25
    multires_weight: float = 0.0
    low_freq_weight: float = 0.0
    envelope_weight: float = 0.0
    control_weight: float = 0.01
    consistency_weight: float = 0.0

    def __post_init__(self) -> None:
        require(self.beta >= 0, "objective.beta", f"must be >= 0, got {self.beta}")
        require(self.beta_schedule in BETA_SCHEDULES, "objective.beta_schedule",
                f"must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        require(self.beta_warmup_steps >= 0, "objective.beta_warmup_steps", "must be >= 0")
        require(self.beta_cycle_steps > 0, "objective.beta_cycle_steps", "must be positive")
        require(0 < self.beta_cycle_ratio <= 1, "objective.beta_cycle_ratio", "must be in (0, 1]")
        require(self.free_bits >= 0, "objective.free_bits", f"must be >= 0, got {self.free_bits}")
        require(self.multires_weight >= 0, "objective.multires_weight", "must be >= 0")
        require(self.low_freq_weight >= 0, "objective.low_freq_weight", "must be >= 0")
        require(self.envelope_weight >= 0, "objective.envelope_weight", "must be >= 0")
        require(self.control_weight >= 0, "objective.control_weight", "must be >= 0")
        require(self.consistency_weight >= 0, "objective.consistency_weight", "must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (what checkpoints and ``config.toml`` store)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ObjectiveConfig":
        """Inverse of :meth:`to_dict`; an unknown key raises ConfigError naming ``objective.KEY``."""
        return cls(**check_fields(data, cls, where="objective"))


class LossParts(NamedTuple):
    """Scalar tensors of one batch: ``total`` (optimised), ``recon``, raw ``kl``, ``kl_free_bits``, ``beta``,
    ``control`` and ``consistency`` (0 for a model without controls)."""

    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    kl_free_bits: torch.Tensor
    beta: float
    control: torch.Tensor | float = 0.0
    consistency: torch.Tensor | float = 0.0

    def detached(self) -> "LossParts":
        """The same parts cut from the autograd graph."""
        return LossParts(self.total.detach(), self.recon.detach(), self.kl.detach(), self.kl_free_bits.detach(),
                         self.beta, torch.as_tensor(self.control).detach(),
                         torch.as_tensor(self.consistency).detach())

    def plus_consistency(self, value: torch.Tensor, weight: float) -> "LossParts":
        """These parts with the control-consistency term added (to ``total`` with ``weight``)."""
        return self._replace(total=self.total + weight * value, consistency=value)


def beta_at(step: int, config: ObjectiveConfig) -> float:
    """KL weight at optimiser step ``step`` (0-based) under ``config``'s schedule."""
    if config.beta_schedule == "constant":
        return config.beta
    if config.beta_schedule == "linear":
        if config.beta_warmup_steps == 0:
            return config.beta
        return config.beta * min(1.0, step / config.beta_warmup_steps)
    ramp = config.beta_cycle_ratio * config.beta_cycle_steps
    return config.beta * min(1.0, (step % config.beta_cycle_steps) / ramp)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per example and dimension, ``[B, latent]`` in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def latent_stats(mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, Any]:
    """Posterior statistics over a set of examples (``mu``, ``logvar`` ``[N, latent]``).

    Returns mu mean/std, logvar mean/std, ``active_units`` (dimensions whose ``mu`` varies across examples by more
    than :data:`ACTIVE_UNIT_THRESHOLD`) and ``kl_per_dim`` (list, mean nats per dimension).
    """
    spread = mu.var(dim=0, unbiased=False)
    return {
        "mu_mean": float(mu.mean()), "mu_std": float(mu.std()),
        "logvar_mean": float(logvar.mean()), "logvar_std": float(logvar.std()),
        "active_units": int((spread > ACTIVE_UNIT_THRESHOLD).sum()),
        "kl_per_dim": [float(v) for v in kl_per_dim(mu, logvar).mean(dim=0)],
    }


def reconstruction(recon: torch.Tensor, target: torch.Tensor, config: ObjectiveConfig) -> torch.Tensor:
    """Reconstruction term for ``[B, C, M, T]`` tensors (see :class:`ObjectiveConfig`); a scalar."""
    err = (recon - target).pow(2)
    if config.low_freq_weight > 0:
        bins = target.shape[2]
        weight = 1.0 + config.low_freq_weight * torch.linspace(1.0, 0.0, bins, device=target.device)
        err = err * (weight / weight.mean())[None, None, :, None]
    loss = err.mean()
    if config.multires_weight > 0:
        loss = loss + config.multires_weight * multires_mse(recon, target)
    if config.envelope_weight > 0:
        loss = loss + config.envelope_weight * F.mse_loss(frame_level(recon), frame_level(target))
    return loss


FEATURE_NEPERS = 40.0 * math.log(10.0) / 10.0  # one feature unit is 40 dB (80 dB over [-1, 1]) in ln(power)


def frame_level(features: torch.Tensor) -> torch.Tensor:
    """Each frame's level ``[B, C, T]`` in feature units: log of the power summed over the bins of ``[B, C, M, T]``.

    ``logsumexp`` over bins of the features in nepers of power, scaled back to feature units; the constant (the
    bin count, the dB reference) cancels in a difference. Dominated by a frame's loudest bins, as a level meter is.
    """
    return torch.logsumexp(features * FEATURE_NEPERS, dim=2) / FEATURE_NEPERS


def multires_mse(recon: torch.Tensor, target: torch.Tensor, factors: tuple[int, ...] = (2, 4, 8)) -> torch.Tensor:
    """Mean over ``factors`` of the MSE between average-pooled ``[B, C, M, T]`` tensors (coarse structure)."""
    terms = [F.mse_loss(F.avg_pool2d(recon, f), F.avg_pool2d(target, f))
             for f in factors if f <= min(target.shape[2:])]
    return torch.stack(terms).mean() if terms else recon.new_zeros(())


def vae_loss(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
             step: int, config: ObjectiveConfig, controls_pred: torch.Tensor | None = None,
             controls_true: torch.Tensor | None = None) -> LossParts:
    """The objective for one batch at optimiser step ``step``.

    Parameters
    ----------
    recon, target : Tensor ``[B, C, M, T]``
    mu, logvar : Tensor ``[B, latent]``
    step : int
        Global optimiser step (drives the beta schedule).
    config : ObjectiveConfig
    controls_pred, controls_true : Tensor ``[B, K]``, optional
        Predicted and true standardised controls of a control-conditioned model.

    Returns
    -------
    LossParts
    """
    rec = reconstruction(recon, target, config)
    per_dim = kl_per_dim(mu, logvar).mean(dim=0)  # [latent], batch mean
    kl = per_dim.sum()
    kl_fb = torch.clamp(per_dim, min=config.free_bits).sum() if config.free_bits > 0 else kl
    beta = beta_at(step, config)
    control = rec.new_zeros(())
    if controls_pred is not None and controls_true is not None:
        control = F.mse_loss(controls_pred, controls_true.to(controls_pred.dtype))
    return LossParts(rec + beta * kl_fb + config.control_weight * control, rec, kl, kl_fb, beta, control)

