"""Run configuration for ``trainer fit``: a TOML file plus dotted command-line overrides, merged and validated.

Layers, later wins: dataclass defaults -> the model preset named by ``model.preset`` -> the TOML file -> each
``--set section.key=value``. Values of ``--set`` are parsed as TOML values (``train.lr=1e-3``,
``model.widths=[8,16]``, ``data.spec="nsynth"``) and fall back to a plain string (``data.spec=nsynth``). Unknown
sections or keys raise :class:`~runtime.errors.ConfigError` naming the dotted key.

Sections
--------
``[data]``       spec (a name from ``runtime.spec.SPECS`` or a table of spec fields), channels, layout, loudness
``[model]``      preset ("kick" or "timbre"), conditioning (list of "class", "pitch"), and ``ModelConfig`` fields
                 except ``input_shape`` and ``n_classes``, which come from the spec and the data
``[objective]``  ``ObjectiveConfig`` fields
``[train]``      ``TrainConfig`` fields
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from runtime.errors import ConfigError
from runtime.schema import check_fields, require
from runtime.spec import SpectrogramSpec, get_spec
from trainer.distributed import DEVICES
from trainer.objective import ObjectiveConfig
from trainer.vae import ModelConfig, get_model_config

LAYOUTS = ("auto", "flat", "bank", "nsynth")
LOUDNESS = ("lufs", "peak", "none")
CONDITIONING = ("class", "pitch")
LR_SCHEDULES = ("constant", "cosine")
_MODEL_DERIVED = ("input_shape", "n_classes")
#: The keys a ``[model]`` table may hold: the preset, the conditioning, and every ModelConfig field not derived.
_ModelTable = dataclasses.make_dataclass(
    "_ModelTable", ["preset", "conditioning",
                    *(f.name for f in dataclasses.fields(ModelConfig) if f.name not in _MODEL_DERIVED)])


@dataclass(frozen=True)
class DataConfig:
    """Which features to train on: spectrogram spec and ingestion options (``[data]``)."""

    spec: str | dict[str, Any] = "kick"
    channels: int | None = None
    layout: str = "auto"
    loudness: str = "lufs"

    def __post_init__(self) -> None:
        require(self.layout in LAYOUTS, "data.layout", f"must be one of {LAYOUTS}, got {self.layout!r}")
        require(self.loudness in LOUDNESS, "data.loudness", f"must be one of {LOUDNESS}, got {self.loudness!r}")

    def resolve_spec(self) -> SpectrogramSpec:
        """The spectrogram spec: a named one (optionally re-channelled) or a table of fields."""
        spec = get_spec(self.spec) if isinstance(self.spec, str) else SpectrogramSpec.from_dict(dict(self.spec))
        return spec if self.channels is None else dataclasses.replace(spec, channels=self.channels)


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
        require(self.epochs > 0, "train.epochs", f"must be positive, got {self.epochs}")
        require(self.batch_size > 0, "train.batch_size", f"must be positive, got {self.batch_size}")
        require(self.lr > 0, "train.lr", f"must be positive, got {self.lr}")
        require(self.lr_schedule in LR_SCHEDULES, "train.lr_schedule", f"must be one of {LR_SCHEDULES}")
        require(0 < self.val_fraction < 1, "train.val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        require(self.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 disables)")
        require(self.patience >= 0, "train.patience", "must be >= 0 (0 disables)")
        require(self.device in DEVICES, "train.device", f"must be one of {DEVICES}")
        require(self.log_every > 0, "train.log_every", "must be positive")
        require(self.media_every >= 0 and self.n_media >= 0, "train.media_every", "must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (what checkpoints and ``config.toml`` store)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunConfig:
    """The merged, validated configuration of one run (what ``config.toml`` holds)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "kick", "conditioning": []})
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def model_config(self, spec: SpectrogramSpec, *, n_classes: int = 0) -> ModelConfig:
        """The model for ``spec`` features; ``n_classes`` is used when ``conditioning`` includes "class"."""
        fields = dict(self.model)
        base = get_model_config(fields.pop("preset", "kick")).to_dict()
        conditioning = fields.pop("conditioning", [])
        base.update(fields)
        base.update(input_shape=spec.shape, pitch_conditioning="pitch" in conditioning,
                    n_classes=n_classes if "class" in conditioning else 0)
        return ModelConfig.from_dict(base)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of every section (TOML-writable: ``None`` values are left out)."""
        data = {k: v for k, v in dataclasses.asdict(self.data).items() if v is not None}
        return {"data": data, "model": dict(self.model), "objective": self.objective.to_dict(),
                "train": self.train.to_dict()}


def load_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error becomes a :class:`ConfigError`."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("--config", f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("--config", f"{path}: invalid TOML ({err})") from None


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["train.lr=1e-3", "model.widths=[8,16]"]`` -> nested dict ``{"train": {"lr": 0.001}, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or "." not in key or not key.replace(".", "").replace("_", "").isalnum():
            raise ConfigError("--set", f"expected section.key=value, got {item!r}")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of nested dicts; ``override`` wins, tables merge key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key != "spec":
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve(raw: Mapping[str, Any]) -> RunConfig:
    """Validate a merged nested dict into a :class:`RunConfig`; unknown keys raise naming ``section.key``."""
    sections = {"data": DataConfig, "model": None, "objective": ObjectiveConfig, "train": TrainConfig}
    for name, value in raw.items():
        if name not in sections:
            raise ConfigError(name, f"unknown section (known: {', '.join(sections)})")
        if not isinstance(value, Mapping):
            raise ConfigError(name, f"must be a table, got {type(value).__name__}")
    data = _build(DataConfig, "data", raw.get("data", {}))
    objective = _build(ObjectiveConfig, "objective", raw.get("objective", {}))
    train = _build(TrainConfig, "train", raw.get("train", {}))
    run = RunConfig(data=data, model=_model_table(raw.get("model", {})), objective=objective, train=train)
    run.model_config(data.resolve_spec(), n_classes=2)  # validate the model fields against the spec now
    return run


def load_run_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """TOML file (optional) + ``--set`` overrides -> validated :class:`RunConfig`."""
    raw = load_toml(path) if path is not None else {}
    return resolve(merge(raw, parse_overrides(overrides)))


def _build(cls: type, section: str, values: Mapping[str, Any]) -> Any:
    """The ``section`` table as a ``cls`` instance; an unknown key raises ConfigError naming ``section.key``."""
    try:
        return cls(**check_fields(dict(values), cls, where=section))
    except TypeError as err:
        raise ConfigError(section, str(err)) from None


def _model_table(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[model]`` table checked (a preset name, conditioning, ModelConfig fields), with defaults filled in.

    The fields are applied to the preset later (:meth:`RunConfig.model_config`), once the spec and classes are known.
    """
    for key in _MODEL_DERIVED:
        require(key not in values, f"model.{key}",
                "is derived (input_shape from data.spec, n_classes from the data); remove it")
    check_fields(dict(values), _ModelTable, where="model")
    conditioning = list(values.get("conditioning", []))
    for item in conditioning:
        require(item in CONDITIONING, "model.conditioning", f"items must be in {CONDITIONING}, got {item!r}")
    table = {"preset": "kick", **dict(values), "conditioning": conditioning}
    get_model_config(table["preset"])
    return table


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Write a two-level nested dict (sections of scalars, lists, and one level of sub-tables) as TOML."""
    lines: list[str] = []
    for section, table in data.items():
        lines.append(f"[{section}]")
        subtables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
        for key, value in table.items():
            if key not in subtables and value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        for key, sub in subtables.items():
            lines.append(f"\n[{section}.{key}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in sub.items() if v is not None)
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError("config", f"cannot write {type(value).__name__} value {value!r} as TOML")
