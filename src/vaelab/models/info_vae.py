"""InfoVAE with the MMD divergence (Zhao et al. 2019, "InfoVAE: Balancing Learning and Inference
in Variational Autoencoders")."""

import math
from collections.abc import Sequence

from torch import Tensor

from vaelab.models.mmd import MMD_RULES, SCALES, mmd
from vaelab.models.priors import StandardNormal
from vaelab.models.variational import VariationalModel


def _at_most_one(value) -> str | None:
    """alpha: 1 - alpha weighs the KL, which must not turn into a reward."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "must be a finite number"
    return None if value <= 1 else "must be <= 1 (1 - alpha weighs the KL)"


class InfoVAE(VariationalModel):
    """loss = recon + (1 - alpha)·kl + (alpha + lambda_mmd - 1)·MMD(q(z), p(z)): the paper's
    objective with its divergence between the aggregate posterior and the prior taken as the MMD
    (vaelab.models.mmd) between the batch's samples z and as many draws of N(0, I). alpha trades
    the mutual information between x and z (alpha < 1 keeps some KL pressure per example);
    lambda_mmd weighs the marginal match. Logged: `mmd`.
    """

    batch_statistic = "MMD between the codes and prior draws"
    rules = {"alpha": _at_most_one, **MMD_RULES}
    member_arguments = VariationalModel.member_arguments | {"alpha", "lambda_mmd"}

    def __init__(
        self,
        alpha: float = 0.0,
        lambda_mmd: float = 1000.0,
        kernel: str = "imq",
        kernel_scales: Sequence[float] = SCALES,
        **shared,
    ):
        super().__init__(**shared)
        self.alpha, self.lambda_mmd = alpha, lambda_mmd
        self.kernel, self.kernel_scales = kernel, tuple(kernel_scales)

    @classmethod
    def check_components(cls, prior: type, posterior: type, arguments) -> None:
        super().check_components(prior, posterior, arguments)
        if not issubclass(prior, StandardNormal):  # the draws in `noise` are N(0, I)'s
            raise cls.refuse(prior, "its MMD compares the codes with draws of N(0, I)")

    def noise(self, x: Tensor) -> tuple[Tensor, ...]:
        return (*super().noise(x), self.randn(x.shape[0], self.latent_dim))

    def per_example(self, x: Tensor, eps: Tensor, prior_z: Tensor) -> dict[str, Tensor]:
        out = super().per_example(x, eps)
        # A statistic of the batch, not of one example: the same value for all.
        return out | {"mmd": mmd(out["z"], prior_z, self.kernel, self.kernel_scales)}

    def losses(self, out: dict[str, Tensor]) -> dict[str, Tensor | float]:
        terms = self.elbo_terms(out)
        divergence = out["mmd"]
        loss = (
            terms["recon"]
            + (1.0 - self.alpha) * terms["kl"]
            + (self.alpha + self.lambda_mmd - 1.0) * divergence
        )
        return {**terms, "mmd": divergence, "loss": loss}
