"""THE exported-model format: metadata schema, version check, and the onnxruntime loader.

An exported model is a folder holding ``decoder.onnx`` (and ``encoder.onnx`` when exported). Each graph carries the
same JSON document under the ONNX metadata key :data:`METADATA_KEY`; the exporter writes it through
:meth:`ModelMetadata.to_json` and the runtime reads it through :func:`read_metadata`, so the two sides cannot drift.
This module imports numpy and onnxruntime only (never torch, never ``trainer``).

Graph contracts (DESIGN.md, "Exported model"):

- decoder: ``z`` float32 ``[B, latent]`` (+ ``label`` int64 ``[B]`` for a CVAE, + ``controls`` float32
  ``[B, len(metadata.controls)]`` when the model has shaping controls) -> ``audio`` float32 ``[B, samples]`` and
  ``logmel`` float32 ``[B, bins, frames]``, with ``samples == spec.n_samples`` (the metadata's spectrogram spec,
  :mod:`runtime.spec`, is the explicit buffer length; a graph that disagrees is refused on load). ``controls`` are
  the shaping knobs (``trainer.shaping``), a last stage of the graph: values in [-1, 1], all zeros = the decoder's
  own sound; ``logmel`` is the decoder's features before them;
- encoder: ``audio`` float32 ``[B, samples]`` (+ ``label``) -> ``mu``, ``logvar`` float32 ``[B, latent]``;
- preview decoder (optional): the decoder's inputs and outputs with fewer Griffin-Lim iterations
  (``preview_iterations``), so a knob that is moving can be heard at a fraction of the render cost; the full decoder
  follows when the knob rests.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.dsp import Preparation
from runtime.errors import ConfigError, KickspaceError
from runtime.prior import LatentPrior, standard_prior
from runtime.schema import check_fields, require
from runtime.spec import SpectrogramSpec

log = logging.getLogger(__name__)

FORMAT_NAME = "kickspace-model"
FORMAT_VERSION = 1
METADATA_KEY = "kickspace"
DECODER_FILE = "decoder.onnx"
ENCODER_FILE = "encoder.onnx"
PREVIEW_FILE = "decoder_preview.onnx"
#: The one-shot preparation of models exported before the metadata carried ``preparation``: the settings every such
#: model (the shipped presets included) was trained with (``trainer.data.audio.Preprocess`` defaults, LUFS mode).
LEGACY_PREPARATION = Preparation(loudness="lufs", target_lufs=-20.0, peak_dbfs=-1.0, fade_ms=10.0, onset_db=-30.0,
                                 preroll_ms=1.0)


@dataclass(frozen=True)
class Axis:
    """A named latent direction a knob moves along.

    ``z = anchor + value * scale * direction`` for a knob value in [-1, 1]; ``effect`` holds what was measured when
    the axis was derived (e.g. Spearman rho of the knob against its descriptor, cross-talk to the others).
    """

    name: str
    direction: tuple[float, ...]
    scale: float = 1.0
    effect: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str, latent: int) -> "Axis":
        data = _fields(cls, data, where)
        direction = tuple(float(v) for v in data.get("direction", ()))
        if len(direction) != latent:
            raise ConfigError(f"{where}.direction", f"has {len(direction)} values, the latent size is {latent}")
        if not np.all(np.isfinite(direction)):
            raise ConfigError(f"{where}.direction", "contains NaN or infinite values")
        return cls(name=str(data["name"]), direction=direction, scale=float(data.get("scale", 1.0)),
                   effect={str(k): float(v) for k, v in dict(data.get("effect", {})).items()})


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the runtime needs to know about an exported model.

    Parameters
    ----------
    spec : SpectrogramSpec
        The spectrogram spec: sample rate, sizes (the audio buffer is ``spec.n_samples`` long), dB scaling. Written
        to JSON as ``spec.to_dict()`` and validated on load (every field required).
    latent : int
        Latent size of ``z``.
    labels : tuple of str
        Class names for a CVAE (index = ``label`` input); empty for an unconditional VAE.
    axes : tuple of Axis
        Named knob directions; may be empty.
    controls : tuple of str
        Names of the decoder graphs' shaping controls, in the column order of their ``controls`` input; empty for a
        model without them (every model exported before they existed). A name is never also an axis name, so a
        preset knob's ``axis`` names one or the other unambiguously (:meth:`knob_names`).
    griffin_lim_iterations : int
        K, the Griffin-Lim iterations inside the decoder graph.
    phase_init : str
        Name of the precomputed initial phase.
    preview_iterations : int
        Griffin-Lim iterations of the optional preview decoder graph (0: the model has none).
    preparation : Preparation
        How a one-shot at the model's rate was prepared for training (onset, crop fade, loudness); the runtime
        prepares a user's sample the same way before the encoder (:func:`runtime.dsp.prepare_one_shot`), at
        :attr:`sample_rate` and :attr:`n_samples`. Metadata without it reads as :data:`LEGACY_PREPARATION`.
    training : dict
        Training summary (data, epochs, losses, ...).
    prior : LatentPrior or None
        Where random codes come from (:mod:`runtime.prior`): a Gaussian fitted to real sounds' codes, or None for a
        model exported without one (random codes then come from the standard normal: :meth:`random_prior`).
    """

    spec: SpectrogramSpec
    latent: int
    labels: tuple[str, ...] = ()
    axes: tuple[Axis, ...] = ()
    controls: tuple[str, ...] = ()
    griffin_lim_iterations: int = 0
    phase_init: str = ""
    preview_iterations: int = 0
    preparation: Preparation = LEGACY_PREPARATION
    training: dict[str, Any] = field(default_factory=dict)
    prior: LatentPrior | None = None
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    @property
    def sample_rate(self) -> int:
        """The model's sample rate in Hz (``spec.sample_rate``)."""
        return self.spec.sample_rate

    @property
    def n_samples(self) -> int:
        """Samples in one rendered sound and one encoder input (``spec.n_samples``)."""
        return self.spec.n_samples

    @property
    def conditional(self) -> bool:
        return bool(self.labels)

    def random_prior(self, label: str | None = None) -> LatentPrior:
        """The prior random codes (of class ``label``) are drawn from: :attr:`prior` (its class's Gaussian when it
        has one, :meth:`~runtime.prior.LatentPrior.for_label`), else the standard normal."""
        return self.prior.for_label(label) if self.prior is not None else standard_prior(self.latent)

    def knob_names(self) -> tuple[str, ...]:
        """Every name a knob may move: the shaping controls, then the latent axes."""
        return self.controls + tuple(a.name for a in self.axes)

    def control_index(self, name: str) -> int | None:
        """Column of ``name`` in the decoder's ``controls`` input, or None when it is not a shaping control."""
        return self.controls.index(name) if name in self.controls else None

    def axis(self, name: str) -> Axis:
        for axis in self.axes:
            if axis.name == name:
                return axis
        known = ", ".join(a.name for a in self.axes) or "none"
        raise ConfigError("axis", f"the model has no axis named {name!r} (it has: {known})")

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        if self.prior is not None:  # its classes as a name -> prior object, as from_json reads them
            data["prior"] = self.prior.to_dict()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "model") -> "ModelMetadata":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise KickspaceError(f"{source}: its metadata is not valid JSON ({err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise KickspaceError(f"{source}: not a Kickspace model (metadata format {data.get('format')!r})")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise KickspaceError(
                f"{source}: model format version {version!r} is not supported by this runtime (it reads version "
                f"{FORMAT_VERSION}); re-export the model with this version's `python -m export onnx` or update "
                f"Kickspace")
        try:
            return cls._from_fields(data)
        except ConfigError as err:  # every field error names the file too
            raise ConfigError(f"{source}: {err.field}", err.problem) from None

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> "ModelMetadata":
        """The typed metadata from its JSON fields; a missing, unknown or bad field raises ConfigError naming it."""
        data = _fields(cls, data, "metadata")
        for name in ("spec", "latent"):
            if name not in data:
                raise ConfigError(f"metadata.{name}", "missing")
        latent = data["latent"]
        if not isinstance(latent, int) or latent <= 0:
            raise ConfigError("metadata.latent", f"must be a positive integer, got {latent!r}")
        axes = tuple(Axis.from_dict(a, where=f"metadata.axes[{i}]", latent=latent)
                     for i, a in enumerate(data.get("axes", ())))
        controls = _controls(data.get("controls", ()), axes)
        # the spec is typed with every field required: the sizes derived from it must not come from defaults
        spec = SpectrogramSpec.from_dict(data["spec"], where="metadata.spec", complete=True)
        return cls(spec=spec, latent=latent, labels=tuple(data.get("labels", ())), axes=axes, controls=controls,
                   griffin_lim_iterations=int(data.get("griffin_lim_iterations", 0)),
                   phase_init=str(data.get("phase_init", "")),
                   preview_iterations=int(data.get("preview_iterations", 0)), training=dict(data.get("training", {})),
                   preparation=_preparation(data.get("preparation")),
                   prior=None if data.get("prior") is None else LatentPrior.from_dict(
                       data["prior"], where="metadata.prior", latent=latent, labels=tuple(data.get("labels", ()))))


def _controls(data: Any, axes: tuple[Axis, ...]) -> tuple[str, ...]:
    """The metadata's ``controls``: unique non-empty names, none of them an axis name (a preset knob's ``axis``
    must name one or the other unambiguously); a bad one raises ConfigError naming ``metadata.controls[i]``."""
    require(isinstance(data, (list, tuple)), "metadata.controls",
            f"must be a list of names, got {type(data).__name__}")
    axis_names = {a.name for a in axes}
    names: list[str] = []
    for i, name in enumerate(data):
        where = f"metadata.controls[{i}]"
        require(isinstance(name, str) and bool(name.strip()), where, f"must be a non-empty name, got {name!r}")
        require(name not in names, where, f"{name!r} is listed twice")
        require(name not in axis_names, where, f"{name!r} is also the name of a latent axis (metadata.axes); "
                                               f"a knob could not tell which it moves")
        names.append(name)
    return tuple(names)


def _preparation(data: Any) -> Preparation:
    """The metadata's ``preparation`` (typed, validated; a bad field raises ConfigError naming it), or
    :data:`LEGACY_PREPARATION` for a model exported before the field existed."""
    if data is None:
        return LEGACY_PREPARATION
    return Preparation.from_dict(data, where="metadata.preparation")


def _fields(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    """Refuse unknown keys by name."""
    return check_fields(data, cls, where=where)


class RenderCancelled(Exception):
    """A decode stopped early through its :class:`CancelToken` (the caller asked for it: not an error)."""


class CancelToken:
    """Stops one :meth:`ExportedModel.decode` in flight from another thread.

    Wraps onnxruntime's ``RunOptions.terminate``: the graph run ends at its next node (measured: about 2 ms into a
    9 ms render) and ``decode`` raises :class:`RenderCancelled`. One token serves one decode.
    """

    def __init__(self) -> None:
        import onnxruntime as ort

        self.run_options = ort.RunOptions()
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.run_options.terminate = True


def read_metadata(path: str | Path) -> ModelMetadata:
    """Read and validate the Kickspace metadata of one ONNX file (no graph execution)."""
    session = _session(Path(path), threads=1)
    return _metadata_of(session, Path(path))


def _session(path: Path, *, threads: int):
    import onnxruntime as ort

    if not path.is_file():
        raise KickspaceError(f"{path}: model file not found (export one with `python -m export onnx RUN --out DIR`)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    started = time.perf_counter()
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for corrupt/unsupported files
        raise KickspaceError(f"{path}: onnxruntime cannot load this model ({err})") from None
    log.debug(f"{path}: onnxruntime session ready in {1e3 * (time.perf_counter() - started):.0f} ms "
              f"({threads} intra-op thread{'s' if threads > 1 else ''})")
    return session


def _metadata_of(session, path: Path) -> ModelMetadata:
    custom = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in custom:
        raise KickspaceError(f"{path}: no Kickspace metadata in this ONNX file (was it written by `python -m export "
                             f"onnx`?)")
    return ModelMetadata.from_json(custom[METADATA_KEY], source=str(path))


def _check_io(session, path: Path, *, inputs: dict[str, str], outputs: tuple[str, ...]) -> None:
    have_in = {i.name: i.type for i in session.get_inputs()}
    if have_in != inputs:
        raise KickspaceError(f"{path}: graph inputs {have_in} do not match the format's {inputs}")
    have_out = [o.name for o in session.get_outputs()]
    if sorted(have_out) != sorted(outputs):
        raise KickspaceError(f"{path}: graph outputs {have_out} do not match the format's {list(outputs)}")


def _check_length(args: list[Any], path: Path, spec: SpectrogramSpec) -> None:
    """Refuse a graph whose ``audio`` tensor (in ``args``: a decoder's outputs or an encoder's inputs) has a static
    length other than ``spec.n_samples``: the buffer length the runtime plays and prepares samples for comes from
    the metadata, so the graph must agree with it. A dynamic length passes here and is checked by
    :meth:`ExportedModel.warm_up`."""
    shape = next(a.shape for a in args if a.name == "audio")
    if shape and isinstance(shape[-1], int):
        _check_samples(shape[-1], path, spec)


def _check_samples(samples: int, path: Path, spec: SpectrogramSpec) -> None:
    """Raise one line naming ``path`` unless its audio is ``spec.n_samples`` long."""
    if samples != spec.n_samples:
        raise KickspaceError(f"{path}: the graph's audio is {samples} samples long, its metadata's spec says "
                             f"{spec.n_samples} (frames {spec.frames} x hop_length {spec.hop_length}); the graph "
                             f"and its metadata do not match: re-export the model")


class ExportedModel:
    """An exported model folder opened with onnxruntime.

    Parameters
    ----------
    folder : path
        Folder holding ``decoder.onnx`` (required) and ``encoder.onnx`` (optional).
    threads : int
        onnxruntime intra-op threads per session (1 keeps a render off the audio thread's core).
    """

    def __init__(self, folder: str | Path, *, threads: int = 1) -> None:
        self.folder = Path(folder)
        decoder_path = self.folder / DECODER_FILE
        self._decoder = _session(decoder_path, threads=threads)
        self.metadata = _metadata_of(self._decoder, decoder_path)
        label = {"label": "tensor(int64)"} if self.metadata.conditional else {}
        controls = {"controls": "tensor(float)"} if self.metadata.controls else {}
        decoder_inputs = {"z": "tensor(float)", **label, **controls}
        _check_io(self._decoder, decoder_path, inputs=decoder_inputs, outputs=("audio", "logmel"))
        _check_length(self._decoder.get_outputs(), decoder_path, self.metadata.spec)
        encoder_path = self.folder / ENCODER_FILE
        self._encoder = None
        if encoder_path.exists():
            self._encoder = _session(encoder_path, threads=threads)
            enc_meta = _metadata_of(self._encoder, encoder_path)
            if enc_meta.latent != self.metadata.latent or enc_meta.spec != self.metadata.spec:
                raise KickspaceError(f"{encoder_path}: encoder and decoder come from different exports")
            _check_io(self._encoder, encoder_path, inputs={"audio": "tensor(float)", **label},
                      outputs=("mu", "logvar"))
            _check_length(self._encoder.get_inputs(), encoder_path, self.metadata.spec)
        self._preview = self._open_preview(threads=threads, inputs=decoder_inputs)

    def _open_preview(self, *, threads: int, inputs: dict[str, str]):
        path = self.folder / PREVIEW_FILE
        if not path.exists():
            return None
        session = _session(path, threads=threads)
        if _metadata_of(session, path) != self.metadata or not self.metadata.preview_iterations:
            raise KickspaceError(f"{path}: the preview decoder and {DECODER_FILE} come from different exports; "
                                 f"re-export the model or delete {PREVIEW_FILE}")
        _check_io(session, path, inputs=inputs, outputs=("audio", "logmel"))
        _check_length(session.get_outputs(), path, self.metadata.spec)
        return session

    @property
    def has_encoder(self) -> bool:
        return self._encoder is not None

    @property
    def has_preview(self) -> bool:
        """Whether the folder has a preview decoder (fewer Griffin-Lim iterations, for knobs in motion)."""
        return self._preview is not None

    def _label_feed(self, label: np.ndarray | int | None, batch: int) -> dict[str, np.ndarray]:
        if not self.metadata.conditional:
            return {}
        if label is None:
            raise KickspaceError(f"this model is conditioned on a class; pass one of {list(self.metadata.labels)}")
        ids = np.broadcast_to(np.asarray(label, dtype=np.int64), (batch,)).copy()
        if ids.min() < 0 or ids.max() >= len(self.metadata.labels):
            raise KickspaceError(f"label index out of range 0..{len(self.metadata.labels) - 1}: {ids.tolist()}")
        return {"label": ids}

    def _controls_feed(self, controls: np.ndarray | None, batch: int) -> dict[str, np.ndarray]:
        """The ``controls`` feed ``[batch, len(metadata.controls)]`` float32 (zeros when None: the decoder's own
        sound); a model without shaping controls takes none, and refuses non-zero values (one line)."""
        names = self.metadata.controls
        if not names:
            if controls is not None and np.any(np.asarray(controls) != 0):
                axes = ", ".join(self.metadata.knob_names()) or "none"
                raise KickspaceError(f"{self.folder}: this model has no shaping controls (it was exported without "
                                     f"them); its knobs move latent axes instead ({axes})")
            return {}
        if controls is None:
            return {"controls": np.zeros((batch, len(names)), dtype=np.float32)}
        values = np.asarray(controls, dtype=np.float32)
        values = values[None] if values.ndim == 1 else values
        if values.ndim != 2 or values.shape[1] != len(names) or values.shape[0] not in (1, batch):
            raise KickspaceError(f"controls have shape {list(np.shape(controls))}, the model wants [{batch}, "
                                 f"{len(names)}] (columns: {', '.join(names)})")
        return {"controls": np.ascontiguousarray(np.broadcast_to(values, (batch, len(names))))}

    def warm_up(self, *, runs: int = 2) -> None:
        """Run each decoder graph ``runs`` times on a zero latent, so onnxruntime's first-run allocations (about
        4 MB and a few ms per graph, measured) happen at load time instead of at the first hit or knob move.

        The first run's audio length is checked against ``spec.n_samples`` (the check the constructor makes from
        a static output shape, for a graph whose length is dynamic); a mismatch raises :class:`KickspaceError`.
        """
        z = np.zeros((1, self.metadata.latent), dtype=np.float32)
        label = 0 if self.metadata.conditional else None
        for run in range(runs):
            audio, _ = self.decode(z, label=label)
            if run == 0:
                _check_samples(audio.shape[-1], self.folder / DECODER_FILE, self.metadata.spec)
            if self._preview is not None:
                audio, _ = self.decode(z, label=label, preview=True)
                if run == 0:
                    _check_samples(audio.shape[-1], self.folder / PREVIEW_FILE, self.metadata.spec)

    def decode(self, z: np.ndarray, *, label: np.ndarray | int | None = None, controls: np.ndarray | None = None,
               preview: bool = False, cancel: "CancelToken | None" = None) -> tuple[np.ndarray, np.ndarray]:
        """Latent ``[B, latent]`` -> (audio ``[B, samples]``, logmel ``[B, bins, frames]``), float32.

        ``controls``: the shaping controls' values ``[B, len(metadata.controls)]`` (or one row for every sound) in
        the order of ``metadata.controls``; None plays every control at 0 (no shaping). A model without shaping
        controls takes no such feed: non-zero values for it raise :class:`KickspaceError`.

        ``preview=True`` runs the preview decoder when the model has one (the same sound with
        ``metadata.preview_iterations`` Griffin-Lim iterations), else the full one. ``cancel``: a token another
        thread may trigger to stop this run early; the call then raises :class:`RenderCancelled`.
        """
        z = np.ascontiguousarray(np.atleast_2d(z), dtype=np.float32)
        if z.shape[1] != self.metadata.latent:
            raise KickspaceError(f"z has {z.shape[1]} dimensions, the model's latent size is {self.metadata.latent}")
        session = self._preview if preview and self._preview is not None else self._decoder
        feed = {"z": z, **self._label_feed(label, z.shape[0]), **self._controls_feed(controls, z.shape[0])}
        try:
            audio, logmel = session.run(["audio", "logmel"], feed, run_options=cancel and cancel.run_options)
        except Exception:
            if cancel is not None and cancel.cancelled:
                raise RenderCancelled() from None
            raise
        if cancel is not None and cancel.cancelled:
            raise RenderCancelled()  # cancelled after the last node ran: the caller no longer wants this sound
        return audio, logmel

    def encode(self, audio: np.ndarray, *, label: np.ndarray | int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Audio ``[B, samples]`` at the model rate -> (mu, logvar), each ``[B, latent]`` float32."""
        if self._encoder is None:
            raise KickspaceError(f"{self.folder}: this model was exported without an encoder graph")
        audio = np.ascontiguousarray(np.atleast_2d(audio), dtype=np.float32)
        if audio.shape[1] != self.metadata.n_samples:
            raise KickspaceError(f"audio has {audio.shape[1]} samples, the model wants {self.metadata.n_samples} "
                                 f"at {self.metadata.sample_rate} Hz")
        mu, logvar = self._encoder.run(["mu", "logvar"], {"audio": audio, **self._label_feed(label, audio.shape[0])})
        return mu, logvar
