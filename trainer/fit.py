"""``trainer fit``: the training loop of the (C)VAE, as plain functions over arrays.

:func:`fit` takes features (and optional labels / pitches) as arrays, so tests and the benchmark feed synthetic data
and only the command edge runs ingestion. It writes a run folder::

    OUT/config.toml        merged run config (when given)
    OUT/last.pt, best.pt   checkpoints (trainer.checkpoint format), written atomically
    OUT/tensorboard/       scalars, spectrogram images, audio
    OUT/samples/           WAVs of reconstructions and prior samples (per class for a CVAE)
    OUT/summary.json       final metrics

Determinism: the split, the model init and each epoch's batch order depend only on ``seed`` (and the epoch);
``last.pt`` also carries the RNG state, so ``resume=True`` continues a single-process run exactly. Multi-process
runs (torchrun) shard every epoch with ``DistributedSampler`` and average gradients with DDP; only rank 0 writes.

The run configuration lives in :mod:`trainer.config`, the data container and split in :mod:`trainer.data.arrays`,
TensorBoard, the progress bar and the sample WAVs in :mod:`trainer.observe`: this module is the loop itself.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from runtime.errors import ConfigError, KickspaceError
from runtime.files import remove_stale_temporaries, write_text
from runtime.spec import SpectrogramSpec
from trainer import distributed as dist_
from trainer.batches import Batch, DeviceData, reconstruct, with_control_stats
from trainer.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from trainer.config import TrainConfig, dumps_toml
from trainer.data.arrays import TrainingArrays, split_indices
from trainer.distributed import DistContext
from trainer.objective import LossParts, ObjectiveConfig, latent_stats, vae_loss
from trainer.observe import Observer, write_samples
from trainer.vae import VAE, ModelConfig, build_model

log = logging.getLogger(__name__)

RUN_FILES = ("last.pt", "best.pt", "config.toml", "summary.json")  # written atomically into the run folder


class TrainingDiverged(KickspaceError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


# ================================================================================================ pure helpers
def lr_at(step: int, config: TrainConfig, total_steps: int) -> float:
    """Learning rate at optimiser step ``step`` of ``total_steps``."""
    if step < config.lr_warmup_steps:
        return config.lr * (step + 1) / config.lr_warmup_steps
    if config.lr_schedule == "constant":
        return config.lr
    span = max(1, total_steps - config.lr_warmup_steps)
    progress = min(1.0, (step - config.lr_warmup_steps) / span)
    return config.lr_min + 0.5 * (config.lr - config.lr_min) * (1 + math.cos(math.pi * progress))


def mean_baseline_mse(features: torch.Tensor, train_idx: np.ndarray, val_idx: np.ndarray) -> float:
    """Validation MSE of predicting the training set's mean spectrogram for every example."""
    mean = features[torch.as_tensor(train_idx)].mean(dim=0, keepdim=True)
    return float((features[torch.as_tensor(val_idx)] - mean).pow(2).mean())


# ================================================================================================ the loop state
@dataclass
class _State:
    """Mutable loop bookkeeping that a checkpoint restores."""

    epoch: int = 0
    step: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    best_recon: float = math.inf
    bad_epochs: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def progress(self) -> dict[str, Any]:
        return {"best_val": self.best_val, "best_epoch": self.best_epoch, "best_recon": self.best_recon,
                "bad_epochs": self.bad_epochs}


# ================================================================================================ the run state
@dataclass
class _Run:
    """What every epoch of one run shares, built once by :func:`_prepare`."""

    out: Path
    spec: SpectrogramSpec
    train: TrainConfig
    objective: ObjectiveConfig
    ctx: DistContext
    classes: tuple[str, ...]
    run_config: dict[str, Any] | None
    model: VAE
    net: nn.Module  # the model, DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    tensors: DeviceData
    state: _State
    critic: VAE | None
    total_steps: int
    baseline: float  # validation MSE of the training mean spectrogram


# ================================================================================================ one step / epoch
def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, *, step: int,
               objective: ObjectiveConfig, grad_clip: float, critic: VAE | None = None) -> LossParts:
    """One optimiser step on ``batch``; returns the detached loss parts (the caller checks finiteness first).

    With a ``critic`` (a frozen copy of the model) the control-consistency term is added: see
    :class:`trainer.objective.ObjectiveConfig`.
    """
    swapped = None
    if critic is not None:
        swapped = batch.controls[torch.randperm(len(batch.x), device=batch.x.device)]
    out = net(batch.x, batch.label, batch.pitch, batch.controls, swapped)
    parts = vae_loss(out.recon, batch.x, out.mu, out.logvar, step=step, config=objective,
                     controls_pred=out.controls, controls_true=batch.controls)
    if critic is not None:
        read_back = critic.predict_controls(out.swapped, batch.label, batch.pitch)
        parts = parts.plus_consistency(nn.functional.mse_loss(read_back, swapped), objective.consistency_weight)
    optimizer.zero_grad(set_to_none=True)
    parts.total.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    return parts.detached()


def _finite_everywhere(parts: LossParts, ctx: DistContext) -> bool:
    flag = torch.tensor([float(torch.isfinite(parts.total) and torch.isfinite(parts.kl))])
    return bool(dist_.all_reduce_sum(flag, ctx).item() == ctx.world_size)


def train_epoch(net: nn.Module, optimizer: torch.optim.Optimizer, data: DeviceData, state: _State, *,
                objective: ObjectiveConfig, train: TrainConfig, ctx: DistContext, total_steps: int,
                on_step=None, critic: VAE | None = None) -> dict[str, float]:
    """One pass over this rank's share of the training split; returns mean loss parts, beta and lr.

    A ``critic`` (see :func:`make_critic`) is refreshed from the model's weights at the start of the epoch.
    """
    net.train()
    if critic is not None:
        critic.load_state_dict(getattr(net, "module", net).state_dict())
    order = dist_.epoch_order(len(data.train_idx), ctx, seed=train.seed, epoch=state.epoch)
    positions = data.train_idx[order]
    sums = torch.zeros(len(_LOSSES))
    count = 0
    lr = beta = 0.0
    for start in range(0, len(positions), train.batch_size):
        chunk = positions[start:start + train.batch_size]
        lr = lr_at(state.step, train, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        parts = train_step(net, optimizer, data.batch(chunk), step=state.step, objective=objective,
                           grad_clip=train.grad_clip, critic=critic)
        if not _finite_everywhere(parts, ctx):
            raise TrainingDiverged(
                f"non-finite loss at epoch {state.epoch + 1}, step {state.step} (total={float(parts.total):.4g}, "
                f"recon={float(parts.recon):.4g}, kl={float(parts.kl):.4g}); training stopped, the last good "
                "checkpoint (last.pt) is kept. Lower train.lr, keep train.grad_clip on, or check the data.")
        optimizer.step()
        state.step += 1
        beta = parts.beta
        sums += _loss_vector(parts) * len(chunk)
        count += len(chunk)
        if on_step is not None:
            on_step(state.step, parts, lr)
    sums = dist_.all_reduce_sum(torch.cat([sums, torch.tensor([float(count)])]), ctx).cpu()
    mean = (sums[:-1] / sums[-1]).tolist()
    return {**dict(zip(_LOSSES, mean)), "beta": beta, "lr": lr}


#: Loss parts averaged per epoch and logged, in :func:`_loss_vector` order.
_LOSSES = ("total", "recon", "kl", "kl_free_bits", "control", "consistency")


def make_critic(model: VAE, objective: ObjectiveConfig) -> VAE | None:
    """A frozen copy of ``model`` that reads the controls of swapped decodes, or None when the term is off."""
    if not (model.config.controls and objective.consistency_weight > 0):
        return None
    critic = copy.deepcopy(model).eval()
    return critic.requires_grad_(False)


def _loss_vector(parts: LossParts) -> torch.Tensor:
    return torch.stack([torch.as_tensor(getattr(parts, name), dtype=torch.float32).reshape(())
                        for name in _LOSSES]).cpu()


@torch.no_grad()
def evaluate(model: VAE, data: DeviceData, *, step: int, objective: ObjectiveConfig, ctx: DistContext,
             batch_size: int) -> dict[str, Any]:
    """Validation loss parts (posterior mean decoded, so the metric is noise-free) and latent statistics.

    Every rank scores its shard of the validation split; sums are reduced so all ranks see the same metrics.
    """
    model.eval()
    positions = dist_.shard(torch.as_tensor(data.val_idx), ctx)
    sums = torch.zeros(len(_LOSSES) + 1)
    mus, logvars = [], []
    for start in range(0, len(positions), batch_size):
        batch = data.batch(positions[start:start + batch_size])
        mu, logvar, recon, predicted = reconstruct(model, batch)
        parts = vae_loss(recon, batch.x, mu, logvar, step=step, config=objective, controls_pred=predicted,
                         controls_true=batch.controls)
        sums += torch.cat([_loss_vector(parts), torch.ones(1)]) * len(batch.x)
        mus.append(mu.cpu())
        logvars.append(logvar.cpu())
    sums = dist_.all_reduce_sum(sums, ctx).cpu()
    metrics: dict[str, Any] = dict(zip(_LOSSES, (sums[:-1] / sums[-1]).tolist()))
    if mus:  # latent statistics from this rank's shard (rank 0 logs them)
        metrics.update(latent_stats(torch.cat(mus), torch.cat(logvars)))
    return metrics


# ================================================================================================ checkpoints
def _rng_state() -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _restore_rng(state: dict[str, torch.Tensor], ctx: DistContext, seed: int, epoch: int) -> None:
    if ctx.rank == 0 and "torch" in state:
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])
    else:  # other ranks only had their noise seeded; re-seed them distinctly per epoch
        torch.manual_seed(seed + 7919 * ctx.rank + epoch)


def _checkpoint(run: _Run) -> Checkpoint:
    state = run.state
    return Checkpoint(
        model_config=run.model.config, spec=run.spec,
        train_config={"train": run.train.to_dict(), "objective": run.objective.to_dict()},
        model_state={k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        classes=list(run.classes), optimizer_state=run.optimizer.state_dict(), epoch=state.epoch, step=state.step,
        history=list(state.history), rng=_rng_state(), progress=state.progress(), config=run.run_config or {})


def _resume(out: Path, model: VAE, optimizer: torch.optim.Optimizer, *, spec: SpectrogramSpec,
            classes: Sequence[str], ctx: DistContext, seed: int) -> _State:
    ckpt = load_checkpoint(out / "last.pt", map_location=ctx.device)
    if ckpt.model_config != model.config:
        raise ConfigError("model", f"differs from the checkpoint in {out} ({ckpt.model_config} != {model.config}); "
                                   "resume with the same model config")
    if ckpt.spec != spec:
        raise ConfigError("data.spec", f"differs from the spec the run in {out} was trained on")
    if list(ckpt.classes) != list(classes):
        raise ConfigError("data", f"classes {list(classes)} differ from the run's {ckpt.classes}")
    model.load_state_dict(ckpt.model_state)
    if ckpt.optimizer_state is not None:
        optimizer.load_state_dict(ckpt.optimizer_state)
    _restore_rng(ckpt.rng, ctx, seed, ckpt.epoch)
    p = ckpt.progress
    return _State(epoch=ckpt.epoch, step=ckpt.step, best_val=p.get("best_val", math.inf),
                  best_epoch=p.get("best_epoch", 0), best_recon=p.get("best_recon", math.inf),
                  bad_epochs=p.get("bad_epochs", 0), history=list(ckpt.history))


# ================================================================================================ the run
def fit(data: TrainingArrays, *, out: str | Path, spec: SpectrogramSpec, model: ModelConfig,
        objective: ObjectiveConfig = ObjectiveConfig(), train: TrainConfig = TrainConfig(), resume: bool = False,
        run_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train a (C)VAE on ``data`` and write the run folder ``out`` (see the module docstring).

    Parameters
    ----------
    data : TrainingArrays
        Features ``[N, C, M, T]`` matching ``spec.shape``, optional labels / pitches / class names.
    out : path
        Run folder. It must not hold a run already unless ``resume``.
    spec : SpectrogramSpec
        The features' spec (saved in checkpoints).
    model, objective, train : configs
    resume : bool
        Continue from ``out/last.pt`` (same model, spec and classes; training settings such as ``epochs`` may
        change).
    run_config : dict, optional
        The merged run config; written to ``out/config.toml`` and embedded in checkpoints.

    Returns
    -------
    dict
        The summary also written to ``out/summary.json``.

    Raises
    ------
    TrainingDiverged
        On a NaN/inf loss; ``out/last.pt`` keeps the last good epoch.
    """
    out = Path(out)
    _check_inputs(data, spec, model, out, resume)
    ctx = dist_.setup(train.device)
    try:
        return _run(data, out=out, spec=spec, model_config=model, objective=objective, train=train,
                    resume=resume, run_config=run_config, ctx=ctx)
    finally:
        dist_.teardown(ctx)


def _check_inputs(data: TrainingArrays, spec: SpectrogramSpec, model: ModelConfig, out: Path, resume: bool) -> None:
    shape = tuple(data.features.shape[1:])
    if shape != spec.shape:
        raise ConfigError("features", f"shape {shape} does not match the spec's {spec.shape}")
    if tuple(model.input_shape) != shape:
        raise ConfigError("model.input_shape", f"{model.input_shape} does not match the features' {shape}")
    if not np.isfinite(data.features).all():
        raise ConfigError("features", "contain NaN or inf values")
    if model.n_classes and model.n_classes != len(data.classes):
        raise ConfigError("model.n_classes", f"is {model.n_classes} but the data has {len(data.classes)} classes")
    if resume and not (out / "last.pt").is_file():
        raise KickspaceError(f"{out}: nothing to resume (no last.pt); drop --resume to start a new run")
    if not resume and (out / "last.pt").exists():
        raise KickspaceError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


def _run(data: TrainingArrays, *, out: Path, spec: SpectrogramSpec, model_config: ModelConfig,
         objective: ObjectiveConfig, train: TrainConfig, resume: bool, run_config: dict[str, Any] | None,
         ctx: DistContext) -> dict[str, Any]:
    run = _prepare(data, out=out, spec=spec, model_config=model_config, objective=objective, train=train,
                   resume=resume, run_config=run_config, ctx=ctx)
    observer = Observer(out, spec, train, ctx, purge_step=run.state.step if resume else None)
    if ctx.is_main:
        _open_run_folder(out, run_config)
    started, start_epoch = time.perf_counter(), run.state.epoch
    try:
        stopped = _epochs(run, observer)
    finally:
        observer.close()
    dist_.barrier(ctx)
    summary = _summary(run, stopped, seconds=time.perf_counter() - started, epochs_run=run.state.epoch - start_epoch)
    if ctx.is_main:
        write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        write_samples(out / "samples", out / "best.pt", run.tensors, train)
        observer.log_summary(summary)
    return summary


def _prepare(data: TrainingArrays, *, out: Path, spec: SpectrogramSpec, model_config: ModelConfig,
             objective: ObjectiveConfig, train: TrainConfig, resume: bool, run_config: dict[str, Any] | None,
             ctx: DistContext) -> _Run:
    """Split, model, optimiser, device tensors and (on resume) the restored state, in a seed-determined order."""
    if train.threads:
        torch.set_num_threads(train.threads)
    torch.manual_seed(train.seed)
    train_idx, val_idx = split_indices(len(data.features), data.label_ids, val_fraction=train.val_fraction,
                                       seed=train.seed)
    model_config = with_control_stats(model_config, data.descriptors, train_idx)
    model = build_model(model_config).to(ctx.device)
    if train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    torch.manual_seed(train.seed + 7919 * ctx.rank)  # distinct reparameterisation noise per rank
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    tensors = DeviceData(data, model_config, ctx, channels_last=train.channels_last, train_idx=train_idx,
                         val_idx=val_idx)
    state = (_resume(out, model, optimizer, spec=spec, classes=data.classes, ctx=ctx, seed=train.seed)
             if resume else _State())
    net = dist_.wrap(model, ctx)
    per_rank = math.ceil(len(train_idx) / ctx.world_size)
    return _Run(out=out, spec=spec, train=train, objective=objective, ctx=ctx, classes=data.classes,
                run_config=run_config, model=model, net=net, optimizer=optimizer, tensors=tensors, state=state,
                critic=make_critic(model, objective), total_steps=train.epochs * math.ceil(per_rank / train.batch_size),
                baseline=mean_baseline_mse(tensors.x.cpu(), train_idx, val_idx))


def _epochs(run: _Run, observer: Observer) -> str:
    """Train until ``train.epochs`` or early stopping, checkpointing every epoch; returns why it stopped."""
    state, train, ctx = run.state, run.train, run.ctx
    with observer.progress(state.epoch, train.epochs) as bar:
        while state.epoch < train.epochs:
            epoch_start = time.perf_counter()
            metrics = train_epoch(run.net, run.optimizer, run.tensors, state, objective=run.objective, train=train,
                                  ctx=ctx, total_steps=run.total_steps, on_step=observer.step, critic=run.critic)
            seconds = time.perf_counter() - epoch_start
            val = evaluate(run.model, run.tensors, step=state.step, objective=run.objective, ctx=ctx,
                           batch_size=train.batch_size)
            state.epoch += 1
            record = _record(state.epoch, metrics, val, run.baseline, seconds, len(run.tensors.train_idx))
            state.history.append(record)
            improved = _update_best(state, record, train)
            if ctx.is_main:
                _save(run, improved)
                observer.epoch(state.epoch, state.step, record, val, run.model, run.tensors)
            bar.advance(record)
            if train.patience and state.bad_epochs >= train.patience:
                return "early_stopping"
    return "completed"


def _open_run_folder(out: Path, run_config: dict[str, Any] | None) -> None:
    """Create ``out``, clear a killed run's temporaries, and write the merged run config."""
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    if run_config:
        write_text(out / "config.toml", dumps_toml(run_config))


def _remove_stale_temporaries(out: Path) -> None:
    """Delete the half-written temporaries of this run's own files that a killed run left in ``out``."""
    removed = [p for name in RUN_FILES for p in remove_stale_temporaries(out / name)]
    if removed:
        log.warning(f"{out}: removed {len(removed)} half-written temporary file{'s' if len(removed) > 1 else ''} "
                    f"left by a killed run ({', '.join(p.name for p in removed)})")


def _record(epoch: int, train_m: dict[str, float], val: dict[str, Any], baseline: float, seconds: float,
            n_train: int) -> dict[str, Any]:
    losses = _LOSSES
    return {"epoch": epoch, **{f"train_{k}": v for k, v in train_m.items()},
            **{f"val_{k}": val[k] for k in losses if k != "consistency"},  # a training-only term
            "val_recon_ratio": val["recon"] / baseline if baseline > 0 else math.nan,
            **{f"latent_{k}": v for k, v in val.items() if k not in losses and k != "kl_per_dim"},
            "perf_epoch_seconds": seconds, "perf_samples_per_s": n_train / max(seconds, 1e-9)}


def _update_best(state: _State, record: dict[str, Any], train: TrainConfig) -> bool:
    if record["val_recon"] < state.best_recon - train.min_delta:
        state.best_recon, state.bad_epochs = record["val_recon"], 0
    else:
        state.bad_epochs += 1
    if record["val_total"] < state.best_val:
        state.best_val, state.best_epoch = record["val_total"], state.epoch
        return True
    return False


def _save(run: _Run, improved: bool) -> None:
    ckpt = _checkpoint(run)
    save_checkpoint(run.out / "last.pt", ckpt)
    if improved:
        save_checkpoint(run.out / "best.pt", ckpt)


def _summary(run: _Run, stopped: str, *, seconds: float, epochs_run: int) -> dict[str, Any]:
    state, ctx = run.state, run.ctx
    last = state.history[-1] if state.history else {}
    best = next((r for r in state.history if r["epoch"] == state.best_epoch), last)
    return {
        "stopped": stopped, "epochs": state.epoch, "epochs_this_run": epochs_run, "steps": state.step,
        "seconds": seconds, "device": str(ctx.device), "world_size": ctx.world_size,
        "n_train": int(len(run.tensors.train_idx)), "n_val": int(len(run.tensors.val_idx)),
        "classes": list(run.classes), "baseline_mean_spectrogram_mse": run.baseline, "best_epoch": state.best_epoch,
        "best": {k: v for k, v in best.items() if k.startswith(("val_", "latent_"))},
        "last": {k: v for k, v in last.items() if k != "epoch"},
    }
