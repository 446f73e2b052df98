"""The importance-weighted autoencoder (Burda et al. 2016, "Importance Weighted Autoencoders")."""

import math

import torch
from torch import Tensor

from vaelab.config.rules import int_at_least
from vaelab.models.variational import VariationalModel


class IWAE(VariationalModel):
    """loss = -L_k, the K-sample bound

        L_k = E[log (1/K) sum_k p(x, z_k) / q(z_k|x)],   z_1..z_K ~ q(z|x),

    tighter than the ELBO (L_1) as K grows. Logged beside it as iw_elbo; recon, kl and elbo stay
    the one-sample terms of the first sample, so they compare with a VAE's.
    """

    member_arguments = VariationalModel.member_arguments

    default_monitor = ("val/iw_elbo", "max")
    rules = {"k": int_at_least(1)}

    def __init__(self, k: int = 5, **shared):
        super().__init__(**shared)
        self.k = k

    def noise(self, x: Tensor) -> tuple[Tensor, ...]:
        return (self.randn(self.k, x.shape[0], self.latent_dim),)

    def per_example(self, x: Tensor, eps: Tensor) -> dict[str, Tensor]:
        q = self.encode(x)
        z = q.from_noise(eps)  # (K, B, Z)
        p = self.prior.distribution()  # once for both: a VampPrior encodes its pseudo-inputs
        log_w, log_px_z = self.log_weights(x, q, z, p=p)  # (K, B)
        return {
            "recon": -log_px_z[0],
            **self.kl(q, z[0], p),
            "mu": q.loc,
            "logvar": q.logvar,
            "z": z[0],
            "iw_elbo": torch.logsumexp(log_w, dim=0) - math.log(len(z)),
        }

    def losses(self, out: dict[str, Tensor]) -> dict[str, Tensor | float]:
        iw_elbo = out["iw_elbo"].mean()
        return {**self.elbo_terms(out), "iw_elbo": iw_elbo, "loss": -iw_elbo}
