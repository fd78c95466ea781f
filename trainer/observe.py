"""What a run shows while and after it trains: TensorBoard scalars and media, a progress bar, sample WAVs.

Only rank 0 observes (:attr:`trainer.distributed.DistContext.is_main`); on other ranks every method is a no-op, so
the loop calls them unconditionally. Observation never changes training: previews decode the posterior mean
(:func:`trainer.batches.reconstruct`) under ``torch.no_grad`` and draw prior samples from their own seeded generator.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.files import write_wav
from runtime.spec import SpectrogramSpec
from trainer.batches import DeviceData, reconstruct
from trainer.checkpoint import load_model
from trainer.config import TrainConfig
from trainer.distributed import DistContext
from trainer.objective import LossParts
from trainer.spec import features_to_waveform
from trainer.vae import VAE

log = logging.getLogger(__name__)


class Observer:
    """TensorBoard + rich progress on rank 0; does nothing on other ranks."""

    def __init__(self, out: Path, spec: SpectrogramSpec, train: TrainConfig, ctx: DistContext, *,
                 purge_step: int | None) -> None:
        self.spec, self.train, self.ctx = spec, train, ctx
        self.writer = None
        if ctx.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(out / "tensorboard"), purge_step=purge_step)

    def progress(self, done: int, total: int) -> "_Progress":
        """A progress bar over epochs ``done..total`` (enabled on rank 0 when ``train.progress``)."""
        return _Progress(done, total, enabled=self.ctx.is_main and self.train.progress)

    def step(self, step: int, parts: LossParts, lr: float) -> None:
        """Per-step scalars, every ``train.log_every`` steps."""
        if self.writer is None or step % self.train.log_every:
            return
        for name, value in zip(("total", "recon", "kl", "kl_free_bits"), parts[:4]):
            self.writer.add_scalar(f"train_step/{name}", float(value), step)
        self.writer.add_scalar("train_step/beta", parts.beta, step)
        self.writer.add_scalar("train_step/lr", lr, step)

    def epoch(self, epoch: int, step: int, record: dict[str, Any], val: dict[str, Any], model: VAE,
              data: DeviceData) -> None:
        """The epoch's record and per-dimension KL as scalars; spectrograms and audio every ``media_every`` epochs."""
        w = self.writer
        if w is None:
            return
        for key, value in record.items():
            group, _, name = key.partition("_")
            if key != "epoch":
                w.add_scalar(f"{group}/{name}", float(value), step)
        for i, value in enumerate(val.get("kl_per_dim", [])):
            w.add_scalar(f"latent_kl_per_dim/{i:02d}", value, step)
        every = self.train.media_every
        if every and self.train.n_media and (epoch % every == 0 or epoch == self.train.epochs):
            self._media(model, data, step)
        w.flush()

    @torch.no_grad()
    def _media(self, model: VAE, data: DeviceData, step: int) -> None:
        model.eval()
        batch = data.batch(data.val_idx[: self.train.n_media])
        recon = reconstruct(model, batch)[2].float().cpu()
        x = batch.x.float().cpu()
        for i in range(len(x)):
            self.writer.add_image(f"spectrogram/{i}", spectrogram_panel(x[i], recon[i]), step, dataformats="HW")
        audio = features_to_waveform(recon, self.spec, n_iter=self.train.griffin_lim_iters).mean(dim=1)
        for i, wave in enumerate(audio):
            self.writer.add_audio(f"reconstruction/{i}", wave.clamp(-1, 1), step, sample_rate=self.spec.sample_rate)

    def log_summary(self, summary: dict[str, Any]) -> None:
        """The run's one summary line, at INFO."""
        best = summary["best"]
        log.info(
            f"trainer fit: {summary['stopped']} after {summary['epochs']} epochs "
            f"({summary['steps']} steps, {summary['seconds']:.1f} s on {summary['device']} x{summary['world_size']}); "
            f"best epoch {summary['best_epoch']}: val recon {best.get('val_recon', math.nan):.4g} "
            f"({best.get('val_recon_ratio', math.nan):.3f} x mean-spectrogram baseline "
            f"{summary['baseline_mean_spectrogram_mse']:.4g}), KL {best.get('val_kl', math.nan):.3g} nats, "
            f"active units {best.get('latent_active_units', 'n/a')}")

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()


def spectrogram_panel(x: torch.Tensor, recon: torch.Tensor) -> np.ndarray:
    """Input | reconstruction | |difference| side by side, ``[M, 3T]`` in [0, 1], low bins at the bottom.

    ``x`` and ``recon`` are ``[C, M, T]`` features in [-1, 1] (channels are averaged).
    """
    a, b = x.mean(dim=0), recon.mean(dim=0)
    panel = torch.cat([(a + 1) / 2, (b + 1) / 2, (a - b).abs() / 2], dim=1).clamp(0, 1)
    return panel.flip(0).numpy()


class _Progress:
    """Rich progress bar over epochs with ETA and the latest losses (a no-op when disabled)."""

    def __init__(self, done: int, total: int, *, enabled: bool) -> None:
        self.enabled, self.done, self.total = enabled, done, total
        self._progress = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("epoch"), MofNCompleteColumn(), BarColumn(), TimeRemainingColumn(),
                                      TextColumn("{task.fields[losses]}"))
            self._progress.start()
            self._task = self._progress.add_task("fit", total=self.total, completed=self.done, losses="")
        return self

    def advance(self, record: dict[str, Any]) -> None:
        if self._progress is not None:
            losses = (f"train {record['train_total']:.4f} | val recon {record['val_recon']:.4f} "
                      f"({record['val_recon_ratio']:.2f}x mean) kl {record['val_kl']:.2f} "
                      f"beta {record['train_beta']:.2g} active {record.get('latent_active_units', '-')}")
            self._progress.update(self._task, advance=1, losses=losses)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


@torch.no_grad()
def write_samples(folder: Path, best: Path, data: DeviceData, train: TrainConfig) -> None:
    """WAVs of the best model's validation reconstructions and prior samples (per class for a CVAE).

    Reads the model back from ``best`` (not the last epoch's weights), so the samples are of what gets exported.
    """
    if not train.n_media or not best.is_file():
        return
    model, spec, ckpt = load_model(best, device=data.x.device)
    folder.mkdir(parents=True, exist_ok=True)
    batch = data.batch(data.val_idx[: train.n_media])
    sets = {"recon": reconstruct(model, dataclasses.replace(batch, x=batch.x.contiguous()))[2]}
    gen = torch.Generator().manual_seed(train.seed)
    if model.config.n_classes:
        for label, name in enumerate(ckpt.classes):
            sets[f"prior_{_safe(name)}"] = model.sample(train.n_media, label, generator=gen)
    else:
        sets["prior"] = model.sample(train.n_media, generator=gen)
    for prefix, feats in sets.items():
        audio = features_to_waveform(feats.cpu(), spec, n_iter=train.griffin_lim_iters)
        for i, wave in enumerate(audio):
            write_wav(folder / f"{prefix}_{i:02d}.wav", wave.numpy(), spec.sample_rate)


def _safe(name: str) -> str:
    """``name`` as a file-name fragment (letters, digits, ``-`` and ``_``; anything else becomes ``_``)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "class"
