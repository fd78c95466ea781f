"""torch's two ONNX exporters on the graphs ``python -m export onnx`` writes: parity and render time, old vs new.

For a shipped preset folder (``presets/kicks``, ``presets/kit``) the torch model is rebuilt from the preset itself:
architecture, spec, K and phase init from its metadata, weights from the ``model.*`` initialisers of its
``decoder.onnx`` and ``encoder.onnx`` (every parameter must be found there). Each graph export writes
(``encoder.onnx``, ``decoder.onnx``, ``decoder_preview.onnx``) is then saved twice through
``export.onnx_file.save_onnx`` with onnxruntime's basic optimisations, as the export does: once by the legacy
TorchScript exporter (what the shipped files were written with) and once by the torch.export-based one. Per graph it
prints:

* parity: max abs and max relative (to the legacy output's peak) difference of every output, both files run by
  onnxruntime on the same seeded inputs (batch 4);
* render time: median (and minimum) ms per call at batch 1, one intra-op thread, the two sessions timed in
  alternation so that load from other jobs falls on both alike;
* export seconds, file size, node count, session load ms.

    .venv/bin/python benchmarks/onnx_exporter.py [--preset presets/kicks] [--runs 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.render_latency import _session  # noqa: E402
from export.onnx_file import save_onnx  # noqa: E402
from trainer.phase import make_init  # noqa: E402
from export.preset_folder import DecoderGraph, EncoderGraph, _examples  # noqa: E402
from runtime import model as fmt  # noqa: E402
from runtime.spec import SpectrogramSpec  # noqa: E402
from trainer.vae import ModelConfig, build_model  # noqa: E402

EXPORTERS = ("legacy", "dynamo")


def rebuild(preset: Path) -> tuple[nn.Module, SpectrogramSpec, fmt.ModelMetadata]:
    """The torch VAE of an exported preset: config and spec from its metadata, weights from its graphs."""
    import onnx
    from onnx import numpy_helper

    meta = fmt.read_metadata(preset / fmt.DECODER_FILE)
    spec = meta.spec
    model = build_model(ModelConfig.from_dict(meta.training["model_config"])).eval()
    weights = {}
    for name in (fmt.DECODER_FILE, fmt.ENCODER_FILE):
        for init in onnx.load(str(preset / name)).graph.initializer:
            if init.name.startswith("model."):
                weights[init.name[len("model."):]] = torch.from_numpy(numpy_helper.to_array(init).copy())
    state = model.state_dict()
    missing = [k for k in state if k not in weights]
    if missing:
        raise SystemExit(f"{preset}: parameters not found in its graphs: {missing[:5]}")
    model.load_state_dict({k: weights[k] for k in state})
    return model, spec, meta


def graphs(model: nn.Module, spec: SpectrogramSpec,
           meta: fmt.ModelMetadata) -> dict[str, tuple[nn.Module, tuple, tuple, tuple]]:
    """name -> (module, examples, input names, output names), as export/preset_folder.py builds them."""
    init = make_init(meta.phase_init, spec)
    z, audio, example_label = _examples(model, spec)   # the export's own examples
    label = () if example_label is None else (example_label,)
    label_in = ("label",) if label else ()
    out = {fmt.ENCODER_FILE: (EncoderGraph(model, spec).eval(), (audio, *label), ("audio", *label_in),
                              ("mu", "logvar"))}
    for name, k in ((fmt.DECODER_FILE, meta.griffin_lim_iterations), (fmt.PREVIEW_FILE, meta.preview_iterations)):
        if k:
            out[name] = (DecoderGraph(model, spec, n_iter=k, init_phase=init).eval(), (z, *label), ("z", *label_in),
                         ("audio", "logmel"))
    return out


def feeds(model: nn.Module, spec: SpectrogramSpec, inputs: tuple[str, ...], batch: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    first = (rng.standard_normal((batch, model.code_size)) if inputs[0] == "z"
             else 0.3 * np.sin(np.cumsum(rng.uniform(0.001, 0.05, (batch, spec.n_samples)), axis=1)))
    feed = {inputs[0]: first.astype(np.float32)}
    if len(inputs) > 1:
        feed["label"] = np.arange(batch, dtype=np.int64) % model.config.n_classes
    return feed


def compare(paths: dict[str, Path], feed: dict, time_feed: dict, runs: int) -> dict:
    """Parity of the two files' outputs and alternating timing of their sessions."""
    sessions, loads = {}, {}
    for exporter, path in paths.items():
        sessions[exporter], loads[exporter] = _session(path)
    outs = {e: s.run(None, feed) for e, s in sessions.items()}
    names = [o.name for o in sessions["legacy"].get_outputs()]
    parity = {}
    for i, name in enumerate(names):
        old, new = outs["legacy"][i], outs["dynamo"][i]
        diff = float(np.abs(old - new).max())
        parity[name] = (diff, diff / (float(np.abs(old).max()) or 1.0))
    times = {e: [] for e in sessions}
    for _ in range(5):
        for s in sessions.values():
            s.run(None, time_feed)
    for _ in range(runs):
        for exporter, s in sessions.items():
            start = time.perf_counter()
            s.run(None, time_feed)
            times[exporter].append((time.perf_counter() - start) * 1e3)
    return {"parity": parity, "median_ms": {e: float(np.median(t)) for e, t in times.items()},
            "min_ms": {e: float(np.min(t)) for e, t in times.items()}, "load_ms": loads}


def main() -> None:
    import onnx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", type=Path, default=Path("presets/kicks"), help="exported preset folder")
    parser.add_argument("--runs", type=int, default=60, help="timed calls per graph and exporter (default 60)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, spec, meta = rebuild(args.preset)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (module, examples, inputs, outputs) in graphs(model, spec, meta).items():
            paths, export_s = {}, {}
            for exporter in EXPORTERS:
                paths[exporter] = Path(tmp) / f"{exporter}-{name}"
                start = time.perf_counter()
                save_onnx(module, paths[exporter], examples, input_names=inputs, output_names=outputs,
                          optimize=True, exporter=exporter)
                export_s[exporter] = time.perf_counter() - start
            result = compare(paths, feeds(model, spec, inputs, 4, 1), feeds(model, spec, inputs, 1, 2), args.runs)
            for exporter, path in paths.items():
                graph = onnx.load(str(path))
                rows.append((name, exporter, result, export_s[exporter], path.stat().st_size / 1e6,
                             len(graph.graph.node), graph.opset_import[0].version))
    print(f"# {args.preset}: spec n_fft {spec.n_fft}, {spec.n_bins} {spec.mel_scale} bins x {spec.frames} frames, "
          f"K {meta.griffin_lim_iterations}, preview K {meta.preview_iterations}, {len(meta.labels)} labels; "
          f"onnxruntime 1 thread, {args.runs} timed calls at batch 1")
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, python "
          f"{platform.python_version()}, torch {torch.__version__}\n")
    print("| graph | exporter | opset | nodes | file MB | export s | session load ms | median ms | min ms | "
          "max abs diff (new vs legacy) | max rel diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, exporter, result, seconds, size, nodes, opset in rows:
        diff = "; ".join(f"{o} {a:.1e}" for o, (a, _) in result["parity"].items()) if exporter == "dynamo" else ""
        rel = "; ".join(f"{o} {r:.1e}" for o, (_, r) in result["parity"].items()) if exporter == "dynamo" else ""
        ms = f"{result['median_ms'][exporter]:.2f} | {result['min_ms'][exporter]:.2f}"
        print(f"| {name} | {exporter} | {opset} | {nodes} | {size:.2f} | {seconds:.1f} | "
              f"{result['load_ms'][exporter]:.0f} | {ms} | {diff} | {rel} |")


if __name__ == "__main__":
    main()
