"""Encoder/decoder pairs. Each factory takes the example shape and the two code sizes and returns
`(encoder, decoder)`: the encoder maps (B, *shape) to (B, code_dim) (code_dim = 2·latent_dim for
a VAE: mean and log-variance), the decoder maps (B, latent_dim) to (B, *shape), the parameters of
p(x|z). A user's own factory with the same signature plugs in through `model.net._target_`."""

import math

from torch import nn

from vaelab.errors import ConfigError

# Lower-case names of every activation module in torch.nn: relu, sigmoid, gelu, silu, tanh, ...
_ACTIVATIONS = {name.lower(): getattr(nn, name) for name in nn.modules.activation.__all__}


def make_activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ConfigError(
            f"model.net.activation={name!r} is not a torch.nn activation; "
            f"use one of {', '.join(sorted(_ACTIVATIONS))}"
        ) from None


def _stack(sizes: list[int], act: str) -> list[nn.Module]:
    """Linear layers between consecutive sizes, each followed by the activation."""
    return [m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), make_activation(act))]


def mlp(
    input_shape: tuple[int, ...],
    code_dim: int,
    latent_dim: int,
    hidden: list[int] = (512, 256),
    activation: str = "relu",
) -> tuple[nn.Module, nn.Module]:
    """Fully connected nets; the decoder mirrors the encoder's hidden sizes."""
    hidden = list(hidden)
    if not hidden or min(hidden) < 1:
        raise ConfigError(f"model.net.hidden={hidden}: give one or more sizes >= 1")
    input_dim = math.prod(input_shape)
    encoder = nn.Sequential(
        nn.Flatten(), *_stack([input_dim, *hidden], activation), nn.Linear(hidden[-1], code_dim)
    )
    decoder = nn.Sequential(
        *_stack([latent_dim, *reversed(hidden)], activation),
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
) -> tuple[nn.Module, nn.Module]:
    """Strided convolutions, each halving the image side (kernel 4, stride 2, padding 1), then a
    hidden linear layer; the decoder mirrors it with transposed convolutions."""
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
        encoder += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), make_activation(activation)]
    encoder += [
        nn.Flatten(),
        *_stack([features, hidden], activation),
        nn.Linear(hidden, code_dim),
    ]
    decoder += [
        *_stack([latent_dim, hidden, features], activation),
        nn.Unflatten(1, (channels[-1], fh, fw)),
    ]
    reverse = list(reversed(channels))
    for cin, cout in zip(reverse, reverse[1:]):
        decoder += [
            nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1),
            make_activation(activation),
        ]
    decoder.append(nn.ConvTranspose2d(reverse[-1], c, 4, stride=2, padding=1))
    return nn.Sequential(*encoder), nn.Sequential(*decoder)
