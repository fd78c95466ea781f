"""Atomic file writes shared by every package: a crash or SIGKILL mid-write leaves the previous file intact.

Write to a temporary file in the target's folder, then ``os.replace`` it over the target (atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed.

    The temporary name keeps the suffix (libraries that pick a format from it still work) and starts with a dot.
    ``fsync=True`` flushes the data to disk before the rename (checkpoints: survives a power cut, not just a kill).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes files 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int, *, subtype: str = "PCM_24") -> Path:
    """Write ``audio`` ``[N]`` (mono) or ``[C, N]`` as a WAV file atomically (:func:`write_audio`)."""
    return write_audio(path, audio, sample_rate, subtype=subtype)


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, *, format: str = "WAV",
                subtype: str = "PCM_24") -> Path:
    """Write ``audio`` ``[N]`` (mono) or ``[C, N]`` atomically in soundfile ``format`` (``WAV``, ``FLAC``),
    clipped to [-1, 1], NaN as 0.

    ``[N, C]`` with ``C <= 8 < N`` is accepted too (soundfile's frames-first layout).
    """
    import soundfile

    data = np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    if data.ndim == 2 and data.shape[0] <= data.shape[1]:
        data = data.T  # [C, N] -> [N, C]
    with atomic_path(path) as tmp:
        soundfile.write(str(tmp), np.clip(data, -1.0, 1.0), int(sample_rate), subtype=subtype, format=format)
    return Path(path)
