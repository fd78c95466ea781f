"""DAW-ready render files: the rate, the format and the name of what ``runtime render`` writes.

A render is written at :data:`DEFAULT_RATE` (48 kHz, a DAW session's usual rate), not the model's internal rate:
the render worker resamples each pad's sound with :func:`runtime.dsp.resample` before the engine mixes it, so the
hits land on the output rate's own samples. WAV or FLAC, both 24-bit PCM: the format follows ``--format`` or the
``--out`` suffix. Given no file name (no ``--out``, or a folder), a one-shot bounce names itself after the preset and
the knob state it was rendered at (``kicks_sub+0.80_decay-0.30_pad36.wav``), a groove after the preset and the MIDI
file (``kicks_demo.wav``), so a folder of bounces reads as a sample library.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from runtime.errors import ConfigError
from runtime.files import write_audio
from runtime.preset import Preset

DEFAULT_RATE = 48_000
FORMATS = {"wav": "WAV", "flac": "FLAC"}  # --format / suffix -> soundfile's format name (both written as PCM_24)
SUBTYPE = "PCM_24"


def safe_name(text: str, *, default: str = "kick") -> str:
    """``text`` as a portable file name part: runs of anything but letters, digits, ``_.+-`` become one ``-``."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-") or default


def preset_label(preset: Preset, path: str | Path) -> str:
    """The preset's name for file names: its ``name`` field, else the file's folder (``presets/kicks``) or stem."""
    if preset.name:
        return safe_name(preset.name)
    path = Path(path)
    return safe_name(path.parent.name if path.name == "preset.json" or path.is_file() else path.name)


def one_shot_name(preset: Preset, path: str | Path, axes: dict[str, float], note: int, velocity: int = 127) -> str:
    """File stem of a one-shot: preset, each set axis as ``NAME+0.80`` (the preset's knob order first), the pad.

    ``{"decay": -0.3, "sub": 0.8}`` on pad 36 of ``kicks`` -> ``kicks_sub+0.80_decay-0.30_pad36``; a velocity
    below 127 adds ``_vel100``.
    """
    order = [k.axis for k in preset.knobs]
    names = sorted(axes, key=lambda a: (order.index(a) if a in order else len(order), list(axes).index(a)))
    parts = [preset_label(preset, path)] + [safe_name(f"{a}{axes[a]:+.2f}") for a in names] + [f"pad{note}"]
    if velocity != 127:
        parts.append(f"vel{velocity}")
    return "_".join(parts)


def groove_name(preset: Preset, path: str | Path, midi: str | Path) -> str:
    """File stem of a MIDI render: ``PRESET_MIDISTEM`` (``kicks_demo``)."""
    return f"{preset_label(preset, path)}_{safe_name(Path(midi).stem, default='groove')}"


def output_file(out: str | Path | None, fmt: str | None, stem: str) -> tuple[Path, str]:
    """Where a render goes and in which format (a key of :data:`FORMATS`).

    ``out`` ending in ``.wav`` or ``.flac`` is the file (its suffix is the format; a ``fmt`` that disagrees is an
    error). ``out`` None, an existing folder or a path without suffix is a folder: the file is ``STEM.FMT`` in it
    (``fmt`` default wav).

    Raises
    ------
    ConfigError
        ``--out`` with a suffix that is no format written here, or ``--format`` against the suffix.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError("--format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    path = Path(out) if out is not None else Path(".")
    suffix = path.suffix.lower().lstrip(".")
    if out is None or path.is_dir() or not suffix:
        return path / f"{stem}.{fmt or 'wav'}", fmt or "wav"
    if suffix not in FORMATS:
        raise ConfigError("--out", f"{path}: .{suffix} is not a format runtime render writes ({', '.join(FORMATS)})")
    if fmt is not None and fmt != suffix:
        raise ConfigError("--format", f"{fmt} but --out {path} ends in .{suffix}")
    return path, suffix


def write_render(path: str | Path, audio: np.ndarray, rate: int, fmt: str = "wav") -> str:
    """Write ``audio`` ``[frames, channels]`` as 24-bit ``fmt`` at ``rate``; returns the one line that says so."""
    path = write_audio(path, audio, rate, format=FORMATS[fmt], subtype=SUBTYPE)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (f"wrote {path} ({audio.shape[0] / rate:.2f} s, {rate} Hz, {audio.shape[1]} ch, 24-bit {fmt.upper()}, "
            f"peak {20 * np.log10(max(peak, 1e-9)):.1f} dBFS)")
