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
from runtime.spec import SpectrogramSpec, get_spec
from trainer.fit import TrainConfig
from trainer.model import ModelConfig, get_model_config
from trainer.objective import ObjectiveConfig

LAYOUTS = ("auto", "flat", "bank", "nsynth")
LOUDNESS = ("lufs", "peak", "none")
CONDITIONING = ("class", "pitch")
_MODEL_DERIVED = ("input_shape", "n_classes")


@dataclass(frozen=True)
class DataConfig:
    """Which features to train on: spectrogram spec and ingestion options (``[data]``)."""

    spec: str | dict[str, Any] = "kick"
    channels: int | None = None
    layout: str = "auto"
    loudness: str = "lufs"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ConfigError("data.layout", f"must be one of {LAYOUTS}, got {self.layout!r}")
        if self.loudness not in LOUDNESS:
            raise ConfigError("data.loudness", f"must be one of {LOUDNESS}, got {self.loudness!r}")

    def resolve_spec(self) -> SpectrogramSpec:
        """The spectrogram spec: a named one (optionally re-channelled) or a table of fields."""
        spec = get_spec(self.spec) if isinstance(self.spec, str) else SpectrogramSpec.from_dict(dict(self.spec))
        return spec if self.channels is None else dataclasses.replace(spec, channels=self.channels)


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
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"{section}.{key}", f"unknown key (known: {', '.join(sorted(known))})")
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(section, str(err)) from None


def _model_table(values: Mapping[str, Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(ModelConfig)} - set(_MODEL_DERIVED)
    for key in values:
        if key in _MODEL_DERIVED:
            raise ConfigError(f"model.{key}", "is derived (input_shape from data.spec, n_classes from the data); "
                                              "remove it")
        if key not in known | {"preset", "conditioning"}:
            raise ConfigError(f"model.{key}", f"unknown key (known: preset, conditioning, {', '.join(sorted(known))})")
    conditioning = list(values.get("conditioning", []))
    for item in conditioning:
        if item not in CONDITIONING:
            raise ConfigError("model.conditioning", f"items must be in {CONDITIONING}, got {item!r}")
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
