"""THE spectrogram spec: the schema of the feature representation, shared by the trainer and the runtime.

A :class:`SpectrogramSpec` is saved inside every checkpoint and every exported model (``to_dict``/``from_dict``),
and both sides build it through this one class, so a spec a checkpoint or an exported model carries is validated
by the same rules wherever it is read: a bad field fails as ``ConfigError`` naming ``spec.FIELD`` (``where.FIELD``
for a spec nested in another document, e.g. ``metadata.spec.hop_length``).

The module holds the fields, their validation, the derived sizes (:attr:`SpectrogramSpec.n_samples`, the exported
decoder's audio length, :attr:`~SpectrogramSpec.n_bins`, ...) and the named specs; it is torch-free (numpy at
most, through ``runtime.dsp``), so the runtime can type and check an exported model's spec. The
transforms (log-mel, its inverse, Griffin-Lim) and every figure derived from the mel filterbank (the dB ceiling
``ref_db``) live in ``trainer.spec``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from runtime.dsp import is_finite_number
from runtime.errors import ConfigError
from runtime.schema import check_fields, require, require_positive_ints

MEL_SCALES = ("slaney", "htk", "linear")
MEL_NORMS = ("slaney", None)
_SIZES = ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels", "frames")


@dataclass(frozen=True)
class SpectrogramSpec:
    """Parameters of the log-mel representation (the definition is in ``trainer.spec``'s module docstring).

    Parameters
    ----------
    sample_rate : int
        Model sample rate in Hz; every file is resampled to it.
    n_fft, hop_length, win_length : int
        STFT size, hop and Hann window length (``win_length <= n_fft``; the window is centred in the frame).
    n_mels : int
        Number of mel bands (ignored when ``mel_scale == "linear"``).
    fmin, fmax : float
        Mel filterbank range in Hz; ``fmax=None`` means Nyquist.
    mel_scale : {"slaney", "htk", "linear"}
        Mel formula (librosa's ``htk`` flag) or a linear-frequency spectrogram of ``n_fft // 2 + 1`` bins.
    mel_norm : {"slaney", None}
        Filter area normalisation (librosa's ``norm``).
    frames : int
        Number of STFT frames kept; the audio length is ``frames * hop_length`` samples.
    channels : int
        1 (mono, files are downmixed) or 2 (stereo).
    top_db : float
        Dynamic range kept below the ceiling, in dB.
    headroom_db : float
        Room above the loudest full-scale-sine band level before values clip at +1.
    """

    sample_rate: int = 44100
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    mel_scale: str = "slaney"
    mel_norm: str | None = "slaney"
    frames: int = 128
    channels: int = 1
    top_db: float = 80.0
    headroom_db: float = 6.0

    def __post_init__(self) -> None:
        check_spec(self, where="spec")

    # ----------------------------------------------------------------------------------------- derived sizes
    @property
    def n_samples(self) -> int:
        """Length in samples of one example (``frames * hop_length``): the exported decoder's audio length."""
        return self.frames * self.hop_length

    @property
    def duration(self) -> float:
        """Length in seconds of one example."""
        return self.n_samples / self.sample_rate

    @property
    def n_freq(self) -> int:
        """Number of linear STFT bins (``n_fft // 2 + 1``)."""
        return self.n_fft // 2 + 1

    @property
    def n_bins(self) -> int:
        """Feature rows: mel bands, or linear bins when ``mel_scale == "linear"``."""
        return self.n_freq if self.mel_scale == "linear" else self.n_mels

    @property
    def shape(self) -> tuple[int, int, int]:
        """Feature shape of one example, ``(channels, n_bins, frames)``."""
        return (self.channels, self.n_bins, self.frames)

    # ------------------------------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form saved in checkpoints and ONNX metadata."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "spec", complete: bool = False) -> "SpectrogramSpec":
        """Build a spec from ``to_dict`` output (or a config's table of fields).

        Unknown and invalid fields fail naming ``where.FIELD``. ``complete=True`` also refuses a missing field
        (a saved spec must say every size itself: a default could silently disagree with the graph it describes);
        a config table may leave fields at their defaults.
        """
        data = check_fields(data, cls, where=where)
        if complete:
            for name in (f.name for f in dataclasses.fields(cls)):
                require(name in data, f"{where}.{name}", "missing")
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{where}.{err.field.split('.', 1)[1]}", err.problem) from None

    def digest(self) -> str:
        """Short stable hash of every field (used to key feature caches)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()


def check_spec(spec: SpectrogramSpec, *, where: str) -> None:
    """Raise :class:`ConfigError` naming ``where.FIELD`` unless every field of ``spec`` is valid and consistent.

    Types are checked as well as ranges, because a spec also arrives as JSON (checkpoints, exported models) where a
    string or a bool in a size would otherwise surface later as an unrelated error.
    """
    require_positive_ints(spec, _SIZES, where=where)
    for name in ("fmin", "top_db", "headroom_db"):
        value = getattr(spec, name)
        require(is_finite_number(value), f"{where}.{name}", f"must be a finite number, got {value!r}")
    require(spec.fmax is None or is_finite_number(spec.fmax), f"{where}.fmax",
            f"must be a number of Hz or null, got {spec.fmax!r}")
    require(spec.win_length <= spec.n_fft, f"{where}.win_length",
            f"{spec.win_length} is longer than n_fft {spec.n_fft}")
    require(spec.hop_length <= spec.win_length, f"{where}.hop_length",
            "must not exceed win_length (gaps between frames)")
    require(spec.mel_scale in MEL_SCALES, f"{where}.mel_scale",
            f"must be one of {MEL_SCALES}, got {spec.mel_scale!r}")
    require(spec.mel_norm in MEL_NORMS, f"{where}.mel_norm", f"must be 'slaney' or null, got {spec.mel_norm!r}")
    require(spec.channels in (1, 2) and not isinstance(spec.channels, bool), f"{where}.channels",
            f"must be 1 (mono) or 2 (stereo), got {spec.channels!r}")
    nyquist = spec.sample_rate / 2
    require(0 <= spec.fmin < nyquist, f"{where}.fmin", f"must be in [0, {nyquist}) Hz, got {spec.fmin}")
    require(spec.fmax is None or spec.fmin < spec.fmax <= nyquist, f"{where}.fmax",
            f"must be in ({spec.fmin}, {nyquist}] Hz or null, got {spec.fmax}")
    require(spec.top_db > 0, f"{where}.top_db", f"must be positive, got {spec.top_db}")
    require(spec.mel_scale == "linear" or spec.n_mels <= spec.n_fft // 2 + 1, f"{where}.n_mels",
            f"{spec.n_mels} bands exceed the {spec.n_fft // 2 + 1} FFT bins")


#: Named specs. ``kick`` is DESIGN.md's default; ``kick-2048-htk`` is the measured contender for the low end;
#: ``kick-22k`` is the shipped kicks preset's (22.05 kHz, hop 128); ``kick-44k-low`` is its 44.1 kHz equivalent
#: (the same bins and window duration: equal features from audio at twice the rate), the spec a two-band model's
#: encoder reads; ``kick-44k-high`` is the band above it (32 HTK mels over 9-22.05 kHz on the same 5.8 ms frame
#: grid) that ``trainer highband`` predicts; ``nsynth`` is the timbre seed's 80 x 128 log-mel at 16 kHz (4.1 s).
SPECS: dict[str, SpectrogramSpec] = {
    "kick": SpectrogramSpec(),
    "kick-2048-htk": SpectrogramSpec(n_fft=2048, win_length=2048, mel_scale="htk"),
    "kick-22k": SpectrogramSpec(sample_rate=22050, n_fft=1024, win_length=1024, hop_length=128, mel_scale="htk"),
    "kick-44k-low": SpectrogramSpec(n_fft=2048, win_length=2048, fmax=11025.0, mel_scale="htk"),
    "kick-44k-high": SpectrogramSpec(n_fft=512, win_length=512, n_mels=32, fmin=9000.0, mel_scale="htk"),
    "nsynth": SpectrogramSpec(sample_rate=16000, n_fft=1024, hop_length=512, win_length=1024, n_mels=80,
                              fmax=8000.0),
}


def get_spec(name: str) -> SpectrogramSpec:
    """Return a named spec from :data:`SPECS` (error lists the names)."""
    try:
        return SPECS[name]
    except KeyError:
        raise ConfigError("spec", f"unknown spec name {name!r} (known: {', '.join(SPECS)})") from None
