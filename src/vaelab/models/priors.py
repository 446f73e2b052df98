"""Priors p(z) a model can generate from."""

import torch
from torch import Tensor


class StandardNormalPrior:
    """p(z) = N(0, I): `sample(n)` decodes draws of it. Mixed into a model class before its base,
    e.g. `class WAE(StandardNormalPrior, AutoEncoder)`."""

    has_prior = True

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of the mean of p(x|z), z ~ N(0, I). A generator of its own keeps picture-making
        from moving the training random stream."""
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device, self.dtype)
        return self.likelihood.mean(self.decode(z))
