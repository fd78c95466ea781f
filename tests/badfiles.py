"""Build a corpus of bad, odd and good audio files for the robustness tests (numpy + soundfile only).

:func:`build_corpus` writes, into one flat folder, every bad kind the ingestion must survive (each mapped to the
reason code it must be skipped with), odd-but-fine files that must be kept (96 kHz, 6 channels, 8-bit, float64,
unicode, spaces, a newline and a Latin-1 byte in the name, FLAC/AIFF/OGG/MP3, a link to a kick) and non-audio
files that must be ignored. Path oddities are bad kinds too: links that dangle or loop, a folder link back to the
root, a folder tree nested past the system's path limit (deeper than Python's recursion limit), a FIFO, a
socket.
:func:`build_nsynth` writes an NSynth folder whose ``examples.json`` holds hostile entries. Keys of ``bad`` and
``good`` are paths relative to the root (:func:`relative`). Remove a corpus with :func:`remove` (its deep tree
defeats ``shutil.rmtree``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from tests.signals import simple_kick


@dataclass
class BadCorpus:
    """What was written: bad file name -> expected reason, good file names, ignored file names."""

    root: Path
    bad: dict[str, str] = field(default_factory=dict)
    good: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def kick(sample_rate: int = 44100, *, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    """A test kick ``[N]`` float32."""
    return simple_kick(sample_rate=sample_rate, seconds=seconds, seed=seed)


def four_kicks(sample_rate: int = 44100, *, spacing_s: float = 0.15) -> np.ndarray:
    """Four kicks ``spacing_s`` apart in one file (their tails overlap). ``[N]`` float32."""
    hit = kick(sample_rate, seconds=0.6)
    out = np.zeros(int(sample_rate * (3 * spacing_s + 0.6)) + 1, np.float32)
    for i in range(4):
        start = int(round(i * spacing_s * sample_rate))
        out[start:start + hit.size] += hit
    return (0.9 * out / np.abs(out).max()).astype(np.float32)


def drum_loop(sample_rate: int = 44100, *, bpm: float = 120.0, bars: int = 1) -> np.ndarray:
    """A kick / hat / snare / hat eighth-note loop. ``[N]`` float32."""
    step = 60.0 / bpm / 2
    rng = np.random.default_rng(1)
    t = np.arange(int(0.2 * sample_rate)) / sample_rate
    snare = 0.6 * rng.standard_normal(t.size) * np.exp(-t / 0.05) + 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.06)
    hat = 0.3 * rng.standard_normal(t.size) * np.exp(-t / 0.01)
    sounds = (kick(sample_rate, seconds=0.4), hat, snare, hat)
    out = np.zeros(int(sample_rate * step * 8 * bars) + sample_rate // 2, np.float32)
    for i in range(8 * bars):
        start = int(round(i * step * sample_rate))
        sound = sounds[i % 4]
        out[start:start + sound.size] += sound
    return (0.9 * out / np.abs(out).max()).astype(np.float32)


def square_wave(sample_rate: int = 44100, *, hz: float = 60.0, seconds: float = 0.5) -> np.ndarray:
    """A clipped-to-square sine at 0.99 of full scale. ``[N]`` float32."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (0.99 * np.sign(np.sin(2 * np.pi * hz * t + 0.1))).astype(np.float32)


def write(path: Path, audio: np.ndarray, sample_rate: int = 44100, **kwargs) -> Path:
    """Write ``[N]`` or ``[N, C]`` with soundfile (format from the extension unless given)."""
    soundfile.write(str(path), audio, sample_rate, **kwargs)
    return path


PATH_MAX = 4096  # Linux: a path of this many bytes or more cannot be opened


def build_corpus(root: Path, *, unreadable: bool = True) -> BadCorpus:
    """Write the corpus into ``root`` (created). ``unreadable`` adds a chmod-000 file and folder (only unreadable
    to a process without CAP_DAC_OVERRIDE: a normal user, or root with that capability dropped)."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = BadCorpus(root=root)
    _write_bad(corpus, unreadable=unreadable)
    _write_bad_paths(corpus, unreadable=unreadable)
    _write_good(corpus)
    _write_odd_names(corpus)
    _write_ignored(corpus)
    return corpus


def relative(path: str | Path, root: Path) -> str:
    """``path`` relative to ``root`` (the key of ``BadCorpus.bad`` and ``.good``), ``..`` resolved lexically."""
    return os.path.relpath(os.fspath(path), os.fspath(root))


def remove(root: Path) -> None:
    """Delete a corpus folder, its deep tree included (``rm -rf`` walks any depth; ``shutil.rmtree`` recurses)."""
    subprocess.run(["chmod", "-R", "u+rwX", "--", os.fspath(root)], check=False)  # chmod-000 folders
    subprocess.run(["rm", "-rf", "--", os.fspath(root)], check=True)


def _write_bad_paths(corpus: BadCorpus, *, unreadable: bool) -> None:
    """Path oddities: link loops, a folder link back to the root, a tree deeper than the path limit."""
    root, bad = corpus.root, corpus.bad
    os.symlink("loop b.wav", root / "loop a.wav")
    os.symlink("loop a.wav", root / "loop b.wav")
    os.symlink("self link.wav", root / "self link.wav")
    bad.update({"loop a.wav": "link-loop", "loop b.wav": "link-loop", "self link.wav": "link-loop"})
    if len(os.fsencode(root / "socket.wav")) < 108:  # AF_UNIX path limit
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(os.fspath(root / "socket.wav"))  # the socket file stays after close
        bad["socket.wav"] = "not-a-file"
    os.symlink(".", root / "back to the root")  # a folder link loop
    bad["back to the root"] = "link-loop"
    bad[_deep_tree(root / "deep")] = "unreachable"
    if unreadable:
        (root / "locked folder").mkdir()
        (root / "locked folder").chmod(0)
        bad["locked folder"] = "unreadable"


def _deep_tree(top: Path, name: str = "dd") -> str:
    """Nest ``name`` folders under ``top`` until the path passes PATH_MAX; returns the first unopenable folder
    (relative to ``top``'s parent). Created through folder descriptors (the full path cannot be opened)."""
    top.mkdir()
    length, depth = len(os.fsencode(top)), 0
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while length < PATH_MAX + 2 * len(name):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd, length, depth = inner, length + 1 + len(name), depth + 1
    finally:
        os.close(fd)
    first = next(i for i in range(1, depth + 1) if len(os.fsencode(top)) + i * (1 + len(name)) >= PATH_MAX)
    return os.path.join(top.name, *[name] * first)


def _write_odd_names(corpus: BadCorpus) -> None:
    """Good kicks under odd names: a Latin-1 byte (not UTF-8), a newline, an upper-case extension, a link."""
    root, good = corpus.root, corpus.good
    latin1 = os.fsdecode(b"grosse caisse \xe9t\xe9.wav")  # "grosse caisse été.wav" as Latin-1 bytes
    write(root / "latin1.tmp.wav", kick(seed=8), subtype="PCM_16").rename(root / latin1)
    write(root / "kick\nwith a newline.wav", kick(seed=9), subtype="PCM_16")
    write(root / "KICK LOUD.WAV", kick(seed=10), subtype="PCM_16", format="WAV")
    os.symlink("kick 44k.wav", root / "link to a kick.wav")
    good.extend([latin1, "kick\nwith a newline.wav", "KICK LOUD.WAV", "link to a kick.wav"])
    stereo = kick(seed=11)
    write(root / "antiphase stereo.wav", np.stack([stereo, -stereo], axis=1), subtype="PCM_16")
    corpus.bad["antiphase stereo.wav"] = "silent"  # its mono mix cancels: not "several hits"


def build_nsynth(root: Path) -> BadCorpus:
    """An NSynth folder: two good notes, and entries that are malformed or point outside the dataset.

    ``bad`` maps each hostile entry's candidate path (relative to ``root``) to its reason; a real WAV sits at
    every outside target, so an entry that is not refused would be trained on.
    """
    (root / "audio").mkdir(parents=True)
    corpus = BadCorpus(root=root)
    outside = root.parent / f"{root.name} outside"
    outside.mkdir()
    for name in ("escape.wav", "absolute.wav", "linked.wav"):
        write(outside / name, kick(16000, seed=12), 16000, subtype="PCM_16")
    good = {"bass_synthetic_033-035-100": 35, "guitar_acoustic_010-060-075": 60}
    meta: dict[str, object] = {note: _nsynth_fields(pitch) for note, pitch in good.items()}
    hostile = {  # note -> (fields, reason)
        f"../../{outside.name}/escape": (_nsynth_fields(40), "outside-root"),
        str(outside / "absolute"): (_nsynth_fields(41), "outside-root"),
        "linked": (_nsynth_fields(42), "outside-root"),
        "a list entry": ([60, "bass"], "bad-entry"),
        "pitch in words": ({**_nsynth_fields(0), "pitch": "sixty"}, "bad-entry"),
        "pitch out of range": ({**_nsynth_fields(0), "pitch": 300}, "bad-entry"),
        "pitch true": ({**_nsynth_fields(0), "pitch": True}, "bad-entry"),
        "family a number": ({**_nsynth_fields(60), "instrument_family_str": 5}, "bad-entry"),
        "listed but absent": (_nsynth_fields(60), "missing"),
    }
    for note in [*good, *(n for n in hostile if n.startswith(("pitch", "family", "a list")))]:
        write(root / "audio" / f"{note}.wav", kick(16000, seed=13), 16000, subtype="PCM_16")
    os.symlink(outside / "linked.wav", root / "audio" / "linked.wav")
    for note, (fields, reason) in hostile.items():
        meta[note] = fields
        corpus.bad[relative(root / "audio" / f"{note}.wav", root)] = reason
    corpus.good = [relative(root / "audio" / f"{note}.wav", root) for note in good]
    (root / "examples.json").write_text(json.dumps(meta), encoding="utf-8")
    return corpus


def _nsynth_fields(pitch: int) -> dict[str, object]:
    return {"pitch": pitch, "sample_rate": 16000, "instrument_family_str": "bass",
            "instrument_source_str": "synthetic", "velocity": 100}


def _write_bad(corpus: BadCorpus, *, unreadable: bool) -> None:
    root, bad = corpus.root, corpus.bad
    whole = write(root / "_whole.tmp.wav", kick(), subtype="PCM_16")
    (root / "truncated header.wav").write_bytes(whole.read_bytes()[:30])
    bad["truncated header.wav"] = "corrupt"
    (root / "riff garbage.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    bad["riff garbage.wav"] = "corrupt"
    whole.unlink()
    (root / "zero bytes.wav").write_bytes(b"")
    bad["zero bytes.wav"] = "empty"
    (root / "readme named like audio.wav").write_text("These are my kicks, enjoy!\n" * 20, encoding="utf-8")
    bad["readme named like audio.wav"] = "not-audio"
    with_nan = kick()
    with_nan[100:110] = np.nan
    write(root / "nan samples.wav", with_nan, subtype="FLOAT")
    bad["nan samples.wav"] = "non-finite"
    with_inf = kick()
    with_inf[5] = np.inf
    write(root / "inf samples.wav", with_inf, subtype="DOUBLE")
    bad["inf samples.wav"] = "non-finite"
    write(root / "one sample.wav", np.array([0.5], np.float32), subtype="PCM_16")
    bad["one sample.wav"] = "too-short"
    write(root / "header only.wav", np.zeros(0, np.float32), subtype="PCM_16")
    bad["header only.wav"] = "too-short"
    _write_ten_minutes(root / "ten minutes.wav")
    bad["ten minutes.wav"] = "too-long"
    write(root / "pure silence.wav", np.zeros(22050, np.float32), subtype="PCM_16")
    bad["pure silence.wav"] = "silent"
    write(root / "dc only.wav", np.full(22050, 0.5, np.float32), subtype="PCM_16")
    bad["dc only.wav"] = "dc-only"
    write(root / "square wave.wav", square_wave(), subtype="PCM_16")
    bad["square wave.wav"] = "clipped"
    write(root / "four kicks.wav", four_kicks(), subtype="PCM_16")
    bad["four kicks.wav"] = "multi-hit"
    write(root / "drum loop.wav", drum_loop(), subtype="PCM_16")
    bad["drum loop.wav"] = "multi-hit"
    (root / "x.wav").mkdir()
    bad["x.wav"] = "not-a-file"
    os.symlink(root / "gone" / "deleted kick.wav", root / "broken link.wav")
    bad["broken link.wav"] = "broken-link"
    os.mkfifo(root / "named pipe.wav")
    bad["named pipe.wav"] = "not-a-file"
    if unreadable:
        locked = write(root / "unreadable.wav", kick(seed=7), subtype="PCM_16")
        locked.chmod(0)
        bad["unreadable.wav"] = "unreadable"


def _write_ten_minutes(path: Path, sample_rate: int = 8000) -> None:
    """10 minutes of quiet noise (8 kHz 16-bit, ~9.6 MB), written in blocks."""
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(str(path), "w", sample_rate, 1, subtype="PCM_16") as handle:
        for _ in range(10):
            handle.write((0.1 * rng.standard_normal(60 * sample_rate)).astype(np.float32))


def _write_good(corpus: BadCorpus) -> None:
    root, good = corpus.root, corpus.good
    files = {
        "kick 44k.wav": (kick(), 44100, {"subtype": "PCM_16"}),
        "kick 96k.wav": (kick(96000), 96000, {"subtype": "PCM_24"}),
        "kick 22k.wav": (kick(22050), 22050, {"subtype": "PCM_16"}),
        "kick six channels.wav": (np.stack([kick(seed=s) for s in range(6)], axis=1), 44100, {"subtype": "PCM_16"}),
        "kick 8-bit.wav": (kick(), 44100, {"subtype": "PCM_U8"}),
        "kick 32-bit int.wav": (kick(), 44100, {"subtype": "PCM_32"}),
        "kick float32 stereo.wav": (np.stack([kick(), 0.5 * kick()], axis=1), 48000, {"subtype": "FLOAT"}),
        "kick float64.wav": (kick(), 44100, {"subtype": "DOUBLE"}),
        "kick ünïcødé – 🥁 #1.wav": (kick(seed=3), 44100, {"subtype": "PCM_16"}),
        "kick 24-bit.flac": (kick(seed=4), 44100, {"subtype": "PCM_24"}),
        "kick.aiff": (kick(seed=5), 44100, {"subtype": "PCM_16"}),
        "kick.ogg": (kick(seed=6), 44100, {"subtype": "VORBIS"}),
        "kick long tail.wav": (simple_kick(seconds=3.0, decay_s=1.2), 44100, {"subtype": "PCM_16"}),
        "kick driven hard.wav": (np.tanh(5 * kick()).astype(np.float32), 44100, {"subtype": "PCM_16"}),
        "kick quiet.wav": (0.01 * kick(), 44100, {"subtype": "PCM_16"}),
    }
    for name, (audio, rate, kwargs) in files.items():
        write(root / name, audio, rate, **kwargs)
        good.append(name)
    if "MP3" in soundfile.available_formats():
        write(root / "kick.mp3", kick(), 44100, format="MP3", subtype="MPEG_LAYER_III")
        good.append("kick.mp3")


def _write_ignored(corpus: BadCorpus) -> None:
    for name, content in (("notes.txt", b"kicks from my MPC\n"), (".DS_Store", b"\x00\x00\x00\x01Bud1"),
                          ("._kick 44k.wav", b"\x00\x05\x16\x07AppleDouble"), ("MANIFEST.tsv", b"path\tclass\n")):
        (corpus.root / name).write_bytes(content)
        corpus.ignored.append(name)
