"""``python -m export onnx``: a training run -> an exported model folder the runtime plays.

The folder holds ``decoder.onnx`` (``z`` [+ ``label``] [+ ``controls``] -> ``audio``, ``logmel``),
``decoder_preview.onnx`` (the same with fewer Griffin-Lim iterations, played while a knob moves), ``encoder.onnx``
(``audio`` [+ ``label``] -> ``mu``, ``logvar``) and ``preset.json`` (default knob and pad mapping). ``controls`` are
the shaping knobs of :mod:`trainer.shaping` (``metadata.controls``), the decoder graphs' last spectral stage; every
export has them unless asked for a latent-axes-only model (``shaping=False``). Every graph carries the same
metadata, written through the runtime's own format module (``runtime.model``) so the two sides cannot drift; the
run is read through ``trainer.checkpoint`` and the spectrogram transforms come from ``trainer.spec``.

Every file is written atomically; the decoder is written last, so an interrupted export leaves either the previous
model or a decoder/encoder pair the loader recognises as mismatched (it refuses it with a message).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from export.graph import FactorizedLogMel, MagnitudeToAudio
from export.onnx_file import save_onnx
from export.two_band import LOW_ITERATIONS, PREVIEW_ITERATIONS, two_band_graphs
from trainer.phase import DEFAULT_INIT, DEFAULT_ITERATIONS, make_init
from runtime import model as fmt
from runtime.errors import ConfigError, KickspaceError
from runtime.model import Axis, ModelMetadata
from runtime.prior import LatentPrior
from runtime.preset import Pad, default_preset
from runtime.spec import SpectrogramSpec
from trainer.analysis.realism import PRIOR_FILE
from trainer.checkpoint import Checkpoint, load_model, resolve_checkpoint
from trainer.data.audio import Preprocess
from trainer.highband import HIGHBAND_FILE
from trainer.shaping import KNOBS
from trainer.vae import VAE

log = logging.getLogger(__name__)

#: K of the preview decoder heard while a knob moves: from the pghi start, K = 2 is 0.9 dB (mel distance) behind
#: K = 8 on the kick-22k spec (0.4 dB on kick) at 42 % of its render time (benchmarks/README.md, kick-22k table and
#: "With the shipped kick model").
DEFAULT_PREVIEW_ITERATIONS = 2
PRESET_FILE = "preset.json"


class DecoderGraph(nn.Module):
    """``z`` ``[B, code]`` (+ ``label`` int64 ``[B]``) (+ ``controls`` ``[B, len(KNOBS)]``) -> ``audio``
    ``[B, samples]``, ``logmel`` ``[B, M, T]``.

    ``code`` is the model's code size: the latent, plus the standardised controls of a control-conditioned model.
    ``shaping``: the audio is shaped by the knob values ``controls`` (:class:`export.graph.MagnitudeToAudio`);
    ``logmel`` stays the decoder's own features, before the knobs.
    """

    def __init__(self, model: VAE, spec: SpectrogramSpec, *, n_iter: int, init_phase: Any,
                 shaping: bool = False) -> None:
        super().__init__()
        self.model = model
        self.synth = MagnitudeToAudio(spec, n_iter, init_phase=init_phase, shaping=shaping)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None,
                controls: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logmel = self.model.decode(z, label)[:, 0]
        return self.synth(logmel, controls), logmel


class GraphInputs(nn.Module):
    """A :class:`DecoderGraph` with positional inputs in the graph's order (``z``, then ``label`` and/or
    ``controls`` as the model has them): ``torch.export`` traces positional arguments, and a model without a label
    takes ``controls`` second. Used by the export and by ``benchmarks/render_latency.py``."""

    def __init__(self, graph: DecoderGraph, names: tuple[str, ...]) -> None:
        super().__init__()
        self.decoder = graph  # not "graph": the name of torch.fx.GraphModule's own attribute
        self.names = names[1:]

    def forward(self, z: torch.Tensor, second: torch.Tensor | None = None,
                third: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(z, **dict(zip(self.names, (second, third))))


class EncoderGraph(nn.Module):
    """``audio`` ``[B, samples]`` (+ ``label``) -> ``mu``, ``logvar`` ``[B, code]``, log-mel front end inside."""

    def __init__(self, model: VAE, spec: SpectrogramSpec) -> None:
        super().__init__()
        self.model = model
        self.front = FactorizedLogMel(spec)

    def forward(self, audio: torch.Tensor, label: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode_code(self.front(audio), label)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` wrote and checked."""

    folder: Path
    metadata: ModelMetadata
    parity: dict[str, float]  # max abs difference onnxruntime vs torch per output


def export_run(run: str | Path, *, out: str | Path, checkpoint: str = "best.pt", n_iter: int | None = None,
               preview_iterations: int | None = None, phase_init: str = DEFAULT_INIT,
               axes: str | Path | None = None, centroids: str | Path | None = None,
               optimize: bool = True, shaping: bool = True,
               highband: str | Path | bool | None = None, prior: str | Path | bool | None = None) -> ExportResult:
    """Export a run's decoder and encoder graphs, metadata and default preset into ``out``.

    Parameters
    ----------
    run : path
        Run folder written by ``trainer fit`` (or a checkpoint file).
    checkpoint : str
        Checkpoint in a run folder (``best.pt``, else ``last.pt``): :func:`trainer.checkpoint.resolve_checkpoint`.
    n_iter : int, optional
        Griffin-Lim iterations K inside the decoder graph (default :data:`trainer.phase.DEFAULT_ITERATIONS`, or
        :data:`export.two_band.LOW_ITERATIONS` for the low band of a two-band model).
    preview_iterations : int, optional
        Iterations of the preview decoder (``decoder_preview.onnx``, played while a knob moves); 0, or not fewer
        than ``n_iter``, writes none. Default :data:`DEFAULT_PREVIEW_ITERATIONS`, or
        :data:`export.two_band.PREVIEW_ITERATIONS` for a two-band model.
    phase_init : str
        Initial phase (``trainer.phase.make_init``); must be computable without training audio.
    axes, centroids : path, optional
        ``axes.json`` (``trainer axes``) and ``centroids.json`` (``trainer cluster``); default: the run's
        ``analysis/`` files when present. Axes go into the metadata and on CC knobs; centroids become pads.
    optimize : bool
        Save onnxruntime-optimised graphs (faster session load).
    shaping : bool
        Give the decoder graphs the shaping controls (:data:`trainer.shaping.KNOBS`, a ``controls`` input, named in
        ``metadata.controls``); a latent axis of the same name as a control is then left out of the metadata (a
        knob names one or the other). False: a latent-axes-only model, as exported before the controls existed.
    highband : path or bool, optional
        A ``trainer highband`` checkpoint: the decoder renders the VAE's band plus the band above it that the
        checkpoint's net predicts, at 44.1 kHz (:mod:`export.two_band`; the model's spec becomes the net's 44.1
        kHz low spec, the encoder reads 44.1 kHz audio). Default: the run folder's ``highband.pt`` when present;
        False: none.
    prior : path or bool, optional
        A ``prior.json`` written by ``trainer evaluate --prior-data`` (a Gaussian fitted to real sounds' codes),
        stored in the metadata as :class:`runtime.prior.LatentPrior`: the runtime's random sounds draw from it.
        Default: the run's ``analysis/prior.json`` when present; False: none (random sounds then draw from the
        standard normal).
    """
    folder = Path(run) if Path(run).is_dir() else Path(run).parent  # the run folder resolve_checkpoint reads
    highband = _optional(highband, folder / HIGHBAND_FILE) if highband is not False else None
    n_iter = (LOW_ITERATIONS if highband else DEFAULT_ITERATIONS) if n_iter is None else n_iter
    if preview_iterations is None:
        preview_iterations = PREVIEW_ITERATIONS if highband else DEFAULT_PREVIEW_ITERATIONS
    log.debug(f"exporting {run} ({checkpoint}) to {out}: K={n_iter}, preview K={preview_iterations}, "
              f"phase init {phase_init}" + (f", high band {highband}" if highband else ""))
    path = resolve_checkpoint(run, checkpoint)
    model, spec, ckpt = load_model(path)
    _check_exportable(model, spec, n_iter, preview_iterations)
    preview_iterations = preview_iterations if preview_iterations < n_iter else 0
    analysis = path.parent / "analysis"
    axes_path = _optional(axes, analysis / "axes.json")
    centroids_path = _optional(centroids, analysis / "centroids.json")
    prior_path = _optional(prior, analysis / PRIOR_FILE) if prior is not False else None
    labels = tuple(ckpt.classes) if model.config.n_classes else ()  # a bank's folder name on an unconditioned VAE
    controls = KNOBS if shaping else ()
    spec, decoder, preview = _decoders(model, spec, highband, n_iter=n_iter, preview_iterations=preview_iterations,
                                       phase_init=phase_init, shaping=shaping)
    metadata = ModelMetadata(spec=spec, latent=model.code_size, labels=labels, controls=controls,
                             axes=_beside(_read_axes(axes_path, latent=model.code_size), controls),
                             griffin_lim_iterations=n_iter,
                             preview_iterations=preview_iterations, phase_init=phase_init,
                             preparation=Preprocess.of_run(ckpt.config).preparation,
                             prior=_read_prior(prior_path, model, labels),
                             training=training_summary(ckpt, source=path))
    encoder = EncoderGraph(model, spec).eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_folder(out, model, metadata, decoder=decoder, encoder=encoder, preview=preview,
                  centroids=centroids_path, optimize=optimize)
    parity = check_parity(out, decoder=decoder, encoder=encoder, model=model, spec=spec, preview=preview,
                          controls=len(controls))
    return ExportResult(folder=out, metadata=metadata, parity=parity)


def _decoders(model: VAE, spec: SpectrogramSpec, highband: Path | None, *, n_iter: int, preview_iterations: int,
              phase_init: str, shaping: bool) -> tuple[SpectrogramSpec, nn.Module, nn.Module | None]:
    """The exported model's spec, its decoder and preview decoder (None when ``preview_iterations`` is 0): the
    VAE's band alone, or with the high band of the checkpoint ``highband`` (:func:`export.two_band.two_band_graphs`).
    """
    if highband is not None:
        return two_band_graphs(model, spec, highband, n_iter=n_iter, preview_iterations=preview_iterations,
                               phase_init=phase_init, shaping=shaping)
    init = make_init(phase_init, spec)
    decoder = DecoderGraph(model, spec, n_iter=n_iter, init_phase=init, shaping=shaping).eval()
    preview = (DecoderGraph(model, spec, n_iter=preview_iterations, init_phase=init, shaping=shaping).eval()
               if preview_iterations else None)
    return spec, decoder, preview


def _check_exportable(model: VAE, spec: SpectrogramSpec, n_iter: int, preview_iterations: int) -> None:
    if model.config.pitch_conditioning:
        raise ConfigError("model.conditioning", "pitch-conditioned models cannot be exported yet: the exported "
                                                "format has z and label inputs only")
    if spec.channels != 1:
        raise ConfigError("spec.channels", "only mono models can be exported (the decoder graph is mono)")
    if not isinstance(n_iter, int) or n_iter < 0:
        raise ConfigError("iterations", f"must be a non-negative integer, got {n_iter!r}")
    if not isinstance(preview_iterations, int) or preview_iterations < 0:
        raise ConfigError("preview_iterations", f"must be a non-negative integer, got {preview_iterations!r}")


def _write_folder(out: Path, model: VAE, metadata: ModelMetadata, *, decoder: nn.Module, encoder: EncoderGraph,
                  preview: nn.Module | None, centroids: Path | None, optimize: bool) -> None:
    """Write the encoder, ``preset.json``, the preview decoder (or remove a stale one), then the decoder.

    The decoder goes last so an interrupted export leaves a pair the loader recognises (the module docstring).
    """
    meta = {fmt.METADATA_KEY: metadata.to_json()}
    z, audio, label = _examples(model, metadata.spec)
    label_in = ("label",) if label is not None else ()
    extra = (label,) if label is not None else ()
    save_onnx(encoder, out / fmt.ENCODER_FILE, (audio, *extra), input_names=("audio", *label_in),
              output_names=("mu", "logvar"), metadata=meta, optimize=optimize)
    knobs = len(metadata.controls)
    controls_in, controls_ex = (("controls",), (_control_examples(len(z), knobs),)) if knobs else ((), ())
    decoder_in, decoder_examples = ("z", *label_in, *controls_in), (z, *extra, *controls_ex)
    preset = default_preset(metadata, out, name=out.name)
    pads = _centroid_pads(centroids, latent=model.code_size, labels=metadata.labels)
    if pads:
        preset = dataclasses.replace(preset, pads=pads)
    preset.save(out / PRESET_FILE)
    if preview is None:
        (out / fmt.PREVIEW_FILE).unlink(missing_ok=True)  # a stale preview of an earlier export
    for name, graph in ((fmt.PREVIEW_FILE, preview), (fmt.DECODER_FILE, decoder)):
        if graph is not None:
            save_onnx(GraphInputs(graph, decoder_in), out / name, decoder_examples, input_names=decoder_in,
                      output_names=("audio", "logmel"), metadata=meta, optimize=optimize)


def _optional(given: str | Path | None, default: Path) -> Path | None:
    if given is not None:
        if not Path(given).is_file():
            raise KickspaceError(f"{given}: file not found")
        return Path(given)
    return default if default.is_file() else None


def _read_axes(path: Path | None, *, latent: int) -> tuple[Axis, ...]:
    """Axes from an ``axes.json`` written by ``trainer axes`` (its ``export`` list)."""
    if path is None:
        return ()
    import json

    report = json.loads(path.read_text(encoding="utf-8"))
    if "export" not in report:
        raise ConfigError(f"{path}: export", "missing (write the file with `trainer axes`)")
    return tuple(Axis.from_dict(a, where=f"{path.name}: export[{i}]", latent=latent)
                 for i, a in enumerate(report["export"]))


def _read_prior(path: Path | None, model: VAE, classes: Sequence[str]) -> LatentPrior | None:
    """The latent prior of a ``prior.json`` (``trainer evaluate --prior-data``), checked against ``model``'s code
    (its size and control columns) and its ``classes`` (the per-class Gaussians'); a file for another model fails
    naming the file and field."""
    if path is None:
        return None
    import json

    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KickspaceError(f"{path}: cannot read it as JSON ({err})") from None
    if not isinstance(report, dict) or report.get("kind") != "gaussian":
        raise ConfigError(f"{path}: kind", "must be \"gaussian\" (write the file with `trainer evaluate --prior-data`)")
    if report.get("code_size") != model.code_size:
        raise ConfigError(f"{path}: code_size", f"{report.get('code_size')!r}, but the model's code has "
                                                f"{model.code_size} columns (a prior of another run?)")
    if list(report.get("controls", [])) != list(model.config.controls):
        raise ConfigError(f"{path}: controls", f"{report.get('controls')!r}, but the model's control columns are "
                                               f"{list(model.config.controls)}")
    fields = {k: report[k] for k in ("mean", "cov", "sounds", "method", "classes") if k in report}
    return LatentPrior.from_dict(fields, where=f"{path}: prior", latent=model.code_size, labels=tuple(classes))


def _beside(axes: tuple[Axis, ...], controls: tuple[str, ...]) -> tuple[Axis, ...]:
    """The latent axes a model with shaping ``controls`` keeps: those not named like a control.

    A knob's ``axis`` names a shaping control or a latent axis, never both (``runtime.model`` refuses metadata
    where a name is both); the control is the knob's defined meaning, so the axis fitted for it is left out.
    """
    dropped = [a.name for a in axes if a.name in controls]
    if dropped:
        log.info(f"latent axes {', '.join(dropped)} left out of the metadata: the shaping controls of those names "
                 f"take their knobs")
    return tuple(a for a in axes if a.name not in controls)


def _centroid_pads(path: Path | None, *, latent: int, labels: tuple[str, ...]) -> tuple[Pad, ...]:
    """One pad per cluster centroid, from note 36 up (the biggest clusters first), when ``centroids.json`` exists.

    For a class-conditioned model the pads come from its labels instead (a centroid has no single class).
    """
    if path is None or labels:
        return ()
    import json

    records = json.loads(path.read_text(encoding="utf-8")).get("centroids", [])
    records = sorted(records, key=lambda r: -float(r.get("weight", 0.0)))[:16]
    pads = []
    for i, record in enumerate(records):
        z = tuple(float(v) for v in record["z"])
        if len(z) != latent or not all(math.isfinite(v) for v in z):
            raise ConfigError(f"{path.name}: centroids[{i}].z", f"must be {latent} finite numbers")
        name = str(record.get("name") or f"cluster {record.get('id', i)}")
        pads.append(Pad(note=36 + i, name=name, anchor=z))
    return tuple(pads)


def training_summary(ckpt: Checkpoint, *, source: Path) -> dict[str, Any]:
    """The part of a checkpoint worth carrying into the exported model (small, JSON-able)."""
    last = ckpt.history[-1] if ckpt.history else {}
    keep = {k: float(v) for k, v in last.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}
    return {"checkpoint": source.name, "run": source.parent.name, "epochs": int(ckpt.epoch),
            "steps": int(ckpt.step), "model_config": ckpt.model_config.to_dict(), "last_epoch": keep}


def _examples(model: VAE, spec: SpectrogramSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, model.code_size, generator=gen)
    audio = 0.1 * torch.randn(2, spec.n_samples, generator=gen)
    label = torch.zeros(2, dtype=torch.long) if model.config.n_classes > 0 else None
    return z, audio, label


def _control_examples(batch: int, count: int, seed: int = 0) -> torch.Tensor:
    """Knob values ``[batch, count]`` uniform in [-1, 1] (export example and parity input: every knob moved)."""
    gen = torch.Generator().manual_seed(seed)
    return 2.0 * torch.rand(batch, count, generator=gen) - 1.0


@torch.no_grad()
def check_parity(folder: Path, *, decoder: nn.Module, encoder: EncoderGraph, model: VAE,
                 spec: SpectrogramSpec, batch: int = 4, preview: nn.Module | None = None,
                 controls: int = 0) -> dict[str, float]:
    """Run both exported graphs through the runtime's loader and torch on the same inputs; max abs differences.

    ``controls``: the decoders' number of shaping controls; both sides then render with random knob values in
    [-1, 1] (``audio``, ``preview``) and with all knobs at 0 (``audio_unshaped``), so the shaping stage is checked,
    not only its identity.

    Raises :class:`KickspaceError` when an output differs by more than :data:`PARITY_TOLERANCE` (``audio`` is
    compared relative to its peak: Griffin-Lim's phase normalisation amplifies float32 rounding in near-silent
    bins, see ``benchmarks/README.md``).
    """
    loaded = fmt.ExportedModel(folder)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(batch, model.code_size, generator=gen)
    label = torch.arange(batch) % model.config.n_classes if model.config.n_classes > 0 else None
    labels = None if label is None else label.numpy()
    knobs = _control_examples(batch, controls, seed=2) if controls else None
    knobs_np = None if knobs is None else knobs.numpy()
    audio_t, logmel_t = decoder(z, label, knobs)
    audio_o, logmel_o = loaded.decode(z.numpy(), label=labels, controls=knobs_np)
    test_audio = audio_t.clamp(-1, 1)
    mu_t, logvar_t = encoder(test_audio, label)
    mu_o, logvar_o = loaded.encode(test_audio.numpy(), label=labels)
    diffs = {"audio": _relative_error(audio_o, audio_t),
             "logmel": float(np.abs(logmel_o - logmel_t.numpy()).max()),
             "mu": float(np.abs(mu_o - mu_t.numpy()).max()), "logvar": float(np.abs(logvar_o - logvar_t.numpy()).max())}
    if controls:
        diffs["audio_unshaped"] = _relative_error(loaded.decode(z.numpy(), label=labels)[0],
                                                  decoder(z, label, torch.zeros_like(knobs))[0])
    if preview is not None:
        diffs["preview"] = _relative_error(loaded.decode(z.numpy(), label=labels, controls=knobs_np, preview=True)[0],
                                           preview(z, label, knobs)[0])
    bad = {k: v for k, v in diffs.items() if not v <= PARITY_TOLERANCE[k]}
    if bad:
        raise KickspaceError(f"{folder}: onnxruntime and torch disagree beyond tolerance: {bad} "
                             f"(tolerances {PARITY_TOLERANCE})")
    return diffs


def _relative_error(onnx_audio: np.ndarray, torch_audio: torch.Tensor) -> float:
    """Max abs difference of two ``[B, samples]`` renders, relative to the torch render's peak."""
    return float(np.abs(onnx_audio - torch_audio.numpy()).max()) / (float(torch_audio.abs().max()) or 1.0)


#: Max abs difference onnxruntime vs torch (audio: relative to its peak).
PARITY_TOLERANCE = {"audio": 5e-2, "audio_unshaped": 5e-2, "preview": 5e-2, "logmel": 1e-4, "mu": 1e-3,
                    "logvar": 1e-3}
