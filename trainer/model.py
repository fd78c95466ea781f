"""Convolutional VAE and CVAE on normalised log-mel features, and the config that rebuilds them.

The model is fully described by :class:`ModelConfig`, which is saved inside every checkpoint (``to_dict``) so a run
can be rebuilt without the code that trained it. One class, :class:`VAE`, covers both variants: with
``n_classes > 0`` and/or ``pitch_conditioning`` it is a CVAE whose condition (learned class and MIDI-pitch
embeddings) is injected into every encoder and decoder block and into the decoder's input.

Shapes: features ``x`` are ``[B, C, M, T]`` in [-1, 1]; latents ``z``, ``mu``, ``logvar`` are ``[B, latent]``;
``label`` and ``pitch`` are int64 ``[B]`` where -1 means unknown (mapped to a learned "unknown" embedding).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from runtime.errors import ConfigError, check_fields

NORMS = ("batch", "group", "none")
ACTIVATIONS = {"leaky_relu": lambda: nn.LeakyReLU(0.2), "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}
OUTPUTS = ("tanh", "none")
N_PITCHES = 128


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        _check(len(self.input_shape) == 3 and min(self.input_shape) > 0, "input_shape",
               f"must be three positive sizes (channels, bins, frames), got {self.input_shape}")
        _check(len(self.widths) > 0 and min(self.widths) > 0, "widths", f"must be positive, got {self.widths}")
        factor = 2 ** len(self.widths)
        for axis, size in zip(("bins", "frames"), self.input_shape[1:]):
            _check(size % factor == 0, "widths",
                   f"{len(self.widths)} stride-2 blocks need {axis} divisible by {factor}, got {size}")
        _check(self.kernel >= 2, "kernel", f"must be >= 2, got {self.kernel}")
        _check(self.norm in NORMS, "norm", f"must be one of {NORMS}, got {self.norm!r}")
        _check(self.activation in ACTIVATIONS, "activation",
               f"must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}")
        _check(self.output in OUTPUTS, "output", f"must be one of {OUTPUTS}, got {self.output!r}")
        _check(self.latent > 0, "latent", f"must be positive, got {self.latent}")
        _check(self.n_classes >= 0, "n_classes", f"must be >= 0, got {self.n_classes}")
        _check(self.class_dim > 0 and self.pitch_dim > 0, "class_dim", "embedding sizes must be positive")

    @property
    def conditional(self) -> bool:
        """True for a CVAE (class and/or pitch conditioning)."""
        return self.n_classes > 0 or self.pitch_conditioning

    @property
    def cond_dim(self) -> int:
        """Size of the concatenated condition vector (0 for a plain VAE)."""
        return (self.class_dim if self.n_classes else 0) + (self.pitch_dim if self.pitch_conditioning else 0)

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
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown fields are refused by name."""
        return cls(**check_fields(data, cls, where="model"))


def _check(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"model.{name}", problem)


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
    """Result of :meth:`VAE.forward`: reconstruction ``[B, C, M, T]`` and ``mu``, ``logvar``, ``z`` ``[B, latent]``."""

    recon: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor


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

    def __init__(self, c_in: int, c_out: int, config: ModelConfig, *, up: bool, last: bool = False) -> None:
        super().__init__()
        k = config.kernel
        pad = (k - 1) // 2
        if up:
            self.conv = nn.ConvTranspose2d(c_in, c_out, k, stride=2, padding=pad, output_padding=k % 2)
        else:
            self.conv = nn.Conv2d(c_in, c_out, k, stride=2, padding=pad)
        self.cond = nn.Linear(config.cond_dim, c_out) if config.cond_dim and not last else None
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
    if values.numel() and (values.max() >= unknown):
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
        self.condition = Condition(config)
        self.encoder = nn.ModuleList(
            Block(c_in, c_out, config, up=False) for c_in, c_out in zip((channels,) + widths[:-1], widths))
        self.to_stats = nn.Linear(flat + config.cond_dim, 2 * config.latent)
        self.from_latent = nn.Linear(config.latent + config.cond_dim, flat)
        back = widths[::-1]
        outs = back[1:] + (channels,)
        self.decoder = nn.ModuleList(
            Block(c_in, c_out, config, up=True, last=i == len(back) - 1)
            for i, (c_in, c_out) in enumerate(zip(back, outs)))

    def _cond(self, batch: int, label: torch.Tensor | None, pitch: torch.Tensor | None,
              device: torch.device) -> torch.Tensor | None:
        return self.condition(batch, label, pitch, device)

    def encode(self, x: torch.Tensor, label: torch.Tensor | None = None,
               pitch: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[B, C, M, T]`` -> posterior ``mu``, ``logvar`` ``[B, latent]``."""
        cond = self._cond(x.shape[0], label, pitch, x.device)
        h = x
        for block in self.encoder:
            h = block(h, cond)
        h = h.flatten(1)
        if cond is not None:
            h = torch.cat([h, cond], dim=1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, label: torch.Tensor | None = None,
               pitch: torch.Tensor | None = None) -> torch.Tensor:
        """Latents ``[B, latent]`` -> features ``[B, C, M, T]`` (in [-1, 1] with ``output="tanh"``)."""
        cond = self._cond(z.shape[0], label, pitch, z.device)
        h = z if cond is None else torch.cat([z, cond], dim=1)
        h = self.from_latent(h).reshape(z.shape[0], *self.config.bottleneck)
        for block in self.decoder:
            h = block(h, cond)
        return torch.tanh(h) if self.config.output == "tanh" else h

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Draw ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``; shapes ``[B, latent]``."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None,
                pitch: torch.Tensor | None = None) -> VAEOutput:
        """Encode, sample the posterior, decode. Returns :class:`VAEOutput`."""
        mu, logvar = self.encode(x, label, pitch)
        z = self.reparameterize(mu, logvar)
        return VAEOutput(self.decode(z, label, pitch), mu, logvar, z)

    @torch.no_grad()
    def sample(self, n: int, label: torch.Tensor | int | None = None, pitch: torch.Tensor | int | None = None,
               *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` draws from the prior ``N(0, I)``; returns features ``[n, C, M, T]``.

        ``label``/``pitch`` may be one int for all draws or an int64 ``[n]`` tensor.
        """
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent, generator=generator).to(device)
        as_tensor = (lambda v: None if v is None else torch.as_tensor(v, dtype=torch.long, device=device))
        return self.decode(z, as_tensor(label), as_tensor(pitch))


def build_model(config: ModelConfig) -> VAE:
    """The model a config describes (the only constructor checkpoints use)."""
    return VAE(config)
