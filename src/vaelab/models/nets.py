"""Encoder/decoder pairs. Each factory takes the example shape and the two code sizes and returns
`(encoder, decoder)`: the encoder maps (B, *shape) to (B, code_dim) (code_dim = 2·latent_dim for
a VAE: mean and log-variance), the decoder maps (B, latent_dim) to (B, *shape), the parameters of
p(x|z). A user's own factory with the same signature plugs in through `model.net._target_`."""

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from vaelab.errors import ConfigError

# Lower-case names of every activation module in torch.nn: relu, sigmoid, gelu, silu, tanh, ...
_ACTIVATIONS = {name.lower(): getattr(nn, name) for name in nn.modules.activation.__all__}


class SlopedSigmoid(nn.Module):
    """phi(x) = 1 / (1 + exp(-slope·x)): the activation of the classic artificial neuron
    phi(sum_i x_i w_i), a sigmoid of slope beta. The slope is a fixed constant, not a weight."""

    def __init__(self, slope: float):
        super().__init__()
        self.slope = float(slope)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.slope * x)

    def extra_repr(self) -> str:
        return f"slope={self.slope}"


def activation_maker(name: str, slope: float | None = None) -> Callable[[], nn.Module]:
    """What builds one activation module: a torch.nn activation by its lower-case name, or, with
    `slope`, the sigmoid of that slope."""
    if slope is not None:
        if name.lower() != "sigmoid":
            raise ConfigError(
                f"model.net.slope={slope} is the slope of the classic neuron's sigmoid, but "
                f"model.net.activation={name!r}: set model.net.activation=sigmoid, or drop "
                f"the slope"
            )
        return lambda: SlopedSigmoid(slope)
    if name.lower() not in _ACTIVATIONS:
        raise ConfigError(
            f"model.net.activation={name!r} is not a torch.nn activation; "
            f"use one of {', '.join(sorted(_ACTIVATIONS))}"
        )
    return _ACTIVATIONS[name.lower()]


def _stack(sizes: list[int], act: Callable[[], nn.Module]) -> list[nn.Module]:
    """Linear layers between consecutive sizes, each followed by the activation."""
    return [m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), act())]


def mlp(
    input_shape: tuple[int, ...],
    code_dim: int,
    latent_dim: int,
    hidden: list[int] = (512, 256),
    activation: str = "relu",
    slope: float | None = None,
) -> tuple[nn.Module, nn.Module]:
    """Fully connected nets; the decoder mirrors the encoder's hidden sizes."""
    act = activation_maker(activation, slope)
    hidden = list(hidden)
    if not hidden or min(hidden) < 1:
        raise ConfigError(f"model.net.hidden={hidden}: give one or more sizes >= 1")
    input_dim = math.prod(input_shape)
    encoder = nn.Sequential(
        nn.Flatten(), *_stack([input_dim, *hidden], act), nn.Linear(hidden[-1], code_dim)
    )
    decoder = nn.Sequential(
        *_stack([latent_dim, *reversed(hidden)], act),
        nn.Linear(hidden[0], input_dim),
        nn.Unflatten(1, tuple(input_shape)),
    )
    return encoder, decoder


def conv(
    input_shape: tuple[int, ...],
    code_dim: int,
    latent_dim: int,
    channels: list[int] = (32, 64),
    hidden: int = 256,
    activation: str = "relu",
    slope: float | None = None,
) -> tuple[nn.Module, nn.Module]:
    """Strided convolutions, each halving the image side (kernel 4, stride 2, padding 1), then a
    hidden linear layer; the decoder mirrors it with transposed convolutions."""
    act = activation_maker(activation, slope)
    channels = list(channels)
    if len(input_shape) != 3:
        raise ConfigError(
            f"model/net=conv needs images of shape (C, H, W), but the data has shape "
            f"{tuple(input_shape)}; use model/net=mlp"
        )
    c, h, w = input_shape
    scale = 2 ** len(channels)
    # Below 4x4 the last feature map is too small for a 4x4 kernel to see any structure.
    if h % scale or w % scale or h // scale < 4 or w // scale < 4:
        raise ConfigError(
            f"model/net=conv with {len(channels)} stride-2 layers needs height and width divisible "
            f"by {scale} and at least {4 * scale}, but the data is {h}x{w}; use model/net=mlp "
            f"or fewer model.net.channels"
        )
    fh, fw = h // scale, w // scale
    features = channels[-1] * fh * fw
    encoder, decoder = [], []
    for cin, cout in zip([c, *channels], channels):
        encoder += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), act()]
    encoder += [
        nn.Flatten(),
        *_stack([features, hidden], act),
        nn.Linear(hidden, code_dim),
    ]
    decoder += [
        *_stack([latent_dim, hidden, features], act),
        nn.Unflatten(1, (channels[-1], fh, fw)),
    ]
    reverse = list(reversed(channels))
    for cin, cout in zip(reverse, reverse[1:]):
        decoder += [
            nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1),
            act(),
        ]
    decoder.append(nn.ConvTranspose2d(reverse[-1], c, 4, stride=2, padding=1))
    return nn.Sequential(*encoder), nn.Sequential(*decoder)
