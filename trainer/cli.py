"""``trainer``: command-line edge of the training side. Flags and config files are bound here, nowhere else.

Each subcommand parses its flags into typed keyword arguments and calls one library function that tests also
call directly. Errors a user can act on (:class:`~runtime.errors.KickspaceError`) print as one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from runtime.errors import KickspaceError
from runtime.command import run_command
from runtime.logs import add_log_flags, say
from trainer.analysis import commands as analysis_commands


def _spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", default="kick",
                        help="named spectrogram spec: kick (44.1 kHz, 1024/256, 128 Slaney mels x 128 frames; default), "
                             "kick-2048-htk, nsynth (16 kHz, 80 mels)")
    parser.add_argument("--channels", type=int, choices=(1, 2), default=None,
                        help="override the spec's channel count (1 = downmix to mono, 2 = stereo)")


def _resolve_spec(args: argparse.Namespace):
    import dataclasses

    from runtime.spec import get_spec

    spec = get_spec(args.spec)
    if args.channels is not None:
        spec = dataclasses.replace(spec, channels=args.channels)
    return spec


# ------------------------------------------------------------------------------------------------------ synth
def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a procedural kick corpus (WAV + CSV of synth parameters)",
                       description="Render N procedural kicks with known parameters (pitch sweep, decay, click, "
                                   "brightness, noise, drive, sub) as 24-bit WAV files plus params.csv. "
                                   "Deterministic for a seed: a licence-free training set, ground truth for the "
                                   "latent knobs, and tiny test data. --bank writes one subfolder per drum class.")
    p.add_argument("out", type=Path, help="output folder (created)")
    p.add_argument("--n", type=int, default=256, help="number of sounds (per class with --bank; default 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--sample-rate", type=int, default=44100, help="sample rate of the WAV files (default 44100)")
    p.add_argument("--bank", nargs="*", metavar="CLASS", default=None,
                   help="write a bank layout instead of a flat folder: out/CLASS/*.wav for each class "
                        "(default classes when the flag is given alone: kick snare hat tom)")
    p.set_defaults(handler=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from trainer.data import synth

    if args.bank is None:
        csv_path = synth.write_corpus(args.out, n=args.n, seed=args.seed, sample_rate=args.sample_rate)
    else:
        classes = tuple(args.bank) or synth.BANK_CLASSES
        csv_path = synth.write_bank(args.out, n_per_class=args.n, seed=args.seed, sample_rate=args.sample_rate,
                                    classes=classes)
    say(f"wrote {csv_path.parent} (parameters in {csv_path.name})")
    return 0


# ----------------------------------------------------------------------------------------------------- ingest
def _preprocess_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", choices=("auto", "flat", "bank", "nsynth"), default="auto",
                        help="folder layout (default: auto-detect; bank = one subfolder per class)")
    parser.add_argument("--loudness", choices=("lufs", "peak", "none"), default="lufs",
                        help="loudness normalisation: BS.1770 integrated loudness, peak, or none (default lufs)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="feature cache folder (default $KICKSPACE_CACHE or ~/.cache/kickspace)")
    parser.add_argument("--no-cache", action="store_true", help="compute every feature, read and write no cache")


def _resolve_ingest(args: argparse.Namespace) -> dict:
    from trainer.data.audio import Preprocess

    return dict(spec=_resolve_spec(args), preprocess=Preprocess(loudness=args.loudness), layout=args.layout,
                cache_dir=None if args.no_cache else args.cache, use_cache=not args.no_cache)


def _add_ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="load, clean and featurise one-shots; print a summary of kept/skipped files",
                       description="Ingest one or more data roots (flat folder, bank of class subfolders, or "
                                   "NSynth examples.json + audio/): decode, resample, onset-align, trim/pad with a "
                                   "fade, loudness-normalise, compute log-mel features (cached on disk) and print "
                                   "a summary table: kept, skipped by reason, per class. Bad files are skipped "
                                   "with a one-line reason, never fatal.")
    p.add_argument("roots", type=Path, nargs="+", help="data folders")
    _spec_arguments(p)
    _preprocess_arguments(p)
    p.add_argument("--preview", type=Path, default=None,
                   help="also write, for the first few kept files, the prepared audio and its spectrogram "
                        "round trip (log-mel -> mel inverse -> 32 Griffin-Lim iterations) as WAV files here")
    p.add_argument("--skipped-csv", type=Path, default=None, help="write every skipped file and its reason here")
    p.set_defaults(handler=_run_ingest)


def _run_ingest(args: argparse.Namespace) -> int:
    from trainer.data import ingest

    corpus = ingest.ingest(args.roots, **_resolve_ingest(args))
    if args.skipped_csv is not None:
        corpus.summary.write_skipped_csv(args.skipped_csv)
    if args.preview is not None:
        written = ingest.write_preview(corpus, args.preview)
        say(f"preview: {len(written)} files in {args.preview}")
    return 0 if len(corpus) else 1


# -------------------------------------------------------------------------------------------------------- fit
def _add_fit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="train a VAE / CVAE on one or more data roots; writes a run folder",
                       description="Train the spectrogram (C)VAE. Config layers, later wins: defaults, the model "
                                   "preset, --config FILE (TOML: [data] [model] [objective] [train]), then --set "
                                   "section.key=value. Writes OUT/config.toml, last.pt, best.pt, tensorboard/, "
                                   "samples/ and summary.json. Multi-process: torchrun --nproc_per_node N -m "
                                   "trainer fit ...")
    p.add_argument("data", type=Path, nargs="+",
                   help="data roots (flat folder, bank of class folders, NSynth), or one .npz of features")
    p.add_argument("--out", type=Path, required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--config", type=Path, default=None,
                   help="TOML run config (see configs/kick.toml); with --resume, defaults to OUT/config.toml")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                   help="override config keys, e.g. --set train.lr=1e-3 model.latent=8 data.spec=nsynth")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its last.pt")
    p.add_argument("--cache", type=Path, default=None,
                   help="feature cache folder (default $KICKSPACE_CACHE or ~/.cache/kickspace)")
    p.add_argument("--no-cache", action="store_true", help="compute every feature, read and write no cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs and summary only)")
    p.set_defaults(handler=_run_fit)


def _fit_arrays(args: argparse.Namespace, run, spec):
    """The training arrays of ``args.data`` (:func:`trainer.data.arrays.training_arrays`)."""
    from trainer.data.arrays import training_arrays

    return training_arrays(args.data, run=run, spec=spec, cache_dir=None if args.no_cache else args.cache,
                           use_cache=not args.no_cache)


def _run_fit(args: argparse.Namespace) -> int:
    import dataclasses

    from trainer.config import load_run_config
    from trainer.fit import fit

    config = args.config
    if config is None and args.resume and (args.out / "config.toml").is_file():
        config = args.out / "config.toml"
    run = load_run_config(config, args.overrides)
    if args.no_progress:
        run = dataclasses.replace(run, train=dataclasses.replace(run.train, progress=False))
    spec = run.data.resolve_spec()
    arrays = _fit_arrays(args, run, spec)
    model = run.model_config(spec, n_classes=len(arrays.classes))
    fit(arrays, out=args.out, spec=spec, model=model, objective=run.objective, train=run.train,
        resume=args.resume, run_config=run.to_dict())
    return 0


# ----------------------------------------------------------------------------------------------------- subset
def _add_spectrogram(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spectrogram", help="draw a WAV file's spectrogram as a PNG",
                       description="Draw the spectrogram of an audio file of any length (log-frequency axis from "
                                   "20 Hz, dB below its peak), e.g. a `runtime render` of a groove.")
    p.add_argument("audio", type=Path, help="audio file (WAV, FLAC, ...)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--title", default=None, help="figure title (default: the file name)")
    p.set_defaults(handler=_run_spectrogram)


def _run_spectrogram(args: argparse.Namespace) -> int:
    from runtime.files import printable
    from trainer.analysis.plots import audio_spectrogram_png
    from trainer.data.audio import SkipFile, read_audio

    try:
        audio, rate = read_audio(args.audio)  # [C, N]; opened as a file object, so any file name works
    except SkipFile as skip:
        raise KickspaceError(f"{printable(args.audio)}: cannot read it as audio ({skip.detail})") from None
    path = audio_spectrogram_png(args.out, audio, rate, title=args.title or printable(args.audio.name))
    say(f"wrote {path}")
    return 0


def _add_subset(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("subset", help="link a licence-filtered subset of a MANIFEST.tsv corpus as a bank folder",
                       description="Read ROOT/MANIFEST.tsv (or a .tsv file), keep the rows of the given classes whose "
                                   "licence column starts with one of the --licence prefixes (case-insensitive) and "
                                   "none of the --exclude-licence prefixes, and write OUT/<class>/<file> symlinks "
                                   "(a bank layout for `trainer fit`). --every N --keep I keeps only every Nth "
                                   "selected file starting at I (0-based), --drop I the complement: a "
                                   "reproducible held-out split.")
    p.add_argument("root", type=Path, help="corpus folder holding MANIFEST.tsv, or the manifest file itself")
    p.add_argument("--class", dest="classes", nargs="+", required=True, metavar="CLASS", help="classes to keep")
    p.add_argument("--licence", dest="licences", nargs="+", required=True, metavar="PREFIX",
                   help="licence prefixes to keep, e.g. CC0 MIT Apache-2.0 Unlicense 'Public Domain' CC-BY-3.0")
    p.add_argument("--exclude-licence", dest="exclude", nargs="*", default=[], metavar="PREFIX",
                   help="licence prefixes to drop even when a --licence prefix matches, e.g. CC-BY-SA")
    p.add_argument("--every", type=int, default=None, metavar="N", help="split the selection every N files")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--keep", type=int, default=None, metavar="I", help="with --every: keep files I, I+N, ...")
    split.add_argument("--drop", type=int, default=None, metavar="I", help="with --every: drop files I, I+N, ...")
    p.add_argument("--out", type=Path, required=True, help="output folder (absent or empty)")
    p.set_defaults(handler=_run_subset)


def _run_subset(args: argparse.Namespace) -> int:
    from collections import Counter

    from trainer.data import manifest

    path = args.root / "MANIFEST.tsv" if args.root.is_dir() else args.root
    rows = manifest.select(path, classes=args.classes, licences=args.licences, exclude=args.exclude)
    if args.every is not None:
        if args.every < 1 or (args.keep is None) == (args.drop is None):
            raise KickspaceError("--every N needs N >= 1 and exactly one of --keep I / --drop I")
        start = args.keep if args.keep is not None else args.drop
        chosen = {i for i in range(len(rows)) if i % args.every == start % args.every}
        rows = [r for i, r in enumerate(rows) if (i in chosen) == (args.keep is not None)]
    elif args.keep is not None or args.drop is not None:
        raise KickspaceError("--keep / --drop need --every N")
    manifest.link_subset(rows, out=args.out)
    for (licence, source), n in sorted(Counter((r.license, r.source_repo) for r in rows).items()):
        print(f"{n:5d}  {source}  {licence}")
    print(f"linked {len(rows)} files into {args.out}")
    return 0 if rows else 1


# ---------------------------------------------------------------------------------------------------- augment
def _add_augment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("augment", help="write treated copies of a few real one-shots (repitch, tilt, fade, drive)",
                       description="For every audio file under the sources, write COPIES copies, each played "
                                   "faster or slower as a sampler does, tilted above 2 kHz and, at random, faded "
                                   "and saturated (trainer/data/augment.py), plus augment.csv naming each copy's "
                                   "source and treatment. A few real kicks then train like many: add OUT as a "
                                   "data root of trainer fit. Augment the training split only.")
    p.add_argument("sources", type=Path, nargs="+", help="audio files or folders (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--copies", type=int, default=8, help="copies per source (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(handler=_run_augment)


def _run_augment(args: argparse.Namespace) -> int:
    from trainer.data import augment
    from trainer.data.layouts import is_audio_name

    files = []
    for source in args.sources:
        if source.is_dir():
            files += [f for f in sorted(source.rglob("*")) if is_audio_name(f.name) and not f.is_dir()]
        elif source.exists():
            files.append(source)
        else:
            raise KickspaceError(f"{source}: no such file or folder")
    csv_path, skipped = augment.write_augmented(files, args.out, copies=args.copies, seed=args.seed)
    for path, reason in skipped:
        say(f"skipped {path}: {reason}")
    say(f"wrote {args.copies} copies of {len(files) - len(skipped)} files to {args.out} ({csv_path.name}); "
        f"skipped {len(skipped)}")
    return 0 if len(files) > len(skipped) else 1


# --------------------------------------------------------------------------------------------------- highband
def _add_highband(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("highband", help="train the band above 11 kHz of a 22.05 kHz model (RUN/highband.pt)",
                       description="Prepare each sound at 44.1 kHz (the ingest of trainer fit: bad files skipped "
                                   "with a reason), train a small network from its kick-22k-equivalent low band "
                                   "(kick-44k-low) to its band over 9-22.05 kHz (kick-44k-high) and write "
                                   "OUT/highband.pt; python -m export onnx renders it as the model's high band.")
    p.add_argument("data", type=Path, nargs="+", help="data roots (flat folder, bank of class folders)")
    p.add_argument("--out", type=Path, required=True, help="run folder (e.g. the VAE's run folder)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 150, or the resumed run's)")
    p.add_argument("--seed", type=int, default=None, help="seed of the split, the init and the batches (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1, or the resumed run's)")
    p.add_argument("--balance-roots", action="store_true",
                   help="draw each data root's sounds equally often (a few real kicks beside many synthetic ones)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT from its highband-last.pt, with its settings (--epochs, --threads "
                        "may change)")
    _preprocess_arguments(p)
    p.set_defaults(handler=_run_highband)


def _run_highband(args: argparse.Namespace) -> int:
    import dataclasses

    from trainer.data.audio import Preprocess
    from trainer.highband import HighBandConfig, fit_highband, saved_config

    config = saved_config(args.out) if args.resume else HighBandConfig()
    given = {"epochs": args.epochs, "seed": args.seed, "threads": args.threads,
             "balance_roots": args.balance_roots or None}
    config = dataclasses.replace(config, **{k: v for k, v in given.items() if v is not None})
    path, m = fit_highband(args.data, out=args.out, config=config, preprocess=Preprocess(loudness=args.loudness),
                           layout=args.layout, cache_dir=args.cache, use_cache=not args.no_cache,
                           resume=args.resume)
    say(f"wrote {path}: {m['kept']} sounds ({m['skipped']} skipped), held-out MSE {m['val_mse']:.5f} = "
        f"{m['val_ratio']:.3f} x the mean-spectrogram baseline {m['baseline_mse']:.5f} (best epoch "
        f"{m['best_epoch']}, {m['parameters']} parameters)")
    return 0


# ------------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The ``trainer`` argument parser (one subcommand per job)."""
    parser = argparse.ArgumentParser(prog="trainer", description="Kickspace trainer: data, training, analysis.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_synth, _add_ingest, _add_fit, *analysis_commands.COMMANDS, _add_subset, _add_augment, _add_spectrogram,
                _add_highband):
        add(sub)
    for command in sub.choices.values():
        add_log_flags(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trainer`` console script; returns the exit status."""
    return run_command(build_parser().parse_args(argv), program="trainer")


if __name__ == "__main__":
    sys.exit(main())
