"""Write a torch module as an ONNX file onnxruntime 1.31 can read: torch.export-based exporter, opset 18, IR
version set, dynamic batch.

Every graph (``encoder.onnx``, ``decoder.onnx``, ``decoder_preview.onnx`` and the benchmarks' graphs) goes through
torch's current exporter, ``torch.onnx.export(..., dynamo=True)`` on ``torch.export`` (it needs ``onnxscript``):
onnxruntime's output is the same as from the legacy TorchScript exporter to the last float32 bit on the shipped
kinds of graph, and a render takes the same time (benchmarks/README.md, "ONNX exporter"). These choices make it so:

* **opset 18**, not 17: the exporter implements opset 18 and up, and its converter down to 17 fails on ``Pad``
  ("No Adapter To Version $17 for Pad"); onnxruntime 1.31 runs opset 18.
* **No onnxscript graph optimiser** (``optimize=False`` in the export call): its rewrites of the unrolled
  Griffin-Lim loop moved onnxruntime's audio 2.2e-3 (relative to the peak) from torch's, against 7.5e-6 without
  them. ``optimize=True`` here applies onnxruntime's own basic optimisations instead.
* The batch axis is a ``torch.export.Dim`` on every input (outputs follow); an example with batch 1 is repeated to
  2 first, since ``torch.export`` specialises a size-1 dimension to a constant.
* The intermediate shapes the exporter records (``value_info``) are dropped: with them onnxruntime ran the same
  graph 4-5 % slower.
* ``export/graph.py`` slices its overlap-add chunks: the exporter writes ``torch.split`` as SplitToSequence +
  SequenceAt, which cost the preview decoder 0.3 ms more than the legacy graph's Split.

No piece stays on the legacy exporter. ``exporter="legacy"`` is kept only so that benchmarks/onnx_exporter.py can
measure the old graphs beside the new (it prints torch's deprecation warning there, as it should).

onnx 1.23 writes IR version 14 by default and onnxruntime 1.31 reads at most 13, so the IR version is set
explicitly. The file is written atomically; optional metadata goes into the model's ``metadata_props``.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from runtime.errors import ConfigError
from runtime.files import atomic_path

OPSET = 18
IR_VERSION = 10
EXPORTERS = ("dynamo", "legacy")


def save_onnx(module: nn.Module, path: str | Path, examples: tuple[torch.Tensor, ...], *,
              input_names: Sequence[str], output_names: Sequence[str], metadata: dict[str, str] | None = None,
              optimize: bool = False, opset: int = OPSET, ir_version: int = IR_VERSION,
              exporter: str = "dynamo") -> Path:
    """Export ``module(*examples)`` with the batch (first) axis of every input and output dynamic.

    Parameters
    ----------
    examples : tuple of tensors
        One example per input, each ``[B, ...]`` (any ``B >= 1``).
    optimize : bool
        Also apply onnxruntime's hardware-independent optimisations (constant folding, redundant node removal)
        once here and save that graph, so sessions load faster (measured ~25% at K = 8).
    metadata : dict
        ``metadata_props`` entries (key -> string).
    exporter : str
        ``"dynamo"`` (torch.export, the default) or ``"legacy"`` (TorchScript, deprecated: benchmarks only).
    """
    import onnx

    if exporter not in EXPORTERS:
        raise ConfigError("exporter", f"must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    path = Path(path)
    with atomic_path(path) as tmp, torch.no_grad():
        if exporter == "dynamo":
            model = _export_dynamo(module.eval(), examples, input_names, output_names, opset)
            onnx.save(model, str(tmp))
        else:
            _export_legacy(module.eval(), examples, tmp, input_names, output_names, opset)
        if optimize:
            _optimize(tmp)
        model = onnx.load(str(tmp))
        model.ir_version = min(model.ir_version, ir_version)
        if metadata:
            onnx.helper.set_model_props(model, dict(metadata))
        onnx.save(model, str(tmp))
    return path


def _export_dynamo(module: nn.Module, examples: tuple[torch.Tensor, ...], input_names: Sequence[str],
                   output_names: Sequence[str], opset: int):
    """``torch.onnx.export(dynamo=True)`` of ``module(*examples)`` -> ``onnx.ModelProto`` with a dynamic batch."""
    examples = tuple(e.repeat(2, *([1] * (e.dim() - 1))) if e.shape[0] == 1 else e for e in examples)
    # named on the first input only: the others share its symbol, and a second name for it draws a UserWarning
    dynamic = ({0: torch.export.Dim("batch")}, *({0: torch.export.Dim.DYNAMIC} for _ in examples[1:]))
    with _quiet_exporter():
        program = torch.onnx.export(module, examples, dynamo=True, input_names=list(input_names),
                                    output_names=list(output_names), dynamic_shapes=dynamic, opset_version=opset,
                                    optimize=False, verbose=False, report=False)
    model = program.model_proto
    # the exporter stores every intermediate shape (value_info); onnxruntime rendered the kit decoder 4-5 % slower
    # with them than the same graph without (benchmarks/README.md, "ONNX exporter"); the legacy graphs had none
    del model.graph.value_info[:]
    return model


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence two messages of torch 2.13's exporter that concern neither this project nor its users.

    * ``FutureWarning: `isinstance(treespec, LeafSpec)` is deprecated``: raised inside torch.export by torch's own
      pytree code (copyreg), on every export; nothing in this project uses ``LeafSpec``.
    * ``torchvision is not installed. Skipping torchvision::nms`` (and 3 more ops), logged at WARNING when the op
      registry is built: torchvision's detection ops are not used here.

    Every other warning and log record passes.
    """
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    registry.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        registry.setLevel(level)


def _export_legacy(module: nn.Module, examples: tuple[torch.Tensor, ...], tmp: Path, input_names: Sequence[str],
                   output_names: Sequence[str], opset: int) -> None:
    """The legacy TorchScript exporter (opset 17, constant folding); kept for the benchmark's comparison."""
    dynamic = {name: {0: "batch"} for name in (*input_names, *output_names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # conditioning branches are fixed per model
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(module, examples, str(tmp), input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic, opset_version=min(opset, 17),
                          dynamo=False, do_constant_folding=True)


def _optimize(path: Path) -> None:
    """Replace ``path`` by onnxruntime's ``ORT_ENABLE_BASIC``-optimised graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with atomic_path(path) as optimised:
        options.optimized_model_filepath = str(optimised)
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
