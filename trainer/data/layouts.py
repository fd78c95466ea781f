"""Where the candidate one-shots of a data folder are, and what its layout says about each.

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
as bad. The walk is iterative (any depth), follows folder links once per real folder, and turns every path it
cannot use into a :class:`~trainer.data.audio.SkipFile` instead of an exception: a folder it cannot list, a link
loop, a path past the system's limit; NSynth entries that are malformed or resolve outside the dataset.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from runtime.errors import ConfigError, KickspaceError
from runtime.files import printable
from trainer.data.audio import AUDIO_EXTENSIONS, SkipFile, unopenable

LAYOUTS = ("auto", "flat", "bank", "nsynth")
NSYNTH_TEXT_FIELDS = ("instrument_family_str", "instrument_source_str")


@dataclass
class Item:
    """One candidate file: where it is and what its layout says about it."""

    path: Path
    label: str | None = None
    pitch: int = -1
    extra: dict[str, str] = field(default_factory=dict)


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


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
