"""trainer augment: treated copies of real one-shots (trainer/data/augment.py), each treatment doing what it names."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile

from runtime.errors import ConfigError
from trainer.cli import main
from trainer.data.augment import AugmentParams, AugmentRanges, augment, write_augmented

SR = 44100


def _sine(hz: float, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * hz * t) * np.exp(-t / 0.2))[None, :]


def _peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x[0] * np.hanning(x.shape[-1])))
    return float(np.argmax(spectrum) * SR / x.shape[-1])


def _band_db(x: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x[0])) ** 2
    hz = np.fft.rfftfreq(x.shape[-1], 1 / SR)
    return float(10 * np.log10(spectrum[(hz >= lo) & (hz < hi)].sum()))


def test_all_fields_at_zero_leave_the_sound_as_it_is() -> None:
    x = _sine(60.0)
    np.testing.assert_allclose(augment(x, SR, AugmentParams()), x, atol=1e-6)


def test_repitch_plays_the_file_faster_as_a_sampler_does() -> None:
    x = _sine(100.0)
    up = augment(x, SR, AugmentParams(semitones=12.0))
    down = augment(x, SR, AugmentParams(semitones=-12.0))
    assert abs(up.shape[-1] - x.shape[-1] / 2) <= 2 and abs(down.shape[-1] - 2 * x.shape[-1]) <= 2
    assert _peak_hz(up) == pytest.approx(200.0, rel=0.03) and _peak_hz(down) == pytest.approx(50.0, rel=0.03)


def test_tilt_raises_or_lowers_the_top_against_the_body() -> None:
    rng = np.random.default_rng(0)
    x = 0.3 * rng.standard_normal((1, SR // 2))
    for tilt in (6.0, -6.0):
        y = augment(x, SR, AugmentParams(tilt_db=tilt))
        change = (_band_db(y, 8000, 16000) - _band_db(y, 50, 400)) - (_band_db(x, 8000, 16000) - _band_db(x, 50, 400))
        assert change == pytest.approx(tilt, abs=1.5)


def test_fade_falls_at_its_rate_from_the_envelope_peak() -> None:
    x = np.full((1, SR), 0.5)
    x[0, :10] = np.linspace(0, 0.5, 10)
    y = augment(x, SR, AugmentParams(fade_db_s=40.0))
    level = 20 * np.log10(np.abs(y[0, SR // 2]) / np.abs(y).max())
    assert level == pytest.approx(-20.0, abs=0.5)


def test_drive_adds_harmonics_and_keeps_the_peak() -> None:
    x = _sine(100.0)
    y = augment(x, SR, AugmentParams(drive_db=12.0))
    assert np.abs(y).max() == pytest.approx(np.abs(x).max(), rel=1e-5)
    third = _band_db(y, 280, 320) - _band_db(y, 80, 120)
    assert third > _band_db(x, 280, 320) - _band_db(x, 80, 120) + 20


def test_ranges_are_checked() -> None:
    with pytest.raises(ConfigError, match="fade_chance"):
        AugmentRanges(fade_chance=1.5)


def _sources(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"k{i}.wav"
        soundfile.write(path, _sine(50.0 + 10 * i)[0], SR, subtype="PCM_24")
        paths.append(path)
    return paths


def test_copies_are_reproducible_per_file_and_name_their_source(tmp_path: Path) -> None:
    sources = _sources(tmp_path / "src", 3)
    write_augmented(sources, tmp_path / "a", copies=2, seed=5)
    write_augmented(sources[:2], tmp_path / "b", copies=2, seed=5)
    for name in ("k0_aug00.wav", "k1_aug01.wav"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    write_augmented(sources, tmp_path / "c", copies=2, seed=6)
    assert (tmp_path / "a" / "k0_aug00.wav").read_bytes() != (tmp_path / "c" / "k0_aug00.wav").read_bytes()
    rows = list(csv.DictReader(open(tmp_path / "a" / "augment.csv")))
    assert [r["filename"] for r in rows][:2] == ["k0_aug00.wav", "k0_aug01.wav"] and len(rows) == 6
    assert rows[0]["source"].endswith("k0.wav") and {"semitones", "tilt_db", "fade_db_s", "drive_db"} <= set(rows[0])


def test_cli_skips_a_bad_file_with_its_reason_and_counts_it(tmp_path: Path, capsys) -> None:
    _sources(tmp_path / "src", 2)
    (tmp_path / "src" / "broken.wav").write_bytes(b"RIFF not really")
    assert main(["augment", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--copies", "3"]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "broken.wav" in out and "skipped 1" in out
    assert len(list((tmp_path / "out").glob("*.wav"))) == 6
    assert main(["augment", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
