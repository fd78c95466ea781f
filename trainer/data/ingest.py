"""Find the one-shots in data folders, featurise them through the cache, and report what was kept and skipped.

Layouts (``layout="auto"`` picks one per root):

``nsynth``
    ``examples.json`` + ``audio/<note>.wav``: label = ``instrument_family_str``, pitch = ``pitch`` (MIDI), plus
    ``instrument_family_str`` and ``instrument_source_str`` per item. Files not listed in the JSON are ignored.
``flat``
    Audio files directly in the root (``data/kicks/*.wav``); no labels. Forced on a tree, every file is taken,
    unlabelled.
``bank``
    Anything deeper: the label is the name of each file's immediate parent folder (``bank/kick/x.wav`` -> kick,
    ``drums/<source>/<class>/x.wav`` -> class); files directly in the root are unlabelled.

Files with other extensions and hidden files (``.DS_Store``, macOS ``._x.wav`` forks) are counted as ignored, not
as bad. Every bad audio file is skipped with a reason code and a one-line log (``skip: <path>: <detail>``); a
summary table (kept, skipped by reason, per class) is printed at the end.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from runtime.errors import ConfigError, KickspaceError
from runtime.files import atomic_path, printable, write_wav
from trainer.data.audio import (AUDIO_EXTENSIONS, Preprocess, SkipFile, check_path, load_one_shot,
                                reject_too_long, unopenable)
from trainer.data.cache import FeatureCache, content_key
from trainer.spec import SpectrogramSpec

LAYOUTS = ("auto", "flat", "bank", "nsynth")
NSYNTH_TEXT_FIELDS = ("instrument_family_str", "instrument_source_str")
UNLABELLED = "(unlabelled)"


# ================================================================================================ data types
@dataclass
class Item:
    """One candidate file: where it is and what its layout says about it."""

    path: Path
    label: str | None = None
    pitch: int = -1
    extra: dict[str, str] = field(default_factory=dict)


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

    def reasons(self) -> dict[str, str]:
        """Skipped path -> reason code."""
        return {path: reason for path, reason, _ in self.skipped}

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


# ================================================================================================== layouts
def is_audio_name(name: str) -> bool:
    """True for a visible file name with an audio extension."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def _walk(root: Path) -> Iterator[tuple[Path, bool, SkipFile | None]]:
    """Every visible entry under ``root`` as (path, has audio name, None), depth first in name order.

    Iterative, so any depth is walked. Folders named like audio (``x.wav/``) are yielded as candidates (they will
    be skipped), not entered. Folder links are followed, each real folder read once: a link back into a folder
    already read is yielded as (path, False, SkipFile "link-loop"); a folder that cannot be listed (no
    permission, a path longer than the system's limit) as (path, False, its SkipFile).
    """
    seen: dict[tuple[int, int], Path] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as err:
            yield folder, False, unopenable(folder, err)
            continue
        first = seen.setdefault((info.st_dev, info.st_ino), folder)
        if first != folder:
            yield folder, False, _revisit(folder, first)
            continue
        folders = [entry for entry in entries if _is_folder(entry)]
        for entry in folders:
            if is_audio_name(entry.name):
                yield Path(entry.path), True, None  # a folder named x.wav: a candidate that will be skipped
        for entry in entries:
            if not _is_folder(entry):
                yield Path(entry.path), is_audio_name(entry.name), None
        stack.extend(Path(entry.path) for entry in reversed(folders)
                     if not entry.name.startswith(".") and not is_audio_name(entry.name))


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links; a broken or looping link is a file (check_path names it)
    except OSError:
        return False


def _revisit(folder: Path, first: Path) -> SkipFile:
    if first == folder or Path(os.path.commonpath([first, folder])) == first:
        return SkipFile("link-loop", f"a folder link back to {printable(first)}, which holds it: a loop; "
                                     "not followed")
    return SkipFile("link-loop", f"a second route to {printable(first)}, already read; not read twice")


def detect_layout(root: Path) -> str:
    """``nsynth`` (examples.json), ``flat`` (audio only directly in the root) or ``bank``."""
    if (root / "examples.json").is_file():
        return "nsynth"
    for path, audio, _ in _walk(root):
        if audio and path.parent != root:
            return "bank"
    return "flat"


def scan_root(root: Path, *, layout: str = "auto") -> tuple[str, list[Item], int, list[tuple[Item, SkipFile]]]:
    """Candidates of one data root.

    Returns
    -------
    layout : str
        The layout used (``auto`` resolved).
    items : list of Item
    ignored : int
        Non-audio and hidden files.
    refused : list of (Item, SkipFile)
        Folders the walk could not read or would loop into, and (NSynth) entries that are malformed, point
        outside the dataset or whose file is absent.
    """
    if layout not in LAYOUTS:
        raise ConfigError("layout", f"must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not root.exists():
        raise KickspaceError(f"data folder {root} does not exist; check the path")
    if not root.is_dir():
        raise KickspaceError(f"{root} is a file, not a data folder; give the folder that holds the one-shots")
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "nsynth":
        return (layout, *_scan_nsynth(root))
    items, ignored, refused = [], 0, []
    for path, audio, skip in _walk(root):
        if skip is not None:
            refused.append((Item(path=path), skip))
        elif not audio:
            ignored += 1
        else:
            label = path.parent.name if layout == "bank" and path.parent != root else None
            items.append(Item(path=path, label=label))
    return layout, items, ignored, refused


def _scan_nsynth(root: Path) -> tuple[list[Item], int, list[tuple[Item, SkipFile]]]:
    meta_path = root / "examples.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KickspaceError(f"{meta_path}: cannot read the NSynth metadata ({err}); "
                             "fix or remove examples.json (without it the folder is read as a bank)") from None
    if not isinstance(meta, dict):
        raise KickspaceError(f"{meta_path}: expected an object of note name -> fields, got {type(meta).__name__}")
    items, refused, listed = [], [], set()
    for note in sorted(meta):
        path = root / "audio" / f"{note}.wav"
        listed.add(path.name)
        try:
            item = nsynth_item(root, note, meta[note])
        except SkipFile as skip:
            refused.append((Item(path=path), skip))
            continue
        if os.path.lexists(item.path):
            items.append(item)
        else:
            refused.append((item, SkipFile("missing", "listed in examples.json but not in audio/")))
    ignored = 0
    for path, _, skip in _walk(root):
        if skip is not None:
            refused.append((Item(path=path), skip))
        elif path.name not in listed and path != meta_path:
            ignored += 1
    return items, ignored, refused


def nsynth_item(root: Path, note: str, fields: object) -> Item:
    """The :class:`Item` of one ``examples.json`` entry ``note -> fields``; the file is ``root/audio/NOTE.wav``.

    Raises :class:`SkipFile`: "bad-entry" naming the malformed field (the entry is not an object; ``pitch`` not
    a MIDI note 0-127; ``instrument_family_str``/``instrument_source_str`` not a non-empty string; absent fields
    are allowed: unknown pitch, unlabelled), or "outside-root" when the file resolves outside ``root`` (``..``
    or absolute names, links in audio/ that lead elsewhere).
    """
    where = f"examples.json entry {printable(note)!r}"
    if not isinstance(fields, dict):
        raise SkipFile("bad-entry", f"{where}: must be an object of fields, got {type(fields).__name__}")
    pitch = fields.get("pitch", -1)
    if "pitch" in fields and not (_is_whole(pitch) and 0 <= pitch <= 127):
        raise SkipFile("bad-entry", f"{where}: pitch must be a MIDI note number 0-127, got {_shown(pitch)}")
    for key in NSYNTH_TEXT_FIELDS:
        if key in fields and _text(fields[key]) is None:
            raise SkipFile("bad-entry", f"{where}: {key} must be a non-empty string, got {_shown(fields[key])}")
    if "\0" in note:
        raise SkipFile("bad-entry", f"{where}: the note name holds a NUL character")
    path = root / "audio" / f"{note}.wav"
    real, home = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, home]) != home:
        raise SkipFile("outside-root", f"{where} resolves to {printable(real)}, outside the dataset folder "
                                       f"{printable(home)}; refused (entries name files in audio/)")
    return Item(path=path, label=_text(fields.get("instrument_family_str")), pitch=int(pitch),
                extra={key: _text(fields.get(key)) or "" for key in NSYNTH_TEXT_FIELDS})


def _is_whole(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and float(value).is_integer())


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return printable(text if len(text) <= 40 else text[:37] + "...")


def _reason_list(counts: dict[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{reason} {n}" for reason, n in ordered)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


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
            _log_skip(None, item, skip)
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
                _log_skip(console, item, skip)
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


def _log_skip(console, item: Item, skip: SkipFile) -> None:
    line = f"skip: {printable(item.path)}: {skip.detail}"
    if console is None:
        print(line, file=sys.stderr)
    else:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


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
