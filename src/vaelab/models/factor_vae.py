"""FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising"): the VAE's loss plus gamma times a
discriminator's estimate of the total correlation of q(z)."""

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vaelab.config.rules import int_at_least, number
from vaelab.errors import ConfigError
from vaelab.models.variational import VariationalModel


def discriminator(latent_dim: int, units: int = 1000, layers: int = 6) -> nn.Sequential:
    """The paper's discriminator: `layers` linear layers, `units` wide with LeakyReLU(0.2) between
    them, two logits out: (code from q(z), code from prod_j q(z_j))."""
    sizes = [latent_dim, *[units] * (layers - 1)]
    hidden = [m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), nn.LeakyReLU(0.2))]
    return nn.Sequential(*hidden, nn.Linear(sizes[-1], 2))


def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each latent dimension shuffled across the batch on its own: draws of prod_j q(z_j)."""
    order = torch.stack(
        [torch.randperm(len(z), generator=generator, device=z.device) for _ in range(z.shape[1])], 1
    )
    return torch.gather(z, 0, order)


class FactorVAE(VariationalModel):
    """loss = recon + kl + gamma·tc, tc = E[log D(z) / (1 - D(z))], the density-ratio estimate of
    KL(q(z) || prod_j q(z_j)) by a discriminator D trained, with an optimizer of its own, to tell
    codes of one half of the batch from codes of the other half with each dimension permuted
    across examples (the paper's two-batch protocol: `data.batch_size` holds both halves).
    Logged in training: `tc_discriminator`, `discriminator_loss`, `discriminator_acc`; at
    validation and test `tc_discriminator` beside the stratified estimate `tc` every
    Gaussian-posterior model reports.
    """

    member_arguments = None  # its discriminator takes steps of its own optimizer
    rules = {
        "gamma": number(positive=False),
        "discriminator_units": int_at_least(1),
        "discriminator_layers": int_at_least(2),
        "discriminator_optimizer.lr": number(positive=True),
    }

    def __init__(
        self,
        discriminator_optimizer: dict,
        gamma: float = 6.4,
        discriminator_units: int = 1000,
        discriminator_layers: int = 6,
        **shared,
    ):
        super().__init__(**shared)
        self.automatic_optimization = False  # two optimizers, stepped in optimize
        self.gamma = gamma
        self.discriminator = discriminator(
            self.latent_dim, discriminator_units, discriminator_layers
        )

    def check_data(self, datamodule) -> None:
        super().check_data(datamodule)
        x = next(iter(datamodule.train_dataloader()))[0]
        if len(x) < 2:
            raise ConfigError(
                f"model=factor_vae splits each training batch into two halves, and these batches "
                f"hold {len(x)} example: set data.batch_size to 2 or more"
            )

    def extra_optimizers(self):
        return [(self.discriminator.parameters(), self.hparams.discriminator_optimizer)]

    def per_example(self, x: Tensor, eps: Tensor) -> dict[str, Tensor]:
        out = super().per_example(x, eps)
        logits = self.discriminator(out["z"])
        return out | {"tc_discriminator": logits[:, 0] - logits[:, 1]}

    def losses(self, out: dict[str, Tensor]) -> dict[str, Tensor | float]:
        terms = self.elbo_terms(out)
        tc = out["tc_discriminator"].mean()
        loss = terms["recon"] + terms["kl"] + self.gamma * tc
        return {**terms, "tc_discriminator": tc, "loss": loss}

    def optimize(self, batch: tuple[Tensor, Tensor]) -> None:
        model_optimizer, discriminator_optimizer = self.optimizers()
        x, other = batch[0].chunk(2)
        out = self.core(x, *self.noise(x))
        terms = self.losses(out)
        model_optimizer.zero_grad()
        self.manual_backward(terms["loss"])
        model_optimizer.step()

        with torch.no_grad():
            q = self.encode(other)
            z_other = q.from_noise(self.randn(*q.loc.shape))
        codes = torch.cat([out["z"].detach(), permute_dims(z_other)])
        labels = torch.cat([torch.zeros(len(x)), torch.ones(len(other))]).long().to(x.device)
        logits = self.discriminator(codes)
        loss = F.cross_entropy(logits, labels)
        self.step_extra(discriminator_optimizer, loss)
        accuracy = (logits.argmax(1) == labels).float().mean()
        terms.update(discriminator_loss=loss.detach(), discriminator_acc=accuracy)
        self.log_training(terms, len(x))
