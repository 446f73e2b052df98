"""The Gaussian posterior q(z|x) = N(mu(x), diag sigma^2(x)) of the VAE (Kingma & Welling 2014)."""

from torch import Tensor, nn

from vaelab.models.distributions import DiagonalGaussian


class Gaussian(nn.Module):
    """The encoder's output read as two heads, mu and log sigma^2 (2·latent_dim numbers)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    @property
    def code_dim(self) -> int:
        return 2 * self.latent_dim

    def forward(self, h: Tensor) -> DiagonalGaussian:
        mu, logvar = h.chunk(2, dim=-1)
        # exp(logvar) overflows fp16 and bf16 for logvar > 11; the bounds keep sigma in
        # [3e-7, 2e4], far outside anything a trained encoder uses.
        return DiagonalGaussian(mu, logvar.clamp(-30.0, 20.0))
