"""The VampPrior (Tomczak & Welling 2018, "VAE with a VampPrior"): the prior is the model's own
posterior averaged over K learned pseudo-inputs u_k,

    p(z) = (1/K) sum_k q(z|u_k),

a mixture that follows the aggregate posterior instead of pulling it to N(0, I)."""

import torch
from torch import nn

from vaelab.config.rules import int_at_least
from vaelab.config.schema import COUNT_LIKELIHOODS
from vaelab.errors import ConfigError
from vaelab.models.distributions import GaussianMixture
from vaelab.models.posteriors.gaussian import Gaussian
from vaelab.models.priors.base import Prior


class VampPrior(Prior):
    """`pseudo_inputs` learned inputs of the data's shape, trained with the model; they start as
    training examples drawn when the data is set up (`fit`), before which they are uniform in
    [0, 1]. The KL against it is estimated from the posterior's sample."""

    rules = {"pseudo_inputs": int_at_least(1)}

    def __init__(self, latent_dim: int, pseudo_inputs: int = 500):
        super().__init__(latent_dim)
        self.count = pseudo_inputs
        self._encode = None

    @classmethod
    def check_model(cls, posterior: type, likelihood: str) -> None:
        if not issubclass(posterior, Gaussian):  # the mixture is made of q's Gaussians
            raise ConfigError(
                f"model/prior=vamp is a mixture of the posterior's Gaussians, and "
                f"{posterior.__name__} is not one: use model/posterior=gaussian with it"
            )
        if likelihood in COUNT_LIKELIHOODS:
            raise ConfigError(
                f"model/prior=vamp learns pseudo-inputs, and the encoder of a count model "
                f"(model.likelihood={likelihood}) takes log(1 + x), which has none below -1: use "
                f"model/prior=mog or standard"
            )

    def bind(self, model: nn.Module) -> None:
        self.pseudo_inputs = nn.Parameter(torch.rand(self.count, *model.input_shape))
        self.register_buffer("logits", torch.zeros(self.count), persistent=False)
        # A bound method, not the module: the model is the prior's owner, not its child.
        self._encode = model.encode

    @torch.no_grad()
    def fit(self, x) -> None:
        """Start the pseudo-inputs at `pseudo_inputs` different examples of the training split x
        (all of them, some twice, when it has fewer), drawn with a generator of their own, so
        that the training random stream does not move."""
        generator = torch.Generator().manual_seed(0)
        order = torch.cat(
            [torch.randperm(len(x), generator=generator) for _ in range(-(-self.count // len(x)))]
        )
        picks = order[: self.count]
        rows = x[picks]
        rows = rows.to_dense() if hasattr(rows, "to_dense") else rows
        self.pseudo_inputs.copy_(rows.reshape(self.pseudo_inputs.shape))

    def distribution(self) -> GaussianMixture:
        q = self._encode(self.pseudo_inputs)  # q(z|u_k): (K,) Gaussians
        return GaussianMixture(self.logits, q.loc, q.logvar)

    def extra_repr(self) -> str:
        return f"{self.count} pseudo-inputs"
