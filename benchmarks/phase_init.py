"""Quality of Griffin-Lim initial phases on real kicks: spectral convergence and mel distance per init x K.

    .venv/bin/python benchmarks/phase_init.py [--spec kick kick-2048-htk] [--limit 128] [--no-heap]

Kicks: /work/shared/data/drums/*/kick/*.wav (or $KICKSPACE_DRUMS), loaded by a small local loader (downmix,
resample to the spec rate with soxr_hq, trim leading silence, crop/pad, peak-normalise). Sorted by path, the even
ones fit the learned inits (template, linear), the odd ones are evaluated (every init is scored on the same odd half).

Target magnitude M = trainer.spec.MelInverse(features of the real kick) (what a perfect decoder would hand the
graph). Metrics per kick, median over the evaluation kicks:

* SC (dB) = 20 log10(|| |STFT(y)| - M || / ||M||), STFT with the spec's scaled convention, first ``frames`` frames;
* mel distance (dB) = RMS dB difference between 96-band mel spectrograms (n_fft 2048, hop 256, librosa, power) of
  y and of the ORIGINAL kick, over bins within 60 dB of the original's peak.

Reference: librosa.griffinlim(M / scale, n_iter=32, momentum=0.99, init="random", random_state=0) on the same M.
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

from trainer.phase import PhaseGradient, make_init, pghi_heap  # noqa: E402
from runtime.spec import SPECS, SpectrogramSpec  # noqa: E402
from trainer.spec import LogMel, MelInverse, griffin_lim, magnitude_scale, waveform_to_features  # noqa: E402

KS = (0, 2, 4, 8, 16, 32)
DRUMS = os.environ.get("KICKSPACE_DRUMS", "/work/shared/data/drums")


def load_kicks(spec: SpectrogramSpec, limit: int | None = None) -> tuple[np.ndarray, list[str]]:
    """``[B, n_samples]`` float32 kicks (a local stand-in for the ingestion module)."""
    import librosa
    import soundfile as sf

    paths = sorted(glob.glob(os.path.join(DRUMS, "*", "kick", "*.wav")))[:limit]
    out = []
    for p in paths:
        x, sr = sf.read(p, dtype="float64", always_2d=True)
        x = x.mean(axis=1)
        if sr != spec.sample_rate:
            x = librosa.resample(x, orig_sr=sr, target_sr=spec.sample_rate, res_type="soxr_hq")
        peak = np.max(np.abs(x)) or 1.0
        start = int(np.argmax(np.abs(x) > 10 ** (-50 / 20) * peak))
        x = x[start:start + spec.n_samples]
        x = np.pad(x, (0, spec.n_samples - x.size))
        out.append(x / (np.max(np.abs(x)) or 1.0))
    return np.asarray(out, dtype=np.float32), paths


class Scorer:
    """SC against M and mel distance against the original kicks, per kick."""

    def __init__(self, spec: SpectrogramSpec, audio: np.ndarray) -> None:
        import librosa

        self.spec = spec
        self.logmel = LogMel(spec).eval()
        self.mel = librosa.filters.mel(sr=spec.sample_rate, n_fft=2048, n_mels=96)
        self.features = waveform_to_features(audio, spec)                      # [B, 1, M, T]
        with torch.no_grad():
            self.M = MelInverse(spec)(self.features)                            # [B, 1, F, T] scaled
        self.ref_db = self.mel_db(audio)
        self.mask = self.ref_db >= self.ref_db.max(axis=(1, 2), keepdims=True) - 60

    def mel_db(self, audio: np.ndarray) -> np.ndarray:
        import librosa

        s = np.abs(librosa.stft(np.asarray(audio, dtype=np.float32), n_fft=2048, hop_length=256)) ** 2
        return 10 * np.log10(np.maximum(self.mel @ s, 1e-10))

    def __call__(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray(y, dtype=np.float32).reshape(len(y), -1)
        with torch.no_grad():
            mag = torch.sqrt(self.logmel.power(torch.as_tensor(y)))             # [B, 1, F, T]
        m = self.M
        sc = 20 * torch.log10(torch.linalg.vector_norm(mag - m, dim=(1, 2, 3))
                              / torch.linalg.vector_norm(m, dim=(1, 2, 3))).numpy()
        d = (self.mel_db(y) - self.ref_db) ** 2
        mel = np.sqrt((d * self.mask).sum(axis=(1, 2)) / self.mask.sum(axis=(1, 2)))
        return sc, mel


def librosa_reference(spec: SpectrogramSpec, M: torch.Tensor, n_iter: int, seed: int = 0) -> np.ndarray:
    import librosa

    mag = torch.nn.functional.pad(M[:, 0] / magnitude_scale(spec), (0, 1)).numpy()
    return np.stack([librosa.griffinlim(m, n_iter=n_iter, hop_length=spec.hop_length, win_length=spec.win_length,
                                        n_fft=spec.n_fft, window="hann", center=True, length=spec.n_samples,
                                        momentum=0.99, init="random", random_state=seed) for m in mag])


def init_phase(name: str, spec: SpectrogramSpec, M: torch.Tensor, train: np.ndarray) -> torch.Tensor:
    """Phase ``[B, 1, F, T]`` (or broadcastable) for the evaluation magnitudes ``M``."""
    if name == "pghi_heap":
        return torch.tensor(np.stack([pghi_heap(m, spec) for m in M[:, 0].numpy()]))[:, None].double()
    init = make_init(name, spec, train)
    if isinstance(init, PhaseGradient):
        with torch.no_grad():
            return init(M[:, 0])[:, None].double()
    return torch.tensor(init).double()


def run(spec_name: str, limit: int | None, inits: list[str]) -> str:
    spec = SPECS[spec_name]
    audio, paths = load_kicks(spec, limit)
    train, test = audio[0::2], audio[1::2]
    score = Scorer(spec, test)
    M = score.M.double()
    lines = [f"### {spec_name}: {len(test)} evaluation kicks (fit on {len(train)}), median SC dB / mel distance dB",
             "", "| init | " + " | ".join(f"K={k}" for k in KS) + " |", "|---|" + "---|" * len(KS)]
    t0 = time.perf_counter()
    ref_sc, ref_mel = score(librosa_reference(spec, score.M, 32))
    ref = (float(np.median(ref_sc)), float(np.median(ref_mel)))
    t_ref = time.perf_counter() - t0
    lib = []
    for k in KS:
        s, m = score(librosa_reference(spec, score.M, k)) if k != 32 else (ref_sc, ref_mel)
        lib.append(f"{np.median(s):.1f} / {np.median(m):.2f}")
    lines.append("| librosa random (reference at K=32) | " + " | ".join(lib) + " |")
    for name in inits:
        t0 = time.perf_counter()
        phase = init_phase(name, spec, M, train)
        t_init = time.perf_counter() - t0
        cells = []
        for k in KS:
            y = griffin_lim(M, spec, n_iter=k, momentum=0.99, init=phase)
            s, m = score(y.float().numpy())
            s_med, m_med = float(np.median(s)), float(np.median(m))
            mark = " **" if (s_med <= ref[0] + 1 and m_med <= ref[1] + 1 and 0 < k <= 8) else ""
            cells.append(f"{s_med:.1f} / {m_med:.2f}{mark}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        print(f"  {spec_name} {name}: init {t_init:.1f} s", file=sys.stderr, flush=True)
    lines += ["", f"Reference (librosa random init, K=32): SC {ref[0]:.2f} dB, mel distance {ref[1]:.2f} dB "
              f"({t_ref:.1f} s for {len(test)} kicks). ** = within 1 dB of it on both metrics at K <= 8.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", nargs="+", default=["kick", "kick-2048-htk"])
    ap.add_argument("--limit", type=int, default=None, help="first N kicks (sorted by path)")
    ap.add_argument("--inits", nargs="+", default=["random", "zero", "bin_advance", "template", "linear", "pghi",
                                                   "pghi_heap"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.spec:
        print(run(name, args.limit, args.inits), flush=True)


if __name__ == "__main__":
    main()
