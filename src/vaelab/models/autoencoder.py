"""The deterministic autoencoder: x -> h = encode(x) -> decode(h), the parameters of p(x|h),
trained on recon = -log p(x|h)."""

from torch import Tensor

from vaelab.models.base import Model


class AutoEncoder(Model):
    """h = encode(x); loss = recon = -log p(x | decode(h)), summed over dimensions, averaged over
    the batch. It has no prior: `vaelab-sample sampler=gmm` generates from it."""

    member_arguments = frozenset({"sigma"})

    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """(B, *shape) -> h, (B, latent_dim)."""
        return self.encoder(x)

    def embed(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The representation of x: h, (B, latent_dim)."""
        return self.encode(x)

    def per_example(self, x: Tensor) -> dict[str, Tensor]:
        return {"recon": self(x).nll(x)}

    def losses(self, out: dict[str, Tensor]) -> dict[str, Tensor | float]:
        recon = out["recon"].mean()
        return {"loss": recon, "recon": recon}
