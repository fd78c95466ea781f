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
"""

from __future__ import annotations

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
from runtime.files import remove_stale_temporaries, write_text, write_wav
from runtime.spec import SpectrogramSpec
from trainer import distributed as dist_
from trainer.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from trainer.distributed import DistContext
from trainer.model import VAE, ModelConfig, build_model
from trainer.objective import LossParts, ObjectiveConfig, latent_stats, vae_loss
from trainer.descriptors import DESCRIPTORS, control_units

log = logging.getLogger(__name__)

LR_SCHEDULES = ("constant", "cosine")
RUN_FILES = ("last.pt", "best.pt", "config.toml", "summary.json")  # written atomically into the run folder


class TrainingDiverged(KickspaceError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, validation, checkpointing and logging of one run (``[train]``).

    Parameters
    ----------
    epochs : int
        Total epochs of the run (a resumed run continues up to this number).
    batch_size : int
        Examples per optimiser step and process.
    lr, weight_decay : float
        Adam learning rate and (decoupled, AdamW) weight decay.
    lr_schedule : {"constant", "cosine"}
        After ``lr_warmup_steps`` of linear warm-up: constant, or cosine decay to ``lr_min`` at the last step.
    lr_warmup_steps : int
    lr_min : float
    grad_clip : float
        Max global gradient norm (0 disables).
    val_fraction : float
        Share held out for validation, stratified by label when labels exist.
    patience : int
        Early stopping: epochs without a ``min_delta`` improvement of validation reconstruction (0 disables).
    min_delta : float
    seed : int
    device : {"auto", "cpu", "cuda", "mps"}
    threads : int
        torch intra-op threads (0 keeps torch's default).
    channels_last : bool
        Use the channels-last memory format (can speed up CPU convolutions).
    log_every : int
        Steps between per-step TensorBoard scalars.
    media_every : int
        Epochs between spectrogram images and audio in TensorBoard (0 disables).
    n_media : int
        Validation examples shown as images/audio, and samples written at the end.
    griffin_lim_iters : int
        Griffin-Lim iterations for audio previews.
    progress : bool
        Show a rich progress bar.
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_warmup_steps: int = 0
    lr_min: float = 1e-5
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    patience: int = 20
    min_delta: float = 0.0
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    channels_last: bool = False
    log_every: int = 20
    media_every: int = 5
    n_media: int = 4
    griffin_lim_iters: int = 32
    progress: bool = True

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, problem: str) -> None:
            if not ok:
                raise ConfigError(f"train.{name}", problem)

        need(self.epochs > 0, "epochs", f"must be positive, got {self.epochs}")
        need(self.batch_size > 0, "batch_size", f"must be positive, got {self.batch_size}")
        need(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        need(self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"must be one of {LR_SCHEDULES}")
        need(0 < self.val_fraction < 1, "val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        need(self.grad_clip >= 0, "grad_clip", "must be >= 0 (0 disables)")
        need(self.patience >= 0, "patience", "must be >= 0 (0 disables)")
        need(self.device in dist_.DEVICES, "device", f"must be one of {dist_.DEVICES}")
        need(self.log_every > 0, "log_every", "must be positive")
        need(self.media_every >= 0 and self.n_media >= 0, "media_every", "must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in data if k not in known]
        if unknown:
            raise ConfigError(f"train.{unknown[0]}", "unknown key")
        return cls(**data)


@dataclass(frozen=True)
class TrainingArrays:
    """What training needs from a corpus.

    Attributes
    ----------
    features : ndarray ``[N, C, M, T]`` float32 in [-1, 1]
    label_ids : ndarray ``[N]`` int64 or None (-1 = unlabelled)
    pitch : ndarray ``[N]`` int64 or None (-1 = unknown MIDI pitch)
    classes : tuple of str, the names of ``label_ids``
    descriptors : ndarray ``[N, len(DESCRIPTORS)]`` float64 or None
        Audio descriptors of each example (:func:`trainer.descriptors.describe_batch` of the prepared audio); needed
        by a model with ``controls``.
    """

    features: np.ndarray
    label_ids: np.ndarray | None = None
    pitch: np.ndarray | None = None
    classes: tuple[str, ...] = ()
    descriptors: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.features)
        if self.features.ndim != 4:
            raise ConfigError("features", f"must be [N, C, M, T], got shape {self.features.shape}")
        if self.descriptors is not None and np.shape(self.descriptors) != (n, len(DESCRIPTORS)):
            raise ConfigError("descriptors", f"must be [{n}, {len(DESCRIPTORS)}] ({', '.join(DESCRIPTORS)}), "
                                             f"got shape {np.shape(self.descriptors)}")
        for name in ("label_ids", "pitch"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ConfigError(name, f"has {len(value)} entries for {n} examples")


def load_npz(path: str | Path) -> TrainingArrays:
    """Arrays saved with ``np.savez(path, features=..., [label_ids=..., pitch=..., classes=..., descriptors=...])``."""
    with np.load(path, allow_pickle=False) as data:
        if "features" not in data:
            raise ConfigError(str(path), "an .npz training set needs a 'features' array [N, C, M, T]")
        get = (lambda k: np.asarray(data[k], dtype=np.int64) if k in data else None)
        classes = tuple(str(c) for c in data["classes"]) if "classes" in data else ()
        descriptors = np.asarray(data["descriptors"], dtype=np.float64) if "descriptors" in data else None
        return TrainingArrays(np.asarray(data["features"], dtype=np.float32), get("label_ids"), get("pitch"),
                              classes, descriptors)


# ================================================================================================ pure helpers
def split_indices(n: int, label_ids: np.ndarray | None, *, val_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train / validation positions, stratified by ``label_ids`` (-1 is its own stratum).

    Each stratum of size >= 2 gives ``round(val_fraction * size)`` (at least 1) examples to validation; the
    validation set is never empty and training keeps at least one example.
    """
    if n < 2:
        raise ConfigError("data", f"need at least 2 examples to hold out a validation split, got {n}")
    rng = np.random.default_rng(seed)
    labels = np.full(n, -1) if label_ids is None else np.asarray(label_ids)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        k = 0 if len(members) < 2 else min(len(members) - 1, max(1, round(val_fraction * len(members))))
        val.extend(members[:k])
        train.extend(members[k:])
    if not val:
        val.append(train.pop())
    return np.sort(np.asarray(train)), np.sort(np.asarray(val))


def lr_at(step: int, config: TrainConfig, total_steps: int) -> float:
    """Learning rate at optimiser step ``step`` of ``total_steps``."""
    if step < config.lr_warmup_steps:
        return config.lr * (step + 1) / config.lr_warmup_steps
    if config.lr_schedule == "constant":
        return config.lr
    span = max(1, total_steps - config.lr_warmup_steps)
    progress = min(1.0, (step - config.lr_warmup_steps) / span)
    return config.lr_min + 0.5 * (config.lr - config.lr_min) * (1 + math.cos(math.pi * progress))


def with_control_stats(config: ModelConfig, descriptors: np.ndarray | None, train_idx: np.ndarray) -> ModelConfig:
    """``config`` with ``control_mean`` / ``control_std`` measured on the training split's descriptors.

    Returns ``config`` unchanged when it has no controls.
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


def mean_baseline_mse(features: torch.Tensor, train_idx: np.ndarray, val_idx: np.ndarray) -> float:
    """Validation MSE of predicting the training set's mean spectrogram for every example."""
    mean = features[torch.as_tensor(train_idx)].mean(dim=0, keepdim=True)
    return float((features[torch.as_tensor(val_idx)] - mean).pow(2).mean())


# ================================================================================================ the loop state
@dataclass
class _Batch:
    x: torch.Tensor
    label: torch.Tensor | None
    pitch: torch.Tensor | None
    controls: torch.Tensor | None = None


class _Data:
    """All examples as tensors on the training device, plus the split."""

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

    def batch(self, positions: Sequence[int] | torch.Tensor) -> _Batch:
        idx = torch.as_tensor(positions, dtype=torch.long, device=self.x.device)
        pick = (lambda t: None if t is None else t[idx])
        return _Batch(self.x[idx], pick(self.label), pick(self.pitch), pick(self.controls))


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


# ================================================================================================ one step / epoch
def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, batch: _Batch, *, step: int,
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


def train_epoch(net: nn.Module, optimizer: torch.optim.Optimizer, data: _Data, state: _State, *,
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
    import copy

    critic = copy.deepcopy(model).eval()
    return critic.requires_grad_(False)


def _loss_vector(parts: LossParts) -> torch.Tensor:
    return torch.stack([torch.as_tensor(getattr(parts, name), dtype=torch.float32).reshape(())
                        for name in _LOSSES]).cpu()


@torch.no_grad()
def evaluate(model: VAE, data: _Data, *, step: int, objective: ObjectiveConfig, ctx: DistContext,
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
        mu, logvar, recon, predicted = _reconstruct(model, batch)
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


def _reconstruct(model: VAE, batch: _Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``mu``, ``logvar``, the posterior mean decoded with the batch's true controls, and the predicted controls."""
    code_mu, code_logvar = model.encode_code(batch.x, batch.label, batch.pitch)
    latent = model.config.latent
    mu, logvar = code_mu[:, :latent], code_logvar[:, :latent]
    predicted = code_mu[:, latent:] if model.config.controls else None
    recon = model.decode(model.code(mu, batch.controls), batch.label, batch.pitch)
    return mu, logvar, recon, predicted


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


def _checkpoint(model: VAE, optimizer: torch.optim.Optimizer, state: _State, *, spec: SpectrogramSpec,
                train: TrainConfig, objective: ObjectiveConfig, classes: Sequence[str],
                run_config: dict[str, Any] | None) -> Checkpoint:
    return Checkpoint(
        model_config=model.config, spec=spec,
        train_config={"train": train.to_dict(), "objective": objective.to_dict()},
        model_state={k: v.detach().cpu() for k, v in model.state_dict().items()},
        classes=list(classes), optimizer_state=optimizer.state_dict(), epoch=state.epoch, step=state.step,
        history=list(state.history), rng=_rng_state(), progress=state.progress(), config=run_config or {})


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
    tensors = _Data(data, model_config, ctx, channels_last=train.channels_last, train_idx=train_idx,
                    val_idx=val_idx)
    state = (_resume(out, model, optimizer, spec=spec, classes=data.classes, ctx=ctx, seed=train.seed)
             if resume else _State())
    net = dist_.wrap(model, ctx)
    critic = make_critic(model, objective)
    per_rank = math.ceil(len(train_idx) / ctx.world_size)
    total_steps = train.epochs * math.ceil(per_rank / train.batch_size)
    baseline = mean_baseline_mse(tensors.x.cpu(), train_idx, val_idx)
    observer = _Observer(out, spec, train, ctx, purge_step=state.step if resume else None)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(out)
        if run_config:
            from trainer.config import dumps_toml

            write_text(out / "config.toml", dumps_toml(run_config))
    stopped = "completed"
    started = time.perf_counter()
    start_epoch = state.epoch
    try:
        with observer.progress(state.epoch, train.epochs) as bar:
            while state.epoch < train.epochs:
                epoch_start = time.perf_counter()
                metrics = train_epoch(net, optimizer, tensors, state, objective=objective, train=train, ctx=ctx,
                                      total_steps=total_steps, on_step=observer.step, critic=critic)
                seconds = time.perf_counter() - epoch_start
                val = evaluate(model, tensors, step=state.step, objective=objective, ctx=ctx,
                               batch_size=train.batch_size)
                state.epoch += 1
                record = _record(state.epoch, metrics, val, baseline, seconds, len(train_idx))
                state.history.append(record)
                improved = _update_best(state, record, train)
                if ctx.is_main:
                    _save(model, optimizer, state, out, improved, spec=spec, train=train, objective=objective,
                          classes=data.classes, run_config=run_config)
                    observer.epoch(state, record, val, model, tensors)
                bar.advance(record)
                if train.patience and state.bad_epochs >= train.patience:
                    stopped = "early_stopping"
                    break
    finally:
        observer.close()
    dist_.barrier(ctx)
    summary = _summary(state, data, train_idx, val_idx, baseline, stopped, ctx,
                       seconds=time.perf_counter() - started, epochs_run=state.epoch - start_epoch)
    if ctx.is_main:
        write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        _write_samples(out / "samples", out / "best.pt", tensors, train)
        observer.log_summary(summary)
    return summary


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


def _save(model: VAE, optimizer: torch.optim.Optimizer, state: _State, out: Path, improved: bool,
          **meta: Any) -> None:
    ckpt = _checkpoint(model, optimizer, state, **meta)
    save_checkpoint(out / "last.pt", ckpt)
    if improved:
        save_checkpoint(out / "best.pt", ckpt)


def _summary(state: _State, data: TrainingArrays, train_idx: np.ndarray, val_idx: np.ndarray, baseline: float,
             stopped: str, ctx: DistContext, *, seconds: float, epochs_run: int) -> dict[str, Any]:
    last = state.history[-1] if state.history else {}
    best = next((r for r in state.history if r["epoch"] == state.best_epoch), last)
    return {
        "stopped": stopped, "epochs": state.epoch, "epochs_this_run": epochs_run, "steps": state.step,
        "seconds": seconds, "device": str(ctx.device), "world_size": ctx.world_size,
        "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "classes": list(data.classes),
        "baseline_mean_spectrogram_mse": baseline, "best_epoch": state.best_epoch,
        "best": {k: v for k, v in best.items() if k.startswith(("val_", "latent_"))},
        "last": {k: v for k, v in last.items() if k != "epoch"},
    }


# ================================================================================================ observability
class _Observer:
    """TensorBoard + rich progress on rank 0; does nothing on other ranks."""

    def __init__(self, out: Path, spec: SpectrogramSpec, train: TrainConfig, ctx: DistContext, *,
                 purge_step: int | None) -> None:
        self.spec, self.train, self.ctx = spec, train, ctx
        self.writer = None
        if ctx.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(out / "tensorboard"), purge_step=purge_step)

    def progress(self, done: int, total: int) -> "_Progress":
        return _Progress(done, total, enabled=self.ctx.is_main and self.train.progress)

    def step(self, step: int, parts: LossParts, lr: float) -> None:
        if self.writer is None or step % self.train.log_every:
            return
        for name, value in zip(("total", "recon", "kl", "kl_free_bits"), parts[:4]):
            self.writer.add_scalar(f"train_step/{name}", float(value), step)
        self.writer.add_scalar("train_step/beta", parts.beta, step)
        self.writer.add_scalar("train_step/lr", lr, step)

    def epoch(self, state: _State, record: dict[str, Any], val: dict[str, Any], model: VAE, data: _Data) -> None:
        w, step = self.writer, state.step
        for key, value in record.items():
            group, _, name = key.partition("_")
            if key != "epoch":
                w.add_scalar(f"{group}/{name}", float(value), step)
        for i, value in enumerate(val.get("kl_per_dim", [])):
            w.add_scalar(f"latent_kl_per_dim/{i:02d}", value, step)
        every = self.train.media_every
        if every and self.train.n_media and (state.epoch % every == 0 or state.epoch == self.train.epochs):
            self._media(model, data, step)
        w.flush()

    @torch.no_grad()
    def _media(self, model: VAE, data: _Data, step: int) -> None:
        from trainer.spec import features_to_waveform

        model.eval()
        batch = data.batch(data.val_idx[: self.train.n_media])
        recon = _reconstruct(model, batch)[2].float().cpu()
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


# ================================================================================================ samples
@torch.no_grad()
def _write_samples(folder: Path, best: Path, data: _Data, train: TrainConfig) -> None:
    """WAVs of the best model's validation reconstructions and prior samples (per class for a CVAE)."""
    from trainer.checkpoint import load_model
    from trainer.spec import features_to_waveform

    if not train.n_media or not best.is_file():
        return
    model, spec, ckpt = load_model(best, device=data.x.device)
    folder.mkdir(parents=True, exist_ok=True)
    batch = data.batch(data.val_idx[: train.n_media])
    sets = {"recon": _reconstruct(model, dataclasses.replace(batch, x=batch.x.contiguous()))[2]}
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
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "class"

