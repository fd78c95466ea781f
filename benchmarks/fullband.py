"""Full band for the kick model: candidate representations measured side by side (issue 18 item 4).

    .venv/bin/python benchmarks/fullband.py [--candidates NAME ...] [--renders random:32 graph:8 ...]
                                            [--ks 8 2] [--limit 48] [--runs 30] [--no-cost] [--through presets/kicks]
                                            [--highband RUN/highband.pt]

A candidate is one or two *bands*, each a :class:`runtime.spec.SpectrogramSpec` (the training pipeline's own
features) with a mel inverse: ``clamped`` is ``trainer.spec.mel_inverse`` (the pseudo-inverse clamped at 0, what
every render uses today), ``pinv`` the plain pseudo-inverse with the *power* clamped at 0 after it. A two-band
candidate renders each band on its own and sums them through a power-complementary crossover (the two-band
upsampler's FIR, ``export.two_band.crossover_weight``): the low band at 22.05 kHz resampled to 44.1 kHz and
low-passed, the high band's magnitude weighted by the high side before its Griffin-Lim. Variants: ``hK2``
renders the high band with 2 iterations whatever the low band's K, ``noise`` with none from a random phase (noise
shaped by the high band's envelope).

Quality, as ``benchmarks/spec_ceiling.py`` measures it (real kicks prepared by the training loader -> features ->
inverse + Griffin-Lim -> 44.1 kHz; medians over kicks; lower is better): full band (96-band mel dB), 20-250 Hz
(4096-point STFT dB), plus

* ``hf``: the full-band distance restricted to the 96-band mel's bands above 11 kHz (bins within 60 dB of the
  original's peak), median over the kicks that have any such bin (their count is printed): does the band above
  11 kHz come back, and at the right level;
* ``band``: ``benchmarks/render_quality.py``'s bandwidth (highest frequency within 60 dB of the Welch peak), median
  over kicks, and how many kicks reach above 11 kHz; the originals' figures head the table.

Renders (``--renders INIT:K``): ``random`` is the ceiling's synthesis (``trainer.spec.griffin_lim``, random init);
``pghi`` each band through ``export.graph.GriffinLim`` from the in-graph PGHI phase, soxr resampling and an ideal
crossover; ``graph`` the timed graph's own synthesis (:meth:`CandidateGraph.synthesize`: PGHI, FIR upsampler).

Cost: the candidate's whole decoder graph (a randomly initialised VAE of the shipped kick model's architecture,
rows = the candidate's bands stacked, -> each band's ``export.graph.MagnitudeToAudio`` -> 2x polyphase upsampler for
a 22.05 kHz band -> sum) saved as ``python -m export onnx`` saves it and timed in onnxruntime, one thread, batch 1:
wall-clock median and p95, and the median CPU time of the calling thread (onnxruntime with one thread computes on
it), which a busy shared machine disturbs less.

``--through PRESET`` also renders real kicks encoded and decoded by an exported model (its ``encoder.onnx`` and the
``logmel`` output of its ``decoder.onnx``) through each inverse of that model's spec: does an inverse that helps on
true features also help on a decoder's?

``--highband CKPT`` adds ``two-band 22k+32 hK2`` with its high band predicted from the kicks' true low band by a
``trainer highband`` net (what the exported two-band decoder renders, less the VAE's own error).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from export.graph import GriffinLim, MagnitudeToAudio  # noqa: E402
from export.two_band import Upsample2, crossover_weight, fold_high_side  # noqa: E402
from export.onnx_file import save_onnx  # noqa: E402
from trainer.phase import PhaseGradient  # noqa: E402
from render_quality import bandwidth_khz  # noqa: E402
from runtime.spec import SPECS, SpectrogramSpec  # noqa: E402
from spec_ceiling import RATE, band_distance, mel_distance  # noqa: E402
from trainer.data.audio import Preprocess, SkipFile, load_one_shot, resample  # noqa: E402
from trainer.spec import features_to_power, griffin_lim, mel_basis, mel_inverse, waveform_to_features  # noqa: E402
from trainer.vae import ModelConfig, build_model  # noqa: E402

DRUMS = os.environ.get("KICKSPACE_DRUMS", "/work/shared/data/drums")
#: The shipped kick model's architecture (configs/kick-controls.toml): the decoder's share of the render cost.
CONTROLS = ("sub", "punch", "decay", "click", "brightness")
HF_EDGE = 11000.0


@dataclass(frozen=True)
class Band:
    """One spectrogram band of a candidate: its spec, its mel inverse, and its role in a two-band sum."""

    spec: SpectrogramSpec
    inverse: str = "clamped"   # "clamped" (trainer.spec.mel_inverse) or "pinv" (unclamped pseudo-inverse)
    role: str = "full"         # "full", or "low" / "high" of a two-band candidate
    n_iter: int | None = None  # Griffin-Lim iterations of this band when not the candidate's K (0: shaped noise)


@dataclass(frozen=True)
class Candidate:
    """A representation: one band, or a low and a high band summed through :func:`export.two_band.crossover_weight`."""

    name: str
    bands: tuple[Band, ...]
    note: str = ""
    highband: Path | None = None   # a `trainer highband` checkpoint predicting the high band from the low one

    @property
    def rows(self) -> int:
        """Feature rows the VAE sees (the bands stacked)."""
        return sum(b.spec.n_bins for b in self.bands)


def _spec44(n_fft: int, n_mels: int, **kw) -> SpectrogramSpec:
    return SpectrogramSpec(n_fft=n_fft, win_length=n_fft, hop_length=256, n_mels=n_mels, **kw)


def candidates() -> dict[str, Candidate]:
    """Every candidate by name (issue 18 item 4's list: a-d of the brief)."""
    k22, kick = SPECS["kick-22k"], SPECS["kick"]
    high = {m: _spec44(512, m, fmin=9000.0, mel_scale="htk") for m in (16, 32)}
    out = [
        Candidate("kick-22k", (Band(k22),), "shipped today: 22.05 kHz, n_fft 1024, hop 128, 128 HTK"),
        Candidate("kick", (Band(kick),), "44.1 kHz, n_fft 1024, hop 256, 128 Slaney"),
        Candidate("kick-22k pinv", (Band(k22, "pinv"),), "kick-22k with the unclamped inverse"),
    ]
    for mels in (128, 160, 192):
        spec = _spec44(2048, mels, mel_scale="htk")
        out.append(Candidate(f"2048 htk{mels}", (Band(spec),), f"44.1 kHz, n_fft 2048, hop 256, {mels} HTK"))
        out.append(Candidate(f"2048 htk{mels} pinv", (Band(spec, "pinv"),), "the same, unclamped inverse"))
    limited = _spec44(2048, 128, mel_scale="htk", fmin=20.0, fmax=16000.0)
    out.append(Candidate("2048 htk128 20-16k", (Band(limited),), "128 HTK mels over 20 Hz-16 kHz"))
    out.append(Candidate("2048 htk128 20-16k pinv", (Band(limited, "pinv"),), "the same, unclamped inverse"))
    for m, spec in high.items():
        for inv in ("clamped", "pinv"):
            tag = "" if inv == "clamped" else " pinv"
            out.append(Candidate(f"two-band 22k+{m}{tag}", (Band(k22, inv, "low"), Band(spec, inv, "high")),
                                 f"kick-22k + {m} HTK mels 9-22 kHz of a 44.1 kHz n_fft 512 spec"))
            out.append(Candidate(f"two-band 22k+{m} hK2{tag}",
                                 (Band(k22, inv, "low"), Band(spec, inv, "high", n_iter=2)),
                                 "the same, the high band at K = 2"))
            out.append(Candidate(f"two-band 22k+{m} noise{tag}",
                                 (Band(k22, inv, "low"), Band(spec, inv, "high", n_iter=0)),
                                 "the same, the high band as shaped noise (random phase, no iterations)"))
    return {c.name: c for c in out}


# ================================================================================================ synthesis
def inverse_matrix(band: Band) -> np.ndarray:
    """Band power -> linear power ``[n_freq, M]`` of ``band`` (its inverse, a high band's crossover weight in)."""
    spec = band.spec
    inv = mel_inverse(spec) if band.inverse == "clamped" else np.linalg.pinv(mel_basis(spec))
    return fold_high_side(inv, spec) if band.role == "high" else np.ascontiguousarray(inv)


def band_magnitude(features: torch.Tensor, band: Band) -> torch.Tensor:
    """Normalised features ``[B, 1, M, T]`` -> scaled linear magnitude ``[B, 1, n_freq, T]``."""
    inv = torch.tensor(inverse_matrix(band), dtype=torch.float32)
    return torch.sqrt(torch.clamp(torch.matmul(inv, features_to_power(features, band.spec)), min=0.0))


@torch.no_grad()
def render_band(magnitude: torch.Tensor, spec: SpectrogramSpec, init: str, n_iter: int) -> np.ndarray:
    """Magnitude -> audio ``[B, n_samples]`` at the spec's rate: random-init ``trainer.spec.griffin_lim`` or the
    exported graph's :class:`export.graph.GriffinLim` from the in-graph PGHI phase."""
    if init == "random":
        return griffin_lim(magnitude, spec, n_iter=n_iter).numpy()[:, 0]
    return GriffinLim(spec, n_iter, init_phase=PhaseGradient(spec))(magnitude).numpy()


def to_output(audio: np.ndarray, band: Band) -> np.ndarray:
    """A band's audio -> 44.1 kHz ``[B, N]``; a two-band low band low-passed by the crossover (zero phase)."""
    rate = band.spec.sample_rate
    if rate != RATE:
        audio = np.stack([resample(v[None], rate, RATE)[0] for v in audio])
    if band.role == "low":
        weight = crossover_weight(np.fft.rfftfreq(audio.shape[1], 1.0 / RATE), "low")
        audio = np.fft.irfft(np.fft.rfft(audio, axis=1) * weight, n=audio.shape[1], axis=1)
    return audio


def band_features(cand: Candidate, audio: dict[int, np.ndarray]) -> list[torch.Tensor]:
    """Each band's features ``[B, 1, M, T]`` of the kicks; a candidate with a ``highband`` checkpoint has its high
    band predicted from its low band's features by that net (``trainer highband``) instead."""
    out = [waveform_to_features(torch.from_numpy(audio[b.spec.sample_rate][:, None]), b.spec) for b in cand.bands]
    if cand.highband is not None:
        from trainer.highband import load_highband

        with torch.no_grad():
            out[1] = load_highband(cand.highband)[0](out[0])
    return out


def reconstruct(cand: Candidate, audio: dict[int, np.ndarray], init: str, n_iter: int) -> np.ndarray:
    """Real kicks (prepared at each band's rate, ``audio[rate]``) through ``cand`` -> ``[B, N]`` at 44.1 kHz.

    ``init``: "random" or "pghi" (each band rendered on its own, resampled by soxr, ideal crossover), or "graph"
    (the timed graph's synthesis, :meth:`CandidateGraph.synthesize`: in-graph PGHI, FIR upsampler)."""
    features = band_features(cand, audio)
    if init == "graph":
        with torch.no_grad():
            y = CandidateGraph(cand, None, n_iter).synthesize(torch.cat([f[:, 0] for f in features], dim=1)).numpy()
        return to_output(y, Band(cand.bands[0].spec)) if len(cand.bands) == 1 else y
    out = None
    for band, feats in zip(cand.bands, features):
        mag = band_magnitude(feats, band)
        k = n_iter if band.n_iter is None else band.n_iter
        y = to_output(render_band(mag, band.spec, "random" if band.n_iter == 0 else init, k), band)
        out = y if out is None else out + y
    return out


# ================================================================================================== measures
def hf_distance(ref: np.ndarray, test: np.ndarray) -> float:
    """:func:`spec_ceiling.mel_distance` over the 96-band mel's bands above :data:`HF_EDGE` (nan: none live)."""
    import librosa

    mel = (lambda x: 10 * np.log10(np.maximum(
        librosa.feature.melspectrogram(y=x, sr=RATE, n_fft=2048, hop_length=256, n_mels=96), 1e-12)))
    a, b = mel(ref), mel(test)
    high = librosa.mel_frequencies(n_mels=96, fmax=RATE / 2) >= HF_EDGE
    mask = (a >= a.max() - 60.0) & high[:, None]
    return float(np.sqrt(np.mean((a[mask] - b[mask]) ** 2))) if mask.any() else float("nan")


def scores(ref: np.ndarray, rec: np.ndarray) -> dict[str, float]:
    """Median full-band, 20-250 Hz and above-11-kHz distances, bandwidth (kHz) and kicks reaching 11 kHz."""
    n = ref.shape[1]
    rec = np.pad(rec, ((0, 0), (0, max(0, n - rec.shape[1]))))[:, :n].astype(np.float32)
    hf = np.array([hf_distance(a, b) for a, b in zip(ref, rec)])
    band = np.array([bandwidth_khz(v.astype(np.float64), RATE) for v in rec])
    return {"full": float(np.median([mel_distance(a, b) for a, b in zip(ref, rec)])),
            "low": float(np.median([band_distance(a, b) for a, b in zip(ref, rec)])),
            "hf": float(np.nanmedian(hf)) if np.isfinite(hf).any() else float("nan"),
            "hf_n": int(np.isfinite(hf).sum()), "band": float(np.median(band)),
            "band_n": int((band * 1e3 > HF_EDGE).sum())}


def load_kicks(files: list[str], rates: set[int]) -> dict[int, np.ndarray]:
    """Every file prepared by the training loader at each rate (44.1 kHz always); files any rate skips drop out."""
    pre, specs = Preprocess(), {RATE: SPECS["kick"], 22050: SPECS["kick-22k"]}
    out: dict[int, list[np.ndarray]] = {r: [] for r in {RATE} | rates}
    for path in files:
        try:
            got = {r: load_one_shot(path, spec=specs[r], preprocess=pre).mean(axis=0) for r in out}
        except SkipFile:
            continue
        for r, x in got.items():
            out[r].append(x)
    return {r: np.stack(v).astype(np.float32) for r, v in out.items()}


# ====================================================================================================== cost
class CandidateGraph(nn.Module):
    """``z`` -> VAE decoder -> each band's :class:`MagnitudeToAudio` (its own inverse) -> 44.1 kHz sum."""

    def __init__(self, cand: Candidate, model: nn.Module | None, n_iter: int) -> None:
        super().__init__()
        from trainer.phase import random_phase

        self.model, self.rows = model, [b.spec.n_bins for b in cand.bands]
        self.synths, self.ups = nn.ModuleList(), nn.ModuleList()
        for band in cand.bands:
            k = n_iter if band.n_iter is None else band.n_iter
            init = random_phase(band.spec) if k == 0 and band.n_iter == 0 else PhaseGradient(band.spec)
            synth = MagnitudeToAudio(band.spec, k, init_phase=init)
            inv = torch.tensor(inverse_matrix(band), dtype=torch.float32)
            synth.inverse = (inv[synth.gl.stft.gather_in] * synth.gl.inv_scale ** 2).contiguous()
            self.synths.append(synth)
            self.ups.append(Upsample2() if band.spec.sample_rate != RATE and len(cand.bands) > 1 else nn.Identity())

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logmel = self.model.decode(z)[:, 0]
        return self.synthesize(logmel), logmel

    def synthesize(self, logmel: torch.Tensor) -> torch.Tensor:
        """Stacked bands' features ``[B, rows, T]`` -> audio ``[B, N]`` (44.1 kHz unless one 22.05 kHz band)."""
        out, row = None, 0
        for synth, up, rows in zip(self.synths, self.ups, self.rows):
            audio = up(synth(logmel[:, row:row + rows]))
            row += rows
            out = audio if out is None else out + audio
        return out


def cost_key(cand: Candidate) -> tuple:
    """What the render cost depends on (not the inverse's values, nor fmin/fmax)."""
    return tuple((b.spec.sample_rate, b.spec.n_fft, b.spec.hop_length, b.spec.n_bins, b.role, b.n_iter)
                 for b in cand.bands)


def random_decoder(rows: int) -> nn.Module:
    """The shipped kick model's architecture on ``rows`` x 128 features, random weights (cost only)."""
    torch.manual_seed(0)
    config = ModelConfig(input_shape=(1, rows, 128), widths=(16, 32, 64, 128), kernel=4, norm="none", latent=8,
                         controls=CONTROLS)
    return build_model(config).eval()


def time_graphs(cands: list[Candidate], ks: tuple[int, ...], runs: int) -> dict[tuple, dict[int, tuple]]:
    """Median / p95 wall ms and median CPU ms of each distinct candidate graph per K: exported, one onnxruntime
    thread (it runs on the calling thread, so ``time.thread_time`` is the render's own CPU time, the figure a busy
    shared machine disturbs least), batch 1, interleaved (every graph once per round)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions, feeds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for cand in cands:
            key = cost_key(cand)
            if any(k[0] == key for k in sessions):
                continue
            model = random_decoder(cand.rows)
            z = torch.randn(1, model.code_size)
            for k in ks:
                path = Path(tmp) / f"g{len(sessions)}.onnx"
                save_onnx(CandidateGraph(cand, model, k), path, (z,), input_names=("z",),
                          output_names=("audio", "logmel"), optimize=True)
                sessions[(key, k)] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                feeds[(key, k)] = {"z": z.numpy()}
    out: dict[tuple, dict[int, tuple]] = {}
    for (key, k), figures in time_sessions(sessions, feeds, runs).items():
        out.setdefault(key, {})[k] = figures
    return out


def time_sessions(sessions: dict, feeds: dict, runs: int) -> dict:
    """Each onnxruntime session run ``runs`` times (after 5 warm-up rounds), interleaved -> per key: wall median,
    wall p95 and CPU median (``time.thread_time``: one ORT thread runs on the caller), ms."""
    times: dict = {key: [] for key in sessions}
    for round_ in range(runs + 5):
        for key, session in sessions.items():
            start, cpu = time.perf_counter(), time.thread_time()
            session.run(None, feeds[key])
            if round_ >= 5:
                times[key].append(((time.perf_counter() - start) * 1e3, (time.thread_time() - cpu) * 1e3))
    out = {}
    for key, t in times.items():
        wall, cpu = np.asarray(t).T
        out[key] = (float(np.median(wall)), float(np.percentile(wall, 95)), float(np.median(cpu)))
    return out


# ============================================================================================ through a model
def through_model(preset: Path, audio: dict[int, np.ndarray], n_iter: int) -> list[tuple[str, dict]]:
    """Real kicks -> ``preset``'s encoder (``mu``) -> decoder ``logmel`` -> each inverse of its spec, PGHI K."""
    import json

    import onnx
    import onnxruntime as ort

    meta = onnx.load(str(preset / "decoder.onnx"), load_external_data=False).metadata_props
    spec = SpectrogramSpec.from_dict(json.loads(next(p.value for p in meta if p.key == "kickspace"))["spec"])
    x = audio[spec.sample_rate]
    mu = ort.InferenceSession(str(preset / "encoder.onnx")).run(["mu"], {"audio": x})[0]
    decoder = ort.InferenceSession(str(preset / "decoder.onnx"))
    feed = {i.name: np.zeros((len(mu), i.shape[1]), np.float32) for i in decoder.get_inputs() if i.name == "controls"}
    shipped, logmel = decoder.run(["audio", "logmel"], {"z": mu, **feed})  # knobs at 0: the model's own sound
    feats = torch.from_numpy(logmel[:, None])
    rows = [("the model's own decoder.onnx audio", scores(audio[RATE], to_output(shipped, Band(spec))))]
    for inv in ("clamped", "pinv"):
        band = Band(spec, inv)
        rec = to_output(render_band(band_magnitude(feats, band), spec, "pghi", n_iter), band)
        rows.append((f"decoder logmel, {inv} inverse, pghi K={n_iter}", scores(audio[RATE], rec)))
    return rows


# ====================================================================================================== main
def _fmt(s: dict) -> list[str]:
    hf = f"{s['hf']:.1f} ({s['hf_n']})" if np.isfinite(s["hf"]) else f"- ({s['hf_n']})"
    return [f"{s['full']:.2f}", f"{s['low']:.2f}", hf, f"{s['band']:.1f} ({s['band_n']})"]


def _parse() -> argparse.Namespace:
    names = list(candidates())
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", nargs="+", default=names, metavar="NAME", help=f"of: {'; '.join(names)}")
    parser.add_argument("--limit", type=int, default=48, help="first N kick files, sorted by path (default 48)")
    parser.add_argument("--renders", nargs="*", default=["random:32", "graph:8"],
                        help="INIT:K with INIT random, pghi or graph (default random:32 graph:8; none: cost only)")
    parser.add_argument("--ks", type=int, nargs="+", default=[8, 2], help="K of the timed graphs (default 8 2)")
    parser.add_argument("--runs", type=int, default=30, help="timed renders per graph (default 30)")
    parser.add_argument("--no-cost", action="store_true", help="quality only")
    parser.add_argument("--through", type=Path, default=None, help="an exported model folder (see docstring)")
    parser.add_argument("--highband", type=Path, default=None,
                        help="a `trainer highband` checkpoint: also render `two-band 22k+32 hK2` with its high band "
                             "predicted from the low band by that net")
    return parser.parse_args()


def _print_table(cands: list[Candidate], audio: dict[int, np.ndarray], renders: list[tuple[str, int]],
                 cost: dict, ks: list[int]) -> None:
    """One Markdown row per candidate: each render's four figures, then each timed K's."""
    ref = audio[RATE]
    cols = ["candidate", "rows"] + [f"{i} K={k}: {c}" if c == "full dB" else c for i, k in renders
                                    for c in ("full dB", "20-250 Hz dB", ">11 kHz dB (kicks)", "band kHz (>11 kHz)")]
    cols += [f"K={k} ms wall median / p95 / CPU" for k in ks] if cost else []
    print("\n| " + " | ".join(cols) + " |\n" + "|---" * len(cols) + "|")
    band = np.array([bandwidth_khz(v.astype(np.float64), RATE) for v in ref])
    real = ["-", "-", "-", f"{np.median(band):.1f} ({int((band * 1e3 > HF_EDGE).sum())})"] * len(renders)
    print("| " + " | ".join(["real kicks (prepared, 44.1 kHz)", ""] + real + ["-"] * (len(cols) - 2 - len(real)))
          + " |", flush=True)
    for cand in cands:
        start = time.perf_counter()
        cells = [c for i, k in renders for c in _fmt(scores(ref, reconstruct(cand, audio, i, k)))]
        timing = cost.get(cost_key(cand), {})
        cells += [f"{timing[k][0]:.2f} / {timing[k][1]:.2f} / {timing[k][2]:.2f}" for k in ks if k in timing]
        print("| " + " | ".join([cand.name, str(cand.rows)] + cells) + f" |  <!-- {time.perf_counter() - start:.0f} s"
              " -->", flush=True)


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    table = candidates()
    cands = [table[n] for n in args.candidates]
    if args.highband is not None:
        base = table["two-band 22k+32 hK2"]
        cands.append(dataclasses.replace(base, name=f"{base.name}, high band predicted", highband=args.highband))
    renders = [(r.split(":")[0], int(r.split(":")[1])) for r in args.renders]
    files = sorted(glob.glob(f"{DRUMS}/*/kick/*"))[: args.limit]
    audio = load_kicks(files, {b.spec.sample_rate for c in cands for b in c.bands})
    print(f"# {len(audio[RATE])} kicks of {len(files)} files in {DRUMS}; {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start; torch {torch.__version__}, one thread")
    cost = {} if args.no_cost else time_graphs(cands, tuple(args.ks), args.runs)
    _print_table(cands, audio, renders, cost, args.ks)
    if args.through is not None:
        print(f"\n| through {args.through} | full dB | 20-250 Hz dB | >11 kHz dB (kicks) | band kHz (>11 kHz) |")
        print("|---|---|---|---|---|")
        for name, s in through_model(args.through, audio, 8):
            print(f"| {name} | " + " | ".join(_fmt(s)) + " |", flush=True)
    print(f"\n# load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
