"""Convolutional VAE and CVAE on normalised log-mel features, and the config that rebuilds them.

The model is fully described by :class:`ModelConfig`, which is saved inside every checkpoint (``to_dict``) so a run
can be rebuilt without the code that trained it. One class, :class:`VAE`, covers both variants: with
``n_classes > 0`` and/or ``pitch_conditioning`` it is a CVAE whose condition (learned class and MIDI-pitch
embeddings) is injected into every encoder and decoder block and into the decoder's input.

Control conditioning (``controls``, e.g. sub, punch, decay, click, brightness): the decoder also takes the sound's
audio descriptors, standardised in :func:`trainer.descriptors.control_units`, so a knob can set a descriptor directly
instead of searching the latent space for a direction that moves it. The encoder is not given them (a user's own
sample has none at play time); it predicts them instead from its last block (``predict_controls``, trained with
an MSE term), and the KL pressure leaves to ``z`` only what the descriptors do not say. The decoder's input is the
*code* ``[z | controls]`` of ``code_size = latent + len(controls)`` columns: what ``decode`` takes, what
:meth:`VAE.encode_code` returns and what the exported decoder's ``z`` input is, so the runtime's axes are plain
directions in that code space (a control axis is a unit vector on its column).

Shapes: features ``x`` are ``[B, C, M, T]`` in [-1, 1]; latents ``z``, ``mu``, ``logvar`` are ``[B, latent]``;
``label`` and ``pitch`` are int64 ``[B]`` where -1 means unknown (mapped to a learned "unknown" embedding);
``controls`` are ``[B, len(config.controls)]`` standardised descriptors; a code is ``[B, code_size]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from runtime.errors import ConfigError
from runtime.schema import check_fields, require
from trainer.descriptors import DESCRIPTORS

NORMS = ("batch", "group", "none")
ACTIVATIONS = {"leaky_relu": lambda: nn.LeakyReLU(0.2), "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}
OUTPUTS = ("tanh", "none")
N_PITCHES = 128
#: Log-variance reported for the control columns of a code (they are predicted, not sampled).
CONTROL_LOGVAR = -9.0


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a (C)VAE. Saved in every checkpoint.

    Parameters
    ----------
    input_shape : (C, M, T)
        Feature shape (the spectrogram spec's ``shape``); ``M`` and ``T`` must be divisible by ``2 ** depth``.
    widths : tuple of int
        Channels of the stride-2 conv blocks, encoder order; the decoder mirrors them. ``depth = len(widths)``.
    kernel : int
        Square kernel size of every conv (>= 2); each block halves (encoder) or doubles (decoder) both axes.
    norm : {"batch", "group", "none"}
        Normalisation after each hidden conv (group norm uses up to 8 groups).
    activation : {"leaky_relu", "relu", "silu", "gelu"}
    latent : int
        Latent dimensions.
    output : {"tanh", "none"}
        Output squashing; ``tanh`` matches the [-1, 1] feature range.
    n_classes : int
        Number of class labels for a CVAE (0 = no class conditioning).
    class_dim : int
        Size of the learned class embedding.
    pitch_conditioning : bool
        Condition on MIDI pitch (0-127) through a learned embedding.
    pitch_dim : int
        Size of the learned pitch embedding.
    controls : tuple of str
        Descriptors (names from :data:`trainer.descriptors.DESCRIPTORS`) the decoder is conditioned on; empty for
        none. See the module docstring.
    control_mean, control_std : tuple of float
        Standardisation of each control in :func:`trainer.descriptors.control_units`, set by ``trainer fit`` from
        the training split (so a checkpoint maps descriptor values to its inputs on its own).
    control_dim : int
        Size of the learned projection of the controls.
    """

    input_shape: tuple[int, int, int] = (1, 128, 128)
    widths: tuple[int, ...] = (16, 32, 64, 128)
    kernel: int = 4
    norm: str = "none"
    activation: str = "leaky_relu"
    latent: int = 16
    output: str = "tanh"
    n_classes: int = 0
    class_dim: int = 16
    pitch_conditioning: bool = False
    pitch_dim: int = 16
    controls: tuple[str, ...] = ()
    control_mean: tuple[float, ...] = ()
    control_std: tuple[float, ...] = ()
    control_dim: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        object.__setattr__(self, "controls", tuple(str(v) for v in self.controls))
        object.__setattr__(self, "control_mean", tuple(float(v) for v in self.control_mean))
        object.__setattr__(self, "control_std", tuple(float(v) for v in self.control_std))
        require(len(self.input_shape) == 3 and min(self.input_shape) > 0, "model.input_shape",
                f"must be three positive sizes (channels, bins, frames), got {self.input_shape}")
        require(len(self.widths) > 0 and min(self.widths) > 0, "model.widths", f"must be positive, got {self.widths}")
        factor = 2 ** len(self.widths)
        for axis, size in zip(("bins", "frames"), self.input_shape[1:]):
            require(size % factor == 0, "model.widths",
                    f"{len(self.widths)} stride-2 blocks need {axis} divisible by {factor}, got {size}")
        require(self.kernel >= 2, "model.kernel", f"must be >= 2, got {self.kernel}")
        require(self.norm in NORMS, "model.norm", f"must be one of {NORMS}, got {self.norm!r}")
        require(self.activation in ACTIVATIONS, "model.activation",
                f"must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}")
        require(self.output in OUTPUTS, "model.output", f"must be one of {OUTPUTS}, got {self.output!r}")
        require(self.latent > 0, "model.latent", f"must be positive, got {self.latent}")
        require(self.n_classes >= 0, "model.n_classes", f"must be >= 0, got {self.n_classes}")
        require(self.class_dim > 0 and self.pitch_dim > 0, "model.class_dim", "embedding sizes must be positive")
        unknown = [c for c in self.controls if c not in DESCRIPTORS]
        require(not unknown, "model.controls", f"unknown descriptor(s) {unknown} (known: {', '.join(DESCRIPTORS)})")
        require(len(set(self.controls)) == len(self.controls), "model.controls",
                f"repeat a name: {list(self.controls)}")
        for name in ("control_mean", "control_std"):
            require(len(getattr(self, name)) in (0, len(self.controls)), f"model.{name}",
                    f"needs one value per control ({len(self.controls)}), got {len(getattr(self, name))}")
        require(all(v > 0 for v in self.control_std), "model.control_std", "must be positive")
        require(self.control_dim > 0, "model.control_dim", f"must be positive, got {self.control_dim}")

    @property
    def conditional(self) -> bool:
        """True for a CVAE (class and/or pitch conditioning)."""
        return self.n_classes > 0 or self.pitch_conditioning

    @property
    def cond_dim(self) -> int:
        """Size of the encoder's condition vector: class and pitch embeddings (0 for a plain VAE)."""
        return (self.class_dim if self.n_classes else 0) + (self.pitch_dim if self.pitch_conditioning else 0)

    @property
    def decoder_cond_dim(self) -> int:
        """Size of the decoder's condition vector: :attr:`cond_dim` plus the controls' projection."""
        return self.cond_dim + (self.control_dim if self.controls else 0)

    @property
    def code_size(self) -> int:
        """Columns of a decoder code ``[z | controls]``."""
        return self.latent + len(self.controls)

    @property
    def bottleneck(self) -> tuple[int, int, int]:
        """Shape ``(C, M, T)`` of the last encoder block's output."""
        factor = 2 ** len(self.widths)
        return (self.widths[-1], self.input_shape[1] // factor, self.input_shape[2] // factor)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form saved in checkpoints (tuples become lists)."""
        data = dataclasses.asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["widths"] = list(self.widths)
        for name in ("controls", "control_mean", "control_std"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown fields are refused by name."""
        return cls(**check_fields(data, cls, where="model"))


#: Seed configurations. ``kick``: 4 stride-2 blocks 16-32-64-128, latent 16, on the 128 x 128 kick spec.
#: ``timbre``: 3 blocks 16-32-64, latent 32, on NSynth's 80 x 128 log-mels.
MODEL_CONFIGS: dict[str, ModelConfig] = {
    "kick": ModelConfig(input_shape=(1, 128, 128), widths=(16, 32, 64, 128), latent=16),
    "timbre": ModelConfig(input_shape=(1, 80, 128), widths=(16, 32, 64), latent=32),
}


def get_model_config(name: str) -> ModelConfig:
    """Return a named seed configuration from :data:`MODEL_CONFIGS`."""
    try:
        return MODEL_CONFIGS[name]
    except KeyError:
        raise ConfigError("model.preset", f"unknown model {name!r} (known: {', '.join(MODEL_CONFIGS)})") from None


class VAEOutput(NamedTuple):
    """Result of :meth:`VAE.forward`: reconstruction ``[B, C, M, T]``, ``mu``, ``logvar``, ``z`` ``[B, latent]``."""

    recon: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    controls: torch.Tensor | None = None  # predicted controls [B, K] of a control-conditioned model
    swapped: torch.Tensor | None = None  # [B, C, M, T]: z decoded with ``swapped_controls`` (consistency term)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class Block(nn.Module):
    """Stride-2 conv (or transposed conv) -> + condition bias -> norm -> activation.

    The condition enters as a per-channel bias, a learned projection of the condition vector ``[B, cond_dim]``.
    """

    def __init__(self, c_in: int, c_out: int, config: ModelConfig, *, up: bool, cond_dim: int,
                 last: bool = False) -> None:
        super().__init__()
        k = config.kernel
        pad = (k - 1) // 2
        if up:
            self.conv = nn.ConvTranspose2d(c_in, c_out, k, stride=2, padding=pad, output_padding=k % 2)
        else:
            self.conv = nn.Conv2d(c_in, c_out, k, stride=2, padding=pad)
        self.cond = nn.Linear(cond_dim, c_out) if cond_dim and not last else None
        self.norm = nn.Identity() if last else _norm(config.norm, c_out)
        self.act = nn.Identity() if last else ACTIVATIONS[config.activation]()

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        x = self.conv(x)
        if self.cond is not None:
            x = x + self.cond(cond)[:, :, None, None]
        return self.act(self.norm(x))


class Condition(nn.Module):
    """Learned embeddings of class label and/or MIDI pitch -> condition vector ``[B, cond_dim]``.

    Index -1 (unknown) maps to an extra learned "unknown" row of each table.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_classes = config.n_classes
        self.classes = nn.Embedding(config.n_classes + 1, config.class_dim) if config.n_classes else None
        self.pitches = nn.Embedding(N_PITCHES + 1, config.pitch_dim) if config.pitch_conditioning else None

    def forward(self, batch: int, label: torch.Tensor | None, pitch: torch.Tensor | None,
                device: torch.device) -> torch.Tensor | None:
        parts = []
        if self.classes is not None:
            parts.append(self.classes(_index(label, batch, self.n_classes, device)))
        if self.pitches is not None:
            parts.append(self.pitches(_index(pitch, batch, N_PITCHES, device)))
        return torch.cat(parts, dim=1) if parts else None


def _index(values: torch.Tensor | None, batch: int, unknown: int, device: torch.device) -> torch.Tensor:
    """Labels ``[B]`` with -1 (or None) -> embedding rows, the unknown row being ``unknown``."""
    if values is None:
        return torch.full((batch,), unknown, dtype=torch.long, device=device)
    values = torch.as_tensor(values, dtype=torch.long, device=device).reshape(-1)
    if values.numel() == 1 and batch > 1:
        values = values.expand(batch)
    # a data-dependent check torch.export cannot trace (the exported runtime checks labels against the metadata)
    if values.numel() and not torch.compiler.is_exporting() and (values.max() >= unknown):
        raise ConfigError("label", f"index {int(values.max())} out of range (the model knows {unknown})")
    return torch.where(values < 0, torch.full_like(values, unknown), values)


class VAE(nn.Module):
    """Convolutional (C)VAE on log-mel features; see the module docstring.

    Parameters
    ----------
    config : ModelConfig
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        channels, _, _ = config.input_shape
        widths = config.widths
        flat = int(torch.tensor(config.bottleneck).prod())
        n_controls = len(config.controls)
        self.condition = Condition(config)
        self.encoder = nn.ModuleList(Block(c_in, c_out, config, up=False, cond_dim=config.cond_dim)
                                     for c_in, c_out in zip((channels,) + widths[:-1], widths))
        self.to_stats = nn.Linear(flat + config.cond_dim, 2 * config.latent)
        self.to_controls = nn.Linear(flat + config.cond_dim, n_controls) if n_controls else None
        self.control_proj = (nn.Sequential(nn.Linear(n_controls, config.control_dim), ACTIVATIONS[config.activation]())
                             if n_controls else None)
        self.from_latent = nn.Linear(config.latent + config.decoder_cond_dim, flat)
        back = widths[::-1]
        outs = back[1:] + (channels,)
        self.decoder = nn.ModuleList(
            Block(c_in, c_out, config, up=True, cond_dim=config.decoder_cond_dim, last=i == len(back) - 1)
            for i, (c_in, c_out) in enumerate(zip(back, outs)))

    @property
    def code_size(self) -> int:
        """Columns of a decoder code (``latent`` plus one per control)."""
        return self.config.code_size

    def _cond(self, batch: int, label: torch.Tensor | None, pitch: torch.Tensor | None,
              device: torch.device) -> torch.Tensor | None:
        return self.condition(batch, label, pitch, device)

    def _trunk(self, x: torch.Tensor, label: torch.Tensor | None, pitch: torch.Tensor | None) -> torch.Tensor:
        cond = self._cond(x.shape[0], label, pitch, x.device)
        h = x
        for block in self.encoder:
            h = block(h, cond)
        h = h.flatten(1)
        return h if cond is None else torch.cat([h, cond], dim=1)

    def _stats(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar

    def encode(self, x: torch.Tensor, label: torch.Tensor | None = None,
               pitch: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[B, C, M, T]`` -> posterior ``mu``, ``logvar`` ``[B, latent]``."""
        return self._stats(self._trunk(x, label, pitch))

    def encode_code(self, x: torch.Tensor, label: torch.Tensor | None = None,
                    pitch: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features -> ``mu``, ``logvar`` of the whole code ``[B, code_size]``.

        The control columns hold the encoder's predicted controls with log-variance :data:`CONTROL_LOGVAR`; for a
        model without controls this is :meth:`encode`.
        """
        h = self._trunk(x, label, pitch)
        mu, logvar = self._stats(h)
        if self.to_controls is None:
            return mu, logvar
        controls = self.to_controls(h)
        return torch.cat([mu, controls], dim=1), torch.cat([logvar, torch.full_like(controls, CONTROL_LOGVAR)], dim=1)

    def code(self, z: torch.Tensor, controls: torch.Tensor | None) -> torch.Tensor:
        """The decoder code ``[B, code_size]`` of latents ``[B, latent]`` and standardised controls ``[B, K]``."""
        if self.to_controls is None:
            return z
        if controls is None:
            raise ConfigError("controls", f"this model's decoder needs the controls {list(self.config.controls)}")
        return torch.cat([z, controls.to(z.dtype)], dim=1)

    def decode(self, code: torch.Tensor, label: torch.Tensor | None = None,
               pitch: torch.Tensor | None = None) -> torch.Tensor:
        """Codes ``[B, code_size]`` -> features ``[B, C, M, T]`` (in [-1, 1] with ``output="tanh"``)."""
        if code.shape[1] != self.code_size:
            raise ConfigError("z", f"has {code.shape[1]} columns; this decoder takes {self.code_size} "
                                   f"(latent {self.config.latent} + controls {list(self.config.controls)})")
        z = code[:, :self.config.latent]
        cond = self._cond(z.shape[0], label, pitch, z.device)
        if self.control_proj is not None:
            projected = self.control_proj(code[:, self.config.latent:])
            cond = projected if cond is None else torch.cat([cond, projected], dim=1)
        h = z if cond is None else torch.cat([z, cond], dim=1)
        h = self.from_latent(h).reshape(z.shape[0], *self.config.bottleneck)
        for block in self.decoder:
            h = block(h, cond)
        return torch.tanh(h) if self.config.output == "tanh" else h

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Draw ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``; shapes ``[B, latent]``."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None, pitch: torch.Tensor | None = None,
                controls: torch.Tensor | None = None, swapped_controls: torch.Tensor | None = None) -> VAEOutput:
        """Encode, sample the posterior, decode with the true ``controls`` ``[B, K]`` (teacher forcing).

        With ``swapped_controls`` ``[B, K]`` the same ``z`` is also decoded with those controls (``swapped``), for
        the control-consistency term of :mod:`trainer.objective`. Returns :class:`VAEOutput` (its ``controls``
        are the encoder's predictions, for the control loss).
        """
        h = self._trunk(x, label, pitch)
        mu, logvar = self._stats(h)
        predicted = None if self.to_controls is None else self.to_controls(h)
        z = self.reparameterize(mu, logvar)
        swapped = None
        if swapped_controls is not None:
            swapped = self.decode(self.code(z, swapped_controls), label, pitch)
        return VAEOutput(self.decode(self.code(z, controls), label, pitch), mu, logvar, z, predicted, swapped)

    def predict_controls(self, x: torch.Tensor, label: torch.Tensor | None = None,
                         pitch: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's estimate of the standardised controls of features ``[B, C, M, T]``, ``[B, K]``."""
        if self.to_controls is None:
            raise ConfigError("controls", "this model has no controls to predict")
        return self.to_controls(self._trunk(x, label, pitch))

    @torch.no_grad()
    def sample(self, n: int, label: torch.Tensor | int | None = None, pitch: torch.Tensor | int | None = None,
               *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` codes drawn from ``N(0, I)`` (controls are standardised, so the same prior fits them).

        Returns features ``[n, C, M, T]``; ``label``/``pitch`` may be one int for all draws or an int64 ``[n]``.
        """
        device = next(self.parameters()).device
        code = torch.randn(n, self.code_size, generator=generator).to(device)
        as_tensor = (lambda v: None if v is None else torch.as_tensor(v, dtype=torch.long, device=device))
        return self.decode(code, as_tensor(label), as_tensor(pitch))


def build_model(config: ModelConfig) -> VAE:
    """The model a config describes (the only constructor checkpoints use)."""
    return VAE(config)
