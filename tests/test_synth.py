"""The procedural kick corpus and drum bank: determinism, file format, layout, and audible class differences."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from runtime.errors import ConfigError
from trainer import descriptors
from trainer.data import synth


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------ params
def test_sample_params_is_deterministic_per_seed_and_stays_in_range():
    first, again, other = (synth.sample_params(50, seed=s) for s in (3, 3, 4))
    assert first == again
    assert first != other
    for name, (low, high) in synth.KickParams.PARAM_RANGES.items():
        values = np.array([getattr(p, name) for p in first])
        assert np.all((values >= low) & (values <= high)), name
        assert np.unique(values).size == 50, f"{name} is not varied"


def test_log_fields_are_spread_over_octaves_not_bunched_at_the_top():
    values = np.array([p.decay_s for p in synth.sample_params(400, seed=0)])
    low, high = synth.KickParams.PARAM_RANGES["decay_s"]
    geometric_mid = np.sqrt(low * high)
    assert 0.4 < np.mean(values < geometric_mid) < 0.6


def test_invalid_params_name_the_field():
    good = synth.sample_params(1, seed=0)[0]
    with pytest.raises(ConfigError, match="decay_s: must be positive"):
        dataclasses.replace(good, decay_s=0.0)
    with pytest.raises(ConfigError, match="drive: is a 0..1 knob"):
        dataclasses.replace(good, drive=1.5)
    with pytest.raises(ConfigError, match="end_hz: must be a finite number"):
        dataclasses.replace(good, end_hz=float("nan"))
    with pytest.raises(ConfigError, match="n: must be 0 or more"):
        synth.sample_params(-1, seed=0)


# ------------------------------------------------------------------------------------------------- render
def test_render_kick_is_a_finite_onset_aligned_one_shot_with_a_faded_end():
    params = synth.sample_params(1, seed=1)[0]
    audio = synth.render_kick(params, sample_rate=22050, seconds=0.5)
    assert audio.shape == (11025,) and audio.dtype == np.float32
    assert np.all(np.isfinite(audio))
    assert np.max(np.abs(audio)) == pytest.approx(0.95, abs=1e-6)
    assert np.max(np.abs(audio[:220])) > 0.3  # the sound starts within the first 10 ms
    assert np.max(np.abs(audio[-20:])) < 1e-3  # the fade lands on silence
    np.testing.assert_array_equal(audio, synth.render_kick(params, sample_rate=22050, seconds=0.5))


def test_render_rejects_a_length_too_short_for_the_fade():
    with pytest.raises(ConfigError, match="seconds"):
        synth.render_kick(synth.sample_params(1, seed=0)[0], seconds=0.01)


def test_sub_is_an_octave_below_the_body():
    base = dataclasses.replace(synth.sample_params(1, seed=2)[0], end_hz=60.0, sub_level=0.0, noise_level=0.0,
                               click_level=0.0)
    dry = synth.render_kick(base).astype(np.float64)
    wet = synth.render_kick(dataclasses.replace(base, sub_level=0.6)).astype(np.float64)
    freqs = np.fft.rfftfreq(dry.size, 1 / 44100)
    band = (freqs > 25) & (freqs < 35)
    gain_db = 10 * np.log10(np.sum(np.abs(np.fft.rfft(wet))[band] ** 2) / np.sum(np.abs(np.fft.rfft(dry))[band] ** 2))
    assert gain_db > 12.0


# ------------------------------------------------------------------------------------------------ corpus
def test_write_corpus_is_byte_identical_per_seed_and_matches_its_csv(tmp_path):
    csv_path = synth.write_corpus(tmp_path / "a", n=3, seed=7, sample_rate=22050)
    synth.write_corpus(tmp_path / "b", n=3, seed=7, sample_rate=22050)
    synth.write_corpus(tmp_path / "c", n=3, seed=8, sample_rate=22050)
    first, again, other = (_files(tmp_path / name) for name in "abc")
    assert first == again
    assert sorted(first) == ["kick_00000.wav", "kick_00001.wav", "kick_00002.wav", "params.csv"]
    assert all(first[name] != other[name] for name in first)

    rows = _read_csv(csv_path)
    assert list(rows[0]) == ["filename", *synth.FIELDS]
    for row, params in zip(rows, synth.sample_params(3, seed=7), strict=True):
        assert {name: float(row[name]) for name in synth.FIELDS} == dataclasses.asdict(params)
        info = sf.info(tmp_path / "a" / row["filename"])
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_24", 22050, 1)
        audio, _ = sf.read(tmp_path / "a" / row["filename"], dtype="float32")
        np.testing.assert_allclose(audio, synth.render_kick(params, sample_rate=22050), atol=2 ** -22)


def test_write_corpus_leaves_no_temporary_files_and_refuses_a_file_as_folder(tmp_path):
    synth.write_corpus(tmp_path / "kicks", n=2, seed=0)
    assert not [p for p in (tmp_path / "kicks").iterdir() if p.name.startswith(".")]
    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(ConfigError, match="not a folder"):
        synth.write_corpus(tmp_path / "taken", n=1, seed=0)


# -------------------------------------------------------------------------------------------------- bank
def test_write_bank_layout_and_csv(tmp_path):
    csv_path = synth.write_bank(tmp_path, n_per_class=2, seed=1, sample_rate=22050)
    rows = _read_csv(csv_path)
    assert list(rows[0])[:2] == ["class", "filename"]
    assert [r["class"] for r in rows] == [c for c in synth.BANK_CLASSES for _ in range(2)]
    for row in rows:
        assert row["filename"].startswith(f"{row['class']}/{row['class']}_0000")
        assert sf.info(tmp_path / row["filename"]).subtype == "PCM_24"
    synth.write_bank(tmp_path / "again", n_per_class=2, seed=1, sample_rate=22050)
    first = _files(tmp_path)
    assert all(first[name] == data for name, data in _files(tmp_path / "again").items())


def test_write_bank_unknown_class_names_it_and_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"'cowbell'.*kick, snare, hat, tom"):
        synth.write_bank(tmp_path / "bank", n_per_class=1, seed=0, classes=("kick", "cowbell"))
    assert not (tmp_path / "bank").exists()


def test_bank_classes_are_distinguishable_by_descriptors():
    table = {}
    for drum_class in synth.BANK_CLASSES:
        sounds = [synth.render_class(drum_class, p) for p in synth.sample_class_params(drum_class, 6, seed=0)]
        table[drum_class] = descriptors.describe_batch(np.stack(sounds), 44100)
    col = {name: i for i, name in enumerate(descriptors.DESCRIPTORS)}
    kick, snare, hat, tom = (table[c] for c in ("kick", "snare", "hat", "tom"))
    assert hat[:, col["brightness"]].min() > 4 * kick[:, col["brightness"]].max()
    assert hat[:, col["length"]].max() < kick[:, col["length"]].min()
    assert snare[:, col["brightness"]].min() > 2 * kick[:, col["brightness"]].max()
    assert np.median(tom[:, col["pitch"]]) > 2 * np.median(kick[:, col["pitch"]])
    assert np.median(kick[:, col["sub"]]) > np.median(tom[:, col["sub"]]) + 6.0
