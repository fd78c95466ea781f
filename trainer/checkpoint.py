"""THE checkpoint format: what a training run leaves behind, and the only code that reads it.

A checkpoint is a ``torch.save`` of a plain dict (tensors, numbers, strings, lists, dicts), so it loads with
``torch.load(..., weights_only=True)`` and never executes pickled code. It is self-describing: the model config,
the spectrogram spec and the training config travel with the weights, and a file lacking them is refused. Writes
are atomic (temporary file in the same folder + ``os.replace``), so a crash or SIGKILL mid-write leaves the previous
checkpoint intact.

Keys (format version 1): ``format_version``, ``model_config`` (``ModelConfig.to_dict``), ``spec``
(``SpectrogramSpec.to_dict``), ``train_config`` (dict), ``classes`` (list of str), ``model_state``,
``optimizer_state`` (or None), ``epoch`` (completed epochs), ``step`` (optimiser steps), ``history`` (one dict of
metrics per epoch), ``rng`` (dict of RNG state tensors), ``progress`` (loop bookkeeping: best metric, patience),
``config`` (the merged run config as written to ``config.toml``).

A run folder holds :data:`BEST` and :data:`LAST`; :func:`resolve_checkpoint` is the one rule that turns a run
folder or a checkpoint file into the file to read, so the analyses and export accept the same inputs and refuse
the same way.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from runtime.errors import KickspaceError
from runtime.files import atomic_path
from runtime.spec import SpectrogramSpec
from trainer.vae import VAE, ModelConfig, build_model

FORMAT_VERSION = 1
REQUIRED = ("format_version", "model_config", "spec", "train_config", "model_state")
#: The checkpoints ``trainer fit`` writes into a run folder: the best validation epoch, and the latest epoch.
BEST, LAST = "best.pt", "last.pt"


@dataclass
class Checkpoint:
    """In-memory form of a checkpoint (see the module docstring for the fields)."""

    model_config: ModelConfig
    spec: SpectrogramSpec
    train_config: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    classes: list[str] = field(default_factory=list)
    optimizer_state: dict[str, Any] | None = None
    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The dict that is written to disk."""
        return {
            "format_version": FORMAT_VERSION,
            "model_config": self.model_config.to_dict(),
            "spec": self.spec.to_dict(),
            "train_config": dict(self.train_config),
            "classes": list(self.classes),
            "model_state": self.model_state,
            "optimizer_state": self.optimizer_state,
            "epoch": int(self.epoch),
            "step": int(self.step),
            "history": list(self.history),
            "rng": dict(self.rng),
            "progress": dict(self.progress),
            "config": dict(self.config),
        }


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temp file in the same folder, fsync, ``os.replace``)."""
    with atomic_path(path, fsync=True) as tmp:
        torch.save(checkpoint.to_dict(), tmp)
    return Path(path)


def resolve_checkpoint(path: str | Path, name: str = BEST) -> Path:
    """The checkpoint file meant by ``path``: a checkpoint file itself, or the checkpoint ``name`` in a run folder.

    The one rule by which every command (``trainer analyze`` and the other analyses, ``python -m export onnx``)
    turns what a person typed into a file, so they all accept the same inputs.

    Parameters
    ----------
    path : path
        A checkpoint file (returned as given, whatever ``name`` says), or a run folder written by ``trainer fit``.
    name : str
        The file inside a run folder. :data:`BEST` (the default) falls back to :data:`LAST` when absent: ``trainer
        fit`` writes ``last.pt`` before ``best.pt``, so a run stopped between the two has only ``last.pt``. Any
        other name (``last.pt``, a copy such as ``epoch10.pt``) is taken exactly, without fallback.

    Raises
    ------
    KickspaceError
        One line naming ``path`` and what was looked for, when no such file exists.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise KickspaceError(f"{path}: no checkpoint: neither a checkpoint file nor a run folder (train one with "
                             f"`trainer fit DATA --out {path}`)")
    names = (name, LAST) if name == BEST else (name,)
    found = next((path / n for n in names if (path / n).is_file()), None)
    if found is None:
        raise KickspaceError(f"{path}: no checkpoint: no {' or '.join(names)} in this folder (is it a run folder "
                             "written by `trainer fit`?)")
    return found


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises
    ------
    KickspaceError
        If the file is missing, unreadable, of another format version, or lacks its configs.
    """
    path = Path(path)
    if not path.is_file():
        raise KickspaceError(f"{path}: no such checkpoint")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # weights-only refusal: objects or code beyond tensors and numbers
        raise KickspaceError(f"{path}: refused: not a file of plain tensors and numbers ({_refusal_reason(err)}); "
                             "Kickspace loads checkpoints weights-only and never runs code from a file") from None
    except Exception as err:  # torch raises several types for corrupt / foreign files
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise KickspaceError(f"{path}: not a readable Kickspace checkpoint ({type(err).__name__}: {first})") from None
    if not isinstance(data, dict):
        raise KickspaceError(f"{path}: not a Kickspace checkpoint (top level is {type(data).__name__}, not a dict)")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise KickspaceError(f"{path}: checkpoint lacks {', '.join(missing)}; it cannot be rebuilt without its "
                             "config (was it saved by `trainer fit`?)")
    if data["format_version"] != FORMAT_VERSION:
        raise KickspaceError(f"{path}: checkpoint format version {data['format_version']!r} is not supported "
                             f"(this code reads version {FORMAT_VERSION})")
    return Checkpoint(
        model_config=ModelConfig.from_dict(data["model_config"]),
        spec=SpectrogramSpec.from_dict(data["spec"]),
        train_config=dict(data["train_config"]),
        model_state=data["model_state"],
        classes=list(data.get("classes", [])),
        optimizer_state=data.get("optimizer_state"),
        epoch=int(data.get("epoch", 0)),
        step=int(data.get("step", 0)),
        history=list(data.get("history", [])),
        rng=dict(data.get("rng", {})),
        progress=dict(data.get("progress", {})),
        config=dict(data.get("config", {})),
    )


def _refusal_reason(err: pickle.UnpicklingError) -> str:
    """The one line of torch's weights-only refusal that says what was found, without its advice to load unsafely.

    torch's message is several paragraphs (a suggestion to re-run with weights-only loading off, a link); only
    the line naming the offending global or opcode is kept.
    """
    for line in str(err).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and "weights_only" not in line and not line.startswith(("Weights only load failed", "Check the",
                                                                          "Please file")):
            return line.rstrip(".")
    return "not a plain tensor file"


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[VAE, SpectrogramSpec, Checkpoint]:
    """Rebuild the trained model of a checkpoint, in eval mode on ``device``.

    Returns
    -------
    model : VAE
    spec : SpectrogramSpec
        The features the model expects.
    checkpoint : Checkpoint
        Everything else (class names, training config, metrics history).
    """
    checkpoint = load_checkpoint(path, map_location=device)
    model = build_model(checkpoint.model_config)
    model.load_state_dict(checkpoint.model_state)
    return model.to(device).eval(), checkpoint.spec, checkpoint
