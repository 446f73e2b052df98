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
    return -bernoulli_nll(x, logits)


def bernoulli_nll(x: Tensor, logits: Tensor) -> Tensor:
    """-log Bern(x; sigmoid(logits)), summed per example: the cross-entropy itself."""
    return _sum_per_example(
        F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")
    )


def gaussian_log_prob(x: Tensor, mean: Tensor, log_sigma: Tensor) -> Tensor:
    """log N(x; mean, sigma^2), diagonal, summed per example."""
    z = (x.float() - mean.float()) * torch.exp(-log_sigma)
    return -_sum_per_example(0.5 * z**2 + log_sigma + 0.5 * math.log(2 * math.pi))


class Likelihood(nn.Module):
    """p(x|z) from the decoder's output: `log_prob`, `mean`; `nll`, what a loss takes."""

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        raise NotImplementedError

    def nll(self, x: Tensor, params: Tensor) -> Tensor:
        """-log p(x|z) per example (recon)."""
        return -self.log_prob(x, params)


class Bernoulli(Likelihood):
    """Decoder outputs logits; the mean is sigmoid(logits)."""

    def log_prob(self, x: Tensor, logits: Tensor) -> Tensor:
        return bernoulli_log_prob(x, logits)

    def nll(self, x: Tensor, logits: Tensor) -> Tensor:
        # Not -log_prob: two negations are two more ops each way, on a small model's every step.
        return bernoulli_nll(x, logits)

    def mean(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


class Gaussian(Likelihood):
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


def _xlogy(x: Tensor, y: Tensor) -> Tensor:
    """x log y, 0 where x is 0, with a finite gradient there too: a row of zero counts (a cell
    with no reads) has a zero library, so a zero mean, and torch's xlogy(0, 0) backpropagates
    0/0 = NaN into every weight."""
    return torch.xlogy(x, y.clamp(min=torch.finfo(y.dtype).tiny))


def poisson_log_prob(x: Tensor, rate: Tensor) -> Tensor:
    """log Poisson(x; rate), summed per example."""
    x, rate = x.float(), rate.float()
    return _sum_per_example(_xlogy(x, rate) - rate - torch.lgamma(x + 1))


def negative_binomial_log_prob(x: Tensor, mean: Tensor, log_theta: Tensor) -> Tensor:
    """log NB(x; mean, theta), summed per example: the gamma-Poisson mixture with mean `mean`
    and variance mean + mean^2 / theta (scVI's parametrisation; theta is the inverse
    dispersion)."""
    x, mean, log_theta = x.float(), mean.float(), log_theta.float()
    theta = torch.exp(log_theta)
    log_total = torch.log(theta + mean)
    return _sum_per_example(
        theta * (log_theta - log_total)
        + _xlogy(x, mean)
        - x * log_total
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


class Log1p(nn.Module):
    """log(1 + x): what a count model's encoder sees (scVI's `log_variational`), while the
    likelihood scores the raw counts."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.log1p(x)


class Counts(Likelihood):
    """Counts per feature (cells x genes), as scVI models them: the decoder outputs one logit
    per feature, softmax turns them into proportions, and the mean count is the proportion
    times the example's library size, its observed total count (an offset, not learned).
    Means without an example at hand (samples, traversals) use the training split's median
    library size, fitted before training and saved with the weights."""

    encodes_log1p = True

    def __init__(self):
        super().__init__()
        self.register_buffer("library", torch.tensor(1.0))

    def fit(self, x) -> None:
        """x: the training split, a tensor or (a sparse table) SparseRows."""
        library = x.row_sums() if hasattr(x, "row_sums") else x.flatten(1).sum(1)
        self.library.fill_(float(library.median()))

    def rate(self, x: Tensor, logits: Tensor) -> Tensor:
        library = x.float().flatten(1).sum(1).view(-1, *([1] * (logits.dim() - 1)))
        return library * torch.softmax(logits.float().flatten(1), 1).view_as(logits)

    def mean(self, logits: Tensor) -> Tensor:
        return self.library * torch.softmax(logits.float().flatten(1), 1).view_as(logits)


class Poisson(Counts):
    def log_prob(self, x: Tensor, logits: Tensor) -> Tensor:
        return poisson_log_prob(x, self.rate(x, logits))


class NegativeBinomial(Counts):
    """The Poisson's mean with one learned inverse dispersion theta per feature (scVI's
    "gene" dispersion)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.log_theta = nn.Parameter(torch.zeros(shape))

    def log_prob(self, x: Tensor, logits: Tensor) -> Tensor:
        return negative_binomial_log_prob(x, self.rate(x, logits), self.log_theta)


def make_likelihood(name: str, shape: tuple[int, ...], sigma: float) -> nn.Module:
    """One of LIKELIHOODS by name (the config checks say which exist and that sigma > 0)."""
    return {
        "bernoulli": lambda: Bernoulli(),
        "gaussian": lambda: Gaussian(sigma),
        "gaussian_learned": lambda: Gaussian(sigma, learned_shape=tuple(shape)),
        "poisson": lambda: Poisson(),
        "negative_binomial": lambda: NegativeBinomial(tuple(shape)),
    }[name]()
