"""Bandwidth extension of a 22.05 kHz model: a small network predicts the band above 11 kHz from the band below.

The shipped kick model is a ``kick-22k`` VAE: nothing above 11.025 kHz. Rather than retrain the VAE on a wider
representation (which would change its latent, pads and knobs), a separate :class:`HighBandNet` maps the VAE's
128 x 128 low-band features (``kick-22k``, equal to ``kick-44k-low`` of the same sound at 44.1 kHz) to the 32 rows
of ``kick-44k-high`` (HTK mels over 9-22.05 kHz on the same 5.8 ms frame grid). The exported two-band decoder
(``export/two_band.py``) renders the two bands and sums them through a crossover, so the band below 9.5 kHz is the
VAE's own by construction (``benchmarks/README.md``, "Full band for the kick model").

``trainer highband DATA... --out RUN`` (:func:`fit_highband`) prepares every sound once at 44.1 kHz through the
training ingest (the same preparation, cache and skip rules as ``trainer fit``), computes input = low features and
target = high features, holds out a seeded split, trains with MSE (a little input noise, so the net tolerates a
decoder's smoother features) and writes ``RUN/highband.pt`` atomically: a plain dict of tensors and numbers
(``format_version``, ``config``, ``low_spec``, ``high_spec``, ``model_state``, ``history``, ``metrics``) read
back weights-only by :func:`load_highband`.

Resuming, as ``trainer fit`` resumes: after every epoch ``RUN/highband-last.pt`` (:data:`STATE_FILE`) is written
atomically with everything the loop needs to go on (the net, Adam's and the cosine schedule's state, the batch
generator, the best epoch's weights, the history) and a fingerprint of the data, so a killed run continues with
``--resume`` and ends with the weights an uninterrupted run ends with. A folder holding that file is refused
without ``--resume`` (so a second run cannot silently overwrite the first); ``--resume`` continues with the run's
own settings, of which only ``epochs`` and ``threads`` may change.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
from runtime.files import atomic_path, remove_stale_temporaries
from runtime.schema import check_fields, require, require_positive_ints
from runtime.spec import SpectrogramSpec, get_spec

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: The file ``trainer highband`` writes into its run folder and ``python -m export onnx`` looks for in a run.
HIGHBAND_FILE = "highband.pt"
#: The training state ``trainer highband`` writes after every epoch and ``--resume`` continues from.
STATE_FILE = "highband-last.pt"
#: Config fields a resumed run may change (everything else shapes the net, the data or the batches).
RESUMABLE = ("epochs", "threads")


@dataclass(frozen=True)
class HighBandConfig:
    """The network's shape and its training (saved in the checkpoint).

    Parameters
    ----------
    low_spec, high_spec : str
        Named specs (:data:`runtime.spec.SPECS`) of the input and the predicted band; both at one rate and frame
        grid, so one prepared sound gives both.
    hidden, layers, kernel : int
        Conv1d width, number of convolutions (>= 2) and their kernel over time (odd).
    epochs, batch_size, lr, noise, val_fraction, seed, threads
        Training: Adam at ``lr`` (cosine to 1 % of it), input noise of std ``noise`` (normalised units), the
        held-out fraction, the seed of the split, the init and the batches, and torch's CPU threads.
    balance_roots : bool
        Draw each data root's sounds equally often (with replacement) and weigh each root equally in the held-out
        MSE: a few real kicks beside many synthetic ones then count as much as those.
    """

    low_spec: str = "kick-44k-low"
    high_spec: str = "kick-44k-high"
    hidden: int = 128
    layers: int = 3
    kernel: int = 5
    epochs: int = 150
    batch_size: int = 64
    lr: float = 2e-3
    noise: float = 0.02
    val_fraction: float = 0.1
    seed: int = 0
    threads: int = 1
    balance_roots: bool = False

    def __post_init__(self) -> None:
        require_positive_ints(self, ("hidden", "layers", "kernel", "epochs", "batch_size", "threads"), where="highband")
        require(self.layers >= 2, "highband.layers", f"must be at least 2, got {self.layers}")
        require(self.kernel % 2 == 1, "highband.kernel", f"must be odd (centred in time), got {self.kernel}")
        require(isinstance(self.lr, (int, float)) and self.lr > 0, "highband.lr", f"must be positive, got {self.lr}")
        require(isinstance(self.noise, (int, float)) and self.noise >= 0, "highband.noise",
                f"must be >= 0, got {self.noise}")
        require(isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1, "highband.val_fraction",
                f"must be in (0, 1), got {self.val_fraction}")
        low, high = self.specs()
        require(low.sample_rate == high.sample_rate and low.hop_length == high.hop_length
                and low.frames == high.frames, "highband.high_spec",
                f"{self.high_spec} must share {self.low_spec}'s rate, hop and frames (one prepared sound gives both)")

    def specs(self) -> tuple[SpectrogramSpec, SpectrogramSpec]:
        """The low (input) and high (predicted) specs."""
        return get_spec(self.low_spec), get_spec(self.high_spec)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "highband") -> "HighBandConfig":
        """Build from :func:`dataclasses.asdict` output; unknown or invalid fields fail naming ``where.FIELD``."""
        return cls(**check_fields(data, cls, where=where))


class HighBandNet(nn.Module):
    """Low features ``[B, 1, M_low, T]`` -> high features ``[B, 1, M_high, T]``, both normalised to [-1, 1].

    Mel bins are channels and the convolutions run over time (``kernel`` frames, centred), GELU between; the output
    is clamped to [-1, 1], so a silent high band comes out exactly at the floor (-1), which the decoder's floor gate
    renders as digital silence rather than hiss.
    """

    def __init__(self, config: HighBandConfig) -> None:
        super().__init__()
        low, high = config.specs()
        widths = [low.n_bins] + [config.hidden] * (config.layers - 1) + [high.n_bins]
        layers: list[nn.Module] = []
        for i in range(config.layers):
            layers.append(nn.Conv1d(widths[i], widths[i + 1], config.kernel, padding=config.kernel // 2))
            if i < config.layers - 1:
                layers.append(nn.GELU())
        with torch.no_grad():  # start near the floor, where most of a kick's high band is
            layers[-1].bias.fill_(-0.9)
        self.net = nn.Sequential(*layers)
        self.config = config

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.net(low[:, 0]), -1.0, 1.0)[:, None]


# ================================================================================================= checkpoint
def save_highband(path: str | Path, net: HighBandNet, *, history: list[dict[str, float]],
                  metrics: dict[str, Any]) -> Path:
    """Write ``net`` with its config and specs to ``path`` atomically (temp file, fsync, ``os.replace``)."""
    low, high = net.config.specs()
    data = {"format_version": FORMAT_VERSION, "config": dataclasses.asdict(net.config), "low_spec": low.to_dict(),
            "high_spec": high.to_dict(), "model_state": {k: v.detach().clone() for k, v in net.state_dict().items()},
            "history": list(history), "metrics": dict(metrics)}
    with atomic_path(path, fsync=True) as tmp:
        torch.save(data, tmp)
    return Path(path)


def load_highband(path: str | Path) -> tuple[HighBandNet, dict[str, Any]]:
    """Read a checkpoint of :func:`save_highband` (``weights_only=True``) -> the network (eval mode) and the dict.

    Raises :class:`KickspaceError` (one line naming ``path``) for a missing, foreign or mismatched file: its
    specs must be the named specs its config names, so a changed spec definition cannot pass silently.
    """
    path = Path(path)
    if not path.is_file():
        raise KickspaceError(f"{path}: no such high-band checkpoint (write one with `trainer highband DATA --out RUN`)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt, foreign or code-carrying files
        first = (str(err).strip().splitlines() or [""])[0]
        raise KickspaceError(f"{path}: not a readable high-band checkpoint ({type(err).__name__}: {first})") from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION or "model_state" not in data:
        raise KickspaceError(f"{path}: not a high-band checkpoint of format version {FORMAT_VERSION} "
                             "(written by `trainer highband`)")
    try:
        config = HighBandConfig.from_dict(data.get("config"))
    except ConfigError as err:
        raise KickspaceError(f"{path}: config: {err}") from None
    low, high = config.specs()
    if data.get("low_spec") != low.to_dict() or data.get("high_spec") != high.to_dict():
        raise KickspaceError(f"{path}: its specs differ from today's {config.low_spec} / {config.high_spec}")
    net = HighBandNet(config)
    net.load_state_dict(data["model_state"])
    return net.eval(), data


# ==================================================================================================== training
def band_pairs(roots: Sequence[Path], config: HighBandConfig, *, preprocess, layout: str = "auto",
               cache_dir: Path | None = None, use_cache: bool = True) -> tuple[np.ndarray, np.ndarray, Any]:
    """Ingest ``roots`` at the low spec (the training ingest: bad files skipped with a reason and counted) ->
    low features ``[N, 1, M_low, T]``, high features ``[N, 1, M_high, T]`` of the same prepared audio, the
    :class:`trainer.data.ingest.Corpus` (paths, skip summary)."""
    from trainer.data.ingest import ingest
    from trainer.spec import waveform_to_features

    low_spec, high_spec = config.specs()
    corpus = ingest(list(roots), spec=low_spec, preprocess=preprocess, layout=layout, cache_dir=cache_dir,
                    use_cache=use_cache, progress=False)
    if len(corpus) < 2:
        raise KickspaceError(f"{len(corpus)} usable sounds in {', '.join(map(str, roots))}: need at least 2 "
                             "(one to train on, one to hold out)")
    high = np.concatenate([waveform_to_features(corpus.audio[i:i + 64], high_spec).numpy()
                           for i in range(0, len(corpus), 64)])
    return corpus.features.astype(np.float32), high.astype(np.float32), corpus


def split(n: int, config: HighBandConfig) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / held-out indices (at least one of each)."""
    order = np.random.default_rng(config.seed).permutation(n)
    n_val = min(n - 1, max(1, round(n * config.val_fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _mse(net: HighBandNet, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> float:
    """MSE of each sound ``[N]``, averaged with ``weight`` (summing to 1)."""
    with torch.no_grad():
        each = torch.cat([((net(x[i:i + 256]) - y[i:i + 256]) ** 2).mean(dim=(1, 2, 3)) for i in range(0, len(x), 256)])
    return float((each * weight).sum())


def _weights(groups: np.ndarray, index: np.ndarray, balance: bool) -> torch.Tensor:
    """Per-sound weights of ``index`` summing to 1: equal, or equal per group (data root) when ``balance``."""
    if not balance:
        return torch.full((len(index),), 1.0 / len(index), dtype=torch.float64)
    g = groups[index]
    counts = {k: int((g == k).sum()) for k in np.unique(g)}
    return torch.tensor([1.0 / (counts[k] * len(counts)) for k in g], dtype=torch.float64)


def train(low: np.ndarray, high: np.ndarray, config: HighBandConfig, groups: np.ndarray | None = None, *,
          state: str | Path | None = None, resume: bool = False) -> tuple[HighBandNet, list, dict]:
    """Fit a :class:`HighBandNet` -> the best held-out epoch's net, the per-epoch history and the metrics
    (held-out MSE, and the baseline of predicting the training set's mean high spectrogram for every sound).

    ``groups``: each sound's data root (``config.balance_roots``). ``state``: a file written atomically after every
    epoch (:func:`_save_state`); ``resume`` continues from it (:func:`_restore`) and ends where an uninterrupted
    run of ``config`` ends: the same weights, history (but its seconds) and metrics.
    """
    torch.manual_seed(config.seed)
    train_i, val_i = split(len(low), config)
    loop = _Loop(config, torch.Generator().manual_seed(config.seed), len(train_i))
    x, y = torch.from_numpy(low), torch.from_numpy(high)
    xt, yt, xv, yv = x[train_i], y[train_i], x[val_i], y[val_i]
    groups = np.zeros(len(low), np.int64) if groups is None else np.asarray(groups)
    draw, val_w = _weights(groups, train_i, config.balance_roots), _weights(groups, val_i, config.balance_roots)
    baseline = float((((yv - yt.mean(dim=0, keepdim=True)) ** 2).mean(dim=(1, 2, 3)) * val_w).sum())
    data_hash = _fingerprint(low, high, groups) if state is not None else ""
    if resume:
        _restore(Path(state), loop, data_hash)
    for epoch in range(len(loop.history), config.epochs):
        start = time.perf_counter()
        train_mse = loop.epoch(xt, yt, draw)
        val = _mse(loop.net, xv, yv, val_w)
        loop.history.append({"epoch": epoch + 1, "train_mse": train_mse, "val_mse": val,
                             "seconds": time.perf_counter() - start})
        log.info(f"highband epoch {epoch + 1}/{config.epochs}: train {train_mse:.5f} val {val:.5f} "
                 f"(baseline {baseline:.5f})")
        if val < loop.best:
            loop.best, loop.best_state = val, {k: v.detach().clone() for k, v in loop.net.state_dict().items()}
        if state is not None:
            _save_state(Path(state), loop, data_hash)
    net, history, best = loop.net, loop.history, loop.best
    net.load_state_dict(loop.best_state)
    metrics = {"val_mse": best, "baseline_mse": baseline, "val_ratio": best / baseline if baseline else math.nan,
               "best_epoch": int(np.argmin([h["val_mse"] for h in history])) + 1, "train_n": len(xt),
               "val_n": len(xv), "val_indices": val_i.tolist()}
    return net.eval(), history, metrics


class _Loop:
    """What one epoch changes and a resumed run restores: the net, Adam, the cosine schedule (over every step of
    ``config.epochs`` on ``n_train`` sounds), the batch and noise generator, the best held-out epoch, the history."""

    def __init__(self, config: HighBandConfig, gen: torch.Generator, n_train: int) -> None:
        self.config, self.gen = config, gen
        self.net = HighBandNet(config)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.steps = config.epochs * math.ceil(n_train / config.batch_size)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=self.steps, eta_min=config.lr * 0.01)
        self.best, self.best_state, self.history = math.inf, None, []

    def epoch(self, xt: torch.Tensor, yt: torch.Tensor, draw: torch.Tensor) -> float:
        """One pass over the training sounds (drawn by ``draw`` when balancing roots) -> their mean MSE."""
        config, net = self.config, self.net
        net.train()
        order = (torch.multinomial(draw, len(xt), replacement=True, generator=self.gen) if config.balance_roots
                 else torch.randperm(len(xt), generator=self.gen))
        total = 0.0
        for batch in order.split(config.batch_size):
            inputs = xt[batch] + config.noise * torch.randn(xt[batch].shape, generator=self.gen)
            loss = nn.functional.mse_loss(net(torch.clamp(inputs, -1.0, 1.0)), yt[batch])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.sched.step()
            total += loss.item() * len(batch)
        net.eval()
        return total / len(xt)


def _fingerprint(low: np.ndarray, high: np.ndarray, groups: np.ndarray) -> str:
    """A hash of the training arrays: a resumed run must see the data its state was trained on."""
    digest = hashlib.sha1()
    for array in (low, high, groups):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _save_state(path: Path, loop: _Loop, fingerprint: str) -> None:
    """Write the loop's state (:data:`STATE_FILE`) atomically: a kill mid-write leaves the previous epoch's."""
    data = {"format_version": FORMAT_VERSION, "config": dataclasses.asdict(loop.config), "data": fingerprint,
            "model_state": loop.net.state_dict(), "optimizer_state": loop.opt.state_dict(),
            "scheduler_state": loop.sched.state_dict(), "generator": loop.gen.get_state(),
            "best_val": loop.best, "best_state": loop.best_state, "history": list(loop.history)}
    with atomic_path(path, fsync=True) as tmp:
        torch.save(data, tmp)


def _read_state(path: Path) -> dict[str, Any]:
    """:func:`_save_state`'s dict (weights-only); :class:`KickspaceError` naming ``path`` if it is not one."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        first = (str(err).strip().splitlines() or [""])[0]
        raise KickspaceError(f"{path}: not a readable high-band training state ({type(err).__name__}: {first})") \
            from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION or "generator" not in data:
        raise KickspaceError(f"{path}: not a high-band training state of format version {FORMAT_VERSION}")
    return data


def saved_config(out: str | Path) -> HighBandConfig:
    """The config of the high-band run in the folder ``out`` (its :data:`STATE_FILE`): what ``--resume`` goes on
    with unless told otherwise. Raises :class:`KickspaceError` when there is no run to resume."""
    path = Path(out) / STATE_FILE
    if not path.is_file():
        raise KickspaceError(f"{out}: nothing to resume (no {STATE_FILE}); drop --resume to start a new run")
    try:
        return HighBandConfig.from_dict(_read_state(path)["config"])
    except ConfigError as err:
        raise KickspaceError(f"{path}: config: {err}") from None


def _restore(path: Path, loop: _Loop, fingerprint: str) -> None:
    """Load :func:`_save_state`'s file into ``loop``.

    Raises :class:`ConfigError` naming the field when the run's config differs outside :data:`RESUMABLE`, and
    :class:`KickspaceError` for an unreadable file or other data.
    """
    data = _read_state(path)
    saved = HighBandConfig.from_dict(data["config"])
    for name in (f.name for f in dataclasses.fields(HighBandConfig) if f.name not in RESUMABLE):
        require(getattr(saved, name) == getattr(loop.config, name), f"highband.{name}",
                f"is {getattr(loop.config, name)!r}, the run in {path.parent} has {getattr(saved, name)!r} "
                f"(a resumed run may change only {', '.join(RESUMABLE)})")
    if data["data"] != fingerprint:
        raise KickspaceError(f"{path.parent}: the data differ from those the run was trained on (other files, "
                             "order or preparation); resume with the same data roots and options")
    loop.net.load_state_dict(data["model_state"])
    loop.opt.load_state_dict(data["optimizer_state"])
    loop.gen.set_state(data["generator"])
    loop.sched.load_state_dict(data["scheduler_state"])
    loop.sched.T_max = loop.steps                  # more epochs than the run had: the cosine reaches its end later
    loop.best, loop.best_state = data["best_val"], data["best_state"]
    loop.history = list(data["history"])


def fit_highband(roots: Sequence[Path], *, out: str | Path, config: HighBandConfig = HighBandConfig(),
                 preprocess=None, layout: str = "auto", cache_dir: Path | None = None, use_cache: bool = True,
                 resume: bool = False) -> tuple[Path, dict[str, Any]]:
    """``trainer highband``: ingest, train (saving :data:`STATE_FILE` every epoch), write ``out/highband.pt`` ->
    its path and the metrics. ``resume`` continues the run in ``out`` (the module docstring).

    Raises :class:`KickspaceError` when ``out`` holds a run and not ``resume``, or ``resume`` finds none.
    """
    from trainer.data.audio import Preprocess

    out = Path(out)
    state = out / STATE_FILE
    if resume and not state.is_file():
        raise KickspaceError(f"{out}: nothing to resume (no {STATE_FILE}); drop --resume to start a new run")
    if not resume and state.exists():
        raise KickspaceError(f"{out} already holds a high-band run ({STATE_FILE}); pass --resume to continue it "
                             "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    for name in (STATE_FILE, HIGHBAND_FILE):       # a killed run's half-written files
        remove_stale_temporaries(out / name)
    torch.set_num_threads(config.threads)
    low, high, corpus = band_pairs(roots, config, preprocess=preprocess or Preprocess(), layout=layout,
                                    cache_dir=cache_dir, use_cache=use_cache)
    roots = [Path(r) for r in roots]
    groups = np.array([next(i for i, r in enumerate(roots) if Path(p).is_relative_to(r)) for p in corpus.paths])
    net, history, metrics = train(low, high, config, groups, state=state, resume=resume)
    metrics.update(kept=len(low), skipped=len(corpus.summary.skipped),
                   parameters=sum(p.numel() for p in net.parameters()))
    return save_highband(out / HIGHBAND_FILE, net, history=history, metrics=metrics), metrics
