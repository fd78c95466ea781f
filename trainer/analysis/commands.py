"""``trainer generate / analyze / cluster / axes / evaluate / sweep-latent``: the analysis commands' edge.

Part of the ``trainer`` command line (:mod:`trainer.cli` adds them): each parses its flags and calls one function of
:mod:`trainer.analysis` that tests also call directly.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from runtime.errors import KickspaceError
from runtime.logs import say


def _run_arguments(parser: argparse.ArgumentParser, *, data: str) -> None:
    """RUN, --data (``data``: "required", "optional"), --out, cache flags, --seed, --gl-iters."""
    parser.add_argument("run", type=Path, help="run folder written by `trainer fit` (best.pt, else last.pt) or a .pt")
    parser.add_argument("--data", type=Path, nargs="+", required=data == "required", default=None,
                        help="data folders, ingested with the run's spec and preprocessing")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN/analysis)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="feature cache folder (default $KICKSPACE_CACHE or ~/.cache/kickspace)")
    parser.add_argument("--no-cache", action="store_true", help="compute every feature, read and write no cache")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--gl-iters", type=int, default=32, help="Griffin-Lim iterations for audio (default 32)")


def _load_run_and_data(args: argparse.Namespace, roots=None):
    from trainer.analysis.run import load_corpus, load_run

    run = load_run(args.run)
    roots = args.data if roots is None else roots
    corpus = (load_corpus(run, roots, cache_dir=args.cache, use_cache=not args.no_cache) if roots else None)
    out = args.out or (run.folder / "analysis")
    return run, corpus, out


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="reconstructions, prior samples, interpolations as WAV + spectrogram grids",
                       description="Write prior samples (per class for a CVAE) and, with --data, reconstructions "
                                   "(original | reconstruction | difference grid), interpolations between pairs of "
                                   "real sounds and between classes, as WAV files plus PNG grids under OUT/generate.")
    _run_arguments(p, data="optional")
    p.add_argument("--n", type=int, default=4, help="reconstructions and samples (per class) to write (default 4)")
    p.add_argument("--pairs", type=int, default=2, help="interpolated pairs of real sounds (default 2)")
    p.add_argument("--steps", type=int, default=7, help="points per interpolation (default 7)")
    p.set_defaults(handler=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from trainer.analysis.generate import generate

    run, corpus, out = _load_run_and_data(args)
    generate(run, corpus, out=out / "generate", n=args.n, pairs=args.pairs, steps=args.steps, n_iter=args.gl_iters,
             seed=args.seed)
    say(f"wrote {out / 'generate'}")
    return 0


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="latent diagnostics (JSON + Markdown) and 2D maps (PNG + HTML)",
                       description="Encode the data through the run: mu/logvar statistics, KL per dimension, active "
                                   "units, pairwise distances and a posterior-collapse verdict (latent.json, "
                                   "latent.md); PCA (and UMAP when installed) maps coloured by class, pitch, "
                                   "cluster and each descriptor (PNG and interactive HTML).")
    _run_arguments(p, data="required")
    p.set_defaults(handler=_run_analyze)


def _run_analyze(args: argparse.Namespace) -> int:
    from trainer.analysis.latent import analyze

    run, corpus, out = _load_run_and_data(args)
    report = analyze(run, corpus, out=out, seed=args.seed)
    diag = report["diagnostics"]
    print(f"{diag['verdict']}: {diag['active_units']}/{diag['latent']} active units; wrote {out / 'latent.md'}")
    return 0


def _add_cluster(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="GMM (BIC) on latent means, TensorBoard projector, centroids for pads",
                       description="Fit GMMs on z-scored latent means and keep the component count with the lowest "
                                   "BIC (bic.png); write a TensorBoard projector (metadata: cluster, class, "
                                   "descriptors, audio per sample), each cluster's decoded centroid as WAV, and "
                                   "centroids.json for pad anchors.")
    _run_arguments(p, data="required")
    p.add_argument("--max-components", type=int, default=10, help="largest GMM tried (default 10)")
    p.add_argument("--components", type=int, default=None,
                   help="use this many clusters (pads) instead of the BIC's choice; the BIC curve is still reported")
    p.add_argument("--no-audio", action="store_true", help="no WAV per sample in the projector")
    p.set_defaults(handler=_run_cluster)


def _run_cluster(args: argparse.Namespace) -> int:
    from trainer.analysis.cluster import cluster

    run, corpus, out = _load_run_and_data(args)
    report = cluster(run, corpus, out=out, max_components=args.max_components, components=args.components,
                     seed=args.seed, projector_audio=not args.no_audio)
    names = ", ".join(r["name"] for r in report["centroids"])
    print(f"{report['components']} clusters (BIC prefers {report['bic_components']}): {names}; wrote {out / 'centroids.json'} and {out / 'clusters.md'}")
    return 0


def _add_axes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("axes", help="validate the five shaping knobs (sub, punch, decay, click, brightness) by "
                                    "sweeps; --latent: derive named latent axes",
                       description="Validate the shaping knobs of trainer/shaping.py on the model's sounds: sweep "
                                   "each knob from the latent mean, encoded sounds, the pads and random latents, "
                                   "read every hit with the project's descriptors and with librosa's, and report "
                                   "rho per sweep and per knob, the knob x descriptor rho matrix and each effect's "
                                   "size in IQRs of real kicks (knobs.json, knobs.md). With --latent: derive one "
                                   "latent direction per control from the encoded training data and the "
                                   "descriptors of its reconstructions, with three decorrelation methods (plus "
                                   "'control', the descriptor inputs of a model trained with model.controls); "
                                   "decode sweeps along each axis, measure Spearman rho and cross-talk, keep the "
                                   "best method and write axes.json (for export) and axes.md.")
    _run_arguments(p, data="required")
    p.add_argument("--anchors", type=int, default=4, help="encoded examples swept from besides the mean (default 4)")
    p.add_argument("--values", type=int, default=9, help="knob values per sweep (default 9)")
    p.add_argument("--random", type=int, default=6,
                   help="random latents swept from besides the encoded examples and the pads (default 6)")
    p.add_argument("--latent", action="store_true",
                   help="derive named latent axes (axes.json for export) instead of validating the shaping knobs")
    p.add_argument("--methods", nargs="+", choices=("control", "gradient", "pinv", "backward"), default=None,
                   help="with --latent: methods to compare (default: all that apply to the model)")
    p.set_defaults(handler=_run_axes, gl_iters=None)
    next(a for a in p._actions if a.dest == "gl_iters").help = (
        "Griffin-Lim iterations (default: the exported graph's K = 8 from the pghi phase, as the runtime renders; "
        "with --latent 32 from a random phase)")


def _run_axes(args: argparse.Namespace) -> int:
    if not args.latent:
        return _run_knob_check(args)
    from trainer.analysis.axes import axes

    run, corpus, out = _load_run_and_data(args)
    report = axes(run, corpus, out=out, n_anchors=args.anchors, n_values=args.values, seed=args.seed,
                  n_iter=32 if args.gl_iters is None else args.gl_iters, methods=args.methods, n_random=args.random)
    for axis in report["axes"]:
        print(f"{axis['name']:<11} rho {axis['rho']:+.2f}  span {axis['span']:+.2f}  "
              f"max cross-talk {axis['max_cross_talk']:.2f}")
    print(f"method {report['method']}; wrote {out / 'axes.json'} and {out / 'axes.md'}")
    return 0


def _run_knob_check(args: argparse.Namespace) -> int:
    from trainer.analysis.knob_check import check_knobs, summary
    from trainer.phase import DEFAULT_ITERATIONS

    if args.methods is not None:
        raise KickspaceError("--methods: compares latent axis methods, so it needs --latent")
    run, corpus, out = _load_run_and_data(args)
    n_iter = DEFAULT_ITERATIONS if args.gl_iters is None else args.gl_iters
    report = check_knobs(run, corpus, out=out, n_real=args.anchors, n_values=args.values, n_random=args.random,
                         seed=args.seed, n_iter=n_iter)
    for line in summary(report):
        print(line)
    print(f"wrote {out / 'knobs.json'} and {out / 'knobs.md'}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="held-out round trip, realism, diversity and memorisation report",
                       description="On audio the model never saw: round-trip log-mel distance next to Griffin-Lim "
                                   "and spec oracles, Fréchet distance of descriptors (generated vs a real "
                                   "reference, beside real half vs half at the same sizes, per descriptor), "
                                   "pairwise diversity with a collapse verdict, and nearest training neighbours "
                                   "(with --train-data), for prior samples and, with --prior-data, for samples of a "
                                   "Gaussian fitted to the encoder means of real sounds (prior.json). Writes "
                                   "evaluate.json, evaluate.md and plots.")
    _run_arguments(p, data="required")
    p.add_argument("--train-data", type=Path, nargs="+", default=None,
                   help="the run's training data folders (for the memorisation check)")
    p.add_argument("--samples", type=int, default=256, help="generated sounds per sampler (default 256)")
    p.add_argument("--real-data", type=Path, nargs="+", default=None,
                   help="the real reference for realism and diversity (default: the --data sounds); may include "
                        "training sounds, the report says how many")
    p.add_argument("--prior", choices=("standard", "posterior"), default="standard",
                   help="standard: report codes drawn from N(0, I) (always reported); posterior: also a Gaussian "
                        "fitted to the encoder means of real sounds, on --prior-data, else on the reference's "
                        "sounds that are in --train-data (default standard; --prior-data implies posterior)")
    p.add_argument("--prior-data", type=Path, nargs="+", default=None,
                   help="real sounds to fit the posterior sampler on (e.g. the real training kicks); writes "
                        "prior.json")
    p.set_defaults(handler=_run_evaluate)


def _existing(paths: Sequence[Path] | None, flag: str) -> Sequence[Path] | None:
    """``paths`` unchanged; a missing one is a one-line error naming ``flag`` and the path."""
    from runtime.schema import require

    for path in paths or ():
        require(path.exists(), flag, f"{path}: no such file or folder")
    return paths


def _run_evaluate(args: argparse.Namespace) -> int:
    from trainer.analysis.evaluate import evaluate
    from trainer.analysis.run import load_corpus

    for flag in ("data", "train_data", "real_data", "prior_data"):
        _existing(getattr(args, flag), "--" + flag.replace("_", "-"))
    run, corpus, out = _load_run_and_data(args)

    def load(roots: Sequence[Path] | None):
        return load_corpus(run, roots, cache_dir=args.cache, use_cache=not args.no_cache) if roots else None

    report = evaluate(run, corpus, out=out, train=load(args.train_data), reference=load(args.real_data),
                      prior_data=load(args.prior_data), posterior=args.prior == "posterior", samples=args.samples,
                      n_iter=args.gl_iters, seed=args.seed)
    rt = report["round_trip_db"]
    realism = ", ".join(f"{name} {r['ratio']:.2f}" for name, r in report["realism"].items())
    print(f"round trip {rt['vae']['median']:.2f} dB (spec oracle {rt['oracle_spec']['median']:.2f} dB); "
          f"realism ratio (generated / real half vs half) {realism}; "
          f"collapse: {any(d['collapsed'] for d in report['diversity'].values())}; wrote {out / 'evaluate.md'}")
    return 0


def _add_sweep_latent(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep-latent", help="train one model per latent size and recommend one",
                       description="Train one run per --dims size (same data and settings), report validation "
                                   "reconstruction and the variance share of the top 3 principal components of "
                                   "the latent means; recommend the smallest size where it reaches 60%.")
    p.add_argument("data", type=Path, nargs="+", help="data folders (or one .npz of features)")
    p.add_argument("--dims", type=int, nargs="+", default=[8, 16, 32], help="latent sizes (default 8 16 32)")
    p.add_argument("--out", type=Path, required=True, help="sweep folder (one run per size inside)")
    p.add_argument("--config", type=Path, default=None, help="run config TOML shared by every size")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                   help="override config keys, e.g. --set train.epochs=50")
    p.add_argument("--cache", type=Path, default=None,
                   help="feature cache folder (default $KICKSPACE_CACHE or ~/.cache/kickspace)")
    p.add_argument("--no-cache", action="store_true", help="compute every feature, read and write no cache")
    p.set_defaults(handler=_run_sweep_latent)


def _run_sweep_latent(args: argparse.Namespace) -> int:
    from trainer.analysis.sweep import sweep_latent
    from trainer.config import load_run_config
    from trainer.data.arrays import training_arrays

    run = load_run_config(args.config, args.overrides)
    spec = run.data.resolve_spec()
    arrays = training_arrays(args.data, run=run, spec=spec, cache_dir=None if args.no_cache else args.cache,
                             use_cache=not args.no_cache)
    report = sweep_latent(arrays, dims=args.dims, out=args.out, spec=spec,
                          model=run.model_config(spec, n_classes=len(arrays.classes)), objective=run.objective,
                          train=run.train, run_config=run.to_dict())
    rec = report["recommendation"]
    print(f"recommended latent: {rec['latent']} ({rec['reason']}); wrote {args.out / 'sweep.md'}")
    return 0


#: The analysis subcommands, in the order ``trainer --help`` lists them.
COMMANDS = (_add_generate, _add_analyze, _add_cluster, _add_axes, _add_evaluate, _add_sweep_latent)
