"""A spectrogram picture of a render as a PNG, in numpy and zlib only (the runtime has no matplotlib).

``runtime play --fallback-render`` draws one beside the WAV it writes where live play cannot start, so a user
without sound still sees what the groove sounds like. It is a plain picture without axes: time left to right,
frequency bottom to top on a log scale from :data:`LOW_HZ` to Nyquist (where a kick lives, 30-200 Hz, gets room),
log magnitude through a dark-to-bright colour map over :data:`RANGE_DB` below the loudest bin. ``trainer
spectrogram`` (matplotlib) draws the labelled version from the same WAV.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from runtime.files import atomic_path

LOW_HZ = 20.0
RANGE_DB = 80.0
# a magma-like map: (position 0..1, R, G, B); black -> purple -> red -> orange -> pale yellow
COLOURS = np.array([(0.0, 0, 0, 4), (0.25, 80, 18, 123), (0.5, 182, 54, 121), (0.75, 251, 136, 97),
                    (1.0, 252, 253, 191)], dtype=np.float64)


def log_spectrogram(audio: np.ndarray, sample_rate: int, *, n_fft: int = 4096, columns: int = 1000,
                    rows: int = 320) -> np.ndarray:
    """Magnitude in dB re the loudest bin, ``[rows, columns']`` (row 0 = :data:`LOW_HZ`, last row = Nyquist).

    ``audio`` is ``[frames]`` or ``[frames, channels]`` (channels averaged); Hann windows hop so that at most
    ``columns`` columns come out (``columns' <= columns``); each row takes the FFT bin nearest its frequency.
    """
    x = np.asarray(audio, dtype=np.float64)
    x = x.mean(axis=1) if x.ndim == 2 else x
    hop = max(1, -(-max(x.size - n_fft, 0) // max(columns - 1, 1)))
    x = np.pad(x, (0, max(0, n_fft - x.size)))
    starts = np.arange(0, x.size - n_fft + 1, hop)
    frames = x[starts[:, None] + np.arange(n_fft)] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # [columns', bins]
    freqs = np.geomspace(LOW_HZ, sample_rate / 2, rows)
    picked = power[:, np.clip(np.round(freqs / sample_rate * n_fft).astype(int), 0, n_fft // 2)]
    db = 10 * np.log10(np.maximum(picked, 1e-20))
    return (db - db.max()).T


def colourise(db: np.ndarray, *, range_db: float = RANGE_DB) -> np.ndarray:
    """dB values (0 = loudest) ``[H, W]`` -> RGB ``uint8`` ``[H, W, 3]``, ``-range_db`` and below black."""
    level = np.clip(1.0 + np.asarray(db) / range_db, 0.0, 1.0)
    rgb = [np.interp(level, COLOURS[:, 0], COLOURS[:, c]) for c in (1, 2, 3)]
    return np.round(np.stack(rgb, axis=-1)).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB image ``[H, W, 3]`` as PNG file bytes (no filtering, zlib level 6)."""
    height, width, _ = rgb.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    scanlines = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, width * 3)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6))
            + chunk(b"IEND", b""))


def write_spectrogram_png(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Draw ``audio`` ``[frames, channels]`` (or ``[frames]``) as a log-frequency spectrogram PNG at ``path``."""
    image = colourise(log_spectrogram(audio, sample_rate))[::-1]  # low frequencies at the bottom
    with atomic_path(path) as tmp:
        tmp.write_bytes(png_bytes(np.ascontiguousarray(image)))
    return Path(path)
