"""What a preset's kicks sound like next to real kicks: hiss floor, click at note-on, attack, cut tail, bandwidth.

    .venv/bin/python benchmarks/render_quality.py presets/kicks --real ../shared/data/drums [--latents 200]

Renders, through the runtime's own render path (``runtime.worker.render_sounds``: the decoder graph, DC blocker
until the sound ends, 10 ms fade-out at the buffer end), every pad of the preset at its knob defaults, every
pad with each knob at its minimum (CC 0) and maximum (CC 127), and ``--latents`` random latents (standard normal
in the model's code units; for a class-conditioned model, each class in turn) and as many draws from the model's
prior when it ships one (what ``runtime render --random`` and the ``r`` key play), and measures them beside the real
sounds of ``--class`` (default: kick, or each class of a class-conditioned model) in ``--real``'s ``MANIFEST.tsv``
(the files as they are, mono, resampled to 44.1 kHz). The measures are written here, in numpy/scipy, apart from
the project's descriptors, so they are an outside check:

* ``tail_db``: energy above 1 kHz (4th-order Butterworth high-pass, zero phase) in 0.35-0.6 s after the start,
  mean square re the squared peak, dB (-200 for digital silence; a sound shorter than 0.6 s counts as silent
  after its end);
* ``flatness``: spectral flatness (geometric / arithmetic mean of the Welch power, 1024 points, above 1 kHz) of
  that window: ~1 is a hiss, ~0 a tone or silence (digital silence reads 0);
* ``first``: ``|x[0]| / peak``: the click a note-on makes when a sound does not start from silence;
* ``attack_ms``: 10 % -> 90 % rise of the amplitude envelope (RMS over a 5 ms moving window) to its peak;
* ``end_db``: RMS of the 10 ms before the last 10 ms (before the runtime's fade) re peak, dB: above -60 dB the
  sound is still ringing when its buffer ends (a cut tail);
* ``band_khz``: highest frequency whose long-term power (Welch, 2048 points) is within 60 dB of its maximum.

Each row prints median / p90 (tail, flatness, first, end) or median / IQR (attack, bandwidth) over its group.
``--json PATH`` writes every per-sound figure.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.controls import ControlState  # noqa: E402
from runtime.model import ExportedModel  # noqa: E402
from runtime.preset import load_preset  # noqa: E402
from runtime.worker import PadRequest, render_sounds  # noqa: E402

SILENT_DB = -200.0
MEASURES = ("tail_db", "flatness", "first", "attack_ms", "end_db", "band_khz")
#: (low, high) statistics printed per measure: median and p90, or the interquartile range
SPREAD = {"tail_db": "p90", "flatness": "p90", "first": "p90", "attack_ms": "iqr", "end_db": "p90",
          "band_khz": "iqr"}


# ============================================================================================ the measures
def _db(ratio: float) -> float:
    return max(float(10 * np.log10(ratio)), SILENT_DB) if ratio > 0 else SILENT_DB


def tail_window(audio: np.ndarray, rate: int, start: float = 0.35, stop: float = 0.6) -> np.ndarray:
    """High-passed (1 kHz) samples of ``audio`` ``[N]`` in ``start``-``stop`` s, zero-padded past its end."""
    n = int(round(stop * rate))
    x = np.zeros(max(n, audio.size))
    x[:audio.size] = audio
    sos = signal.butter(4, 1000.0, "highpass", fs=rate, output="sos")
    return signal.sosfiltfilt(sos, x)[int(round(start * rate)):n]


def tail_floor_db(audio: np.ndarray, rate: int) -> float:
    """Mean-square energy above 1 kHz in 0.35-0.6 s re the squared peak of ``audio`` ``[N]``, dB."""
    peak = float(np.max(np.abs(audio)))
    return _db(float(np.mean(tail_window(audio, rate) ** 2)) / peak ** 2) if peak > 0 else SILENT_DB


def tail_flatness(audio: np.ndarray, rate: int) -> float:
    """Spectral flatness of the 0.35-0.6 s window's power above 1 kHz (0 for digital silence)."""
    freqs, power = signal.welch(tail_window(audio, rate), fs=rate, nperseg=1024)
    power = power[freqs >= 1000.0]
    mean = float(np.mean(power))
    if mean <= 1e-30:
        return 0.0
    return float(np.exp(np.mean(np.log(np.maximum(power, 1e-300)))) / mean)


def first_sample(audio: np.ndarray) -> float:
    """``|x[0]| / max|x|``."""
    peak = float(np.max(np.abs(audio)))
    return float(abs(audio[0]) / peak) if peak > 0 else 0.0


def envelope(audio: np.ndarray, rate: int, window_ms: float = 5.0) -> np.ndarray:
    """Amplitude envelope ``[N]``: RMS over a centred ``window_ms`` moving window."""
    n = max(1, int(round(window_ms * 1e-3 * rate)))
    return np.sqrt(np.maximum(np.convolve(audio ** 2, np.ones(n) / n, mode="same"), 0.0))


def attack_ms(audio: np.ndarray, rate: int) -> float:
    """10 % -> 90 % rise time of :func:`envelope` towards its maximum, ms."""
    env = envelope(audio, rate)
    top = float(env.max())
    if top <= 0:
        return float("nan")
    t10 = int(np.argmax(env >= 0.1 * top))
    t90 = int(np.argmax(env >= 0.9 * top))
    return 1000.0 * (t90 - t10) / rate


def end_level_db(audio: np.ndarray, rate: int, fade_ms: float = 10.0, window_ms: float = 10.0) -> float:
    """RMS of the ``window_ms`` before the last ``fade_ms`` re peak, dB (the level the end of the buffer cuts)."""
    peak = float(np.max(np.abs(audio)))
    stop = audio.size - int(round(fade_ms * 1e-3 * rate))
    part = audio[max(0, stop - int(round(window_ms * 1e-3 * rate))):stop]
    return _db(float(np.mean(part ** 2)) / peak ** 2) if peak > 0 and part.size else SILENT_DB


def bandwidth_khz(audio: np.ndarray, rate: int, range_db: float = 60.0) -> float:
    """Highest frequency (kHz) whose Welch power is within ``range_db`` of the maximum."""
    freqs, power = signal.welch(audio, fs=rate, nperseg=min(2048, audio.size))
    live = np.nonzero(power >= power.max() * 10 ** (-range_db / 10))[0]
    return float(freqs[live[-1]] / 1000.0) if live.size else 0.0


def measure(audio: np.ndarray, rate: int) -> dict[str, float]:
    """Every measure of one mono sound ``[N]`` (see the module docstring)."""
    x = np.asarray(audio, dtype=np.float64)
    return {"tail_db": tail_floor_db(x, rate), "flatness": tail_flatness(x, rate), "first": first_sample(x),
            "attack_ms": attack_ms(x, rate), "end_db": end_level_db(x, rate), "band_khz": bandwidth_khz(x, rate)}


# ============================================================================================ the sounds
@dataclass
class Group:
    """Named sounds (mono ``[N]`` arrays) at one rate."""

    name: str
    rate: int
    sounds: list[np.ndarray]
    names: list[str]


def real_sounds(root: Path, drum_class: str) -> Group:
    """The ``drum_class`` files of ``root/MANIFEST.tsv`` as they are (mono mix, resampled to 44.1 kHz)."""
    import soundfile

    sounds, names = [], []
    with open(root / "MANIFEST.tsv", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["class"] != drum_class:
                continue
            try:
                data, rate = soundfile.read(str(root / row["path"]), always_2d=True, dtype="float64")
            except (OSError, RuntimeError) as err:
                print(f"skipped {row['path']}: {err}", file=sys.stderr)
                continue
            mono = data.mean(axis=1)
            if rate != 44100:
                mono = signal.resample_poly(mono, 44100, rate)
            if np.max(np.abs(mono)) > 0:
                sounds.append(mono)
                names.append(row["path"])
    return Group(f"real {drum_class} ({len(sounds)} files)", 44100, sounds, names)


def _render(request: PadRequest) -> list[np.ndarray]:
    audio = render_sounds([request], request.model.metadata.sample_rate)[0]
    return [row for row in np.asarray(audio, dtype=np.float64)]


def _first_layer(request: PadRequest) -> PadRequest:
    """A pad's request with its first velocity layer only (the z and shaping-control rows it sends)."""
    controls = None if request.controls is None else request.controls[:1]
    return replace(request, note=0, z=request.z[:1], controls=controls)


def preset_groups(folder: Path, n_latents: int, seed: int = 0) -> list[Group]:
    """The preset's pads, every pad at each knob's extremes, and random latents, rendered at the model rate."""
    preset = load_preset(folder)
    model = ExportedModel(preset.model)
    rate = model.metadata.sample_rate
    pads = Group("pads (knobs at default)", rate, [], [])
    for pad, request in zip(preset.pads, ControlState(preset, model.metadata).requests(model)):
        pads.sounds += _render(_first_layer(request))
        pads.names.append(f"pad {pad.note} {pad.name}")
    knobs = Group("knobs at 0 and 1 (every pad)", rate, [], [])
    for knob in preset.knobs:
        for cc, end in ((0, "0"), (127, "1")):
            state = ControlState(preset, model.metadata)
            state.set_cc(knob.cc, cc)
            for pad, request in zip(preset.pads, state.requests(model)):
                knobs.sounds += _render(_first_layer(request))
                knobs.names.append(f"pad {pad.note} {knob.axis}={end}")
    groups = [pads, knobs]
    rng = np.random.default_rng(seed)
    labels = list(range(len(model.metadata.labels))) or [None]
    for label in labels:
        what = f" class {model.metadata.labels[label]}" if label is not None else ""
        samplers = [("random latents", "z", rng.standard_normal((n_latents, model.metadata.latent)).astype(np.float32))]
        if model.metadata.prior is not None:  # what the runtime's random sounds draw from (runtime.prior)
            samplers.append(("prior draws", "p", model.metadata.prior.sample(n_latents, rng)))
        for kind, tag, z in samplers:
            sounds = [s for i in range(0, n_latents, 50) for s in _render(PadRequest(0, model, z[i:i + 50], label))]
            groups.append(Group(f"{n_latents} {kind}{what}", rate, sounds, [f"{tag}{i}" for i in range(n_latents)]))
    return groups


# ============================================================================================ the report
def summarise(values: list[float], spread: str) -> str:
    v = np.asarray([x for x in values if np.isfinite(x)])
    if not v.size:
        return "-"
    fmt = (lambda x: f"{x:.2g}") if np.nanmax(np.abs(v)) < 0.1 else (lambda x: f"{x:.1f}")
    if spread == "iqr":
        lo, mid, hi = np.percentile(v, [25, 50, 75])
        return f"{fmt(mid)} [{fmt(lo)}-{fmt(hi)}]"
    mid, p90 = np.percentile(v, [50, 90])
    return f"{fmt(mid)} / {fmt(p90)}"


def report(groups: list[Group]) -> tuple[str, dict]:
    """The printed table (one row per group) and every per-sound figure."""
    figures = {g.name: {n: measure(s, g.rate) for n, s in zip(g.names, g.sounds)} for g in groups}
    head = ("group | tail dB >1 kHz 0.35-0.6 s (median / p90) | tail flatness (median / p90) | first / peak "
            "(median / p90) | max first | attack 10-90 ms (median [IQR]) | end dB (median / p90) | max end dB | "
            "band kHz (median [IQR]; renders past 11 kHz)")
    lines = [head, "|".join(["---"] * 9)]
    for g in groups:
        rows = list(figures[g.name].values())
        col = {m: [r[m] for r in rows] for m in MEASURES}
        cells = [g.name, summarise(col["tail_db"], "p90"), summarise(col["flatness"], "p90"),
                 summarise(col["first"], "p90"), f"{max(col['first']):.3g}", summarise(col["attack_ms"], "iqr"),
                 summarise(col["end_db"], "p90"), f"{max(col['end_db']):.1f}",
                 f"{summarise(col['band_khz'], 'iqr')}; {sum(b > 11.0 for b in col['band_khz'])} of {len(rows)}"]
        lines.append(" | ".join(cells))
    return "\n".join(lines), figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset", type=Path, help="preset folder or file (presets/kicks)")
    parser.add_argument("--real", type=Path, help="folder with MANIFEST.tsv (../shared/data/drums)")
    parser.add_argument("--class", dest="drum_class", nargs="+",
                        help="manifest classes of the real sounds (default: kick, or every class of a kit model)")
    parser.add_argument("--latents", type=int, default=200, help="random latents (per class of a conditional model)")
    parser.add_argument("--json", type=Path, help="write every per-sound figure here")
    parser.add_argument("--list", action="store_true", help="print every pad and knob render's figures too")
    args = parser.parse_args(argv)
    groups = preset_groups(args.preset, args.latents)
    if args.real:
        labels = ExportedModel(load_preset(args.preset).model).metadata.labels
        for drum_class in args.drum_class or labels or ["kick"]:
            groups.append(real_sounds(args.real, drum_class))
    table, figures = report(groups)
    print(table)
    if args.list:
        for group in groups[:2]:
            for name, fig in figures[group.name].items():
                print(f"{name:24s} " + "  ".join(f"{m} {fig[m]:.4g}" for m in MEASURES))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
