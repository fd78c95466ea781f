"""Layouts, labels, the feature cache, the summary and previews."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
from rich.console import Console

from runtime.spec import SpectrogramSpec, get_spec
from tests import badfiles
from tests.badfiles import kick, write
from tests.signals import simple_kick
from trainer.data.audio import Preprocess
from trainer.data.cache import FeatureCache
from trainer.data.ingest import detect_layout, ingest, write_preview

SPEC = SpectrogramSpec(n_mels=64, frames=64)  # 0.37 s examples: fast, and still the real code path
PRE = Preprocess()
DRUMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "drums"


def _ingest(*roots: Path, cache: Path | None = None, spec: SpectrogramSpec = SPEC, **kwargs):
    return ingest(list(roots), spec=spec, preprocess=PRE, cache_dir=cache, use_cache=cache is not None,
                  progress=False, **kwargs)


def _flat(root: Path, n: int = 3) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        write(root / f"kick {i}.wav", kick(seed=i), subtype="PCM_16")
    (root / "notes.txt").write_text("my kicks\n")
    return root


def _bank(root: Path) -> Path:
    for label, seeds in (("kick", (0, 1)), ("snare", (2, 3)), ("hat", (4,))):
        (root / label).mkdir(parents=True)
        for seed in seeds:
            write(root / label / f"{label}{seed}.wav", kick(seed=seed, seconds=0.3), subtype="PCM_16")
    write(root / "hat" / "hat silent.wav", np.zeros(4410, np.float32), subtype="PCM_16")
    (root / "snare" / "readme.md").write_text("snares\n")
    return root


# ---------------------------------------------------------------------------------------------------- layouts
def test_flat_folder_gives_unlabelled_items(tmp_path):
    corpus = _ingest(_flat(tmp_path / "kicks"))
    assert corpus.summary.layouts == [(str(tmp_path / "kicks"), "flat")]
    assert len(corpus) == 3 and corpus.features.shape == (3, *SPEC.shape) and corpus.features.dtype == np.float32
    assert corpus.audio.shape == (3, 1, SPEC.n_samples)
    assert corpus.labels == [None] * 3 and corpus.classes == []
    assert corpus.label_ids.tolist() == [-1] * 3 and corpus.pitch.tolist() == [-1] * 3
    assert corpus.summary.ignored == 1 and corpus.summary.kept == 3
    assert np.all(corpus.features >= -1) and np.all(corpus.features <= 1)


def test_bank_labels_come_from_folder_names(tmp_path):
    corpus = _ingest(_bank(tmp_path / "bank"))
    assert corpus.summary.layouts[0][1] == "bank"
    assert corpus.classes == ["hat", "kick", "snare"]
    assert [Path(p).name for p in corpus.paths] == ["hat4.wav", "kick0.wav", "kick1.wav", "snare2.wav", "snare3.wav"]
    assert corpus.labels == ["hat", "kick", "kick", "snare", "snare"]
    assert corpus.label_ids.tolist() == [0, 1, 1, 2, 2] and corpus.label_ids.dtype == np.int64
    counts = {label: (c.kept, c.skipped) for label, c in corpus.summary.per_class.items()}
    assert counts == {"hat": (1, 1), "kick": (2, 0), "snare": (2, 0)}
    assert corpus.summary.by_reason() == {"silent": 1} and corpus.summary.ignored == 1


def test_nested_bank_labels_each_file_by_its_parent_folder(tmp_path):
    for source, label in (("sourceA", "kick"), ("sourceB", "kick"), ("sourceB", "tom")):
        (tmp_path / "drums" / source / label).mkdir(parents=True)
        write(tmp_path / "drums" / source / label / f"{source}.wav", kick(seconds=0.3), subtype="PCM_16")
    (tmp_path / "drums" / "MANIFEST.tsv").write_text("path\tclass\n")
    assert detect_layout(tmp_path / "drums") == "bank"
    corpus = _ingest(tmp_path / "drums")
    assert corpus.labels == ["kick", "kick", "tom"] and corpus.classes == ["kick", "tom"]


def test_nsynth_examples_give_pitch_family_and_source(tmp_path):
    root = tmp_path / "nsynth-test"
    (root / "audio").mkdir(parents=True)
    notes = {"bass_synthetic_033-035-100": ("bass", "synthetic", 35), "guitar_acoustic_010-060-075": ("guitar",
             "acoustic", 60), "keyboard_electronic_001-072-127": ("keyboard", "electronic", 72)}
    meta = {}
    for i, (note, (family, source, pitch)) in enumerate(notes.items()):
        meta[note] = {"note_str": note, "pitch": pitch, "sample_rate": 16000, "instrument_family_str": family,
                      "instrument_source_str": source, "velocity": 100}
        if i < 2:  # the third is listed but absent
            hz = 440.0 * 2 ** ((pitch - 69) / 12)
            t = np.arange(16000) / 16000
            tone = 0.5 * np.sin(2 * np.pi * hz * t) * np.exp(-t / 0.5) * np.minimum(1, t / 0.005)
            write(root / "audio" / f"{note}.wav", tone.astype(np.float32), 16000, subtype="PCM_16")
    write(root / "audio" / "unlisted.wav", kick(16000), 16000, subtype="PCM_16")
    (root / "examples.json").write_text(json.dumps(meta))
    spec = get_spec("nsynth")
    corpus = _ingest(root, spec=spec)
    assert corpus.summary.layouts[0][1] == "nsynth"
    assert corpus.labels == ["bass", "guitar"] and corpus.pitch.tolist() == [35, 60]
    assert corpus.extra == [{"instrument_family_str": "bass", "instrument_source_str": "synthetic"},
                            {"instrument_family_str": "guitar", "instrument_source_str": "acoustic"}]
    assert corpus.features.shape == (2, *spec.shape)
    assert [(Path(p).name, r) for p, r, _ in corpus.summary.skipped] == [
        ("keyboard_electronic_001-072-127.wav", "missing")]
    assert corpus.summary.ignored == 1  # unlisted.wav


def test_hostile_nsynth_entries_are_refused_with_the_field_or_the_escape_named(tmp_path, caplog):
    nsynth = badfiles.build_nsynth(tmp_path / "nsynth")
    corpus = _ingest(nsynth.root, spec=get_spec("nsynth"))
    skipped = {badfiles.relative(path, nsynth.root): reason for path, reason, _ in corpus.summary.skipped}
    assert skipped == nsynth.bad  # ../, absolute and linked-out entries: none trained on
    assert sorted(badfiles.relative(p, nsynth.root) for p in corpus.paths) == nsynth.good
    assert corpus.pitch.tolist() == [35, 60]
    details = {Path(path).stem: detail for path, _, detail in corpus.summary.skipped}
    assert details["pitch in words"].endswith('pitch must be a MIDI note number 0-127, got "sixty"')
    assert details["a list entry"].endswith("must be an object of fields, got list")
    assert details["family a number"].endswith("instrument_family_str must be a non-empty string, got 5")
    assert "outside the dataset folder" in details["linked"]
    logged = caplog.messages  # library code logs (trainer ingest shows it on stderr: tests/test_logging.py)
    assert [m.startswith("skip: ") and "\n" not in m for m in logged] == [True] * len(nsynth.bad)  # one line each


def test_folder_links_are_followed_once_and_a_loop_is_skipped(tmp_path):
    bank = _bank(tmp_path / "bank")
    os.symlink(bank / "kick", bank / "kick again")  # a second route to the same files
    os.symlink("..", bank / "snare" / "up")  # a loop
    (tmp_path / "elsewhere" / "tom").mkdir(parents=True)
    write(tmp_path / "elsewhere" / "tom" / "tom.wav", kick(seed=6, seconds=0.3), subtype="PCM_16")
    os.symlink(tmp_path / "elsewhere" / "tom", bank / "tom")  # a linked sample pack: read
    corpus = _ingest(bank)
    assert corpus.classes == ["hat", "kick", "snare", "tom"] and corpus.labels.count("kick") == 2
    reasons = {badfiles.relative(path, bank): (reason, detail) for path, reason, detail in corpus.summary.skipped}
    assert reasons["kick again"][0] == "link-loop" and "second route" in reasons["kick again"][1]
    assert reasons["snare/up"][0] == "link-loop" and "a loop" in reasons["snare/up"][1]


def test_several_roots_mix_layouts(tmp_path):
    corpus = _ingest(_flat(tmp_path / "kicks", n=2), _bank(tmp_path / "bank"))
    assert [layout for _, layout in corpus.summary.layouts] == ["flat", "bank"]
    assert len(corpus) == 7 and corpus.labels[:2] == [None, None]
    assert corpus.classes == ["hat", "kick", "snare"] and corpus.label_ids.tolist()[:3] == [-1, -1, 0]


def test_missing_root_is_a_clear_error(tmp_path):
    from runtime.errors import KickspaceError

    with pytest.raises(KickspaceError, match="does not exist"):
        _ingest(tmp_path / "nope")


# ------------------------------------------------------------------------------------------------------ cache
def test_second_pass_comes_from_the_cache_with_identical_arrays(tmp_path):
    root, cache = _bank(tmp_path / "bank"), tmp_path / "cache"
    first = _ingest(root, cache=cache)
    second = _ingest(root, cache=cache)
    assert (first.summary.cache_hits, first.summary.cache_misses) == (0, 6)
    assert (second.summary.cache_hits, second.summary.cache_misses) == (6, 0)  # the silent file's verdict too
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.audio, second.audio)
    assert second.summary.skipped == first.summary.skipped


def test_a_changed_file_recomputes_exactly_its_entry(tmp_path):
    root, cache = _bank(tmp_path / "bank"), tmp_path / "cache"
    first = _ingest(root, cache=cache)
    write(root / "kick" / "kick1.wav", simple_kick(seconds=0.3, start_hz=300.0), subtype="PCM_16")
    second = _ingest(root, cache=cache)
    assert (second.summary.cache_hits, second.summary.cache_misses) == (5, 1)
    changed = second.paths.index(str(root / "kick" / "kick1.wav"))
    same = [i for i in range(len(second)) if i != changed]
    np.testing.assert_array_equal(first.features[same], second.features[same])
    assert not np.array_equal(first.features[changed], second.features[changed])


def test_a_changed_spec_uses_new_keys(tmp_path):
    root, cache = _flat(tmp_path / "kicks", n=2), tmp_path / "cache"
    _ingest(root, cache=cache)
    other = _ingest(root, cache=cache, spec=dataclasses.replace(SPEC, n_mels=32))
    assert (other.summary.cache_hits, other.summary.cache_misses) == (0, 2)
    assert other.features.shape == (2, 1, 32, SPEC.frames)
    assert len(list(cache.iterdir())) == 2  # one folder per spec/preprocess pair
    again = ingest([root], spec=SPEC, preprocess=Preprocess(loudness="peak"), cache_dir=cache, progress=False)
    assert again.summary.cache_misses == 2


def test_a_corrupt_cache_entry_is_recomputed(tmp_path):
    root, cache = _flat(tmp_path / "kicks", n=2), tmp_path / "cache"
    first = _ingest(root, cache=cache)
    entries = sorted(FeatureCache(cache, spec=SPEC, preprocess=PRE).folder.glob("*.npz"))
    assert len(entries) == 2
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # a torn write from some other tool
    second = _ingest(root, cache=cache)
    assert (second.summary.cache_hits, second.summary.cache_misses) == (1, 1)
    # recomputed alone rather than in a batch of two: equal up to float32 rounding of the batched convolution
    np.testing.assert_allclose(first.features, second.features, rtol=0, atol=1e-4)  # 0.004 dB
    third = _ingest(root, cache=cache)  # and the entry was rewritten
    assert third.summary.cache_hits == 2
    assert not [p for p in entries[0].parent.iterdir() if p.suffix == ".tmp"]


# -------------------------------------------------------------------------------------- summary and preview
def test_summary_table_log_lines_and_csv(tmp_path, capsys, caplog):
    corpus = _ingest(_bank(tmp_path / "bank"))
    captured = capsys.readouterr()
    silent = str(tmp_path / "bank" / "hat" / "hat silent.wav")
    assert [m for m in caplog.messages if m.startswith(f"skip: {silent}: ")]
    for word in ("kept", "skipped", "silent", "hat", "kick", "snare", "total"):
        assert word in captured.out
    console = Console(record=True, width=120)
    console.print(corpus.summary.render())
    table = console.export_text()
    assert "hat" in table and "silent" in table
    path = corpus.summary.write_skipped_csv(tmp_path / "out" / "skipped.csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [(r["path"], r["reason"]) for r in rows] == [(silent, "silent")] and rows[0]["detail"]


def test_a_name_that_is_not_utf8_is_kept_logged_and_written_to_the_csv(tmp_path, caplog):
    root = _flat(tmp_path / "kicks", n=1)
    latin1 = os.fsdecode(b"caf\xe9.wav")
    write(root / "silent.wav", np.zeros(4410, np.float32), subtype="PCM_16").rename(root / latin1)  # skipped
    os.rename(root / "kick 0.wav", os.path.join(os.fsencode(root), b"kick \xe9t\xe9.wav"))
    corpus = _ingest(root)
    assert [Path(p).name for p in corpus.paths] == [os.fsdecode(b"kick \xe9t\xe9.wav")]  # kept, not "corrupt"
    assert corpus.summary.by_reason() == {"silent": 1}
    assert f"skip: {root}/caf\\xe9.wav: every sample is zero" in caplog.messages
    rows = corpus.summary.write_skipped_csv(tmp_path / "skipped.csv").read_bytes()
    assert b"caf\xe9.wav,silent" in rows  # the file's real name


def test_preview_writes_prepared_and_round_trip_audio(tmp_path):
    corpus = _ingest(_flat(tmp_path / "kicks", n=3))
    written = write_preview(corpus, tmp_path / "preview", count=2)
    assert len(written) == 4 and all(p.exists() for p in written)
    assert sorted(p.name for p in written)[0].startswith("00-kick 0-")
    for path in written:
        audio, rate = soundfile.read(path)
        assert rate == SPEC.sample_rate and audio.shape == (SPEC.n_samples,)
        assert np.abs(audio).max() > 0.01
    assert not [p for p in (tmp_path / "preview").iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------------- real data
@pytest.mark.realdata
@pytest.mark.skipif(not DRUMS.is_dir(), reason="real drum one-shots (../shared/data/drums) are not present")
def test_real_drums_as_a_bank(tmp_path):
    """A subset in the real layout (<source>/<class>/x.wav, linked): 24 kicks and 8 snares from all sources."""
    chosen = sorted(DRUMS.glob("*/kick/*.wav"))[::5][:24] + sorted(DRUMS.glob("*/snare/*.wav"))[::17][:8]
    for path in chosen:
        link = tmp_path / "drums" / path.parent.parent.name / path.parent.name / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, link)
    corpus = _ingest(tmp_path / "drums", spec=SpectrogramSpec())
    assert corpus.summary.layouts[0][1] == "bank"
    assert corpus.classes == ["kick", "snare"]
    assert len(corpus) >= 0.9 * len(chosen)
    for path, label in zip(corpus.paths, corpus.labels):
        assert Path(path).parent.name == label
    assert np.all(np.isfinite(corpus.features)) and np.abs(corpus.audio).max() <= 1.0
