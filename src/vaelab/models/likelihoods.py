"""Observation models p(x|z). The decoder outputs their parameters; these turn the parameters into
log-probabilities summed over the dimensions of one example, computed in float32."""

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _sum_per_example(t: Tensor) -> Tensor:
    return t.flatten(1).sum(1)


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """log Bern(x; sigmoid(logits)), summed per example. x may be grey values in [0, 1]."""
    return -_sum_per_example(
        F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")
    )


def gaussian_log_prob(x: Tensor, mean: Tensor, log_sigma: Tensor) -> Tensor:
    """log N(x; mean, sigma^2), diagonal, summed per example."""
    z = (x.float() - mean.float()) * torch.exp(-log_sigma)
    return -_sum_per_example(0.5 * z**2 + log_sigma + 0.5 * math.log(2 * math.pi))


class Bernoulli(nn.Module):
    """Decoder outputs logits; the mean is sigmoid(logits)."""

    def log_prob(self, x: Tensor, logits: Tensor) -> Tensor:
        return bernoulli_log_prob(x, logits)

    def mean(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


class Gaussian(nn.Module):
    """Decoder outputs means. sigma is fixed (a buffer, so it travels with the checkpoint) or,
    with `learned_shape`, one learned sigma per data dimension shared by all examples."""

    # A learned sigma on a pixel that never varies (MNIST's border) would shrink to zero and
    # send the likelihood to infinity; the floor keeps the objective bounded.
    min_log_sigma = math.log(1e-3)

    def __init__(self, sigma: float, learned_shape: tuple[int, ...] | None = None):
        super().__init__()
        log_sigma = torch.full(learned_shape or (), math.log(sigma))
        if learned_shape is None:
            self.register_buffer("log_sigma", log_sigma)
        else:
            self.log_sigma = nn.Parameter(log_sigma)

    def log_prob(self, x: Tensor, mean: Tensor) -> Tensor:
        return gaussian_log_prob(x, mean, self.log_sigma.clamp(min=self.min_log_sigma))

    def mean(self, mean: Tensor) -> Tensor:
        return mean


def make_likelihood(name: str, shape: tuple[int, ...], sigma: float) -> nn.Module:
    """One of LIKELIHOODS by name (the config checks say which exist and that sigma > 0)."""
    return {
        "bernoulli": lambda: Bernoulli(),
        "gaussian": lambda: Gaussian(sigma),
        "gaussian_learned": lambda: Gaussian(sigma, learned_shape=tuple(shape)),
    }[name]()
