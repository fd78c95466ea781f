"""Tiny exported models for tests: linear ONNX decoders/encoders built with onnx.helper, plus Kickspace metadata.

A linear decoder ``audio = z @ W`` (+ a per-class offset for a CVAE) makes latent moves audible in a measurable way:
with row 0 of ``W`` a kick shape, an axis along latent 0 scales the kick's amplitude.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime import model as M
from runtime.spec import SpectrogramSpec

SPEC = SpectrogramSpec(sample_rate=8000, n_fft=64, hop_length=16, win_length=64, n_mels=8, frames=4)
LATENT, SAMPLES = 3, 64
MELS, FRAMES = 8, 4


def metadata(**changes) -> M.ModelMetadata:
    """Metadata of the tiny test model (8 kHz, latent 3, axis ``sub`` along latent 0, scale 2); override fields."""
    base = M.ModelMetadata(spec=SPEC, latent=LATENT, axes=(M.Axis("sub", (1.0, 0.0, 0.0), 2.0, {"rho": 0.95}),),
                           griffin_lim_iterations=4, phase_init="test")
    return dataclasses.replace(base, **changes)


def save_graph(graph: onnx.GraphProto, path, meta_json: str | None) -> None:
    """Save a graph as an opset-17, IR-9 model (onnxruntime 1.31 refuses onnx 1.23's default IR 14)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    if meta_json is not None:
        helper.set_model_props(model, {M.METADATA_KEY: meta_json})
    onnx.save(model, str(path))


def write_decoder(path, meta_json: str | None, *, weights: np.ndarray | None = None, conditional: bool = False,
                  offsets: tuple[float, ...] = (0.0, 10.0), out_name: str = "audio", slow: int = 0,
                  controls: np.ndarray | None = None) -> None:
    """``audio = z @ W`` with ``W`` ``[latent, samples]`` (default: seeded random ``[3, 64]``), ``logmel`` a
    reshape of ``z @ V``; with ``conditional`` a ``label`` input adds ``offsets[label]`` to every sample.

    ``controls`` ``[K, samples]``: a ``controls`` input ``[B, K]`` (shaping controls) adds ``controls_in @ controls``
    to the audio; ``logmel`` stays the decoder's own (as an export's does).

    ``slow``: that many ``[256, 512] @ [512, 512]`` matmuls on a z-dependent tensor, added to the audio times 0 (the
    same sound, tens of milliseconds per run: a render that can be cancelled while it runs)."""
    rng = np.random.default_rng(0)
    if weights is None:
        weights = rng.standard_normal((LATENT, SAMPLES))
    latent, samples = weights.shape
    inits = [numpy_helper.from_array(np.asarray(weights, dtype=np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((latent, MELS * FRAMES)).astype(np.float32), "V"),
             numpy_helper.from_array(np.array([-1, MELS, FRAMES], dtype=np.int64), "shape")]
    nodes = [helper.make_node("MatMul", ["z", "W"], ["a0"]), helper.make_node("MatMul", ["z", "V"], ["m0"]),
             helper.make_node("Reshape", ["m0", "shape"], ["logmel"])]
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["B", latent])]
    if controls is not None:
        inits.append(numpy_helper.from_array(np.asarray(controls, dtype=np.float32), "C"))
        nodes = [helper.make_node("MatMul", ["z", "W"], ["zw"]), helper.make_node("MatMul", ["controls", "C"], ["cw"]),
                 helper.make_node("Add", ["zw", "cw"], ["a0"])] + nodes[1:]
        inputs.append(helper.make_tensor_value_info("controls", TensorProto.FLOAT, ["B", len(controls)]))
    if conditional:
        table = np.asarray(offsets, dtype=np.float32)[:, None]
        inits.append(numpy_helper.from_array(table, "offsets"))
        nodes += [helper.make_node("Gather", ["offsets", "label"], ["off"], axis=0),
                  helper.make_node("Add", ["a0", "off"], [out_name])]
        inputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["B"]))
    else:
        nodes.append(helper.make_node("Identity", ["a0"], ["a1"] if slow else [out_name]))
    if slow:
        inits += [numpy_helper.from_array(rng.standard_normal((latent, 512)).astype(np.float32) / 8, "S0"),
                  numpy_helper.from_array(rng.standard_normal((512, 512)).astype(np.float32) / 23, "S"),
                  numpy_helper.from_array(np.array([1, 256, 1], dtype=np.int64), "rows"),
                  numpy_helper.from_array(np.zeros(1, dtype=np.float32), "zero")]
        inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "one"))
        nodes += [helper.make_node("MatMul", ["z", "S0"], ["h0"]),
                  helper.make_node("Unsqueeze", ["h0", "one"], ["u0"]), helper.make_node("Tile", ["u0", "rows"], ["st0"])]
        last = "st0"
        for i in range(slow):
            nodes += [helper.make_node("MatMul", [last, "S"], [f"sm{i}"]),
                      helper.make_node("Tanh", [f"sm{i}"], [f"st{i + 1}"])]
            last = f"st{i + 1}"
        inits.append(numpy_helper.from_array(np.array([2], dtype=np.int64), "two"))
        nodes += [helper.make_node("ReduceSum", [last, "two"], ["sum1"], keepdims=0),
                  helper.make_node("ReduceSum", ["sum1", "one"], ["sum2"], keepdims=1),
                  helper.make_node("Mul", ["sum2", "zero"], ["nil"]), helper.make_node("Add", ["a1", "nil"], [out_name])]
    outputs = [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["B", samples]),
               helper.make_tensor_value_info("logmel", TensorProto.FLOAT, ["B", MELS, FRAMES])]
    save_graph(helper.make_graph(nodes, "decoder", inputs, outputs, inits), path, meta_json)


def write_encoder(path, meta_json: str, *, latent: int = LATENT, samples: int = SAMPLES, weight: float = 0.01,
                  matrix: np.ndarray | None = None) -> None:
    """``mu = audio @ E`` with every entry of ``E`` = ``weight`` (or ``E = matrix`` ``[samples, latent]``);
    ``logvar = -mu``."""
    matrix = np.full((samples, latent), weight) if matrix is None else matrix
    w = numpy_helper.from_array(np.asarray(matrix, dtype=np.float32), "E")
    nodes = [helper.make_node("MatMul", ["audio", "E"], ["mu"]), helper.make_node("Neg", ["mu"], ["logvar"])]
    inputs = [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["B", samples])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", latent]) for n in ("mu", "logvar")]
    save_graph(helper.make_graph(nodes, "encoder", inputs, outputs, [w]), path, meta_json)


def kick_shape(samples: int, sample_rate: int, *, hz: float = 60.0, decay_s: float = 0.05) -> np.ndarray:
    """A decaying sine starting at 0 with a 1 ms rise: ``[samples]`` float32, peak about 1."""
    t = np.arange(samples) / sample_rate
    rise = np.minimum(1.0, t / 0.001)
    return (rise * np.sin(2 * np.pi * hz * t) * np.exp(-t / decay_s)).astype(np.float32)


#: The preview decoder of :func:`linear_kick_model` plays this fraction of the full decoder's sound (a tell).
PREVIEW_LEVEL = 0.5


def linear_kick_model(folder, *, sample_rate: int = 8000, samples: int = 1024, labels: tuple[str, ...] = (),
                      encoder: bool = False, preview: bool = False, preview_level: float = PREVIEW_LEVEL,
                      slow: int = 0, controls: tuple[str, ...] = (), prior: M.LatentPrior | None = None) -> Path:
    """A model folder whose decoder plays ``z[0] * kick + z[1] * click + z[2] * tone`` (latent 3).

    Axes: ``sub`` along latent 0 with scale 0.5 (the kick's amplitude), ``click`` along latent 1. Spec: ``samples``
    long at ``sample_rate``. A pad anchored at ``(1, 0, 0)`` with ``sub = v`` plays ``(1 + 0.5 v) * kick``. With
    ``preview`` the folder also has a preview decoder playing ``preview_level`` times the same sound; ``slow``
    makes the full decoder take longer (see :func:`write_decoder`). ``controls``: names of shaping controls; control
    ``k``'s value ``c`` adds ``(k + 1) * c * tone`` (a sound no latent point of the pads' anchors makes alone).
    ``prior``: the metadata's latent prior (random sounds' codes).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(samples) / sample_rate
    click = (np.exp(-t / 0.002) * np.cos(2 * np.pi * 1000 * t)).astype(np.float32)
    tone = (np.sin(2 * np.pi * 220 * t) * np.exp(-t / 0.1)).astype(np.float32)
    weights = np.stack([kick_shape(samples, sample_rate), click, tone])
    hop = samples // FRAMES
    spec = dataclasses.replace(SPEC, sample_rate=sample_rate, hop_length=hop, frames=FRAMES,
                               n_fft=max(SPEC.n_fft, hop), win_length=max(SPEC.win_length, hop))
    axes = tuple(a for a in (M.Axis("sub", (1.0, 0.0, 0.0), 0.5), M.Axis("click", (0.0, 1.0, 0.0), 1.0))
                 if a.name not in controls)
    meta = metadata(spec=spec, labels=labels, preview_iterations=2 if preview else 0, axes=axes, controls=controls,
                    prior=prior)
    offsets = tuple(0.0 for _ in labels) or (0.0,)
    shaping = np.stack([(k + 1) * tone for k in range(len(controls))]) if controls else None
    write_decoder(folder / M.DECODER_FILE, meta.to_json(), weights=weights, conditional=bool(labels),
                  offsets=offsets, slow=slow, controls=shaping)
    if preview:
        write_decoder(folder / M.PREVIEW_FILE, meta.to_json(), weights=preview_level * weights,
                      conditional=bool(labels), offsets=offsets,
                      controls=None if shaping is None else preview_level * shaping)
    if encoder:
        write_encoder(folder / M.ENCODER_FILE, meta.to_json(), samples=samples)
    return folder


def nan_kick_model(folder, **kwargs) -> Path:
    """:func:`linear_kick_model` (same arguments) whose decoders output NaN at every latent point, as a broken
    export does: every weight is NaN."""
    folder = linear_kick_model(folder, **kwargs)
    for name in (M.DECODER_FILE, M.PREVIEW_FILE):
        if (folder / name).exists():
            meta = M.read_metadata(folder / name)
            write_decoder(folder / name, meta.to_json(), weights=np.full((LATENT, meta.n_samples), np.nan),
                          conditional=meta.conditional, offsets=tuple(0.0 for _ in meta.labels) or (0.0,))
    return folder
