"""Feature cache benchmark: first ingestion pass (decode + preprocess + features) vs a second, cached pass.

Usage::

    .venv/bin/python benchmarks/ingest_cache.py                 # ../shared/data/drums if present, else synthetic
    .venv/bin/python benchmarks/ingest_cache.py --data DIR      # any data root (flat, bank or NSynth)
    .venv/bin/python benchmarks/ingest_cache.py --synthetic 300 # N synthetic kicks in a bank layout

The cache lives in a fresh temporary folder, so the first pass is always cold. Imports and the spec's matrices are
warmed before timing, so the first pass is charged only for the work the cache saves. Prints both times, the
speed-up, whether both passes gave identical arrays, and a Markdown row for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DRUMS = REPO.parent / "shared" / "data" / "drums"


def synthetic_bank(root: Path, *, n: int, seed: int = 0) -> Path:
    """Write ``n`` pitch-swept kicks with random parameters as 16-bit WAVs in two class folders."""
    import soundfile

    rng = np.random.default_rng(seed)
    for i in range(n):
        rate = int(rng.choice([44100, 48000]))
        seconds = float(rng.uniform(0.3, 1.5))
        t = np.arange(int(seconds * rate)) / rate
        start, end = rng.uniform(120, 300), rng.uniform(35, 70)
        freq = end + (start - end) * np.exp(-t / rng.uniform(0.01, 0.06))
        body = np.sin(2 * np.pi * np.cumsum(freq) / rate) * np.exp(-t / rng.uniform(0.1, 0.6))
        click = rng.uniform(0, 0.5) * rng.standard_normal(t.size) * np.exp(-t / 0.004)
        x = body + click
        folder = root / ("kick" if i % 3 else "tom")
        folder.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(folder / f"synth_{i:04d}.wav"), (0.9 * x / np.abs(x).max()).astype(np.float32), rate,
                        subtype="PCM_16")
    return root


def run(data: Path, *, cache: Path) -> dict:
    """Two passes over ``data`` with a cold cache in ``cache``; returns timings and counts."""
    from runtime.spec import SpectrogramSpec
    from trainer.data.audio import Preprocess
    from trainer.data.ingest import ingest
    from trainer.spec import waveform_to_features

    spec, preprocess = SpectrogramSpec(), Preprocess()
    waveform_to_features(np.zeros((1, spec.n_samples), np.float32), spec)  # warm imports and matrices
    times, corpora = [], []
    for _ in range(2):
        start = time.perf_counter()
        corpora.append(ingest([data], spec=spec, preprocess=preprocess, cache_dir=cache, progress=False))
        times.append(time.perf_counter() - start)
    first, second = corpora
    identical = (np.array_equal(first.features, second.features) and np.array_equal(first.audio, second.audio)
                 and first.paths == second.paths)
    files = first.summary.kept + len(first.summary.skipped)
    size = sum(p.stat().st_size for p in cache.rglob("*.npz"))
    return dict(files=files, kept=first.summary.kept, first_s=times[0], second_s=times[1],
                speedup=times[0] / times[1], hits=second.summary.cache_hits, identical=identical,
                cache_mb=size / 2 ** 20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root (default: ../shared/data/drums)")
    parser.add_argument("--synthetic", type=int, default=None, metavar="N",
                        help="benchmark N synthetic kicks instead (default 300 when the real data is absent)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kickspace-bench-") as tmp:
        if args.synthetic is not None or (args.data is None and not DRUMS.is_dir()):
            n = args.synthetic or 300
            data, label = synthetic_bank(Path(tmp) / "synthetic", n=n), f"{n} synthetic kicks (bank)"
        else:
            data = args.data or DRUMS
            label = f"{data.name} ({'real one-shots, bank' if data == DRUMS else 'given root'})"
        result = run(data, cache=Path(tmp) / "cache")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} " \
              f"{platform.python_version()}"
    print(f"corpus: {label}: {result['files']} files, {result['kept']} kept", file=sys.stderr)
    print(f"first pass:  {result['first_s']:.2f} s ({1000 * result['first_s'] / result['files']:.1f} ms/file)")
    print(f"second pass: {result['second_s']:.2f} s ({1000 * result['second_s'] / result['files']:.2f} ms/file, "
          f"{result['hits']} cache hits)")
    print(f"speed-up:    {result['speedup']:.1f}x; identical arrays: {result['identical']}; "
          f"cache {result['cache_mb']:.0f} MB")
    print(f"| {datetime.date.today()} | {machine} | {label} | {result['files']} | {result['first_s']:.1f} s | "
          f"{result['second_s']:.2f} s | {result['speedup']:.0f}x |")
    return 0 if result["identical"] and result["speedup"] >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
