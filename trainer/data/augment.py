"""Augmented copies of a few real one-shots: what a sampler and a mix bus do to a kick.

A producer's own folder, like the shipped model's 48 licensed real kicks, is small: a VAE fits those and not the
next kick (``benchmarks/README.md``, "The held-out round trip": weighting the real kicks 8x fits them and none of
the unseen ones). Each copy here is the source passed through four things a producer does to a one-shot anyway,
so the model meets plausible neighbours of every real kick rather than the same file again:

=============  ===============================================================  =========================
field          what it does                                                     where producers do it
=============  ===============================================================  =========================
semitones      plays the file faster or slower, pitch and decay together        a sampler's tune knob
tilt_db        first-order shelf above 2 kHz, +-dB                              an EQ's high shelf
fade_db_s      an extra exponential fade from the envelope peak on (dB per s)   a sampler's amp release
drive_db       tanh saturation with this much gain into it, level kept          a saturator / clipper
=============  ===============================================================  =========================

Copies are written as 24-bit WAV at the source's rate with ``augment.csv`` naming each copy's source file and
parameters (provenance: a copy carries its source's licence). Deterministic for a seed; a source that cannot be
read is skipped with its reason and counted, like ingestion does. numpy + scipy + soxr, no torch.
"""

from __future__ import annotations

import csv
import dataclasses
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import signal

from runtime.errors import ConfigError
from runtime.files import atomic_path, write_wav
from trainer.data.audio import SkipFile, read_audio, resample

TILT_HZ = 2000.0
PEAK_WINDOW_S = 0.005  # the envelope whose peak starts the extra fade


@dataclass(frozen=True)
class AugmentRanges:
    """Where each field of a copy is drawn from (uniform; ``*_chance`` = how often the effect is applied)."""

    semitones: float = 2.5
    tilt_db: float = 5.0
    fade_db_s: tuple[float, float] = (10.0, 60.0)
    fade_chance: float = 0.5
    drive_db: tuple[float, float] = (2.0, 12.0)
    drive_chance: float = 0.5

    def __post_init__(self) -> None:
        for name in ("fade_chance", "drive_chance"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(name, f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.semitones <= 12.0:
            raise ConfigError("semitones", f"semitones must lie in [0, 12], got {self.semitones}")


@dataclass(frozen=True)
class AugmentParams:
    """One copy's treatment; every field at 0 leaves the sound as it is."""

    semitones: float = 0.0
    tilt_db: float = 0.0
    fade_db_s: float = 0.0
    drive_db: float = 0.0


FIELDS = tuple(f.name for f in dataclasses.fields(AugmentParams))


def draw_params(rng: np.random.Generator, ranges: AugmentRanges) -> AugmentParams:
    """One copy's parameters (a fixed number of draws per copy, so a seed gives the same copies)."""
    u = rng.random(6)
    fade = ranges.fade_db_s[0] + u[2] * (ranges.fade_db_s[1] - ranges.fade_db_s[0])
    drive = ranges.drive_db[0] + u[4] * (ranges.drive_db[1] - ranges.drive_db[0])
    return AugmentParams(semitones=float((2 * u[0] - 1) * ranges.semitones),
                         tilt_db=float((2 * u[1] - 1) * ranges.tilt_db),
                         fade_db_s=float(fade if u[3] < ranges.fade_chance else 0.0),
                         drive_db=float(drive if u[5] < ranges.drive_chance else 0.0))


def augment(audio: np.ndarray, sample_rate: int, params: AugmentParams) -> np.ndarray:
    """Apply one copy's treatment.

    Parameters
    ----------
    audio : np.ndarray [C, N] float
    sample_rate : int
    params : AugmentParams

    Returns
    -------
    np.ndarray [C, M] float32
        ``M = N * 2 ** (-semitones / 12)`` (rounded by the resampler): up is shorter, as a sampler plays it.
        The peak is the source's.
    """
    x = np.asarray(audio, dtype=np.float64)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0.0:
        return np.asarray(x, dtype=np.float32)
    if params.semitones:
        played = round(sample_rate * 2.0 ** (params.semitones / 12.0))
        x = resample(x.astype(np.float32), played, sample_rate).astype(np.float64)
    if params.tilt_db:
        sos = signal.butter(1, TILT_HZ, "highpass", fs=sample_rate, output="sos")
        x = x + (10.0 ** (params.tilt_db / 20.0) - 1.0) * signal.sosfilt(sos, x, axis=-1)
    if params.fade_db_s:
        x = x * _fade(x, sample_rate, params.fade_db_s)
    if params.drive_db:
        gain = 10.0 ** (params.drive_db / 20.0)
        x = np.tanh(gain * x / peak) / np.tanh(gain) * peak
    out_peak = float(np.max(np.abs(x)))
    return np.asarray(x * (peak / out_peak if out_peak > 0 else 1.0), dtype=np.float32)


def _fade(x: np.ndarray, sample_rate: int, db_per_s: float) -> np.ndarray:
    """``[N]`` gain: 1 up to the peak of the 5 ms envelope, then falling by ``db_per_s``."""
    width = max(1, int(PEAK_WINDOW_S * sample_rate))
    power = np.convolve(np.mean(x * x, axis=0), np.ones(width) / width, mode="same")
    start = int(np.argmax(power))
    t = np.maximum(np.arange(x.shape[-1]) - start, 0) / sample_rate
    return 10.0 ** (-db_per_s * t / 20.0)


def write_augmented(sources: Sequence[Path], out: Path, *, copies: int, seed: int,
                    ranges: AugmentRanges = AugmentRanges()) -> tuple[Path, list[tuple[Path, str]]]:
    """Write ``copies`` treated copies of every source to ``out/<stem>_aug<j>.wav`` plus ``out/augment.csv``.

    Each source draws from its own stream (seed and file name), so adding a file does not change the others'
    copies. Files are written atomically.

    Returns
    -------
    csv_path : Path
    skipped : list of (path, reason)
        Sources that could not be read, with the one-line reason; nothing is written for them.
    """
    if copies < 1:
        raise ConfigError("copies", f"copies must be at least 1, got {copies}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"{out} exists and is not a folder; choose a folder for the copies")
    out.mkdir(parents=True, exist_ok=True)
    rows, skipped = [], []
    for source in sorted(Path(s) for s in sources):
        try:
            audio, rate = read_audio(source)
        except SkipFile as err:
            skipped.append((source, str(err)))
            continue
        rng = np.random.default_rng([seed, zlib.crc32(source.name.encode())])
        for j in range(copies):
            params = draw_params(rng, ranges)
            name = f"{source.stem}_aug{j:02d}.wav"
            write_wav(out / name, augment(audio, rate, params), rate)
            rows.append({"filename": name, "source": str(source), **dataclasses.asdict(params)})
    csv_path = out / "augment.csv"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["filename", "source", *FIELDS], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return csv_path, skipped
