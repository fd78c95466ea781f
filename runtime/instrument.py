"""One instrument: a preset, its voice engine, its render worker and the controller that joins them.

Live play (:class:`runtime.play.Player`), offline render (:mod:`runtime.render`) and the benchmarks build the trio
through :func:`build_instrument` only, so they cannot wire it differently. The engine is built from what the output
decides (rate, block size, channels, voices); everything the preset says about playback (gain, velocity curve,
fade, pads) reaches it through the controller (:func:`runtime.controls.configure_engine`), which applies it again on
every program change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from runtime.controls import Controller
from runtime.engine import Engine
from runtime.preset import Preset
from runtime.worker import RenderWorker


@dataclass
class Instrument:
    """What :func:`build_instrument` wired: ``preset`` is the one it started with (the controller's ``preset``
    follows program changes and learned bindings)."""

    preset: Preset
    engine: Engine
    worker: RenderWorker
    controller: Controller


def build_instrument(preset: Preset, *, sample_rate: int, blocksize: int, max_channels: int | None = None,
                     max_voices: int = 16,
                     worker_factory: Callable[[Engine], RenderWorker] = RenderWorker) -> Instrument:
    """Build the engine, its render worker and the controller for ``preset``.

    Parameters
    ----------
    preset : Preset
        The loaded preset to play.
    sample_rate, blocksize : int
        The engine's output rate and the largest block it is stepped with.
    max_channels : int, optional
        The most channels the output has: a preset asking for more plays on this many, and the returned preset
        says so (a program change compares a new preset's channels with the running engine's).
    max_voices : int
        Voices sounding at once (:class:`~runtime.engine.Engine`).
    worker_factory : callable
        ``Engine -> RenderWorker``: the plain worker (offline render, rendered with ``worker.render_now()``) or
        live play's timing one (:class:`runtime.live_worker.LiveWorker`).

    Returns
    -------
    Instrument
        With every pad's first render requested, not yet rendered.
    """
    channels = preset.output.channels if max_channels is None else min(preset.output.channels, max_channels)
    if channels != preset.output.channels:
        preset = dataclasses.replace(preset, output=dataclasses.replace(preset.output, channels=channels))
    engine = Engine(sample_rate, blocksize, channels=channels, max_voices=max_voices)
    worker = worker_factory(engine)
    return Instrument(preset, engine, worker, Controller(preset, engine, worker))
