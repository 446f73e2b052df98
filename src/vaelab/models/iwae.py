"""The importance-weighted autoencoder (Burda et al. 2016, "Importance Weighted Autoencoders")."""

import math

import torch
from torch import Tensor

from vaelab.metrics.likelihood import log_normal
from vaelab.models.gaussian import GaussianPosterior, kl_per_dimension


class IWAE(GaussianPosterior):
    """loss = -L_k, the K-sample bound

        L_k = E[log (1/K) sum_k p(x, z_k) / q(z_k|x)],   z_1..z_K ~ q(z|x),

    tighter than the ELBO (L_1) as K grows. Logged beside it as iw_elbo; recon, kl and elbo stay
    the one-sample terms of the first sample, so they compare with a VAE's.
    """

    default_monitor = ("val/iw_elbo", "max")

    def __init__(self, k: int = 5, **shared):
        super().__init__(**shared)
        self.k = k

    def noise(self, x: Tensor) -> tuple[Tensor, ...]:
        return (self.randn(self.k, x.shape[0], self.latent_dim),)

    def per_example(self, x: Tensor, eps: Tensor) -> dict[str, Tensor]:
        k, b = eps.shape[:2]
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps  # (K, B, Z)
        params = self.decode(z.flatten(0, 1))  # (K·B, *shape)
        log_px_z = self.likelihood.log_prob(x.repeat(k, *[1] * (x.dim() - 1)), params).view(k, b)
        mu32, logvar32, z32 = mu.float(), logvar.float(), z.float()
        log_pz = log_normal(z32, torch.zeros_like(z32), torch.zeros_like(z32)).sum(-1)
        log_w = log_px_z + log_pz - log_normal(z32, mu32, logvar32).sum(-1)  # (K, B)
        return {
            "recon": -log_px_z[0],
            "kl_dims": kl_per_dimension(mu, logvar),
            "mu": mu,
            "logvar": logvar,
            "z": z[0],
            "iw_elbo": torch.logsumexp(log_w, dim=0) - math.log(k),
        }

    def losses(self, out: dict[str, Tensor]) -> dict[str, Tensor | float]:
        iw_elbo = out["iw_elbo"].mean()
        return {**self.elbo_terms(out), "iw_elbo": iw_elbo, "loss": -iw_elbo}
