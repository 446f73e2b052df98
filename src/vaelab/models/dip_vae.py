"""DIP-VAE (Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts from
Unlabeled Observations"): the VAE's loss plus a penalty that pushes a covariance of the codes
towards the identity."""

import torch
from torch import Tensor

from vaelab.config.rules import number, one_of, or_null
from vaelab.models.kl_weighted import WeightedKL
from vaelab.models.posteriors import Gaussian
from vaelab.models.priors import StandardNormal
from vaelab.models.variational import VariationalModel


def covariance(mu: Tensor) -> Tensor:
    """Cov_p(x)[mu(x)] over the batch, (Z, Z): E[mu mu^T] - E[mu] E[mu]^T (divided by B, as
    disentanglement_lib computes it)."""
    mu = mu.float()
    mean = mu.mean(0)
    return (mu[:, :, None] * mu[:, None, :]).mean(0) - mean[:, None] * mean[None, :]


class DIPVAE(WeightedKL, VariationalModel):
    """loss = recon + beta·kl + lambda_od·sum_{i!=j} C_ij^2 + lambda_d·sum_i (C_ii - 1)^2, with
    C = Cov_p(x)[mu(x)] (type i) or C = E_p(x)[diag sigma^2(x)] + Cov_p(x)[mu(x)],
    the covariance of the aggregate posterior (type ii), estimated on the batch. lambda_d
    defaults to 10·lambda_od for type i and lambda_od for type ii (disentanglement_lib's
    convention). Logged: `dip_od` and `dip_d`, the two sums before their weights.
    """

    batch_statistic = "covariance of the posterior means"
    member_arguments = WeightedKL.member_arguments | {"dip_type", "lambda_od", "lambda_d"}
    rules = {
        "dip_type": one_of("i", "ii"),
        "lambda_od": number(positive=False),
        "lambda_d": or_null(number(positive=False)),
    }

    def __init__(
        self,
        dip_type: str = "i",
        lambda_od: float = 10.0,
        lambda_d: float | None = None,
        **vae,
    ):
        super().__init__(**vae)
        self.dip_type, self.lambda_od = dip_type, lambda_od
        self.lambda_d = (
            lambda_d if lambda_d is not None else (10.0 if dip_type == "i" else 1.0) * lambda_od
        )

    @classmethod
    def check_components(cls, prior: type, posterior: type, arguments) -> None:
        super().check_components(prior, posterior, arguments)
        if not issubclass(prior, StandardNormal):
            raise cls.refuse(prior, "its penalty pulls the codes' covariance to N(0, I)'s")
        if not issubclass(posterior, Gaussian):
            raise cls.refuse(
                posterior, "its penalty reads a Gaussian posterior's mean and variance"
            )

    def losses(self, out: dict[str, Tensor]) -> dict[str, Tensor | float]:
        terms = super().losses(out)
        c = covariance(out["mu"])
        if self.dip_type == "ii":
            c = c + torch.diag(out["logvar"].float().exp().mean(0))
        diagonal = torch.diagonal(c)
        off = (c - torch.diag(diagonal)).pow(2).sum()
        on = (diagonal - 1.0).pow(2).sum()
        terms.update(
            dip_od=off, dip_d=on, loss=terms["loss"] + self.lambda_od * off + self.lambda_d * on
        )
        return terms
