"""A learned mixture of Gaussians as the prior: p(z) = sum_k w_k N(mu_k, diag sigma_k^2), its
weights, means and variances trained with the model (as in pythae's and Dilokthanakul et al.
2016's GMM priors, without their extra inference network)."""

import torch
from torch import nn

from vaelab.config.rules import int_at_least
from vaelab.models.distributions import GaussianMixture
from vaelab.models.priors.base import Prior


class MixtureOfGaussians(Prior):
    """`components` Gaussians in the latent space, means drawn from N(0, I) at the start, unit
    variances, equal weights; the KL against it is estimated from the posterior's sample."""

    rules = {"components": int_at_least(1)}

    def __init__(self, latent_dim: int, components: int = 10):
        super().__init__(latent_dim)
        self.components = components
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, latent_dim))
        self.logvar = nn.Parameter(torch.zeros(components, latent_dim))

    def distribution(self) -> GaussianMixture:
        return GaussianMixture(self.logits, self.loc, self.logvar)

    def extra_repr(self) -> str:
        return f"{self.components} components in {self.latent_dim} dimensions"
