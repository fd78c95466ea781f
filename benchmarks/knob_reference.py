"""What each knob of an exported preset does to what the runtime plays, read by up to three implementations.

    .venv/bin/python benchmarks/knob_reference.py presets/kicks [--real ../shared/data/drums] [--kicks 6]
        [--random 6] [--values 9] [--velocities 40 100 127] [--spread-kicks 128] [--no-timbral] [--json out.json]

The model cards' knob check, on the exported model through the runtime's own render path (onnxruntime decoder, the
precomputed Griffin-Lim graph, the engine's velocity gain and output stage; no torch): each knob swept over
``--values`` positions from -1 to 1 (the others at their default), from

* every pad of the preset, at each of ``--velocities`` (a knob must not flip with velocity or between pads);
* ``--kicks`` held-out real kicks placed as pad samples (``runtime play --pad N=file.wav``: the encoder's anchor);
  every 8th kick file of the MANIFEST's ``kick`` class, the files the shipped presets hold out;
* ``--random`` random latents (codes drawn from the prior, N(0, I)).

Each hit is read by the project's descriptors (``own``, trainer/descriptors.py), by trainer/analysis/reference.py
(``librosa``) and, where the ``timbral-models`` package is installed (``pip install --no-deps
timbral-models==0.4.0``; not a project dependency), by the AudioCommons timbral models (``timbral``: booming for
sub, hardness for punch, brightness for brightness; it has no click or decay model; hits resampled to 44.1 kHz).
timbral-models 0.4.0 predates numpy 2 / librosa 0.11; the shims it needs are here (:func:`_load_timbral`), not in a
fork. The timbral models are perceptual regressions that answer to several things at once (on trainer/data/synth.py
kicks hardness follows the pitch-envelope depth that ``punch`` measures, but click level and brightness as much;
figures in benchmarks/README.md, "Knob check"), so their cross-talk is theirs as much as the knobs'.

Printed: per knob and implementation the median rho, the sweeps >= 0.9, the minimum and the effect size; the knob x
descriptor rho matrix per implementation with the size matrix next to it; and the velocity check (for every pad,
the sign of each knob's rho at every velocity). A size is the median over sweeps of (descriptor at knob +1 minus at
-1) over the descriptor's interquartile range across real kicks (:data:`trainer.analysis.knobs.SIZE_UNIT`): the
first ``--spread-kicks`` files of the MANIFEST's ``kick`` class, prepared for the model as a pad sample is, read by
each implementation. Rank correlation reads a tiny monotone side effect as |rho| 1; the size says whether it is
heard. The knobs are whatever the preset's knobs name: latent axes of an older model or shaping controls.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import types
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.preset import Pad, load_preset  # noqa: E402
from runtime.render import offline_instrument, play_hit, render_pending  # noqa: E402
from trainer.analysis import knobs, reference  # noqa: E402
from trainer.descriptors import DESCRIPTORS, describe_batch  # noqa: E402

#: knob -> the timbral model that measures it (``timbral_depth`` falls as a synth kick's sub layer rises, so it is
#: no sub measure; booming rises with it, rho 0.6 over 6 sub levels, and falls with drive and brightness)
TIMBRAL_OF = {"sub": "booming", "punch": "hardness", "brightness": "brightness"}
TIMBRAL_RATE = 44100


# ------------------------------------------------------------------------------------------ timbral_models shims
def _librosa_0_11_shim() -> types.ModuleType:
    """A stand-in for the ``librosa`` name inside timbral_models: librosa 0.11 made ``y`` and ``sr`` keyword-only
    (timbral_models 0.4.0 passes them positionally); everything else is librosa itself."""
    import librosa

    shim = types.ModuleType("librosa_positional")
    shim.__dict__.update(librosa.__dict__)
    shim.onset = types.SimpleNamespace(
        onset_strength=lambda y, sr=22050, **kw: librosa.onset.onset_strength(y=y, sr=sr, **kw),
        onset_detect=lambda y=None, sr=22050, **kw: librosa.onset.onset_detect(y=y, sr=sr, **kw))
    shim.core = types.SimpleNamespace(
        stft=librosa.stft, istft=librosa.istft,
        resample=lambda y, orig_sr, target_sr, **kw: librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr, **kw))
    return shim


def _load_timbral() -> types.ModuleType | None:
    """timbral_models with its shims applied, or None when it is not installed."""
    try:
        import six  # noqa: F401
    except ImportError:  # timbral_models imports six only for six.string_types
        sys.modules["six"] = types.SimpleNamespace(string_types=(str,))
    if not hasattr(np.lib, "pad"):  # numpy 2 dropped the np.lib.pad alias that timbral_hardness calls
        np.lib.pad = np.pad
    try:
        import timbral_models
    except ImportError:
        return None
    shim = _librosa_0_11_shim()
    for name in ("timbral_util", "Timbral_Hardness"):
        module = sys.modules.get(f"timbral_models.{name}")
        if module is not None and hasattr(module, "librosa"):
            module.librosa = shim
    return timbral_models


def timbral_describer(timbral: types.ModuleType):
    """A describer ``[B, N], rate -> [B, len(reference.KNOBS)]`` from the timbral models (NaN where it has none)."""
    functions = {"booming": timbral.timbral_booming, "hardness": timbral.timbral_hardness,
                 "brightness": timbral.timbral_brightness}

    def describe(audio: np.ndarray, sample_rate: int) -> np.ndarray:
        from scipy.signal import resample_poly

        out = np.full((len(audio), len(reference.KNOBS)), np.nan)
        for i, y in enumerate(np.asarray(audio, dtype=np.float64)):
            if np.max(np.abs(y)) <= 1e-9:
                continue
            if sample_rate != TIMBRAL_RATE:  # the models' regressions were fitted on 44.1 kHz recordings
                y = resample_poly(y, TIMBRAL_RATE, sample_rate)
            for knob, model in TIMBRAL_OF.items():
                try:
                    with warnings.catch_warnings():  # pyloudnorm's "possible clipped samples" on every loud hit
                        warnings.simplefilter("ignore", UserWarning)
                        out[i, reference.KNOBS.index(knob)] = float(functions[model](y, fs=TIMBRAL_RATE))
                except (ValueError, IndexError, ZeroDivisionError, FloatingPointError) as err:
                    print(f"timbral_{model} failed on one hit ({type(err).__name__}: {err}); skipped", file=sys.stderr)
        return out

    return describe


# ----------------------------------------------------------------------------------------------- the sweeps
def kick_files(drums: Path) -> list[Path]:
    """The files of the ``kick`` class of ``drums/MANIFEST.tsv``, in its order."""
    with open(drums / "MANIFEST.tsv", newline="", encoding="utf-8") as f:
        return [drums / r["path"] for r in csv.DictReader(f, delimiter="\t") if r.get("class") == "kick"]


def held_out_kicks(drums: Path, n: int) -> list[Path]:
    """Every 8th kick file of ``drums/MANIFEST.tsv`` (the shipped presets' held-out set), the first ``n``."""
    return kick_files(drums)[::8][:n]


def real_descriptors(files: list[Path], metadata, implementations: dict) -> dict[str, np.ndarray]:
    """Each implementation's descriptors ``[R, D]`` of real kick ``files``, prepared for the model as a pad's own
    sample is (mono, model rate, onset-aligned, loudness-normalised); a file that cannot be read is skipped."""
    from runtime.controls import read_sample
    from runtime.errors import KickspaceError

    audio = []
    for path in files:
        try:
            audio.append(read_sample(path, metadata))
        except KickspaceError as err:
            print(f"skipped for the real-kick spread: {err}", file=sys.stderr)
    if not audio:
        return {}
    return {name: fn(np.stack(audio), metadata.sample_rate) for name, fn in implementations.items()}


def sweep_pads(preset, *, extra_samples: list[Path], n_random: int, seed: int = 0) -> tuple:
    """The preset with one more pad per real kick and per random latent; returns it and each pad's kind."""
    notes = [p.note for p in preset.pads]
    free = (n for n in range(128) if n not in notes)
    latent = len(preset.pads[0].anchor) if preset.pads and preset.pads[0].anchor else None
    from runtime.model import DECODER_FILE, read_metadata

    latent = read_metadata(preset.model / DECODER_FILE).latent if latent is None else latent
    label = preset.pads[0].label
    rng = np.random.default_rng(seed)
    pads = list(preset.pads)
    kinds = ["pad"] * len(pads)
    for path in extra_samples:
        pads.append(Pad(note=next(free), name=path.stem, label=label, sample=path))
        kinds.append("real")
    for _ in range(n_random):
        pads.append(Pad(note=next(free), name="random", label=label, anchor=tuple(rng.standard_normal(latent))))
        kinds.append("random")
    return dataclasses.replace(preset, pads=tuple(pads)), kinds


def record(preset, kinds: list[str], *, axes: list[str], values: np.ndarray, velocities: list[int],
           blocksize: int = 256) -> tuple[np.ndarray, list[str]]:
    """Hits ``[K, A, S, N]`` (A = pads x velocities for pads, one velocity for the rest) and each sweep's kind."""
    instrument = offline_instrument(preset, blocksize=blocksize, max_voices=4)
    controller, engine, worker = instrument.controller, instrument.engine, instrument.worker
    starts = [(p.note, v, f"pad {p.name} v{v}") for p, kind in zip(preset.pads, kinds) if kind == "pad"
              for v in velocities]
    starts += [(p.note, max(velocities), kind) for p, kind in zip(preset.pads, kinds) if kind != "pad"]
    out = []
    for axis in axes:
        rows = []
        for value in values:
            controller.set_axes({axis: float(value)})
            render_pending(worker)
            rows.append([play_hit(engine, note, velocity).mean(axis=1) for note, velocity, _ in starts])
        controller.set_axes({axis: 0.0})
        n = max(len(h) for row in rows for h in row)
        out.append(np.array([[np.pad(h, (0, n - len(h))) for h in row] for row in rows]).transpose(1, 0, 2))
    n = max(a.shape[-1] for a in out)
    return np.stack([np.pad(a, ((0, 0), (0, 0), (0, n - a.shape[-1]))) for a in out]), [s[2] for s in starts]


# ----------------------------------------------------------------------------------------------- reporting
def velocity_check(figures: dict, labels: list[str], velocities: list[int]) -> dict[str, list[str]]:
    """Per knob, the pads whose own-descriptor rho changes sign between velocities (empty: never flips)."""
    flips = {}
    for knob, f in figures["knobs"].items():
        by_pad: dict[str, set[int]] = {}
        for rho, label in zip(f["rho"], labels):
            if label.startswith("pad "):
                by_pad.setdefault(label.rsplit(" v", 1)[0], set()).add(int(np.sign(np.round(rho, 6))))
        flips[knob] = sorted(pad for pad, signs in by_pad.items() if {-1, 1} <= signs)
    return flips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("preset", type=Path)
    parser.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/drums")
    parser.add_argument("--kicks", type=int, default=6)
    parser.add_argument("--random", type=int, default=6)
    parser.add_argument("--values", type=int, default=9)
    parser.add_argument("--velocities", type=int, nargs="+", default=[40, 100, 127])
    parser.add_argument("--spread-kicks", type=int, default=128,
                        help="real kick files whose descriptors' IQR is the unit of the effect sizes (0: no sizes)")
    parser.add_argument("--no-timbral", action="store_true", help="skip the timbral models even where installed")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    preset = load_preset(args.preset)
    samples = held_out_kicks(args.real, args.kicks) if args.kicks and (args.real / "MANIFEST.tsv").is_file() else []
    preset, kinds = sweep_pads(preset, extra_samples=samples, n_random=args.random)
    axes = [k.axis for k in preset.knobs]
    values = np.linspace(-1.0, 1.0, args.values)
    audio, labels = record(preset, kinds, axes=axes, values=values, velocities=args.velocities)
    from runtime.model import DECODER_FILE, read_metadata

    metadata = read_metadata(preset.model / DECODER_FILE)
    rate = metadata.sample_rate
    implementations = {knobs.OWN: describe_batch, "librosa": reference.describe_batch}
    timbral = None if args.no_timbral else _load_timbral()
    if timbral is not None:
        implementations["timbral"] = timbral_describer(timbral)
    flat = audio.reshape(-1, audio.shape[-1])
    read = {name: fn(flat, rate).reshape(*audio.shape[:3], -1) for name, fn in implementations.items()}
    kinds_per_sweep = [label.split(" ")[0] for label in labels]
    has_manifest = (args.real / "MANIFEST.tsv").is_file()
    spread_files = kick_files(args.real)[:args.spread_kicks] if args.spread_kicks and has_manifest else []
    real = real_descriptors(spread_files, metadata, implementations)
    check = knobs.validate(values, read, controls=axes, kinds=kinds_per_sweep, real=real)
    check["sweeps"] = labels
    check["velocity_flips"] = velocity_check(check["figures"][knobs.OWN], labels, args.velocities)
    counts = ", ".join(f"{kinds_per_sweep.count(k)} {k}" for k in dict.fromkeys(kinds_per_sweep))
    print(f"# {args.preset}: {len(labels)} sweeps per knob ({counts}), "
          f"{args.values} values; implementations: {', '.join(read)}"
          + ("" if timbral or args.no_timbral else " (timbral-models not installed)"))
    print(knobs.markdown(check))
    print("\nVelocity (own descriptors): pads whose knob changes direction between velocities "
          + str(args.velocities) + ": " + "; ".join(f"{k}: {', '.join(v) or 'none'}"
                                                    for k, v in check["velocity_flips"].items()))
    if args.json:
        args.json.write_text(json.dumps(check, indent=1))


if __name__ == "__main__":
    main()
