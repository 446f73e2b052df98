"""The Wasserstein autoencoder with the MMD penalty (Tolstikhin et al. 2018, "Wasserstein
Auto-Encoders")."""

from collections.abc import Sequence

from torch import Tensor

from vaelab.models.autoencoder import AutoEncoder
from vaelab.models.mmd import MMD_RULES, SCALES, mmd
from vaelab.models.priors import StandardNormal


class WAE(AutoEncoder):
    """A deterministic encoder z = encode(x); loss = recon + lambda_mmd·MMD(q(z), p(z)), p(z) =
    N(0, I), the MMD between the batch's codes and as many prior draws (vaelab.models.mmd; the
    paper's IMQ kernel by default). The reconstruction cost is the likelihood's -log p(x|z) (the
    paper's squared error is the Gaussian likelihood's, up to its scale). Generates from the
    prior. Logged: `mmd`.
    """

    batch_statistic = "MMD between the codes and prior draws"
    has_prior = True
    rules = MMD_RULES
    member_arguments = AutoEncoder.member_arguments | {"lambda_mmd"}  # the kernel: per_example

    def __init__(
        self,
        lambda_mmd: float = 10.0,
        kernel: str = "imq",
        kernel_scales: Sequence[float] = SCALES,
        **shared,
    ):
        super().__init__(**shared)
        self.lambda_mmd = lambda_mmd
        self.prior = StandardNormal(self.latent_dim)  # what `noise` draws from
        self.kernel, self.kernel_scales = kernel, tuple(kernel_scales)

    def noise(self, x: Tensor) -> tuple[Tensor, ...]:
        return (self.randn(x.shape[0], self.latent_dim),)

    def per_example(self, x: Tensor, prior_z: Tensor) -> dict[str, Tensor]:
        z = self.encode(x)
        recon = self.decode(z).nll(x)
        # A statistic of the batch, not of one example.
        return {"recon": recon, "mmd": mmd(z, prior_z, self.kernel, self.kernel_scales)}

    def losses(self, out: dict[str, Tensor]) -> dict[str, Tensor | float]:
        recon = out["recon"].mean()
        return {"loss": recon + self.lambda_mmd * out["mmd"], "recon": recon, "mmd": out["mmd"]}
