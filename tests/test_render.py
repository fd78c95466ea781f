"""Offline render as a user hears it: onsets where the MIDI file puts them, CC automation and program changes
changing the later hits, bit-identical repeats, one-shots, and the ``runtime render`` command."""

from __future__ import annotations

import dataclasses
import json

import mido
import numpy as np
import pytest
import soundfile as sf

from runtime import cli
from runtime.controls import ControlState, encode_samples, prepare_sample
from runtime.dsp import resample
from runtime.errors import KickspaceError
from runtime.model import ExportedModel
from runtime.preset import Velocity, load_preset
from runtime.render import render_midi, render_one_shot
from tests import onnx_fixtures as fx

RATE, TPB = 8000, 480
PAD_GAIN = 0.4


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """``kicks/preset.json`` (pad 36 = the kick, CC 20 -> sub, MIDI channel 10, program 1 -> tones) and
    ``tones/preset.json`` (pad 36 = a 220 Hz tone)."""
    root = tmp_path_factory.mktemp("presets")
    fx.linear_kick_model(root / "model", sample_rate=RATE, samples=1024)
    def write(name, anchor, gain, programs):
        doc = {"format": "kickspace-preset", "format_version": 1, "name": name, "model": "../model",
               "midi_channel": 10, "knobs": [{"cc": 20, "axis": "sub", "min": -1.0, "max": 1.0, "default": 0.0}],
               "pads": [{"note": 36, "anchor": anchor, "gain": gain}], "velocity": {"curve": 1.0},
               "output": {"gain": 1.0, "fade_ms": 2.0, "channels": 1}, "programs": programs}
        (root / name).mkdir()
        (root / name / "preset.json").write_text(json.dumps(doc))
        return root / name / "preset.json"
    kicks = write("kicks", [1.0, 0.0, 0.0], PAD_GAIN, {"1": "../tones/preset.json"})
    write("tones", [0.0, 0.0, 1.0], 0.2, {})
    return kicks


def midi_file(path, events: list[tuple[int, mido.Message]], *, tempos: list[tuple[int, int]] = ((0, 500000),)):
    """A one-track file from (tick, message) pairs and (tick, microseconds per beat) tempo changes."""
    timeline = [(t, mido.MetaMessage("set_tempo", tempo=tempo)) for t, tempo in tempos] + list(events)
    timeline.sort(key=lambda item: item[0])
    track, last = mido.MidiTrack(), 0
    for tick, message in timeline:
        track.append(message.copy(time=tick - last))
        last = tick
    midi = mido.MidiFile(ticks_per_beat=TPB)
    midi.tracks.append(track)
    midi.save(str(path))
    return path


def hit(beat: float, note: int = 36, velocity: int = 127, channel: int = 9):
    return int(beat * TPB), mido.Message("note_on", note=note, velocity=velocity, channel=channel)


def onsets(audio: np.ndarray, *, quiet: int = 200) -> list[int]:
    """Indices where sound starts after at least ``quiet`` silent samples."""
    loud = np.flatnonzero(np.abs(audio[:, 0]) > 1e-4)
    return [int(i) for k, i in enumerate(loud) if k == 0 or i - loud[k - 1] > quiet]


def peaks(audio: np.ndarray, starts: list[int], length: int = 1000) -> np.ndarray:
    return np.array([np.max(np.abs(audio[s:s + length, 0])) for s in starts])


def test_onsets_follow_the_files_tempo_map_and_repeat_bit_identically(presets, tmp_path):
    # 120 bpm for beats 0-4, then 100 bpm; a stray note on channel 1 is filtered out by the preset (channel 10)
    events = [hit(b) for b in (0, 1, 2.5, 3, 4, 5.5)] + [hit(2, channel=0)]
    path = midi_file(tmp_path / "song.mid", events, tempos=[(0, 500000), (4 * TPB, 600000)])
    seconds = [0.0, 0.5, 1.25, 1.5, 2.0, 2.0 + 1.5 * 0.6]
    for rate in (RATE, 16000):
        first = render_midi(presets, path, sample_rate=rate, blocksize=128)
        second = render_midi(presets, path, sample_rate=rate, blocksize=128)
        assert first.dtype == np.float32 and first.shape[1] == 1
        np.testing.assert_array_equal(first, second)
        found = onsets(first)
        expected = [round(s * rate) for s in seconds]
        assert len(found) == len(expected)
        assert np.max(np.abs(np.array(found) - expected)) <= 2 * rate // RATE  # the kick rises from 0 at its onset
        assert np.allclose(peaks(first, found), peaks(first, found)[0], rtol=1e-3)  # same hit, same level


def test_cc_automation_changes_only_the_later_hits(presets, tmp_path):
    cc = (int(1.5 * TPB), mido.Message("control_change", control=20, value=127, channel=9))
    path = midi_file(tmp_path / "cc.mid", [hit(b) for b in range(4)] + [cc])
    audio = render_midi(presets, path, blocksize=256)
    p = peaks(audio, onsets(audio))
    assert len(p) == 4
    np.testing.assert_allclose(p[1], p[0], rtol=1e-4)
    np.testing.assert_allclose(p[2:] / p[0], 1.5, rtol=1e-2)  # sub = +1 with scale 0.5: amplitude x 1.5
    assert p[2] < 0.8  # below the limiter threshold, so the ratio measures the latent move, not the limiter


def test_cc_on_another_channel_is_ignored(presets, tmp_path):
    cc = (int(1.5 * TPB), mido.Message("control_change", control=20, value=127, channel=3))
    audio = render_midi(presets, midi_file(tmp_path / "cc3.mid", [hit(b) for b in range(3)] + [cc]))
    p = peaks(audio, onsets(audio))
    np.testing.assert_allclose(p, p[0], rtol=1e-4)


def test_program_change_switches_the_preset(presets, tmp_path):
    pc = (int(1.5 * TPB), mido.Message("program_change", program=1, channel=9))
    audio = render_midi(presets, midi_file(tmp_path / "pc.mid", [hit(b) for b in range(4)] + [pc]))
    starts = onsets(audio, quiet=100)
    assert len(starts) == 4
    def dominant_hz(start):
        seg = audio[start:start + 1000, 0]
        return np.argmax(np.abs(np.fft.rfft(seg, 8000))) * RATE / 8000
    assert [round(dominant_hz(s), -1) for s in starts] == [60, 60, 220, 220]


def test_one_shot_follows_the_axes(presets):
    plain = render_one_shot(presets, {})
    loud = render_one_shot(presets, {"sub": 0.8})
    assert plain.shape == loud.shape == (1024, 1)
    np.testing.assert_allclose(np.max(np.abs(loud)) / np.max(np.abs(plain)), 1.4, rtol=1e-2)
    np.testing.assert_array_equal(render_one_shot(presets, {"sub": 0.8}), loud)


def test_render_command_writes_24_bit_wavs(presets, tmp_path, capsys):
    out = tmp_path / "kick.wav"
    assert cli.main(["render", "--preset", str(presets.parent), "--axes", "sub=0.8", "--out", str(out)]) == 0
    info = sf.info(str(out))
    assert info.subtype == "PCM_24" and info.samplerate == 48000 and info.frames == 1024 * 48000 // RATE
    assert "wrote" in capsys.readouterr().out
    song = midi_file(tmp_path / "song.mid", [hit(0), hit(1)])
    wav = tmp_path / "song.wav"
    assert cli.main(["render", "--preset", str(presets), "--midi", str(song), "--out", str(wav),
                     "--rate", "16000"]) == 0
    audio, rate = sf.read(str(wav), always_2d=True)
    assert rate == 16000 and len(onsets(audio)) == 2
    assert cli.main(["render", "--preset", str(presets), "--axes", "punch=1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "runtime render: error: axes: the model has no axis named 'punch' (it has: sub, click)"


def test_velocity_moves_an_axis_through_prerendered_layers(presets, tmp_path):
    preset = load_preset(presets)
    preset = dataclasses.replace(preset, velocity=Velocity(curve=0.0, axis="sub", amount=1.0, layers=4))
    audio = render_midi(preset, midi_file(tmp_path / "vel.mid", [hit(0, velocity=20), hit(1, velocity=127)]))
    soft, hard = peaks(audio, onsets(audio))
    # layer centres 16 and 112 -> sub offsets -0.748 and +0.764, amplitude 1 + 0.5 * offset (gain fixed: curve 0)
    np.testing.assert_allclose(hard / soft, (1 + 0.5 * 0.764) / (1 - 0.5 * 0.748), rtol=1e-2)


def test_a_pad_can_play_a_users_sample_placed_by_the_encoder(tmp_path):
    folder = fx.linear_kick_model(tmp_path / "model", sample_rate=RATE, samples=1024, encoder=True)
    sample = np.abs(fx.kick_shape(4096, 2 * RATE))  # one-signed, so the fixture encoder's sum is far from 0
    sf.write(str(tmp_path / "mine.wav"), sample, 2 * RATE)
    preset = dataclasses.replace(load_preset(_preset_with_sample(tmp_path)), model=folder)
    model = ExportedModel(folder)
    anchors = encode_samples(preset, model)
    prepared = prepare_sample(sample[None], 2 * RATE, model.metadata)  # at 8 kHz, 1024 samples, -20 LUFS
    assert prepared.shape == (1024,) and 0.5 < np.abs(prepared).max() <= 10 ** (-1 / 20)
    np.testing.assert_allclose(anchors[36], 0.01 * prepared.sum(), rtol=1e-3)  # the fixture encoder: 0.01 * sum
    z = ControlState(preset, model.metadata, anchors).pad_z(36)
    np.testing.assert_allclose(z[0], anchors[36], rtol=1e-5)


def test_a_quiet_late_copy_of_a_sample_lands_where_the_original_lands(tmp_path):
    """A user's kick 20 dB quieter and 150 ms late is prepared as the trainer prepares one-shots (onset-aligned,
    loudness-normalised), so the encoder places it where it places the original; fed to the encoder as read
    (resampled and cropped only, as before the shared preparation) the two land far apart."""
    samples = 4096  # 0.51 s at 8 kHz: the late kick starts inside the model's window
    folder = fx.linear_kick_model(tmp_path / "model", sample_rate=RATE, samples=samples, encoder=True)
    meta = ExportedModel(folder).metadata
    projection = np.random.default_rng(3).standard_normal((samples, 3)) / 64  # sensitive to level and timing
    fx.write_encoder(folder / "encoder.onnx", meta.to_json(), samples=samples, matrix=projection)
    rate = 2 * RATE
    kick = fx.kick_shape(int(0.4 * rate), rate, decay_s=0.08)
    late = np.concatenate([np.zeros(int(0.150 * rate), np.float32), 0.1 * kick])
    for name, audio in {"original": kick, "quiet-late": late}.items():
        sf.write(str(tmp_path / f"{name}.wav"), audio, rate)
    doc = {"format": "kickspace-preset", "format_version": 1, "model": "model", "knobs": [],
           "pads": [{"note": 36, "sample": "original.wav"}, {"note": 37, "sample": "quiet-late.wav"}]}
    (tmp_path / "preset.json").write_text(json.dumps(doc))
    model = ExportedModel(folder)
    anchors = encode_samples(load_preset(tmp_path / "preset.json"), model)
    distance = np.linalg.norm(anchors[37] - anchors[36]) / np.linalg.norm(anchors[36])
    assert distance < 1e-2  # 16-bit WAV rounding of the quiet copy: about 5e-4

    def as_read(audio):  # what encode_samples fed the encoder before: resampled, cropped or padded, nothing else
        mono = np.zeros(samples, np.float32)
        kept = resample(audio, rate, RATE)[:samples]
        mono[:kept.size] = kept
        return model.encode(mono[None])[0][0]
    raw = np.linalg.norm(as_read(late) - as_read(kick)) / np.linalg.norm(as_read(kick))
    assert raw > 0.5


def _preset_with_sample(folder):
    doc = {"format": "kickspace-preset", "format_version": 1, "model": "model", "knobs": [],
           "pads": [{"note": 36, "sample": "mine.wav"}]}
    (folder / "preset.json").write_text(json.dumps(doc))
    return folder / "preset.json"


def test_a_model_that_outputs_nan_fails_the_render_with_one_line_naming_model_and_pad(tmp_path, capsys):
    """Before, such a model rendered silence and exited 0 without a word."""
    model = fx.nan_kick_model(tmp_path / "broken", sample_rate=RATE, samples=1024)
    doc = {"format": "kickspace-preset", "format_version": 1, "model": "broken", "knobs": [],
           "pads": [{"note": 36, "anchor": [1.0, 0.0, 0.0]}]}
    (tmp_path / "preset.json").write_text(json.dumps(doc))
    line = (f"{model}: the decoder output NaN or infinite samples for pad 36 (1024 samples; the pad plays "
            f"silence): the model is broken; retrain or re-export it")
    with pytest.raises(KickspaceError) as caught:
        render_one_shot(tmp_path / "preset.json")
    assert str(caught.value) == line
    midi = midi_file(tmp_path / "one.mid", [hit(0.0, channel=0)])
    for what in (["--midi", str(midi)], ["--axes", "sub=0.5"]):
        out = tmp_path / "out.wav"
        assert cli.main(["render", "--preset", str(tmp_path / "preset.json"), *what, "--out", str(out)]) == 2
        assert capsys.readouterr().err == f"runtime render: error: {line}\n" and not out.exists()
