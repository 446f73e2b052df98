"""The distributions a model hands out: q(z|x) from `encode`, p(z) from a prior, p(x|z) from
`decode`. They are `torch.distributions.Distribution`s whose event is one latent vector or one
example, so `log_prob` gives one number per example, for any leading shape of samples.

Argument validation is off: the training path builds several of these per step, and torch's
checks would read tensors back from the device on every one.
"""

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints, register_kl

_LOG_2PI = math.log(2 * math.pi)
ONE_DRAW = torch.Size()  # one draw


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, exp(logvar)) per dimension (broadcast, not summed)."""
    return -0.5 * ((z - mu) ** 2 * torch.exp(-logvar) + logvar + _LOG_2PI)


def kl_per_dimension(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu_j, exp(logvar_j)) || N(0, 1)) in closed form, per example and latent: (B, Z).

    Computed in float32: under bf16 autocast exp(logvar) loses the precision the KL needs.
    """
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


class DiagonalGaussian(Distribution):
    """N(loc, diag exp(logvar)) over the last dimension: batch shape loc.shape[:-1], event shape
    (D,). Log-densities are computed in float32 whatever the parameters' dtype. `standard` marks
    N(0, I), whose KL has the short closed form."""

    arg_constraints = {"loc": constraints.real, "logvar": constraints.real}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, logvar: Tensor, standard: bool = False):
        self.loc, self.logvar, self.standard = loc, logvar, standard
        # Distribution.__init__ without its checks: built on every training step.
        self._batch_shape, self._event_shape = loc.shape[:-1], loc.shape[-1:]
        self._validate_args = False

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return self.logvar.exp().expand_as(self.loc)

    def from_noise(self, eps: Tensor) -> Tensor:
        """The reparameterised sample loc + sigma·eps for standard normal noise eps of shape
        (*sample_shape, *batch_shape, D): the noise is drawn by the caller (outside a compiled
        graph, from the generator it chooses)."""
        return self.loc + torch.exp(0.5 * self.logvar) * eps

    def rsample(self, sample_shape=ONE_DRAW) -> Tensor:
        shape = self._extended_shape(sample_shape)
        return self.from_noise(torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device))

    @torch.no_grad()
    def sample(self, sample_shape=ONE_DRAW, generator: torch.Generator | None = None) -> Tensor:
        """Draws without a gradient; with a generator (on the CPU), drawn from it and moved to
        the parameters' device."""
        if generator is None:
            return self.rsample(sample_shape)
        eps = torch.randn(self._extended_shape(sample_shape), generator=generator)
        return self.from_noise(eps.to(self.loc.device, self.loc.dtype))

    def log_prob(self, z: Tensor) -> Tensor:
        return log_normal(z.float(), self.loc.float(), self.logvar.float()).sum(-1)

    def entropy(self) -> Tensor:
        return 0.5 * (self.logvar.float() + 1.0 + _LOG_2PI).sum(-1).expand(self.batch_shape)

    def kl_per_dimension(self, p: "DiagonalGaussian") -> Tensor:
        """KL(self || p) per latent dimension, (*batch_shape, D), in closed form."""
        if p.standard:
            return kl_per_dimension(self.loc, self.logvar)
        mu, logvar = self.loc.float(), self.logvar.float()
        p_mu, p_logvar = p.loc.float(), p.logvar.float()
        return 0.5 * (p_logvar - logvar + (logvar.exp() + (mu - p_mu) ** 2) / p_logvar.exp() - 1)


@register_kl(DiagonalGaussian, DiagonalGaussian)
def _kl_diagonal_gaussians(q: DiagonalGaussian, p: DiagonalGaussian) -> Tensor:
    return q.kl_per_dimension(p).sum(-1)


class GaussianMixture(Distribution):
    """sum_k w_k N(loc_k, diag exp(logvar_k)) over the last dimension: K components of D
    dimensions, weights from `logits` (K,). A mixture has no reparameterised sample."""

    arg_constraints = {}
    support = constraints.real_vector

    def __init__(self, logits: Tensor, loc: Tensor, logvar: Tensor):
        self.logits, self.loc, self.logvar = logits, loc, logvar
        super().__init__(torch.Size(), loc.shape[-1:], validate_args=False)

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) for z of shape (..., D): (...)."""
        z = z.float()[..., None, :]  # (..., 1, D) against (K, D)
        log_components = log_normal(z, self.loc.float(), self.logvar.float()).sum(-1)
        return torch.logsumexp(log_components + self.logits.float().log_softmax(0), dim=-1)

    def sample(self, sample_shape=ONE_DRAW, generator: torch.Generator | None = None):
        """Draws of the mixture; with a generator (on the CPU), drawn from it and moved to the
        parameters' device."""
        n = math.prod(sample_shape)
        weights = self.logits.detach().float().softmax(0).cpu()
        picks = torch.multinomial(weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.loc.shape[-1], generator=generator)
        picks, eps = picks.to(self.loc.device), eps.to(self.loc.device)
        z = self.loc[picks] + torch.exp(0.5 * self.logvar[picks]) * eps.to(self.loc.dtype)
        return z.detach().reshape(*sample_shape, -1)

    @property
    def mean(self) -> Tensor:
        return (self.logits.softmax(0)[:, None] * self.loc).sum(0)

    @property
    def variance(self) -> Tensor:
        w = self.logits.softmax(0)[:, None]
        second = (w * (self.logvar.exp() + self.loc**2)).sum(0)
        return second - self.mean**2


class Observation(Distribution):
    """p(x|z) from the decoder's output `params` (*batch_shape, *event_shape) and a likelihood
    (vaelab.models.likelihoods): `log_prob(x)` for examples x of the event shape, broadcast over
    the batch shape (x (B, ...) against params (K, B, ...) gives (K, B)), and `mean`."""

    arg_constraints = {}

    def __init__(self, likelihood, params: Tensor, event_dims: int):
        self.likelihood, self.params = likelihood, params
        cut = params.dim() - event_dims
        self._batch_shape, self._event_shape = params.shape[:cut], params.shape[cut:]
        self._validate_args = False

    def _rows(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x and the parameters as rows of one example each (the likelihoods' layout), x
        repeated over leading samples."""
        rows = self.params.reshape(-1, *self.event_shape)
        return x.expand(self.params.shape).reshape(rows.shape), rows

    def _as_rows(self, x: Tensor) -> bool:
        """Whether x and the parameters are already rows of one example each: the training path,
        with nothing to reshape."""
        return len(self.batch_shape) == 1 and x.shape == self.params.shape

    def log_prob(self, x: Tensor) -> Tensor:
        if self._as_rows(x):
            return self.likelihood.log_prob(x, self.params)
        return self.likelihood.log_prob(*self._rows(x)).view(self.batch_shape)

    def nll(self, x: Tensor) -> Tensor:
        """-log_prob(x), as one computation where the likelihood has it (the cross-entropy)."""
        if self._as_rows(x):
            return self.likelihood.nll(x, self.params)
        return self.likelihood.nll(*self._rows(x)).view(self.batch_shape)

    @property
    def mean(self) -> Tensor:
        rows = self.params.reshape(-1, *self.event_shape)
        return self.likelihood.mean(rows).view(self.params.shape)
