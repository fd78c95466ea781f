"""The shipped demo: presets/grooves/demo.mid through presets/kicks, offline, as a user without audio hears it."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest

from runtime.render import render_midi
from trainer import cli as trainer_cli

ROOT = Path(__file__).resolve().parents[1]
GROOVE = ROOT / "presets" / "grooves" / "demo.mid"
PRESET = ROOT / "presets" / "kicks"


def _note_times(path: Path) -> list[float]:
    now, times = 0.0, []
    for message in mido.MidiFile(str(path)):
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            times.append(now)
    return times


def _ring_time(audio: np.ndarray, start: int, rate: int, *, below_db: float = 30.0) -> float:
    """Seconds from a hit's peak until its 10 ms RMS envelope first falls ``below_db`` under that peak."""
    x = audio[start:start + int(0.45 * rate)].mean(axis=1)
    win = int(0.01 * rate)
    env = np.sqrt(np.convolve(x * x, np.ones(win) / win, mode="valid"))
    peak = int(np.argmax(env))
    under = np.nonzero(env[peak:] < env[peak] * 10 ** (-below_db / 20))[0]
    return (under[0] if under.size else env.size - peak) / rate


@pytest.fixture(scope="module")
def demo() -> np.ndarray:
    return render_midi(PRESET, GROOVE)


def test_demo_renders_identically_with_every_hit_where_the_file_says(demo):
    again = render_midi(PRESET, GROOVE)
    assert np.array_equal(demo, again), "the same input must give identical audio"
    assert np.isfinite(demo).all() and np.abs(demo).max() <= 1.0
    rate = 44100
    times = _note_times(GROOVE)
    assert len(times) == 24
    level = np.abs(demo).max(axis=1)
    for t in times:
        at = int(round(t * rate))
        before = level[max(0, at - 64):at].max(initial=0.0)
        after = level[at:at + int(0.01 * rate)].max()
        assert after > before + 0.05, f"no onset at {t:.3f} s"


def test_decay_knob_automation_shortens_the_later_kicks(demo):
    """CC 22 (decay) falls from 127 to 0 over the groove: the last downbeat rings shorter than the first."""
    rate, times = 44100, _note_times(GROOVE)
    first, last = times[0], times[18]  # downbeats of bar 1 and bar 4
    assert _ring_time(demo, int(first * rate), rate) > 1.3 * _ring_time(demo, int(last * rate), rate)


def test_spectrogram_command_draws_the_render(tmp_path, capsys):
    import soundfile as sf

    wav = tmp_path / "demo.wav"
    sf.write(wav, np.zeros((4410, 2), np.float32) + 0.01 * np.sin(np.arange(4410) / 7.0)[:, None], 44100)
    assert trainer_cli.main(["spectrogram", str(wav), "--out", str(tmp_path / "demo.png")]) == 0
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "bad.wav").write_text("not audio")
    assert trainer_cli.main(["spectrogram", str(tmp_path / "bad.wav"), "--out", str(tmp_path / "x.png")]) == 2
    assert "cannot read it as audio" in capsys.readouterr().err
