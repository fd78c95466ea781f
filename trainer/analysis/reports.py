"""Atomic writing of the files a person opens: JSON, Markdown, WAV; and small Markdown helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runtime.files import write_text, write_wav  # noqa: F401  (the analysis modules write through these)


def jsonable(value: Any) -> Any:
    """Numpy scalars/arrays, tuples and non-finite floats -> plain JSON values (NaN/inf become None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` (after :func:`jsonable`) as indented JSON, atomically."""
    return write_text(path, json.dumps(jsonable(data), indent=2) + "\n")


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a Markdown table (``n/a`` for None/NaN)."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):.{digits}g}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (numbers formatted with :func:`fmt`)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def read_json(path: str | Path) -> Any:
    """Parse a JSON report; a missing or broken file is a :class:`~runtime.errors.KickspaceError`."""
    from runtime.errors import KickspaceError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KickspaceError(f"{path}: no such file (run the command that writes it first)") from None
    except json.JSONDecodeError as err:
        raise KickspaceError(f"{path}: not valid JSON ({err})") from None
