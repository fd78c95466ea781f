"""How real a preset's random sounds are, through the product: the realism ratio of `runtime render --random`.

    .venv/bin/python benchmarks/prior_realism.py PRESET... --real out/kit-train out/kit-heldout [--n 256]

``trainer evaluate`` measures realism on a run, through the trainer's synthesis. This measures what a producer
gets: random sounds rendered by the runtime (``runtime.render.render_random``: the model's prior, the pad's class,
decoder graph, engine) on each class's pad, classes in the proportions of the real bank (``--real``, one folder
per class), against those real sounds prepared as training prepares them. Both sides are described at 22.05 kHz
(``trainer.descriptors.describe_batch``) and compared by ``trainer.analysis.realism.realism``: the descriptor
Fréchet distance, generated vs real, over real vs real at the same sizes (1: as far from the real sounds as they
are from each other). Figures: ``benchmarks/README.md``, "The kit's random sounds".
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from runtime.preset import load_preset
from runtime.render import render_random
from runtime.spec import get_spec
from trainer.analysis.realism import realism
from trainer.data.audio import Preprocess, SkipFile, load_one_shot, resample
from trainer.data.layouts import scan_root
from trainer.descriptors import describe_batch

SPEC = get_spec("kick-22k")


def real_bank(roots: list[Path]) -> tuple[np.ndarray, Counter]:
    """Prepared real sounds ``[N, n_samples]`` at the spec's rate and the count of each class."""
    sounds, counts = [], Counter()
    for root in roots:
        for item in scan_root(root, layout="bank")[1]:
            try:
                sounds.append(load_one_shot(item.path, spec=SPEC, preprocess=Preprocess())[0])
            except SkipFile:
                continue
            counts[item.label] += 1
    return np.array(sounds), counts


def random_sounds(preset: str, counts: Counter, n: int) -> np.ndarray:
    """``n`` (about) random sounds ``[n, n_samples]``, per class on the preset's pad of that class."""
    pads = {p.label: p.note for p in load_preset(preset).pads if p.label is not None}
    total, out = sum(counts.values()), []
    for label, k in counts.items():
        rendered, _ = render_random(preset, max(1, round(n * k / total)), seed=0, note=pads.get(label),
                                    sample_rate=44100)
        for audio, _ in rendered:
            x = resample(np.ascontiguousarray(audio.T.mean(axis=0, keepdims=True)), 44100, SPEC.sample_rate)[0]
            out.append(np.pad(x, (0, max(0, SPEC.n_samples - len(x))))[:SPEC.n_samples])
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("presets", nargs="+")
    parser.add_argument("--real", type=Path, nargs="+", required=True, help="bank folders of real sounds")
    parser.add_argument("--n", type=int, default=256, help="random sounds per preset (default 256)")
    args = parser.parse_args()
    real, counts = real_bank(args.real)
    real_desc = describe_batch(real, SPEC.sample_rate)
    print(f"{len(real)} real sounds: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for preset in args.presets:
        r = realism(describe_batch(random_sounds(preset, counts, args.n), SPEC.sample_rate), real_desc, seed=0)
        shifts = ", ".join(f"{k} {v['mean_shift_sd']:+.2f} sd / {v['spread_ratio']:.2f}x"
                           for k, v in r["descriptors"].items())
        print(f"{preset}: realism ratio {r['ratio']:.2f} ({shifts})")


if __name__ == "__main__":
    main()
