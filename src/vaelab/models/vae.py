"""The variational autoencoder (Kingma & Welling 2014), beta-weighted (Higgins et al. 2017)."""

import math
from typing import Any

import torch
from hydra.utils import instantiate
from torch import Tensor

from vaelab.config.containers import to_plain
from vaelab.metrics import ActiveUnits, ImportanceWeightedNLL, KLPerDimension, iw_log_likelihood
from vaelab.models.autoencoder import AutoEncoder


def kl_per_dimension(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu_j, exp(logvar_j)) || N(0, 1)) in closed form, per example and latent: (B, Z).

    Computed in float32: under bf16 autocast exp(logvar) loses the precision the KL needs.
    """
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(q(z|x) || N(0, I)) summed over latents: (B, Z) -> (B,)."""
    return kl_per_dimension(mu, logvar).sum(1)


def free_bits(kl_dims: Tensor, floor: float) -> Tensor:
    """sum_j max(floor, mean_b KL_j) (Kingma et al. 2016): below `floor` nats a dimension's KL
    is not pushed further down, so its gradient is zero and the encoder may use it freely."""
    return kl_dims.mean(0).clamp(min=floor).sum()


class VAE(AutoEncoder):
    """q(z|x) = N(mu(x), diag sigma^2(x)); z = mu + sigma·eps; loss = recon + beta(step)·kl.

    recon = -log p(x|z) with one sample of z, kl = KL(q(z|x) || N(0, I)); both are summed over
    dimensions and averaged over the batch, so with beta = 1 the loss is the negative ELBO.
    `free_bits` (nats per dimension) and a capacity schedule change only the loss: the logged
    kl and elbo are always the true values.
    """

    codes_per_latent = 2

    def __init__(
        self,
        *args: Any,
        beta: float = 1.0,
        kl_schedule: dict | None = None,
        free_bits: float = 0.0,
        gamma: float | None = None,
        iw_samples: int = 100,
        report_bpd: bool = False,
        monitor: str = "val/elbo",
        monitor_mode: str = "max",
        **kwargs: Any,
    ):
        if beta < 0 or free_bits < 0 or (gamma is not None and gamma < 0):
            raise ValueError(
                f"beta, free_bits and gamma must be >= 0: {beta}, {free_bits}, {gamma}"
            )
        kl_schedule = kl_schedule or {"_target_": "vaelab.models.kl_schedules.Constant"}
        super().__init__(*args, monitor=monitor, monitor_mode=monitor_mode, **kwargs)
        if iw_samples < 1:
            raise ValueError(f"iw_samples must be >= 1, got {iw_samples}")
        extra = {"beta": beta, "kl_schedule": kl_schedule, "free_bits": free_bits, "gamma": gamma}
        extra.update(iw_samples=iw_samples, report_bpd=report_bpd)
        self.save_hyperparameters(to_plain({**self.hparams, **extra}), logger=False)
        self.kl_schedule = instantiate(self.hparams.kl_schedule, beta=beta)
        self.free_bits, self.gamma, self.iw_samples = free_bits, gamma, iw_samples
        self.report_bpd = report_bpd
        self._eval_generator: torch.Generator | None = None  # the ELBO's one sample
        self._iw_generator: torch.Generator | None = None  # the IWAE bound's K samples
        z = self.latent_dim
        self.val_active_units, self.test_active_units = ActiveUnits(z), ActiveUnits(z)
        self.val_kl_per_dim = KLPerDimension(z)
        self.test_nll_iw = ImportanceWeightedNLL()
        self.last_kl_per_dim: Tensor | None = None  # of the last validation, for the pictures

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, *shape) -> (mu, logvar), each (B, latent_dim)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        # exp(logvar) overflows fp16 and bf16 for logvar > 11; the bounds keep sigma in
        # [3e-7, 2e4], far outside anything a trained encoder uses.
        return mu, logvar.clamp(-30.0, 20.0)

    def embed(self, x: Tensor) -> Tensor:
        """The posterior mean E_q[z|x], (B, latent_dim): the representation of x."""
        return self.encode(x)[0]

    def forward(self, x: Tensor) -> Tensor:
        """Decoder output for the posterior mean: a deterministic reconstruction."""
        return self.decode(self.embed(x))

    def _core(self, x: Tensor, eps: Tensor) -> dict[str, Tensor]:
        """recon (B,), kl_dims (B, Z) and mu (B, Z) of one batch, with z = mu + sigma·eps.
        The noise comes in from outside, so the compiled graph holds no random generator."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        recon = -self.likelihood.log_prob(x, self.decode(z))
        return {"recon": recon, "kl_dims": kl_per_dimension(mu, logvar), "mu": mu}

    def _losses(self, x: Tensor) -> tuple[dict[str, Tensor | float], Tensor, Tensor]:
        """The loss terms, the posterior means (B, Z) and the per-dimension KL (B, Z)."""
        generator = None if self.training else self._eval_generator
        eps = torch.randn(x.shape[0], self.latent_dim, generator=generator, device=x.device)
        out = self.core(x, eps)
        recon, kl_dims = out["recon"], out["kl_dims"]
        kl = kl_dims.sum(1)
        kl_in_loss = free_bits(kl_dims, self.free_bits) if self.free_bits else kl.mean()
        step = self.global_step
        beta = self.kl_schedule(step)
        terms = {"recon": recon.mean(), "kl": kl.mean(), "elbo": -(recon + kl).mean()}
        if hasattr(self.kl_schedule, "target"):
            capacity = self.kl_schedule.target(step)
            beta = self.gamma if self.gamma is not None else beta
            terms.update(
                loss=recon.mean() + beta * (kl_in_loss - capacity).abs(), capacity=capacity
            )
        else:
            terms.update(loss=recon.mean() + beta * kl_in_loss)
        terms["beta"] = beta
        return terms, out["mu"], kl_dims

    def terms(self, x: Tensor) -> dict[str, Tensor | float]:
        return self._losses(x)[0]

    def _step(self, batch: tuple[Tensor, Tensor], split: str) -> Tensor:
        x, _ = batch
        terms, mu, kl_dims = self._losses(x)
        if split != "train":
            # The schedule's weight and capacity are properties of training steps.
            terms = {k: v for k, v in terms.items() if k not in ("beta", "capacity")}
            active_units = getattr(self, f"{split}_active_units")
            active_units.update(mu)
            self.log(f"{split}/active_units", active_units, on_step=False, on_epoch=True)
            if split == "val":
                self.val_kl_per_dim.update(kl_dims)
            if split == "test":
                log_px = iw_log_likelihood(self, x, self.iw_samples, self._iw_generator)
                self.test_nll_iw.update(log_px)
                self.log("test/nll_iw", self.test_nll_iw, on_step=False, on_epoch=True)
        self._log_terms(terms, split, x.shape[0])
        return terms["loss"]

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if hasattr(self.kl_schedule, "spanning"):  # a schedule laid over the run's length
            self.kl_schedule = self.kl_schedule.spanning(self.trainer.estimated_stepping_batches)

    def on_validation_epoch_start(self) -> None:
        self._reseed_eval_noise()

    def on_validation_epoch_end(self) -> None:
        kl_dims = self.val_kl_per_dim.compute().reshape(-1)  # torchmetrics squeezes a (1,) result
        self.val_kl_per_dim.reset()
        self.last_kl_per_dim = kl_dims.cpu()
        self.log_dict({f"val/kl_dim{j:02d}": v for j, v in enumerate(kl_dims)}, sync_dist=True)

    def on_test_epoch_start(self) -> None:
        self._reseed_eval_noise()

    def on_test_epoch_end(self) -> None:
        if self.report_bpd:  # a likelihood in bits only means something for binary data
            dims = math.prod(self.input_shape)
            self.log("test/bpd", self.test_nll_iw.compute() / (dims * math.log(2)), sync_dist=True)

    def _reseed_eval_noise(self) -> None:
        # Validation and test draw their noise from generators of their own, reseeded at the
        # start of each pass: their numbers compare across epochs and runs, and evaluating never
        # moves the training random stream (which a resumed run must continue exactly). The
        # ELBO and the IWAE bound have one each, so that iw_samples leaves the ELBO as it is.
        self._eval_generator = torch.Generator(self.device).manual_seed(0)
        self._iw_generator = torch.Generator(self.device).manual_seed(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of the mean of p(x|z), z ~ N(0, I). A generator of its own keeps picture-making
        from moving the training random stream."""
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device, self.dtype)
        return self.likelihood.mean(self.decode(z))
