"""Load one audio file and turn it into one clean, fixed-length one-shot at the spec's rate.

The pipeline (:func:`prepare`), in order:

1. rejections on the decoded samples: non-finite values, too short, silent, DC only, clipping only;
2. resample to ``spec.sample_rate`` (soxr, high quality) and mix to ``spec.channels`` (mean of all channels for
   mono; a mono file is duplicated for a stereo spec, a file with more than two channels is downmixed to mono and
   duplicated);
3. multi-hit rejection (two or more separate attacks: loops, fills, several hits in one file);
4. onset alignment: the first sample within ``onset_db`` of the file's peak lands ``preroll_ms`` after the start
   (leading silence trimmed, or a few zeros added when the attack starts at sample 0);
5. crop or zero-pad to ``spec.n_samples`` and a half-cosine fade-out over the last ``fade_ms``;
6. loudness: BS.1770 integrated loudness (:func:`runtime.dsp.integrated_loudness`: pyloudnorm's measurement in
   numpy) to ``target_lufs`` with the gain limited so the peak stays at or below ``peak_dbfs``; or the peak to
   ``peak_dbfs``; or nothing (only attenuated when over full scale).

Steps 4-6 are :func:`runtime.dsp.prepare_one_shot`, the preparation the runtime applies to a user's own sample
with the same settings (:attr:`Preprocess.preparation`, stored in the exported model).

Every file that cannot become a usable one-shot raises :class:`SkipFile` with a short reason code and a one-line
detail; callers (``trainer.data.ingest``) record it and go on with the next file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from runtime.dsp import (Preparation, check_preparation, fit_length, integrated_loudness, is_finite_number,
                         prepare_one_shot)
from runtime.errors import ConfigError, KickspaceError
from runtime.files import printable
from runtime.schema import require
from runtime.spec import SpectrogramSpec

#: Extensions ingestion treats as audio (anything else in a data folder is ignored, not reported as bad).
AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".aif", ".aiff", ".aifc", ".ogg", ".oga", ".mp3"})

#: Bump when the preprocessing algorithm changes in a way that changes its output (invalidates feature caches).
PREPROCESS_VERSION = 2  # 2: a stereo file whose channels cancel in the mono mix is "silent", not "multi-hit"

#: Every reason code :class:`SkipFile` may carry, with what it means.
REASONS: dict[str, str] = {
    "missing": "listed (NSynth examples.json) or given but not on disk",
    "broken-link": "a symbolic link whose target does not exist",
    "link-loop": "a symbolic link that leads back to itself, or into a folder already read",
    "unreachable": "a path the system cannot open (longer than its path limit, or another error)",
    "outside-root": "an NSynth examples.json entry (or a link in audio/) that resolves outside the dataset folder",
    "bad-entry": "a malformed NSynth examples.json entry (the field is named)",
    "not-a-file": "a folder or special file with an audio extension",
    "empty": "0 bytes",
    "unreadable": "no permission to read, or the read failed",
    "not-audio": "not a format libsndfile knows (e.g. a text file named .wav)",
    "corrupt": "looks like an audio format but cannot be decoded (truncated or damaged header)",
    "too-long": "longer than max_seconds: not a one-shot (checked from the header, before decoding)",
    "too-short": "shorter than min_seconds",
    "non-finite": "NaN or infinite samples",
    "silent": "peak below silence_dbfs",
    "dc-only": "a constant offset with nothing moving on top of it",
    "clipped": "most of the sound sits flat at its peak (clipping or a square wave only)",
    "multi-hit": "several separate attacks: a loop, a fill or several hits in one file",
}

_MAGIC = ((b"RIFF", "WAV"), (b"RIFX", "WAV"), (b"RF64", "RF64"), (b"BW64", "BW64"), (b"FORM", "AIFF"),
          (b"fLaC", "FLAC"), (b"OggS", "OGG"), (b"ID3", "MP3"), (b"caff", "CAF"), (b".snd", "AU"))
_HIT_GATE_DB = 30.0  # a later attack counts as a hit only when its frame is within this of the loudest frame
_FLUX_FLOOR_DB = 50.0  # band levels this far below the loudest band-frame are floored (ignores faint clicks)
_RISE_S = 0.02  # an attack is a rise measured against the band's minimum over the previous 20 ms


class SkipFile(KickspaceError):
    """A file that cannot become a one-shot. ``reason`` is a short code (see :data:`REASONS`), ``detail`` a line."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


# ============================================================================================== configuration
@dataclass(frozen=True)
class Preprocess(Preparation):
    """How one file becomes one training example (everything except the spectrogram spec): the one-shot
    preparation shared with the runtime, plus the rules that skip a file.

    Parameters
    ----------
    loudness, target_lufs, peak_dbfs, fade_ms, onset_db, preroll_ms
        The one-shot preparation's settings, shared with the runtime and stored in exported models: see
        :class:`runtime.dsp.Preparation` (:attr:`preparation` gives them alone).
    min_seconds, max_seconds : float
        Files shorter or longer are skipped (the length check for ``max_seconds`` reads only the header).
    silence_dbfs : float
        Files whose peak is below this are skipped as silent.
    clip_fraction : float
        A file is "clipped" when more than this fraction of its loud samples (within 20 dB of the peak) sit
        within 0.05 dB of the peak: flat-topped clipping or a square wave, not a drum.
    multi_hit_ratio : float or None
        A later attack whose spectral rise is at least this fraction of the main attack's (and whose frame is
        within 30 dB of the loudest frame) is a second hit and the file is skipped; None disables the check.
    hit_gap_ms : float
        Attacks closer together than this count as one (claps and flams are one hit).
    """

    min_seconds: float = 0.01
    max_seconds: float = 10.0
    silence_dbfs: float = -60.0
    clip_fraction: float = 0.7
    multi_hit_ratio: float | None = 0.4
    hit_gap_ms: float = 80.0

    def __post_init__(self) -> None:
        check_preparation(self, where="preprocess")
        for name in ("min_seconds", "max_seconds", "silence_dbfs", "clip_fraction", "hit_gap_ms"):
            value = getattr(self, name)
            require(is_finite_number(value), f"preprocess.{name}", f"must be a finite number, got {value!r}")
        require(self.min_seconds >= 0.0, "preprocess.min_seconds", f"must be >= 0 s, got {self.min_seconds}")
        require(self.max_seconds > self.min_seconds, "preprocess.max_seconds",
                f"must be longer than min_seconds ({self.min_seconds} s), got {self.max_seconds}")
        require(-140.0 < self.silence_dbfs < 0.0, "preprocess.silence_dbfs",
                f"must be in (-140, 0) dBFS, got {self.silence_dbfs}")
        require(0.0 < self.clip_fraction <= 1.0, "preprocess.clip_fraction",
                f"must be in (0, 1], got {self.clip_fraction}")
        ratio = self.multi_hit_ratio
        require(ratio is None or (is_finite_number(ratio) and 0.0 < ratio <= 1.0), "preprocess.multi_hit_ratio",
                f"must be in (0, 1] or null (no check), got {self.multi_hit_ratio!r}")
        require(self.hit_gap_ms > 0.0, "preprocess.hit_gap_ms", f"must be > 0 ms, got {self.hit_gap_ms}")

    @classmethod
    def of_run(cls, config: dict) -> "Preprocess":
        """The preprocessing a run was trained with, from its saved config (``data.loudness``; the rest default)."""
        return cls(loudness=config.get("data", {}).get("loudness", "lufs"))

    @property
    def preparation(self) -> Preparation:
        """The settings of the one-shot preparation shared with the runtime (stored in exported models)."""
        return Preparation(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Preparation)})

    def to_dict(self) -> dict:
        """Plain-JSON form (for configs and run records)."""
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short stable hash of every field and of :data:`PREPROCESS_VERSION` (used to key feature caches)."""
        blob = json.dumps({"version": PREPROCESS_VERSION, **self.to_dict()}, sort_keys=True).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()


# ==================================================================================================== reading
def check_path(path: Path | str) -> None:
    """Raise :class:`SkipFile` unless ``path`` is a non-empty regular file this process can read.

    Cheap (stat and a 1-byte read); never decodes. Order: link loop, broken link, missing, too long to open, not
    a file, empty, unreadable.
    """
    try:
        info = os.stat(path)
    except OSError as err:
        raise unopenable(path, err) from None
    if stat.S_ISDIR(info.st_mode):
        raise SkipFile("not-a-file", "a folder named like an audio file")
    if not stat.S_ISREG(info.st_mode):
        raise SkipFile("not-a-file", "a special file (pipe, socket or device), not an audio file")
    if info.st_size == 0:
        raise SkipFile("empty", "the file is 0 bytes long")
    with open_audio(path) as handle:
        try:
            handle.read(1)
        except OSError as err:
            raise unopenable(path, err) from None


def unopenable(path: Path | str, err: OSError) -> SkipFile:
    """The :class:`SkipFile` for a path that ``stat``/``open``/``scandir`` refused with ``err``."""
    code = err.errno
    if code == errno.ELOOP:
        return SkipFile("link-loop", "a symbolic link loop: following it leads back to itself")
    if code == errno.ENOENT and os.path.islink(path):
        return SkipFile("broken-link", f"symbolic link to {printable(os.readlink(path))!r}, which does not exist")
    if code == errno.ENOENT:
        return SkipFile("missing", "no such file")
    if code == errno.ENAMETOOLONG:
        return SkipFile("unreachable", f"the path is {len(os.fsencode(path))} bytes long, more than the system "
                                       "can open; move the files to a shallower folder")
    if code in (errno.EACCES, errno.EPERM):
        return SkipFile("unreadable", f"cannot read it ({err.strerror}); check its permissions")
    return SkipFile("unreadable", f"cannot read it ({err.strerror or err})")


@contextlib.contextmanager
def open_audio(path: Path | str) -> Iterator[BinaryIO]:
    """Open ``path`` as a binary file object for reading; THE way audio files are opened.

    Any file name works (a Latin-1 byte in the name is never mistaken for damage in the audio: libraries get the
    file object, never the name). A pipe or device is refused without blocking on it. Raises :class:`SkipFile`.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise unopenable(path, err) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SkipFile("not-a-file", "a folder or special file (pipe, socket or device), not an audio file")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def _undecodable(handle: BinaryIO, err: Exception) -> SkipFile:
    """Tell a damaged audio file (known magic bytes) from a file that is not audio at all."""
    if isinstance(err, OSError):  # the read itself failed (I/O error), not the decoding
        return SkipFile("unreadable", f"reading it failed ({err.strerror or err})")
    try:
        handle.seek(0)
        head = handle.read(12)
    except OSError:
        head = b""
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    if message.startswith("Error opening <"):  # libsndfile names the file object; the log names the path
        message = message.rsplit(">: ", 1)[-1]
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return SkipFile("corrupt", f"a damaged or truncated {name} file (libsndfile: {message})")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return SkipFile("corrupt", f"a damaged or truncated MP3 file (libsndfile: {message})")
    return SkipFile("not-audio", f"not an audio file libsndfile can read (starts with {head[:8]!r})")


def audio_duration(path: Path | str) -> float:
    """Duration in seconds read from the file's header only (no decoding). Raises :class:`SkipFile`."""
    import soundfile

    with open_audio(path) as handle:
        try:
            info = soundfile.info(handle)
        except Exception as err:  # libsndfile raises LibsndfileError/RuntimeError/TypeError for odd input
            raise _undecodable(handle, err) from None
    if info.samplerate <= 0:
        raise SkipFile("corrupt", f"the header gives an invalid sample rate ({info.samplerate})")
    return info.frames / info.samplerate


def read_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """Decode a whole audio file (any format and bit depth libsndfile reads).

    Returns
    -------
    audio : np.ndarray [C, N] float32
        Samples as decoded (integer formats scaled to [-1, 1); float files as stored).
    sample_rate : int
    """
    import soundfile

    check_path(path)
    with open_audio(path) as handle:
        try:
            data, rate = soundfile.read(handle, dtype="float32", always_2d=True)
        except Exception as err:
            raise _undecodable(handle, err) from None
    if rate <= 0:
        raise SkipFile("corrupt", f"the header gives an invalid sample rate ({rate})")
    return np.ascontiguousarray(data.T), int(rate)


def load_one_shot(path: Path | str, *, spec: SpectrogramSpec, preprocess: Preprocess) -> np.ndarray:
    """Read, check and prepare one file (see :func:`prepare`).

    Files longer than ``preprocess.max_seconds`` are skipped from their header, before any decoding.

    Returns
    -------
    np.ndarray [spec.channels, spec.n_samples] float32
    """
    check_path(path)
    reject_too_long(path, preprocess=preprocess)
    audio, rate = read_audio(path)
    return prepare(audio, rate, spec=spec, preprocess=preprocess)


def reject_too_long(path: Path | str, *, preprocess: Preprocess) -> None:
    """Raise :class:`SkipFile` ("too-long") from the header alone, or "corrupt"/"not-audio" if it has none."""
    seconds = audio_duration(path)
    if seconds > preprocess.max_seconds:
        raise SkipFile("too-long", f"{_format_seconds(seconds)} long: not a one-shot "
                                   f"(limit {preprocess.max_seconds:g} s, preprocess.max_seconds)")


def _format_seconds(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.3g} s"


# ================================================================================================== preparing
def prepare(audio: np.ndarray, sample_rate: int, *, spec: SpectrogramSpec, preprocess: Preprocess) -> np.ndarray:
    """Turn decoded samples into one clean example (module docstring: the steps and their order).

    Parameters
    ----------
    audio : np.ndarray [C, N] or [N]
        Decoded samples at ``sample_rate``.
    sample_rate : int
        Rate of ``audio`` in Hz.

    Returns
    -------
    np.ndarray [spec.channels, spec.n_samples] float32
        Finite, peak <= 1 (<= ``peak_dbfs`` unless ``loudness == "none"``).

    Raises
    ------
    SkipFile
        With reason ``non-finite``, ``too-short``, ``too-long``, ``silent`` (also: channels that cancel in the
        mono mix), ``dc-only``, ``clipped`` or ``multi-hit``.
    """
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.ndim != 2 or audio.shape[0] == 0:
        raise ConfigError("audio", f"expected [channels, samples], got shape {audio.shape}")
    audio = audio.astype(np.float32, copy=False)
    reject_unusable(audio, sample_rate, preprocess=preprocess)
    audio = resample(audio, sample_rate, spec.sample_rate)
    mixed = mix_channels(audio, channels=spec.channels)
    reject_cancelled_mix(audio, mixed, preprocess=preprocess)
    audio = mixed
    if preprocess.multi_hit_ratio is not None:
        reject_multi_hit(audio, spec.sample_rate, preprocess=preprocess)
    try:
        audio = prepare_one_shot(audio, spec.sample_rate, spec.n_samples, preparation=preprocess.preparation,
                                 measure=integrated_loudness)
    except KickspaceError as err:
        raise SkipFile("silent", str(err)) from None
    if not np.all(np.isfinite(audio)):  # cannot happen after the checks above; a guard for the training data
        raise SkipFile("non-finite", "processing produced non-finite samples")
    return audio


def reject_unusable(audio: np.ndarray, sample_rate: int, *, preprocess: Preprocess) -> None:
    """Raise :class:`SkipFile` for non-finite, too short/long, silent, DC-only or clipping-only audio ``[C, N]``."""
    if not np.all(np.isfinite(audio)):
        bad = int(np.size(audio) - np.count_nonzero(np.isfinite(audio)))
        raise SkipFile("non-finite", f"{bad} NaN or infinite sample{'' if bad == 1 else 's'}: the file is damaged")
    seconds = audio.shape[-1] / sample_rate
    if seconds < preprocess.min_seconds:
        count = audio.shape[-1]
        raise SkipFile("too-short", f"{count} sample{'' if count == 1 else 's'} ({seconds * 1000:.2g} ms): "
                                    f"shorter than {preprocess.min_seconds * 1000:g} ms (preprocess.min_seconds)")
    if seconds > preprocess.max_seconds:
        raise SkipFile("too-long", f"{_format_seconds(seconds)} long: not a one-shot "
                                   f"(limit {preprocess.max_seconds:g} s, preprocess.max_seconds)")
    peak = float(np.max(np.abs(audio)))
    peak_db = _db(peak)
    if peak == 0.0:
        raise SkipFile("silent", "every sample is zero")
    if peak_db < preprocess.silence_dbfs:
        raise SkipFile("silent", f"peak {peak_db:.0f} dBFS is below {preprocess.silence_dbfs:g} dBFS "
                                 "(preprocess.silence_dbfs)")
    moving = float(np.max(np.abs(audio - np.mean(audio, axis=-1, keepdims=True))))
    if _db(moving) < preprocess.silence_dbfs or moving < 1e-3 * peak:
        raise SkipFile("dc-only", f"a constant offset of {peak:.3g} with nothing moving on top of it")
    fraction = clipped_fraction(audio)
    if fraction > preprocess.clip_fraction:
        raise SkipFile("clipped", f"{fraction:.0%} of the loud samples sit flat at the peak: clipping or a "
                                  f"square wave, not a drum (limit {preprocess.clip_fraction:.0%}, "
                                  "preprocess.clip_fraction)")


def reject_cancelled_mix(audio: np.ndarray, mixed: np.ndarray, *, preprocess: Preprocess) -> None:
    """Raise :class:`SkipFile` ("silent") when downmixing ``audio`` ``[C, N]`` to ``mixed`` ``[c, N]`` cancelled it.

    A stereo file with one channel phase-inverted sounds fine on speakers but its mono mix is (nearly) silent:
    cancelled means a mix peak below ``silence_dbfs`` or more than 40 dB under the channels' own peak.
    """
    if mixed.shape[0] >= audio.shape[0]:
        return  # nothing was mixed together
    before, after = _db(float(np.max(np.abs(audio)))), _db(float(np.max(np.abs(mixed))))
    if after < preprocess.silence_dbfs or after < before - 40.0:
        shown = "-inf" if after == -math.inf else f"{after:.0f}"
        raise SkipFile("silent", f"its {audio.shape[0]} channels cancel in the mono mix (peak {before:.0f} dBFS -> "
                                 f"{shown} dBFS): a channel is phase-inverted; flip its polarity or keep one channel")


def clipped_fraction(audio: np.ndarray) -> float:
    """Fraction of the loud samples (within 20 dB of the peak) that sit within 0.05 dB of the peak. ``[C, N]``."""
    level = np.abs(audio)
    peak = float(level.max())
    if peak <= 0:
        return 0.0
    loud = np.count_nonzero(level >= 0.1 * peak)
    flat = np.count_nonzero(level >= peak * 10 ** (-0.05 / 20))
    return flat / max(loud, 1)


def resample(audio: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample ``[C, N]`` float32 from ``rate`` to ``target_rate`` with soxr (high quality). Returns ``[C, M]``."""
    if rate == target_rate:
        return audio
    import soxr

    out = soxr.resample(np.ascontiguousarray(audio.T), rate, target_rate, quality="HQ")
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, audio.shape[0]).T)


def mix_channels(audio: np.ndarray, *, channels: int) -> np.ndarray:
    """Mix ``[C, N]`` to ``[channels, N]``: mean for mono; mono duplicated or >2 channels downmixed for stereo."""
    have = audio.shape[0]
    if have == channels:
        return audio
    mono = audio.mean(axis=0, keepdims=True, dtype=np.float32)
    if channels == 1:
        return mono
    if have == 2:
        return audio[:channels]
    return np.repeat(mono, channels, axis=0)


def hit_times(audio: np.ndarray, sample_rate: int, *, preprocess: Preprocess) -> list[float]:
    """Times in seconds of the separate attacks in ``[C, N]`` (one for a one-shot).

    Spectral rise: per mel band, the level (dB, floored 50 dB below the loudest band) minus its minimum over the
    previous 20 ms, averaged over bands, of the channels' summed power. The analysed copy is faded out over its last 10 ms, so a file that ends
    abruptly (a truncated tail) does not splatter into a fake attack. Peaks at least ``multi_hit_ratio`` of the largest, ``hit_gap_ms`` apart, in frames within 30 dB of the
    loudest frame, are attacks. A decaying tail only falls, so a single hit with a long tail gives one attack.
    """
    import librosa

    ratio = preprocess.multi_hit_ratio if preprocess.multi_hit_ratio is not None else 1.0
    hop = max(1, int(round(sample_rate * 0.005)))
    n_fft = 1 << int(math.ceil(math.log2(4 * hop)))
    size = audio.shape[-1]
    audio = fit_length(audio, max(size, n_fft), fade=min(size, int(sample_rate * 0.01)))
    spectrum = (np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop, center=True, pad_mode="constant")) ** 2
                ).sum(axis=0)  # power of every channel: channels that would cancel in a mix do not hide attacks
    power = _hit_bands(sample_rate, n_fft) @ spectrum
    db = 10 * np.log10(np.maximum(power, 1e-20))
    db = np.maximum(db, db.max() - _FLUX_FLOOR_DB)
    lag = max(1, int(round(_RISE_S * sample_rate / hop)))
    padded = np.concatenate([np.full((db.shape[0], lag), db.min()), db], axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(padded[:, :-1], lag, axis=1)  # [bands, T, lag]
    rise = np.maximum(db - windows.min(axis=-1), 0.0).mean(axis=0)
    frame_db = 10 * np.log10(np.maximum(power.sum(axis=0), 1e-20))
    gate = frame_db >= frame_db.max() - _HIT_GATE_DB
    threshold = ratio * rise.max()
    gap = max(1, int(round(preprocess.hit_gap_ms / 1000 * sample_rate / hop)))
    hits: list[int] = []
    for t in np.argsort(-rise, kind="stable"):
        if rise[t] < threshold:
            break
        if gate[t] and all(abs(int(t) - h) >= gap for h in hits):
            hits.append(int(t))
    return sorted(h * hop / sample_rate for h in hits)


@lru_cache(maxsize=8)
def _hit_bands(sample_rate: int, n_fft: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=40).astype(np.float32)


def reject_multi_hit(audio: np.ndarray, sample_rate: int, *, preprocess: Preprocess) -> None:
    """Raise :class:`SkipFile` ("multi-hit") when ``[C, N]`` holds two or more separate attacks."""
    times = hit_times(audio, sample_rate, preprocess=preprocess)
    if len(times) > 1:
        shown = ", ".join(f"{t:.2f}" for t in times[:6]) + (", ..." if len(times) > 6 else "")
        raise SkipFile("multi-hit", f"{len(times)} separate hits (at {shown} s): a loop or several hits in one "
                                    "file; cut it into one-shots")


def _db(value: float) -> float:
    return 20 * math.log10(value) if value > 0 else -math.inf
