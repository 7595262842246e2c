"""Encoder and decoder networks: multilayer perceptrons and convolutional nets for images.

Every network here maps a batch to a flat (batch, out_features) output: an encoder's output is the
(mean, log-scale) pair of q(z | x) concatenated, a decoder's is the natural parameter of p(x | z)
for every pixel (logits, means or log-rates), flattened. Image-shaped inputs are (C, H, W); any
H and W work (the convolutional decoder crops its last layer to the input's size).
"""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"softplus": nn.Softplus, "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


def mlp(
    in_features: int, hidden_sizes, out_features: int, activation: str = "softplus"
) -> nn.Sequential:
    """A fully connected net: Linear, activation, ..., Linear (no activation on the output)."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden_sizes:
        layers += [nn.Linear(width, int(h)), ACTIVATIONS[activation]()]
        width = int(h)
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class Flatten(nn.Module):
    """Flatten every dimension after the batch one (images to vectors for an MLP encoder)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


def _halved(size: int, times: int) -> int:
    for _ in range(times):
        size = math.ceil(size / 2)
    return size


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions (32 and 64 channels), then an MLP to ``out_features``."""

    def __init__(self, image_shape, out_features: int, hidden_sizes=(200,), activation="softplus"):
        super().__init__()
        c, h, w = image_shape
        if min(h, w) < 4:
            raise ValueError(
                f"encoder='conv' needs images of at least 4x4 pixels; got {h}x{w}. Use "
                f"encoder='mlp'."
            )
        act = ACTIVATIONS[activation]
        self.conv = nn.Sequential(
            nn.Conv2d(c, 32, 4, stride=2, padding=1),
            act(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            act(),
        )
        with torch.no_grad():
            n_flat = self.conv(torch.zeros(1, c, h, w)).numel()
        self.head = mlp(n_flat, hidden_sizes, out_features, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).flatten(1))


class ConvDecoder(nn.Module):
    """An MLP to a (64, H/4, W/4) map, then two stride-2 transposed convolutions up to (C, H, W)."""

    def __init__(self, latent_dim: int, image_shape, hidden_sizes=(200,), activation="softplus"):
        super().__init__()
        c, h, w = image_shape
        self.image_shape = (c, h, w)
        self.h4, self.w4 = _halved(h, 2), _halved(w, 2)
        act = ACTIVATIONS[activation]
        self.head = nn.Sequential(
            mlp(latent_dim, hidden_sizes, 64 * self.h4 * self.w4, activation), act()
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            act(),
            nn.ConvTranspose2d(32, c, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c, h, w = self.image_shape
        out = self.deconv(self.head(z).reshape(-1, 64, self.h4, self.w4))
        return out[:, :, :h, :w].reshape(z.shape[0], -1)


def build_encoder(kind, input_shape, latent_out: int, hidden_sizes, activation: str) -> nn.Module:
    """The encoder for ``kind`` ('mlp', 'conv' or a user's module, used as given)."""
    if isinstance(kind, nn.Module):
        return kind
    d = math.prod(input_shape)
    if kind == "mlp":
        return nn.Sequential(Flatten(), mlp(d, hidden_sizes, latent_out, activation))
    return ConvEncoder(
        image_shape(input_shape, "encoder"), latent_out, hidden_sizes[-1:] or (200,), activation
    )


def build_decoder(kind, input_shape, latent_dim: int, hidden_sizes, activation: str) -> nn.Module:
    """The decoder for ``kind``; its output is flattened to (batch, prod(input_shape))."""
    if isinstance(kind, nn.Module):
        return kind
    d = math.prod(input_shape)
    if kind == "mlp":
        return mlp(latent_dim, tuple(reversed(hidden_sizes)), d, activation)
    return ConvDecoder(
        latent_dim, image_shape(input_shape, "decoder"), hidden_sizes[-1:] or (200,), activation
    )


def image_shape(input_shape, role: str) -> tuple[int, int, int]:
    """(C, H, W) of an input shape (H, W) or (C, H, W); an error for flat data."""
    if len(input_shape) == 2:
        return (1, *input_shape)
    if len(input_shape) == 3:
        return tuple(input_shape)
    raise ValueError(
        f"{role}='conv' needs image-shaped data, (n_samples, H, W) or (n_samples, C, H, W); got "
        f"samples of shape {tuple(input_shape)}. Reshape the data to images, or use {role}='mlp'."
    )
