"""On-disk feature cache: one ``.npz`` per file content, in a folder per spectrogram spec and preprocessing.

Layout::

    <root>/v<CACHE_VERSION>-<spec.digest()>-<preprocess.digest()>/<blake2b of the file's bytes>.npz

An entry holds either the result (``features`` [C, M, T] float32 and the prepared ``audio`` [C, N] float32, kept
in float32 so a cached pass returns bit-identical arrays to a fresh one; about 190 KB per file with the default
spec) or the verdict for a file that was skipped (``skip_reason`` and ``skip_detail``), so a second pass is fast
for bad files too. The key is the file's content, not its path: an edited file gets a new key, a renamed or copied
one reuses its entry, and a changed spec or preprocessing uses another folder. Writes are atomic (temporary file
+ ``os.replace``); an entry that cannot be read back or has the wrong shape is treated as missing and rewritten; a
cache folder that cannot be written to turns caching off for the run with one warning, never an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.files import atomic_path
from runtime.spec import SpectrogramSpec
from trainer.data.audio import Preprocess, SkipFile

log = logging.getLogger(__name__)

#: Bump when the entry format changes.
CACHE_VERSION = 1
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$KICKSPACE_CACHE`` if set, else ``~/.cache/kickspace``."""
    env = os.environ.get("KICKSPACE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kickspace"


def content_key(path: Path | str) -> str:
    """blake2b (160-bit, hex) of the file's bytes."""
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CachedItem:
    """One cache entry: ``features`` [C, M, T] and ``audio`` [C, N] float32, or the ``skip`` verdict."""

    features: np.ndarray | None = None
    audio: np.ndarray | None = None
    skip: SkipFile | None = None


class FeatureCache:
    """Features and skip verdicts of one (spec, preprocess) pair, keyed by file content.

    Parameters
    ----------
    root : Path or None
        Cache root (default :func:`default_cache_dir`).
    spec, preprocess
        Select the subfolder; entries of other specs are never read.
    """

    def __init__(self, root: Path | None = None, *, spec: SpectrogramSpec, preprocess: Preprocess) -> None:
        self.spec = spec
        self.folder = Path(root if root is not None else default_cache_dir()) / (
            f"v{CACHE_VERSION}-{spec.digest()}-{preprocess.digest()}")
        self.hits = 0
        self.misses = 0
        self.writable = True

    def path_for(self, key: str) -> Path:
        """Where the entry for ``key`` lives."""
        return self.folder / f"{key}.npz"

    def load(self, key: str) -> CachedItem | None:
        """The entry for ``key``, or None when absent or unreadable (a corrupt entry counts as a miss)."""
        item = self._read(self.path_for(key))
        if item is None:
            self.misses += 1
        else:
            self.hits += 1
        return item

    def store(self, key: str, *, features: np.ndarray, audio: np.ndarray) -> None:
        """Save a kept file's features ``[C, M, T]`` and prepared audio ``[C, N]`` (float32)."""
        self._write(key, features=np.asarray(features, np.float32), audio=np.asarray(audio, np.float32))

    def store_skip(self, key: str, skip: SkipFile) -> None:
        """Save the verdict for a skipped file."""
        self._write(key, skip_reason=np.array(skip.reason), skip_detail=np.array(skip.detail))

    # ------------------------------------------------------------------------------------------- internals
    def _read(self, path: Path) -> CachedItem | None:
        try:
            with np.load(path, allow_pickle=False) as data:
                if "skip_reason" in data.files:
                    return CachedItem(skip=SkipFile(str(data["skip_reason"]), str(data["skip_detail"])))
                features, audio = data["features"], data["audio"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if not self._valid(features, audio):
            return None
        return CachedItem(features=features, audio=audio)

    def _valid(self, features: np.ndarray, audio: np.ndarray) -> bool:
        spec = self.spec
        return (features.dtype == np.float32 and audio.dtype == np.float32 and features.shape == spec.shape
                and audio.shape == (spec.channels, spec.n_samples) and bool(np.all(np.isfinite(features)))
                and bool(np.all(np.isfinite(audio))))

    def _write(self, key: str, **arrays: np.ndarray) -> None:
        if not self.writable:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.path_for(key)) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
        except OSError as err:
            self.writable = False
            log.warning(f"warning: feature cache {self.folder} is not writable ({err.strerror or err}); "
                        "going on without caching")
