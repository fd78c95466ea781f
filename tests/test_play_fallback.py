"""``runtime play --fallback-render``: without PortAudio or an output device, ``make play`` still ends in a file to
hear, its spectrogram and the one command that enables live play here (issue 21 item 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from runtime.fallback import DEMO_GROOVE, JACK_DUMMY, live_play_command, os_release
from runtime.spectrogram_png import log_spectrogram, png_bytes, write_spectrogram_png
from tests import onnx_fixtures as fx

ROOT = Path(__file__).resolve().parents[1]
RATE = 8000


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """A one-pad kick preset on the fixture model (8 kHz) and a MIDI file of 3 hits, 0.25 s apart."""
    root = tmp_path_factory.mktemp("fallback")
    fx.linear_kick_model(root / "model", sample_rate=RATE, samples=1024)
    doc = {"format": "kickspace-preset", "format_version": 1, "name": "kicks", "model": "model", "knobs": [],
           "pads": [{"note": 36, "anchor": [1.0, 0.0, 0.0]}], "output": {"channels": 2}}
    (root / "preset.json").write_text(json.dumps(doc))
    track = mido.MidiTrack([mido.Message("note_on", note=36, velocity=127, time=0 if i == 0 else 240)
                            for i in range(3)])
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(str(root / "groove.mid"))
    return root


def play(preset: Path, out: Path, audio_env: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KICKSPACE_AUDIO": audio_env}
    command = [sys.executable, "-m", "runtime", "play", "--preset", str(preset / "preset.json"),
               "--fallback-midi", str(preset / "groove.mid"), *extra]
    if out is not None:
        command += ["--fallback-render", str(out)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB PNG without filters (what :func:`png_bytes` writes) with an independent reader."""
    import matplotlib.image

    return (matplotlib.image.imread(str(path)) * 255).round().astype(np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("absent, reason, command", [
    ("none", "no audio output device found", "then play again"),
    ("no-portaudio", "PortAudio is not available (KICKSPACE_AUDIO=no-portaudio)", "then play again")])
def test_without_audio_play_renders_the_groove_says_why_and_how_to_play_live(preset, tmp_path, absent, reason,
                                                                             command):
    out = tmp_path / "out" / "demo-kicks.wav"
    run = play(preset, out, absent)
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == [f"runtime play: {reason}; rendering {preset / 'groove.mid'} offline instead"]
    audio, rate = sf.read(str(out), always_2d=True)
    assert rate == 48000 and audio.shape[1] == 2
    level = np.abs(audio).max(axis=1)
    hits = [i for i in np.flatnonzero(level > 0.05) if level[max(0, i - 200):i].max(initial=0) <= 0.05]
    assert np.allclose(np.array(hits) / rate, [0.0, 0.25, 0.5], atol=0.002)  # the three hits, where the file says
    image = read_png(out.with_suffix(".png"))
    assert image.ndim == 3 and image.shape[2] == 3 and image.max() > 200  # something bright: the kicks
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"wrote {out} (") and lines[0].endswith(f"spectrogram {out.with_suffix('.png')}")
    assert lines[1].startswith("to play live here: ") and command in lines[1] and len(lines) == 2


def test_without_the_option_play_still_fails_in_one_line(preset, tmp_path):
    run = play(preset, None, "none")
    assert run.returncode == 2
    assert run.stderr.startswith("runtime play: error: no audio output device found. Run `runtime list`")
    assert len(run.stderr.splitlines()) == 1


def test_the_default_fallback_groove_is_the_shipped_demo():
    assert DEMO_GROOVE == ROOT / "presets" / "grooves" / "demo.mid" and DEMO_GROOVE.is_file()


DEBIAN = {"ID": "debian"}
UBUNTU = {"ID": "ubuntu", "ID_LIKE": "debian"}
FEDORA = {"ID": "fedora"}
ARCH = {"ID": "arch"}
MINT = {"ID": "linuxmint", "ID_LIKE": "ubuntu debian"}


def on_path(*tools: str):
    return lambda name: f"/usr/bin/{name}" if name in tools else None


@pytest.mark.parametrize("missing, system, release, tools, card, expected", [
    ("portaudio", "Linux", UBUNTU, ("jackd",), True, "sudo apt-get install libportaudio2   then play again"),
    ("portaudio", "Linux", DEBIAN, (), False, "sudo apt-get install libportaudio2 jackd2   then play again"),
    ("portaudio", "Linux", MINT, ("jackd",), True, "sudo apt-get install libportaudio2   then play again"),
    ("portaudio", "Linux", FEDORA, ("jackd",), True, "sudo dnf install portaudio   then play again"),
    ("portaudio", "Linux", ARCH, ("jackd",), True, "sudo pacman -S portaudio   then play again"),
    ("portaudio", "Linux", {}, ("pacman", "jackd"), True, "sudo pacman -S portaudio   then play again"),
    ("portaudio", "Darwin", {}, (), True, "brew install portaudio   then play again"),
    ("portaudio", "Linux", {}, ("jackd",), True,
     "install PortAudio (libportaudio2 or portaudio) with your package manager, then play again"),
    ("device", "Linux", DEBIAN, ("jackd",), False, JACK_DUMMY),
    ("device", "Linux", DEBIAN, ("jackd",), True, "jackd -d alsa -r 48000 &   then play again"),
    ("device", "Linux", DEBIAN, ("jackd", "pw-jack"), True,
     "pw-jack runtime play --preset P   (through PipeWire's JACK layer)"),
    ("device", "Linux", FEDORA, (), True, "sudo dnf install jack-audio-connection-kit   then play again"),
    ("device", "Linux", ARCH, (), False, "sudo pacman -S jack2   then play again"),
    ("device", "Darwin", {}, (), True,
     "connect or enable an audio output device in the system's sound settings, then play again"),
])
def test_the_command_that_enables_live_play_fits_the_system(missing, system, release, tools, card, expected):
    assert live_play_command(missing, system=system, release=release, which=on_path(*tools), sound_card=card,
                             replay="runtime play --preset P") == expected


def test_os_release_reads_quoted_values(tmp_path):
    (tmp_path / "os-release").write_text('NAME="Fedora Linux"\nID=fedora\n# comment\nID_LIKE="rhel centos"\n')
    assert os_release(tmp_path / "os-release") == {"NAME": "Fedora Linux", "ID": "fedora", "ID_LIKE": "rhel centos"}
    assert os_release(tmp_path / "missing") == {}


def test_spectrogram_png_puts_a_tone_on_its_row_and_decodes(tmp_path):
    rate, hz = 48000, 1000.0
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * hz * t)[:, None].repeat(2, axis=1)
    db = log_spectrogram(tone, rate, rows=320)
    freqs = np.geomspace(20.0, rate / 2, 320)
    assert abs(freqs[int(np.argmax(db.mean(axis=1)))] / hz - 1) < 0.03  # the loudest row is 1 kHz
    assert db.shape[1] <= 1000
    image = read_png(write_spectrogram_png(tmp_path / "tone.png", tone, rate))
    assert image.shape == (320, db.shape[1], 3)
    row = 319 - int(np.argmax(db.mean(axis=1)))  # low frequencies at the bottom
    assert image[row].astype(int).sum() > 3 * image[5].astype(int).sum()  # the tone's row is bright, 20 kHz dark


def test_png_bytes_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    data = png_bytes(rgb)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    start = data.index(b"IDAT") + 4
    raw = np.frombuffer(zlib.decompress(data[start:start + int.from_bytes(data[start - 8:start - 4], "big")]),
                        np.uint8).reshape(7, 1 + 5 * 3)
    assert (raw[:, 0] == 0).all() and np.array_equal(raw[:, 1:].reshape(7, 5, 3), rgb)
