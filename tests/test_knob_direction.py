"""What a producer hears from the shipped presets: every knob turns its own descriptor the way its name says.

Each knob is turned from -1 to +1 on each kick pad of ``presets/kicks`` and on the kick pad of ``presets/kit``,
through the runtime's own offline path (preset -> controller -> decoder graph with its shaping stage -> engine),
and the hits are read with the independent descriptors of ``trainer/analysis/reference.py`` (librosa). The full
sweeps, both implementations and the cross-talk are ``benchmarks/knob_reference.py``'s (model cards).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.preset import load_preset
from runtime.render import offline_instrument, play_hit, render_pending
from trainer.analysis import reference

PRESETS = Path(__file__).resolve().parents[1] / "presets"
KNOBS = ("sub", "punch", "decay", "click", "brightness")


def _describe(folder: Path, notes: list[int], knob: str) -> dict[float, np.ndarray]:
    """librosa descriptors ``[len(notes), 5]`` of each pad's hit at the knob's two ends."""
    instrument = offline_instrument(load_preset(folder), blocksize=256, max_voices=2)
    out = {}
    for value in (-1.0, 1.0):
        instrument.controller.set_axes({knob: value})
        render_pending(instrument.worker)
        hits = [play_hit(instrument.engine, note, 100).mean(axis=1) for note in notes]
        out[value] = np.stack([reference.describe_batch(h[None], instrument.engine.sample_rate)[0] for h in hits])
    return out


@pytest.mark.parametrize("knob", KNOBS)
@pytest.mark.parametrize("preset, notes", [("kicks", [36, 37, 38, 39]), ("kit", [36])])
def test_knob_up_raises_its_descriptor_on_every_kick_pad(preset, notes, knob):
    read = _describe(PRESETS / preset, notes, knob)
    column = reference.KNOBS.index(knob)
    low, high = read[-1.0][:, column], read[1.0][:, column]
    assert np.all(high > low), (preset, knob, low.round(3).tolist(), high.round(3).tolist())
