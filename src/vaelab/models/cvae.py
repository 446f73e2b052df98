"""The conditional VAE (Sohn et al. 2015, "Learning Structured Output Representation using Deep
Conditional Generative Models"): encoder and decoder see the label."""

import torch
from torch import Tensor, nn
from torch.distributions import Distribution
from torch.nn import functional as F

from vaelab.config.rules import int_at_least
from vaelab.errors import ConfigError
from vaelab.models.kl_weighted import WeightedKL
from vaelab.models.variational import VariationalModel


class CVAE(WeightedKL, VariationalModel):
    """q(z|x, y) and p(x|z, y), the prior p(z) (N(0, I) unless model/prior says), y one-hot
    over `num_classes`; the VAE's loss (beta and the KL schedules apply). The label enters the
    encoder at its output, as a learned per-class shift of (mu, log sigma^2), and the decoder at
    its input, concatenated to z: with any net, the MLP or a conv net. Labels below zero (data
    without them) enter as no class, so that any data can be embedded; training refuses them.

    `sample(n, label=k)` draws class k; without a label the classes take turns.
    """

    member_arguments = WeightedKL.member_arguments

    conditional = True
    rules = {"num_classes": int_at_least(2)}

    def __init__(self, num_classes: int = 10, **vae):
        super().__init__(**vae)
        self.num_classes = num_classes
        self.encoder_label = nn.Linear(num_classes, self.code_dim(), bias=False)

    def decoder_inputs(self) -> int:
        return self.hparams.latent_dim + self.hparams.num_classes

    def one_hot(self, y: Tensor | None, n: int) -> Tensor:
        """(n, num_classes): the labels one-hot; zeros where there is none (y < 0 or None)."""
        if y is None:
            return torch.zeros(n, self.num_classes, device=self.device)
        known = (y >= 0).unsqueeze(1)
        return F.one_hot(y.clamp(min=0), self.num_classes).float() * known

    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        shift = self.encoder_label(self.one_hot(y, len(x)))
        return self.posterior(self.encoder(x) + shift.to(x.dtype))

    def decoder_params(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decoder(torch.cat([z, self.one_hot(y, len(z)).to(z.dtype)], dim=1))

    def check_data(self, datamodule) -> None:
        super().check_data(datamodule)
        # vaelab's in-memory datamodules hold every label; of another, the first batch tells.
        splits = getattr(datamodule, "splits", None)
        y = splits["train"][1] if splits else next(iter(datamodule.train_dataloader()))[1]
        if (y < 0).any():
            raise ConfigError(
                "model=cvae is conditioned on labels, and this data has none (its y is -1); "
                "choose data with labels (data.label_column for a table) or another model"
            )
        if int(y.max()) >= self.num_classes:
            raise ConfigError(
                f"model.num_classes={self.num_classes}, but the data has label {int(y.max())}: "
                f"set model.num_classes to the number of classes"
            )

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, label: int | None = None
    ) -> Tensor:
        """n draws of the mean of p(x|z, y), z ~ p(z); y = label, or the classes in turn."""
        y = torch.arange(n) % self.num_classes if label is None else torch.full((n,), label)
        z = self.prior.sample(n, generator).to(self.device, self.dtype)
        return self.decode(z, y.to(self.device)).mean
