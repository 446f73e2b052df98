"""The variational autoencoder (Kingma & Welling 2014), beta-weighted (Higgins et al. 2017)."""

from typing import Any

import torch
from hydra.utils import instantiate
from torch import Tensor

from vaelab.models.autoencoder import AutoEncoder
from vaelab.utils.containers import to_plain


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) in closed form, summed over latents: (B, Z) -> (B,).

    Computed in float32: under bf16 autocast exp(logvar) loses the precision the KL needs.
    """
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


class VAE(AutoEncoder):
    """q(z|x) = N(mu(x), diag sigma^2(x)); z = mu + sigma·eps; loss = recon + beta(step)·kl.

    recon = -log p(x|z) with one sample of z, kl = KL(q(z|x) || N(0, I)); both are summed over
    dimensions and averaged over the batch, so with beta = 1 the loss is the negative ELBO.
    """

    codes_per_latent = 2

    def __init__(
        self,
        *args: Any,
        beta: float = 1.0,
        kl_schedule: dict | None = None,
        monitor: str = "val/elbo",
        monitor_mode: str = "max",
        **kwargs: Any,
    ):
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        kl_schedule = kl_schedule or {"_target_": "vaelab.models.kl_schedules.Constant"}
        super().__init__(*args, monitor=monitor, monitor_mode=monitor_mode, **kwargs)
        self.save_hyperparameters(
            to_plain({**self.hparams, "beta": beta, "kl_schedule": kl_schedule}), logger=False
        )
        self.kl_schedule = instantiate(self.hparams.kl_schedule, beta=beta)
        self._eval_generator: torch.Generator | None = None

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, *shape) -> (mu, logvar), each (B, latent_dim)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def reparameterize(
        self, mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def _reseed_eval_noise(self) -> None:
        # Validation and test draw their noise from a generator of their own, reseeded at the
        # start of each pass: their numbers compare across epochs and runs, and evaluating never
        # moves the training random stream (which a resumed run must continue exactly).
        self._eval_generator = torch.Generator(self.device).manual_seed(0)

    def on_validation_epoch_start(self) -> None:
        self._reseed_eval_noise()

    def on_test_epoch_start(self) -> None:
        self._reseed_eval_noise()

    def forward(self, x: Tensor) -> Tensor:
        """Decoder output for the posterior mean: a deterministic reconstruction."""
        return self.decode(self.encode(x)[0])

    def terms(self, x: Tensor) -> dict[str, Tensor | float]:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, None if self.training else self._eval_generator)
        recon = -self.likelihood.log_prob(x, self.decode(z))
        kl = kl_standard_normal(mu, logvar)
        beta = self.kl_schedule(self.global_step)
        return {
            "loss": (recon + beta * kl).mean(),
            "recon": recon.mean(),
            "kl": kl.mean(),
            "elbo": -(recon + kl).mean(),
            "beta": beta,
        }

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of the mean of p(x|z), z ~ N(0, I). A generator of its own keeps picture-making
        from moving the training random stream."""
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return self.likelihood.mean(self.decode(z))
