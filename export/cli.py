"""``python -m export``: command-line edge of the exporter (flags are bound here, nowhere else)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from runtime.command import run_command
from runtime.logs import add_log_flags, say
from runtime.model import ModelMetadata


def _add_onnx(sub: argparse._SubParsersAction) -> None:
    from trainer.phase import DEFAULT_INIT
    from export.preset_folder import DEFAULT_ITERATIONS, DEFAULT_PREVIEW_ITERATIONS
    from export.two_band import LOW_ITERATIONS, PREVIEW_ITERATIONS

    p = sub.add_parser("onnx", help="export a run as ONNX decoder + encoder graphs with a default preset",
                       description="Write OUT/decoder.onnx (z [+ label] + controls -> audio, logmel: the decoder, "
                                   "mel inverse, the shaping knobs sub, punch, decay, click and brightness as "
                                   "spectral gains, K fast Griffin-Lim iterations from a precomputed phase, inverse "
                                   "STFT), "
                                   "OUT/decoder_preview.onnx (the same with fewer iterations, for knobs in motion), "
                                   "OUT/encoder.onnx (audio [+ label] -> mu, logvar, log-mel front end inside) and "
                                   "OUT/preset.json (named axes on CC 20+, pads per class or cluster). The runtime "
                                   "plays the folder with onnxruntime alone. Parity with PyTorch is checked after "
                                   "writing.",
                       epilog="example: python -m export onnx runs/kicks --out presets/kicks")
    p.add_argument("run", type=Path, help="run folder written by `trainer fit` (or a checkpoint file)")
    p.add_argument("--out", type=Path, required=True, help="output folder, e.g. presets/NAME")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint in the run folder (default best.pt)")
    p.add_argument("--iterations", type=int, default=None,
                   help=f"Griffin-Lim iterations K in the graph (default {DEFAULT_ITERATIONS}; with a high band "
                        f"{LOW_ITERATIONS} in the low band)")
    p.add_argument("--preview-iterations", type=int, default=None,
                   help=f"iterations of OUT/decoder_preview.onnx, the cheaper render played while a knob moves "
                        f"(default {DEFAULT_PREVIEW_ITERATIONS}, {PREVIEW_ITERATIONS} with a high band; 0 writes none)")
    p.add_argument("--phase-init", default=DEFAULT_INIT,
                   help=f"initial phase: pghi (from the magnitude, in-graph; default), bin_advance, zero, random "
                        f"(default {DEFAULT_INIT})")
    p.add_argument("--axes", type=Path, default=None, help="axes.json (default RUN/analysis/axes.json if present)")
    p.add_argument("--centroids", type=Path, default=None,
                   help="centroids.json for pad anchors (default RUN/analysis/centroids.json if present)")
    p.add_argument("--no-optimize", action="store_true", help="save the graphs without onnxruntime's optimisations")
    p.add_argument("--no-shaping", action="store_true",
                   help="export a latent-axes-only model: decoder graphs without the controls input (the shaping "
                        "knobs), every axis of axes.json on the knobs, as models exported before the controls")
    band = p.add_mutually_exclusive_group()
    band.add_argument("--highband", type=Path, default=None,
                      help="a `trainer highband` checkpoint: render the band above 11 kHz too, at 44.1 kHz "
                           "(default RUN/highband.pt if present)")
    band.add_argument("--no-highband", action="store_true", help="ignore RUN/highband.pt: the VAE's band alone")
    prior = p.add_mutually_exclusive_group()
    prior.add_argument("--prior", type=Path, default=None,
                       help="prior.json of `trainer evaluate --prior-data` (a Gaussian fitted to real sounds' codes): "
                            "the runtime's random sounds draw from it (default RUN/analysis/prior.json if present)")
    prior.add_argument("--no-prior", action="store_true",
                       help="ship no prior: random sounds draw from the standard normal")
    p.set_defaults(handler=_run_onnx)


def _add_prior(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prior", help="refit an exported model's random-sound prior to real sounds, via its encoder",
                       description="Encode every one-shot under DATA with MODEL/encoder.onnx (prepared as a pad's "
                                   "own sample is) and store the Gaussian of the codes, and one per class for a "
                                   "class-conditioned model (a bank: one folder per class), as the model's prior: "
                                   "random sounds (runtime render --random, the r key, /kickspace/random) then lie "
                                   "where those sounds encode. Rewrites the graphs' metadata only.",
                       epilog="example: python -m export prior presets/kit out/kit-train")
    p.add_argument("model", type=Path, help="exported model folder (e.g. presets/kit)")
    p.add_argument("data", type=Path, nargs="+", help="data roots (flat folder; a bank for a class-conditioned model)")
    p.set_defaults(handler=_run_prior)


def _run_prior(args: argparse.Namespace) -> int:
    from export.refit_prior import refit

    prior, skipped = refit(args.model, args.data)
    for path, reason in skipped:
        say(f"skipped {path}: {reason}")
    classes = ", ".join(f"{name} {p.sounds}" for name, p in prior.classes)
    say(f"{args.model}: random sounds from {prior.describe()}" + (f" (per class: {classes})" if classes else "")
        + f"; skipped {len(skipped)}")
    return 0


def _per_class(meta: ModelMetadata) -> str:
    """`` (per class: kick, snare)`` when the prior has a Gaussian per class, else nothing."""
    names = [name for name, _ in meta.prior.classes] if meta.prior is not None else []
    return f" (per class: {', '.join(names)})" if names else ""


def _run_onnx(args: argparse.Namespace) -> int:
    from export.preset_folder import export_run

    result = export_run(args.run, out=args.out, checkpoint=args.checkpoint, n_iter=args.iterations,
                        preview_iterations=args.preview_iterations, phase_init=args.phase_init, axes=args.axes,
                        centroids=args.centroids, optimize=not args.no_optimize, shaping=not args.no_shaping,
                        highband=False if args.no_highband else args.highband,
                        prior=False if args.no_prior else args.prior)
    meta = result.metadata
    axes = ", ".join(a.name for a in meta.axes) or "none"
    controls = ", ".join(meta.controls) or "none"
    labels = ", ".join(meta.labels) or "none (VAE)"
    preview = f", preview K={meta.preview_iterations}" if meta.preview_iterations else ""
    say(f"exported {result.folder}: latent {meta.latent}, K={meta.griffin_lim_iterations} ({meta.phase_init})"
          f"{preview}, controls: {controls}; axes: {axes}; labels: {labels}; random sounds from "
          f"{meta.random_prior().describe()}{_per_class(meta)}")
    say("parity onnxruntime vs torch (max abs; audio relative to peak): "
          + ", ".join(f"{k} {v:.1e}" for k, v in result.parity.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m export`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m export", description="Kickspace exporter: runs -> ONNX models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_onnx(sub)
    _add_prior(sub)
    for command in sub.choices.values():
        add_log_flags(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m export``; returns the exit status."""
    return run_command(build_parser().parse_args(argv), program="export")


if __name__ == "__main__":
    sys.exit(main())
