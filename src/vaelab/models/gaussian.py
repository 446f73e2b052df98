"""What every model with a Gaussian posterior q(z|x) = N(mu(x), diag sigma^2(x)) and the prior
N(0, I) shares: the encoder's two heads, the reparameterised sample, the ELBO's terms, sampling,
and what validation and test measure of the latent space."""

import math

import torch
from torch import Tensor

from vaelab.data.batches import num_examples
from vaelab.metrics import ActiveUnits, ImportanceWeightedNLL, KLPerDimension, iw_log_likelihood
from vaelab.models.aggregate_posterior import kl_split
from vaelab.models.base import Model
from vaelab.models.priors import StandardNormalPrior


def kl_per_dimension(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu_j, exp(logvar_j)) || N(0, 1)) in closed form, per example and latent: (B, Z).

    Computed in float32: under bf16 autocast exp(logvar) loses the precision the KL needs.
    """
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(q(z|x) || N(0, I)) summed over latents: (B, Z) -> (B,)."""
    return kl_per_dimension(mu, logvar).sum(1)


class GaussianPosterior(StandardNormalPrior, Model):
    """z = mu + sigma·eps with eps ~ N(0, I) drawn outside the network math (`noise`), so that a
    compiled graph holds no random generator. `per_example` gives recon = -log p(x|z) for one
    sample, the KL per dimension, mu, logvar and z; `elbo_terms` their batch means and the ELBO.

    Validation and test also log active_units, the KL per dimension (val/kl_dimNN) and the KL
    split into mi, tc and dim_kl (minibatch stratified sampling over the split being evaluated);
    test adds nll_iw with `iw_samples` importance samples, and bpd with `report_bpd`.
    """

    codes_per_latent = 2
    default_monitor = ("val/elbo", "max")  # beta-free, so runs with different beta compare

    def __init__(self, iw_samples: int = 100, report_bpd: bool = False, **shared):
        super().__init__(**shared)
        self.iw_samples, self.report_bpd = iw_samples, report_bpd
        self._iw_generator: torch.Generator | None = None  # the IWAE bound's K samples
        self._split_size: int | None = None  # examples in the split being evaluated
        z = self.latent_dim
        self.val_active_units, self.test_active_units = ActiveUnits(z), ActiveUnits(z)
        self.val_kl_per_dim = KLPerDimension(z)
        self.test_nll_iw = ImportanceWeightedNLL()

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, *shape) -> (mu, logvar), each (B, latent_dim)."""
        return self.posterior(self.encoder(x))

    def posterior(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """The encoder's output (B, 2·latent_dim) as (mu, logvar)."""
        mu, logvar = h.chunk(2, dim=1)
        # exp(logvar) overflows fp16 and bf16 for logvar > 11; the bounds keep sigma in
        # [3e-7, 2e4], far outside anything a trained encoder uses.
        return mu, logvar.clamp(-30.0, 20.0)

    def embed(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The posterior mean E_q[z|x], (B, latent_dim): the representation of x."""
        return self.encode(x, y)[0]

    def noise(self, x: Tensor) -> tuple[Tensor, ...]:
        return (self.randn(x.shape[0], self.latent_dim),)

    def per_example(self, x: Tensor, eps: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        mu, logvar = self.encode(x, y)
        z = mu + torch.exp(0.5 * logvar) * eps
        recon = self.likelihood.nll(x, self.decode(z, y))
        kl_dims = kl_per_dimension(mu, logvar)
        return {"recon": recon, "kl_dims": kl_dims, "mu": mu, "logvar": logvar, "z": z}

    def elbo_terms(self, out: dict[str, Tensor]) -> dict[str, Tensor]:
        """recon, kl and elbo = -(recon + kl), averaged over the batch: the true values,
        whatever a model's loss does with them."""
        recon, kl = out["recon"].mean(), out["kl_dims"].sum(1).mean()
        return {"recon": recon, "kl": kl, "elbo": -(recon + kl)}

    def eval_outputs(
        self, x: Tensor, y: Tensor | None, out: dict[str, Tensor], split: str
    ) -> dict[str, Tensor]:
        active_units = getattr(self, f"{split}_active_units")
        active_units.update(out["mu"])
        self.log(f"{split}/active_units", active_units, on_step=False, on_epoch=True)
        if split == "val":
            self.val_kl_per_dim.update(out["kl_dims"])
        if split == "test":
            log_px = iw_log_likelihood(self, x, self.iw_samples, self._iw_generator, y=y)
            self.test_nll_iw.update(log_px)
            self.log("test/nll_iw", self.test_nll_iw, on_step=False, on_epoch=True)
        if self._split_size is None:
            return {}
        mi, tc, dim_kl = kl_split(out["z"], out["mu"], out["logvar"], self._split_size, "mss")
        return {"mi": mi, "tc": tc, "dim_kl": dim_kl}

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._split_size = num_examples(self.trainer.val_dataloaders)

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._split_size = num_examples(self.trainer.test_dataloaders)

    def on_validation_epoch_end(self) -> None:
        kl_dims = self.val_kl_per_dim.compute().reshape(-1)  # torchmetrics squeezes a (1,) result
        self.val_kl_per_dim.reset()
        self.last_kl_per_dim = kl_dims.cpu()
        self.log_dict({f"val/kl_dim{j:02d}": v for j, v in enumerate(kl_dims)}, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        if self.report_bpd:  # a likelihood in bits only means something for binary data
            dims = math.prod(self.input_shape)
            self.log("test/bpd", self.test_nll_iw.compute() / (dims * math.log(2)), sync_dist=True)

    def reseed_eval_noise(self) -> None:
        # The ELBO and the IWAE bound have a generator each, so that iw_samples leaves the ELBO
        # as it is.
        super().reseed_eval_noise()
        self._iw_generator = torch.Generator(self.device).manual_seed(1)
