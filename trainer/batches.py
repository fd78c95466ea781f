"""Training examples as device tensors: batches, the model's standardised controls, and the posterior-mean decode.

Shared by the training loop (:mod:`trainer.fit`) and its observer (:mod:`trainer.observe`), which both batch the
same tensors and decode them the same way; keeping these here lets each import them without importing the other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from runtime.errors import ConfigError
from trainer.data.arrays import TrainingArrays
from trainer.descriptors import DESCRIPTORS, control_units
from trainer.distributed import DistContext
from trainer.vae import VAE, ModelConfig


@dataclass
class Batch:
    """One batch: features ``x`` ``[B, C, M, T]`` and the conditioning each is paired with (None when unused)."""

    x: torch.Tensor
    label: torch.Tensor | None
    pitch: torch.Tensor | None
    controls: torch.Tensor | None = None


class DeviceData:
    """All examples as tensors on the training device, plus the split (positions into them).

    Moving the whole corpus to the device once avoids a per-step host copy; batches are index gathers.
    """

    def __init__(self, arrays: TrainingArrays, model_config: ModelConfig, ctx: DistContext, *,
                 channels_last: bool, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
        self.x = torch.as_tensor(arrays.features, dtype=torch.float32).to(ctx.device)
        if channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        use_label = model_config.n_classes > 0 and arrays.label_ids is not None
        use_pitch = model_config.pitch_conditioning and arrays.pitch is not None
        self.label = torch.as_tensor(arrays.label_ids).to(ctx.device) if use_label else None
        self.pitch = torch.as_tensor(arrays.pitch).to(ctx.device) if use_pitch else None
        self.controls = None
        if model_config.controls:
            values = standard_controls(model_config, arrays.descriptors)
            self.controls = torch.as_tensor(values, dtype=torch.float32).to(ctx.device)
        self.train_idx, self.val_idx = train_idx, val_idx

    def batch(self, positions: Sequence[int] | torch.Tensor) -> Batch:
        """The examples at ``positions`` (with their conditioning) as one :class:`Batch`."""
        idx = torch.as_tensor(positions, dtype=torch.long, device=self.x.device)
        pick = (lambda t: None if t is None else t[idx])
        return Batch(self.x[idx], pick(self.label), pick(self.pitch), pick(self.controls))


def reconstruct(model: VAE, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``mu``, ``logvar``, the posterior mean decoded with the batch's true controls, and the predicted controls.

    Decoding the mean (not a sample) makes validation metrics and previews noise-free.
    """
    code_mu, code_logvar = model.encode_code(batch.x, batch.label, batch.pitch)
    latent = model.config.latent
    mu, logvar = code_mu[:, :latent], code_logvar[:, :latent]
    predicted = code_mu[:, latent:] if model.config.controls else None
    recon = model.decode(model.code(mu, batch.controls), batch.label, batch.pitch)
    return mu, logvar, recon, predicted


def with_control_stats(config: ModelConfig, descriptors: np.ndarray | None, train_idx: np.ndarray) -> ModelConfig:
    """``config`` with ``control_mean`` / ``control_std`` measured on the training split's descriptors.

    Returns ``config`` unchanged when it has no controls. Only the training split is measured, so validation
    stays unseen.
    """
    if not config.controls:
        return config
    if descriptors is None:
        raise ConfigError("model.controls", f"{list(config.controls)} need the audio's descriptors: train from audio "
                                            "folders, or save a 'descriptors' array in the .npz")
    values = control_matrix(descriptors[train_idx], config.controls)
    return dataclasses.replace(config, control_mean=tuple(values.mean(axis=0)),
                               control_std=tuple(np.maximum(values.std(axis=0), 1e-6)))


def standard_controls(config: ModelConfig, descriptors: np.ndarray) -> np.ndarray:
    """Descriptors ``[N, len(DESCRIPTORS)]`` -> the model's standardised controls ``[N, len(config.controls)]``."""
    values = control_matrix(descriptors, config.controls)
    return (values - np.asarray(config.control_mean)) / np.asarray(config.control_std)


def control_matrix(descriptors: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The ``names`` columns of descriptors ``[N, len(DESCRIPTORS)]`` in control units, ``[N, len(names)]``."""
    columns = [DESCRIPTORS.index(name) for name in names]
    return control_units(np.asarray(descriptors)[:, columns], names)
