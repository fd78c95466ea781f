"""The one way a schema is checked: unknown keys and invalid values raise :class:`ConfigError` naming the field.

Every contract's loader (preset, exported-model metadata, spectrogram spec, one-shot preparation, training and model
configs) validates through these functions, so a bad field reads the same wherever it is met: ``FIELD: PROBLEM``.
Torch-free and dependency-free, so the runtime's loaders and the trainer's configs share it.
"""

from __future__ import annotations

import dataclasses

from runtime.errors import ConfigError


def require(ok: bool, field: str, problem: str) -> None:
    """Raise ``ConfigError(field, problem)`` unless ``ok``: the single-value check every schema uses."""
    if not ok:
        raise ConfigError(field, problem)


def require_positive_ints(obj: object, names: tuple[str, ...], *, where: str) -> None:
    """Raise ``ConfigError(where.NAME, ...)`` unless each attribute ``NAME`` of ``obj`` is a positive ``int`` (not a
    bool): sizes also arrive as JSON, where a string or a bool would otherwise surface later as an unrelated error."""
    for name in names:
        value = getattr(obj, name)
        require(isinstance(value, int) and not isinstance(value, bool) and value > 0, f"{where}.{name}",
                f"must be a positive integer, got {value!r}")


def check_fields(data: object, cls: type, *, where: str, prefix: str | None = None) -> dict:
    """Return ``data`` if it is a dict whose keys are all fields of dataclass ``cls``; else raise ConfigError.

    ``where`` names the object in messages; an unknown key is named ``PREFIX.key`` (``prefix`` defaults to
    ``where``; pass ``""`` for top-level keys).
    """
    if not isinstance(data, dict):
        raise ConfigError(where, f"must be an object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    prefix = where if prefix is None else prefix
    for key in data:
        if key not in known:
            raise ConfigError(f"{prefix}.{key}" if prefix else str(key),
                              f"unknown field (known: {', '.join(sorted(known))})")
    return data
