"""What a kick survives of each named spectrogram spec: the representation's ceiling, no model involved.

    .venv/bin/python benchmarks/spec_ceiling.py [--spec kick kick-2048-htk kick-22k] [--limit 128] [--iters 32]

DESIGN.md's measurement, repeated for every spec in ``runtime.spec.SPECS`` (including ones added since): real kicks
(``/work/shared/data/drums/*/kick/*``, or ``$KICKSPACE_DRUMS``, prepared by the training pipeline's own loader) ->
features at the spec's rate -> mel inverse + fast Griffin-Lim (``trainer.spec.features_to_waveform``) -> resampled
to 44.1 kHz. Median over kicks of the RMS dB distance to the original prepared at 44.1 kHz (so a lower-rate spec
pays for the band it drops):

* full band: 96-band mel (n_fft 2048, hop 256), bins within 60 dB of the original's peak;
* 20-250 Hz: a 4096-point STFT (hop 256) restricted to 20-250 Hz, bins within 60 dB of that band's peak: where a
  kick's body and pitch sweep live.

Also: Spearman rho between each descriptor of the original and of its reconstruction (can a knob measured on
reconstructions track the real thing?). Lower distances are better.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scipy import stats  # noqa: E402

from runtime.spec import SPECS  # noqa: E402
from trainer.data.audio import Preprocess, SkipFile, load_one_shot, resample  # noqa: E402
from trainer.descriptors import DESCRIPTORS, control_units, describe_batch  # noqa: E402
from trainer.spec import features_to_waveform, waveform_to_features  # noqa: E402

DRUMS = os.environ.get("KICKSPACE_DRUMS", "/work/shared/data/drums")
RATE = 44100


def _db(power: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, 1e-12))


def band_distance(ref: np.ndarray, test: np.ndarray, *, low: float = 20.0, high: float = 250.0) -> float:
    """RMS dB difference of 4096-point STFT power over ``low``-``high`` Hz, bins within 60 dB of the band peak."""
    import librosa

    freqs = librosa.fft_frequencies(sr=RATE, n_fft=4096)
    band = (freqs >= low) & (freqs <= high)
    a = _db(np.abs(librosa.stft(ref, n_fft=4096, hop_length=256)) ** 2)[band]
    b = _db(np.abs(librosa.stft(test, n_fft=4096, hop_length=256)) ** 2)[band]
    mask = a >= a.max() - 60.0
    return float(np.sqrt(np.mean((a[mask] - b[mask]) ** 2)))


def mel_distance(ref: np.ndarray, test: np.ndarray) -> float:
    """RMS dB difference of 96-band mel power spectrograms, bins within 60 dB of the reference's peak."""
    import librosa

    mel = (lambda x: _db(librosa.feature.melspectrogram(y=x, sr=RATE, n_fft=2048, hop_length=256, n_mels=96)))
    a, b = mel(ref), mel(test)
    mask = a >= a.max() - 60.0
    return float(np.sqrt(np.mean((a[mask] - b[mask]) ** 2)))


def measure(name: str, files: list[str], iters: int) -> dict:
    spec, pre = SPECS[name], Preprocess()
    originals, prepared = [], []
    for path in files:  # the original at 44.1 kHz, and the same file prepared at the spec's own rate
        try:
            originals.append(load_one_shot(path, spec=SPECS["kick"], preprocess=pre).mean(axis=0))
            prepared.append(load_one_shot(path, spec=spec, preprocess=pre).mean(axis=0))
        except SkipFile:
            continue
    x = np.stack(originals).astype(np.float32)
    start = time.perf_counter()
    rec = features_to_waveform(waveform_to_features(torch.from_numpy(np.stack(prepared)[:, None]), spec), spec,
                               n_iter=iters).numpy()[:, 0]
    seconds = time.perf_counter() - start
    if spec.sample_rate != RATE:
        rec = np.stack([resample(v[None], spec.sample_rate, RATE)[0] for v in rec])
    rec = np.pad(rec, ((0, 0), (0, max(0, x.shape[1] - rec.shape[1]))))[:, : x.shape[1]]
    full = np.median([mel_distance(a, b) for a, b in zip(x, rec)])
    low = np.median([band_distance(a, b) for a, b in zip(x, rec)])
    d0, d1 = control_units(describe_batch(x, RATE)), control_units(describe_batch(rec, RATE))
    rho = {d: float(stats.spearmanr(d0[:, j], d1[:, j])[0]) for j, d in enumerate(DESCRIPTORS) if d != "length"}
    return {"spec": name, "kicks": len(x), "full": full, "low": low, "rho": rho, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", nargs="+", default=["kick", "kick-2048-htk", "kick-22k"])
    parser.add_argument("--limit", type=int, default=128)
    parser.add_argument("--iters", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted(glob.glob(f"{DRUMS}/*/kick/*"))[: args.limit]
    print(f"{len(files)} kicks from {DRUMS}, {args.iters} Griffin-Lim iterations (trainer.spec), one thread")
    print("| spec | full band dB | 20-250 Hz dB | " + " | ".join(f"rho {d}" for d in DESCRIPTORS if d != "length")
          + " |")
    print("|---|---|---|" + "---|" * (len(DESCRIPTORS) - 1))
    for name in args.spec:
        r = measure(name, files, args.iters)
        print(f"| {name} | {r['full']:.2f} | {r['low']:.2f} | "
              + " | ".join(f"{r['rho'][d]:.2f}" for d in DESCRIPTORS if d != "length") + " |", flush=True)


if __name__ == "__main__":
    main()
