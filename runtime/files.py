"""Atomic file writes shared by every package: a crash or SIGKILL mid-write leaves the previous file intact.

Write to a temporary file in the target's folder, then ``os.replace`` it over the target (atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from runtime.errors import DiskFullError

#: Below this many free bytes in the target's folder, a failed write is blamed on a full disk.
_NEARLY_FULL = 1 << 20
_TEMP_RANDOM = 8  # length of the random part of a mkstemp name (tempfile's name sequence)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed.

    The temporary name keeps the suffix (libraries that pick a format from it still work) and starts with a dot.
    ``fsync=True`` flushes the data to disk before the rename (checkpoints: survives a power cut, not just a kill).
    A write that fails because the disk is full (``ENOSPC``/``EDQUOT`` from any write, torch's serializer's
    "enforce fail at inline_container.cc", or any failed write with under 1 MiB left in the folder) is raised as
    one-line :class:`~runtime.errors.DiskFullError` naming ``path``; the temporary file is removed either way.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temp_affixes(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes files 0600
        os.replace(tmp, path)
    except BaseException as err:
        full = _disk_full(err, path.parent)  # judged before the temporary file gives its space back
        Path(tmp).unlink(missing_ok=True)
        if full is not None:
            raise full_disk_error(path, full) from None
        raise


def _temp_affixes(path: Path) -> tuple[str, str]:
    """The (prefix, suffix) of :func:`atomic_path`'s temporaries for ``path``: ``.STEM.XXXXXXXX.tmpSUFFIX``."""
    return f".{path.stem}.", f".tmp{path.suffix}"


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporaries that :func:`atomic_path` left for ``path`` when its process was killed mid-write.

    Only names of exactly that pattern next to ``path`` (``.last.k3j_9a2b.tmp.pt`` for ``last.pt``) are touched.
    Call it only where no other process writes ``path`` at the same time (a run folder at the start of its run).
    Returns the removed paths.
    """
    path = Path(path)
    prefix, suffix = _temp_affixes(path)
    pattern = re.compile(rf"{re.escape(prefix)}[a-z0-9_]{{{_TEMP_RANDOM}}}{re.escape(suffix)}")
    removed = []
    for candidate in path.parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        if pattern.fullmatch(candidate.name) and candidate.is_file() and not candidate.is_symlink():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _disk_full(err: BaseException, folder: Path) -> int | None:
    """ENOSPC/EDQUOT when ``err`` is a write failing on a full disk, else None (see :func:`atomic_path`)."""
    if isinstance(err, DiskFullError):
        return None  # already named (a nested atomic write)
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return err.errno
    if isinstance(err, RuntimeError) and ("inline_container.cc" in str(err) or "file write failed" in str(err)):
        return errno.ENOSPC  # torch's zip writer reports every failed write so; a full disk in practice
    if isinstance(err, (OSError, RuntimeError)) and _free_bytes(folder) < _NEARLY_FULL:
        return errno.ENOSPC
    return None


def _free_bytes(folder: Path) -> int:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return 1 << 62
    return stats.f_bavail * stats.f_frsize


def full_disk_error(path: Path, code: int = errno.ENOSPC) -> DiskFullError:
    """The one-line :class:`DiskFullError` for a write of ``path`` that ran out of space."""
    what = "the disk quota is exceeded" if code == errno.EDQUOT else "the disk is full"
    kept = f"the previous {path.name} is untouched" if path.exists() else "nothing was written"
    return DiskFullError(code, f"cannot write {printable(path)}: {what} ({_size(_free_bytes(path.parent))} free "
                               f"in {printable(path.parent)}); free some space and run again ({kept})")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def printable(path: str | bytes | os.PathLike) -> str:
    """``path`` as one printable line: undecodable name bytes as ``\\xNN``, control characters escaped.

    For logs and messages only (open files by the path itself): a name holding a newline stays on one line and
    a Latin-1 byte prints instead of crashing a UTF-8 terminal.
    """
    text = os.fsdecode(os.fspath(path))
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char.isprintable():
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)


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
