"""DAW-ready files from ``runtime render``: 48 kHz by default (or ``--rate``), WAV or FLAC, self-naming one-shot
bounces, and a sound that survives the resampling from the model's rate (issue 21 item 6)."""

from __future__ import annotations

import json

import mido
import numpy as np
import pytest
import soundfile as sf

from runtime import cli
from runtime.bounce import one_shot_name
from runtime.preset import load_preset
from tests import onnx_fixtures as fx

MODEL_RATE = 8000
TONE_HZ = 220.0  # the fixture model's latent 2 plays a decaying 220 Hz sine


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """``kicks/preset.json``: pad 36 = the fixture's 220 Hz tone, CC 20 -> sub; the model runs at 8 kHz."""
    root = tmp_path_factory.mktemp("bounce")
    fx.linear_kick_model(root / "model", sample_rate=MODEL_RATE, samples=1024)
    doc = {"format": "kickspace-preset", "format_version": 1, "name": "kicks", "model": "../model",
           "knobs": [{"cc": 20, "axis": "sub", "min": -1.0, "max": 1.0, "default": 0.0}],
           "pads": [{"note": 36, "anchor": [0.0, 0.0, 1.0], "gain": 0.5}],
           "output": {"gain": 1.0, "fade_ms": 2.0, "channels": 1}}
    (root / "kicks").mkdir()
    (root / "kicks" / "preset.json").write_text(json.dumps(doc))
    return root / "kicks" / "preset.json"


def render(preset, *args: str) -> int:
    return cli.main(["render", "--preset", str(preset), *args])


def peak_hz(audio: np.ndarray, rate: int) -> float:
    """Frequency of the spectrum's maximum, zero-padded to 0.1 Hz bins and refined by a parabola."""
    n = int(rate * 10)
    mag = np.abs(np.fft.rfft(audio[:, 0], n))
    k = int(np.argmax(mag))
    a, b, c = np.log(mag[k - 1:k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / n


def test_render_writes_48_khz_by_default_and_any_rate_asked(preset, tmp_path, capsys):
    for args, rate in (((), 48000), (("--rate", "44100"), 44100), (("--rate", "96000"), 96000),
                       (("--rate", "0"), MODEL_RATE)):
        out = tmp_path / f"kick-{rate}.wav"
        assert render(preset, "--axes", "sub=0", "--out", str(out), *args) == 0
        info = sf.info(str(out))
        assert (info.format, info.subtype, info.samplerate) == ("WAV", "PCM_24", rate)
        assert info.frames == round(1024 * rate / MODEL_RATE)  # the model's 1024 samples, the same 128 ms
        assert f"{rate} Hz" in capsys.readouterr().out
    assert render(preset, "--axes", "sub=0", "--out", str(tmp_path / "x.wav"), "--rate", "-1") == 2
    assert capsys.readouterr().err == ("runtime render: error: --rate: must be a rate in Hz, or 0 for the model's "
                                       "own, got -1\n")


def test_the_tone_stays_put_through_the_resampling(preset, tmp_path):
    heard = {}
    for rate in (MODEL_RATE, 44100, 48000):
        out = tmp_path / f"tone-{rate}.wav"
        assert render(preset, "--axes", "sub=0", "--out", str(out), "--rate", str(rate)) == 0
        audio, got = sf.read(str(out), always_2d=True)
        assert got == rate
        heard[rate] = (peak_hz(audio, rate), float(np.sqrt(np.mean(audio ** 2) * audio.shape[0] / rate)))
    for rate in (44100, 48000):
        assert abs(heard[rate][0] - heard[MODEL_RATE][0]) < 0.5, heard
        assert abs(heard[rate][0] - TONE_HZ) < 2.0, heard
        np.testing.assert_allclose(heard[rate][1], heard[MODEL_RATE][1], rtol=0.02)  # same energy per second


def test_flac_by_suffix_or_by_format_and_the_same_samples_as_the_wav(preset, tmp_path, capsys):
    assert render(preset, "--axes", "sub=0.5", "--out", str(tmp_path / "k.wav")) == 0
    assert render(preset, "--axes", "sub=0.5", "--out", str(tmp_path / "k.flac")) == 0
    assert render(preset, "--axes", "sub=0.5", "--out", str(tmp_path / "dir"), "--format", "flac") == 0
    wav, _ = sf.read(str(tmp_path / "k.wav"), dtype="int32")
    for path in (tmp_path / "k.flac", tmp_path / "dir" / "kicks_sub+0.50_pad36.flac"):
        info = sf.info(str(path))
        assert (info.format, info.subtype, info.samplerate) == ("FLAC", "PCM_24", 48000)
        flac = sf.read(str(path), dtype="int32")[0]  # lossless: libsndfile rounds to 24 bits its own way per format
        assert np.max(np.abs(flac.astype(np.int64) - wav)) <= 256 and np.abs(wav).max() > 1 << 29
    assert "24-bit FLAC" in capsys.readouterr().out
    assert render(preset, "--axes", "sub=0.5", "--out", str(tmp_path / "k.wav"), "--format", "flac") == 2
    assert capsys.readouterr().err.endswith("error: --format: flac but --out " f"{tmp_path / 'k.wav'} ends in .wav\n")
    assert render(preset, "--axes", "sub=0.5", "--out", str(tmp_path / "k.mp3")) == 2
    assert "is not a format runtime render writes (wav, flac)" in capsys.readouterr().err
    assert not (tmp_path / "k.mp3").exists()


def test_a_bounce_without_a_file_name_names_itself_after_preset_knobs_and_pad(preset, tmp_path, monkeypatch):
    folder = tmp_path / "bounces"
    folder.mkdir()
    assert render(preset, "--axes", "click=-0.3,sub=0.8", "--out", str(folder)) == 0
    assert render(preset, "--axes", "sub=-1", "--velocity", "100", "--out", str(folder)) == 0
    song = tmp_path / "song.mid"
    track = mido.MidiTrack([mido.Message("note_on", note=36, velocity=127, time=0)])
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(str(song))
    assert render(preset, "--midi", str(song), "--out", str(folder)) == 0
    monkeypatch.chdir(tmp_path)
    assert render(preset, "--axes", "sub=0.25") == 0  # no --out: the current folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "kicks_song.wav", "kicks_sub+0.80_click-0.30_pad36.wav", "kicks_sub-1.00_pad36_vel100.wav"]
    assert (tmp_path / "kicks_sub+0.25_pad36.wav").is_file()


def test_one_shot_names_follow_the_presets_knob_order_and_are_file_safe(preset):
    loaded = load_preset(preset)
    assert one_shot_name(loaded, preset, {"decay": -0.3, "sub": 0.8}, 36) == "kicks_sub+0.80_decay-0.30_pad36"
    unnamed = loaded.__class__(**{**loaded.__dict__, "name": "my kit / v2"})
    assert one_shot_name(unnamed, preset, {}, 38, 64) == "my-kit-v2_pad38_vel64"
