"""The inverse autoregressive flow posterior (Kingma et al. 2016, "Improved Variational Inference
with Inverse Autoregressive Flow"): a Gaussian sample z_0 = mu + sigma·eps carried through T
autoregressive steps

    [m_t, s_t] = MADE_t(z_{t-1}, c),   sigma_t = sigmoid(s_t),
    z_t = sigma_t·z_{t-1} + (1 - sigma_t)·m_t,

with c a context vector the encoder gives beside (mu, log sigma^2), and the density by the change
of variables: log q(z_T|x) = log N(z_0; mu, sigma^2) - sum_t sum_i log sigma_t,i (each step's
Jacobian is triangular, its diagonal sigma_t). Dimensions are taken in reverse order at every
other step."""

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints
from torch.nn import functional as F

from vaelab.config.rules import int_at_least
from vaelab.models.distributions import ONE_DRAW, DiagonalGaussian


class _MaskedLinear(nn.Linear):
    def __init__(self, mask: Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class IAFStep(nn.Module):
    """One autoregressive step: m_i and s_i depend on z_j for the dimensions j before i in the
    step's order, and on the context; sigma starts near sigmoid(1.5) ~ 0.82 so the flow starts
    close to the identity (the paper's forget-gate bias)."""

    def __init__(self, dim: int, hidden: int, context: int, reverse: bool):
        super().__init__()
        order = torch.arange(dim).flip(0) if reverse else torch.arange(dim)  # position of z_i
        hidden_degree = torch.arange(hidden) % max(dim - 1, 1)  # each unit sees z_order<=degree
        first = (hidden_degree[:, None] >= order[None, :]).float()  # (H, D)
        out = (order[:, None] > hidden_degree[None, :]).float()  # (D, H)
        self.first = _MaskedLinear(first)
        self.context = nn.Linear(context, hidden, bias=False) if context else None
        self.m = _MaskedLinear(out)
        self.s = _MaskedLinear(out)
        nn.init.constant_(self.s.bias, 1.5)

    def shift_and_gate(self, z: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.first(z)
        if self.context is not None:
            h = h + self.context(c)
        h = F.elu(h)
        return self.m(h), torch.sigmoid(self.s(h))

    def forward(self, z: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        """z_t and log sigma_t summed over the dimensions."""
        m, sigma = self.shift_and_gate(z, c)
        return sigma * z + (1 - sigma) * m, torch.log(sigma).sum(-1)

    def inverse(self, z_t: Tensor, c: Tensor | None) -> Tensor:
        """z_{t-1} from z_t: dimension by dimension in the step's order, which D passes of the
        fixed-point update settle exactly (pass i fixes the i-th dimension of the order)."""
        z = z_t
        for _ in range(z_t.shape[-1]):
            m, sigma = self.shift_and_gate(z, c)
            z = (z_t - (1 - sigma) * m) / sigma
        return z


class FlowPosterior(Distribution):
    """q(z|x) of an IAF: the base Gaussian, the context and the steps. `from_noise(eps)` gives z
    and keeps its log-density, which `log_prob` returns for that z; any other z is inverted
    through the steps first (D network passes per step: fine for tests and a few points)."""

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, base: DiagonalGaussian, context: Tensor | None, steps: nn.ModuleList):
        self.base, self.context, self.steps = base, context, steps
        self._batch_shape, self._event_shape = base.batch_shape, base.event_shape
        self._validate_args = False
        self._drawn: tuple[Tensor, Tensor] | None = None  # (z, log q(z|x)) of the last draw

    def _flow(self, z0: Tensor) -> tuple[Tensor, Tensor]:
        z, log_det = z0, 0.0
        c = self.context
        if c is not None and z0.dim() > c.dim():
            c = c.expand(*z0.shape[:-1], c.shape[-1])
        for step in self.steps:
            z, log_sigma = step(z, c)
            log_det = log_det + log_sigma
        return z, log_det

    def from_noise(self, eps: Tensor) -> Tensor:
        z0 = self.base.from_noise(eps)
        z, log_det = self._flow(z0)
        self._drawn = (z, self.base.log_prob(z0) - log_det.float())
        return z

    def rsample(self, sample_shape=ONE_DRAW) -> Tensor:
        shape = self._extended_shape(sample_shape)
        loc = self.base.loc
        return self.from_noise(torch.randn(shape, dtype=loc.dtype, device=loc.device))

    def log_prob(self, z: Tensor) -> Tensor:
        if self._drawn is not None and z is self._drawn[0]:
            return self._drawn[1]
        c = self.context
        if c is not None and z.dim() > c.dim():
            c = c.expand(*z.shape[:-1], c.shape[-1])
        z0, log_det = z, 0.0
        for step in reversed(self.steps):
            z0 = step.inverse(z0, c)
        _, log_det = self._flow(z0)
        return self.base.log_prob(z0) - log_det.float()

    @property
    def mean(self) -> Tensor:
        """The flow at the base mean: what `embed` gives (q's true mean has no closed form)."""
        return self._flow(self.base.loc)[0]

    @property
    def loc(self) -> Tensor:
        return self.mean

    @property
    def logvar(self) -> Tensor:
        return self.base.logvar


class IAF(nn.Module):
    """q(z|x) with `flows` IAF steps of `hidden` units over a Gaussian, conditioned on a context
    of `context` numbers from the encoder. The encoder gives 2·latent_dim + context outputs."""

    rules = {
        "flows": int_at_least(1),
        "hidden": int_at_least(0),  # 0: 2 * latent_dim
        "context": int_at_least(0),
    }

    def __init__(self, latent_dim: int, flows: int = 2, hidden: int = 0, context: int = 0):
        super().__init__()
        self.latent_dim, self.context = latent_dim, context
        hidden = hidden or 2 * latent_dim
        self.steps = nn.ModuleList(
            IAFStep(latent_dim, hidden, context, reverse=bool(t % 2)) for t in range(flows)
        )

    @property
    def code_dim(self) -> int:
        return 2 * self.latent_dim + self.context

    def forward(self, h: Tensor) -> FlowPosterior:
        d = self.latent_dim
        mu, logvar, c = h[..., :d], h[..., d : 2 * d], h[..., 2 * d :]
        base = DiagonalGaussian(mu, logvar.clamp(-30.0, 20.0))
        return FlowPosterior(base, c if self.context else None, self.steps)
