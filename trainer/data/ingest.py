"""Find the one-shots in data folders, featurise them through the cache, and report what was kept and skipped.

Each root is read in its layout (flat, bank or NSynth: :mod:`trainer.data.layouts`). Every bad audio file, and
every path the walk cannot use, is skipped with a reason code and a one-line log (``skip: <path>: <detail>``); a
summary table (kept, skipped by reason, per class) is printed at the end.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from runtime.files import atomic_path, printable, write_wav
from runtime.spec import SpectrogramSpec
from trainer.data.audio import Preprocess, SkipFile, check_path, load_one_shot, reject_too_long
from trainer.data.cache import FeatureCache, content_key
from trainer.data.layouts import LAYOUTS, Item, detect_layout, is_audio_name, scan_root  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

UNLABELLED = "(unlabelled)"


# ================================================================================================ data types
@dataclass
class ClassCount:
    """Kept and skipped files of one class."""

    kept: int = 0
    skipped: int = 0


@dataclass
class IngestSummary:
    """What one ingestion did.

    Attributes
    ----------
    kept : int
    skipped : list of (path, reason code, detail)
    skipped_labels : list of str or None
        Class of each skipped file (parallel to ``skipped``).
    ignored : int
        Non-audio and hidden files (not reported as bad).
    per_class : dict label -> ClassCount
        ``None`` is the key of unlabelled files.
    layouts : list of (root, layout)
    elapsed_s : float
    cache_hits, cache_misses : int
    """

    kept: int = 0
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    skipped_labels: list[str | None] = field(default_factory=list)
    ignored: int = 0
    per_class: dict[str | None, ClassCount] = field(default_factory=dict)
    layouts: list[tuple[str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0

    def count(self, label: str | None, *, kept: bool) -> None:
        """Add one file of class ``label`` to the kept or skipped count."""
        entry = self.per_class.setdefault(label, ClassCount())
        if kept:
            entry.kept += 1
            self.kept += 1
        else:
            entry.skipped += 1

    def by_reason(self) -> dict[str, int]:
        """Number of skipped files per reason code, most frequent first."""
        counts: dict[str, int] = {}
        for _, reason, _ in self.skipped:
            counts[reason] = counts.get(reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def render(self):
        """A rich Table: one row per class and a total row; columns kept, skipped, skipped by reason."""
        from rich.table import Table

        table = Table(title=f"ingest: {self.kept} kept, {len(self.skipped)} skipped", title_justify="left",
                      caption=f"{self.ignored} non-audio files ignored", caption_justify="left")
        table.add_column("class", no_wrap=True)
        table.add_column("kept", justify="right")
        table.add_column("skipped", justify="right")
        table.add_column("skipped by reason")
        per_reason: dict[str | None, dict[str, int]] = {}
        for (_, reason, _), label in zip(self.skipped, self.skipped_labels):
            row = per_reason.setdefault(label, {})
            row[reason] = row.get(reason, 0) + 1
        for label in sorted(self.per_class, key=lambda name: (name is None, name or "")):
            counts = self.per_class[label]
            table.add_row(label or UNLABELLED, str(counts.kept), str(counts.skipped or ""),
                          _reason_list(per_reason.get(label, {})))
        table.add_row("total", str(self.kept), str(len(self.skipped)), _reason_list(self.by_reason()),
                      style="bold")
        return table

    def describe(self) -> str:
        """One line: roots and layouts, time, cache hits."""
        roots = ", ".join(f"{printable(root)} ({layout})" for root, layout in self.layouts)
        return (f"{roots}: {self.elapsed_s:.1f} s, feature cache {self.cache_hits} hits / "
                f"{self.cache_misses} misses")

    def write_skipped_csv(self, path: Path | str) -> Path:
        """Write ``path,reason,detail`` for every skipped file (atomic). Returns the path.

        UTF-8; a file name's bytes that are not UTF-8 are written back as those bytes (surrogateescape), so the
        column names the real file.
        """
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8",
                                            errors="surrogateescape") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "reason", "detail"])
            writer.writerows(self.skipped)
        return Path(path)

    def add_skip(self, path: str, label: str | None, skip: SkipFile) -> None:
        """Record a skipped file of class ``label``."""
        self.skipped.append((path, skip.reason, skip.detail))
        self.skipped_labels.append(label)
        self.count(label, kept=False)


@dataclass
class Corpus:
    """Featurised one-shots.

    Attributes
    ----------
    features : np.ndarray [N, C, M, T] float32
    audio : np.ndarray [N, C, S] float32
        Prepared audio (what ``features`` were computed from).
    paths : list of str
    labels : list of str or None
    classes : list of str
        Sorted unique labels.
    label_ids : np.ndarray [N] int64
        Index into ``classes``, -1 when unlabelled.
    pitch : np.ndarray [N] int64
        MIDI pitch (NSynth), -1 when unknown.
    extra : list of dict
        Per-item metadata (NSynth: ``instrument_family_str``, ``instrument_source_str``; empty otherwise).
    spec : SpectrogramSpec
    summary : IngestSummary
    """

    features: np.ndarray
    audio: np.ndarray
    paths: list[str]
    labels: list[str | None]
    classes: list[str]
    label_ids: np.ndarray
    pitch: np.ndarray
    extra: list[dict[str, str]]
    spec: SpectrogramSpec
    summary: IngestSummary

    def __len__(self) -> int:
        return len(self.paths)


def _reason_list(counts: dict[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{reason} {n}" for reason, n in ordered)


# =================================================================================================== ingest
FEATURE_BATCH = 32  # prepared examples per log-mel call: one batched conv is several times cheaper per file


def prepare_file(path: Path, *, spec: SpectrogramSpec, preprocess: Preprocess,
                 cache: FeatureCache | None) -> tuple[np.ndarray | None, np.ndarray, str | None]:
    """Features ``[C, M, T]`` (None when not cached yet), prepared audio ``[C, N]`` and cache key of one file.

    Raises :class:`SkipFile` (cached verdicts included). Files that cannot be opened, are not audio or are too
    long are judged from the file system and the header on every pass (cheap) and never hashed, so a huge file
    is never read in full.
    """
    check_path(path)
    reject_too_long(path, preprocess=preprocess)
    key = _key(path) if cache is not None else None
    if key is not None:
        hit = cache.load(key)
        if hit is not None:
            if hit.skip is not None:
                raise hit.skip
            return hit.features, hit.audio, key
    try:
        return None, load_one_shot(path, spec=spec, preprocess=preprocess), key
    except SkipFile as skip:
        if key is not None:
            cache.store_skip(key, skip)
        raise


def featurise(path: Path, *, spec: SpectrogramSpec, preprocess: Preprocess,
              cache: FeatureCache | None) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[C, M, T]`` and prepared audio ``[C, N]`` of one file, through the cache when given."""
    features, audio, key = prepare_file(path, spec=spec, preprocess=preprocess, cache=cache)
    if features is None:
        features = _features_of([audio], spec=spec, keys=[key], cache=cache)[0]
    return features, audio


def _features_of(audio: list[np.ndarray], *, spec: SpectrogramSpec, keys: list[str | None],
                 cache: FeatureCache | None) -> np.ndarray:
    """Log-mel features ``[B, C, M, T]`` of prepared examples, computed in one batch and stored in the cache."""
    from trainer.spec import waveform_to_features

    features = waveform_to_features(np.stack(audio), spec).numpy()
    if cache is not None:
        for key, feats, wave in zip(keys, features, audio):
            cache.store(key, features=feats, audio=wave)
    return features


def _key(path: Path) -> str:
    try:
        return content_key(path)
    except OSError as err:
        raise SkipFile("unreadable", f"cannot read it ({err.strerror or err}); check its permissions") from None


def ingest(roots: Sequence[Path], *, spec: SpectrogramSpec, preprocess: Preprocess, layout: str = "auto",
           cache_dir: Path | None = None, use_cache: bool = True, progress: bool = True) -> Corpus:
    """Ingest data roots into a :class:`Corpus`; bad files are skipped and reported, never fatal.

    Parameters
    ----------
    roots : sequence of Path
        Data folders (each gets its own layout when ``layout="auto"``).
    layout : {"auto", "flat", "bank", "nsynth"}
    cache_dir : Path or None
        Feature cache root (default ``$KICKSPACE_CACHE`` or ``~/.cache/kickspace``).
    use_cache : bool
        False computes everything and reads/writes no cache.
    progress : bool
        Show a progress bar on stderr.
    """
    start = time.perf_counter()
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    summary = IngestSummary()
    items: list[Item] = []
    for root in roots:
        used, found, ignored, refused = scan_root(Path(root), layout=layout)
        summary.layouts.append((str(root), used))
        summary.ignored += ignored
        items.extend(found)
        for item, skip in refused:
            _log_skip(item, skip)
            summary.add_skip(str(item.path), item.label, skip)
    cache = FeatureCache(cache_dir, spec=spec, preprocess=preprocess) if use_cache else None
    kept = _featurise_all(items, spec=spec, preprocess=preprocess, cache=cache, summary=summary, progress=progress)
    if cache is not None:
        summary.cache_hits, summary.cache_misses = cache.hits, cache.misses
    corpus = _assemble(kept, spec=spec, summary=summary)
    summary.elapsed_s = time.perf_counter() - start
    _print_summary(summary)
    return corpus


def _featurise_all(items: list[Item], *, spec: SpectrogramSpec, preprocess: Preprocess, cache: FeatureCache | None,
                   summary: IngestSummary, progress: bool) -> list[tuple[Item, np.ndarray, np.ndarray]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    bar = Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, disable=not progress, transient=True)
    kept: list[list] = []  # [item, features or None until its batch is computed, audio]
    pending: list[tuple[list, str | None]] = []
    with bar:
        task = bar.add_task("ingest", total=len(items))
        for item in items:
            try:
                features, audio, key = prepare_file(item.path, spec=spec, preprocess=preprocess, cache=cache)
            except SkipFile as skip:
                _log_skip(item, skip)
                summary.add_skip(str(item.path), item.label, skip)
            else:
                kept.append([item, features, audio])
                summary.count(item.label, kept=True)
                if features is None:
                    pending.append((kept[-1], key))
                if len(pending) == FEATURE_BATCH:
                    _fill_features(pending, spec=spec, cache=cache)
            bar.advance(task)
        _fill_features(pending, spec=spec, cache=cache)
    return [tuple(entry) for entry in kept]


def _fill_features(pending: list[tuple[list, str | None]], *, spec: SpectrogramSpec,
                   cache: FeatureCache | None) -> None:
    """Compute the features of the pending kept entries in one batch (in place) and empty the list."""
    if pending:
        features = _features_of([entry[2] for entry, _ in pending], spec=spec, keys=[k for _, k in pending],
                                cache=cache)
        for (entry, _), feats in zip(pending, features):
            entry[1] = feats
        pending.clear()


def _log_skip(item: Item, skip: SkipFile) -> None:
    """One WARNING line per skipped file (above the progress bar while it draws: rich redirects stderr)."""
    log.warning(f"skip: {printable(item.path)}: {skip.detail}")


def _assemble(kept: list[tuple[Item, np.ndarray, np.ndarray]], *, spec: SpectrogramSpec,
              summary: IngestSummary) -> Corpus:
    labels = [item.label for item, _, _ in kept]
    classes = sorted({label for label in labels if label is not None})
    index = {name: i for i, name in enumerate(classes)}
    features = np.empty((len(kept), *spec.shape), np.float32)
    audio = np.empty((len(kept), spec.channels, spec.n_samples), np.float32)
    for i, (_, feats, wave) in enumerate(kept):
        features[i], audio[i] = feats, wave
    return Corpus(features=features, audio=audio, paths=[str(item.path) for item, _, _ in kept], labels=labels,
                  classes=classes, label_ids=np.array([index.get(label, -1) for label in labels], np.int64),
                  pitch=np.array([item.pitch for item, _, _ in kept], np.int64),
                  extra=[dict(item.extra) for item, _, _ in kept], spec=spec, summary=summary)


def _print_summary(summary: IngestSummary) -> None:
    """The ingest report on stdout (a designated output: the table is what ``trainer ingest`` prints as its result)."""
    from rich.console import Console

    console = Console()
    console.print(summary.render())
    console.print(summary.describe(), markup=False, highlight=False, soft_wrap=True)


# ================================================================================================== preview
def write_preview(corpus: Corpus, out_dir: Path, *, count: int = 4) -> list[Path]:
    """Write, for the first ``count`` items, the prepared audio and its spectrogram round trip as 24-bit WAVs.

    The round trip is log-mel -> mel inverse -> 32 fast Griffin-Lim iterations (``trainer.spec``), i.e. the best a
    model on this spec can sound. Files: ``NN-<stem>-prepared.wav`` and ``NN-<stem>-roundtrip.wav``.
    """
    from trainer.spec import features_to_waveform

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = min(count, len(corpus))
    if n == 0:
        return []
    rebuilt = features_to_waveform(corpus.features[:n], corpus.spec, n_iter=32).numpy()
    written = []
    for i in range(n):
        stem = f"{i:02d}-{Path(corpus.paths[i]).stem}"
        for suffix, wave in (("prepared", corpus.audio[i]), ("roundtrip", rebuilt[i])):
            written.append(write_wav(out_dir / f"{stem}-{suffix}.wav", wave, corpus.spec.sample_rate))
    return written
