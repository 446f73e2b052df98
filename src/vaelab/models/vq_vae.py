"""VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning"): the encoder's
output snapped to the nearest entries of a learned codebook."""

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn import functional as F

from vaelab.config.rules import in_unit_interval, int_at_least, number
from vaelab.errors import ConfigError
from vaelab.models.base import Model


class VQVAE(Model):
    """The encoder's output (B, latent_dim) is split into latent_dim / vector_dim code vectors of
    `vector_dim` numbers each (consecutive entries: with any net, the MLP's too; the paper
    quantises each position of a convolutional feature map instead), and each is replaced by the
    nearest of `codebook_size` shared codebook entries. The decoder gets the quantised vectors,
    the encoder the decoder's gradient through them (straight-through).

    loss = recon + commitment·|z_e - sg(e)|^2 (per example, summed over its vectors). The
    codebook follows its assigned encoder outputs by exponential moving averages (`decay`, the
    paper's appendix), not by a loss term. A code whose moving count of assignments falls below
    `dead_threshold` is restarted at a random encoder output of the current batch (a common rule,
    not the paper's). Logged: `commitment`, `perplexity` (exp of the entropy of the batch's code
    use: the number of codes in effective use), `dead_codes`.

    `embed` returns the quantised vectors; `sample` draws every code uniformly (the paper fits
    a PixelCNN prior instead; `vaelab-sample sampler=gmm` fits a mixture to the embeddings).
    """

    has_prior = True
    rules = {
        "vector_dim": int_at_least(1),
        "codebook_size": int_at_least(2),
        "commitment": number(positive=False),
        "decay": in_unit_interval(low_open=False),
        "dead_threshold": number(positive=False),
    }

    def __init__(
        self,
        vector_dim: int = 4,
        codebook_size: int = 512,
        commitment: float = 0.25,
        decay: float = 0.99,
        dead_threshold: float = 0.01,
        **shared,
    ):
        super().__init__(**shared)
        if self.latent_dim % vector_dim:
            raise ConfigError(
                f"model.latent_dim={self.latent_dim} is split into code vectors of "
                f"model.vector_dim={vector_dim} numbers: make latent_dim a multiple of it"
            )
        self.vector_dim, self.codebook_size = vector_dim, codebook_size
        self.commitment, self.decay, self.dead_threshold = commitment, decay, dead_threshold
        codebook = torch.randn(codebook_size, vector_dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("counts", torch.ones(codebook_size))  # moving assignment counts
        self.register_buffer("sums", codebook.clone())  # moving sums of assigned outputs

    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """z_e, the encoder's output before quantisation: (B, latent_dim)."""
        return self.encoder(x)

    def quantize(self, z_e: Tensor) -> tuple[Tensor, Tensor]:
        """(the nearest codebook entries, (B, latent_dim); their indices, (B, latent_dim /
        vector_dim))."""
        vectors = z_e.float().reshape(-1, self.vector_dim)
        distances = (
            vectors.pow(2).sum(1, keepdim=True)
            - 2.0 * vectors @ self.codebook.T
            + self.codebook.pow(2).sum(1)
        )
        codes = distances.argmin(1)
        quantized = self.codebook[codes].reshape(z_e.shape).to(z_e.dtype)
        return quantized, codes.reshape(z_e.shape[0], -1)

    def embed(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The quantised code vectors of x, flattened: (B, latent_dim)."""
        return self.quantize(self.encode(x))[0]

    def per_example(self, x: Tensor) -> dict[str, Tensor]:
        z_e = self.encode(x)
        z_q, codes = self.quantize(z_e)
        straight_through = z_e + (z_q - z_e).detach()
        recon = self.decode(straight_through).nll(x)
        commitment = (z_e.float() - z_q.float().detach()).pow(2).sum(1)
        return {"recon": recon, "commitment": commitment, "z_e": z_e, "codes": codes}

    def losses(self, out: dict[str, Tensor]) -> dict[str, Tensor | float]:
        recon, commitment = out["recon"].mean(), out["commitment"].mean()
        use = F.one_hot(out["codes"].flatten(), self.codebook_size).float().mean(0)
        perplexity = torch.exp(-(use * torch.log(use + 1e-10)).sum())
        return {
            "loss": recon + self.commitment * commitment,
            "recon": recon,
            "commitment": commitment,
            "perplexity": perplexity,
            "dead_codes": (self.counts < self.dead_threshold).sum().float(),
        }

    @torch.no_grad()
    def update_state(self, out: dict[str, Tensor]) -> None:
        """The codebook's moving averages after a training batch (all ranks' assignments)."""
        vectors = out["z_e"].detach().float().reshape(-1, self.vector_dim)
        assigned = F.one_hot(out["codes"].flatten(), self.codebook_size).float()
        counts, sums = assigned.sum(0), assigned.T @ vectors
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.counts.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.sums.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        # Laplace smoothing keeps a code that lost all its vectors from dividing by zero.
        total = self.counts.sum()
        smoothed = (self.counts + 1e-5) / (total + self.codebook_size * 1e-5) * total
        self.codebook.copy_(self.sums / smoothed[:, None])
        dead = self.counts < self.dead_threshold
        if dead.any():
            # Restart them at encoder outputs of this batch, with a fresh count of one.
            picks = torch.randint(len(vectors), (int(dead.sum()),), device=vectors.device)
            self.codebook[dead] = vectors[picks]
            self.sums[dead] = vectors[picks]
            self.counts[dead] = 1.0

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n decodes of code vectors drawn uniformly from the codebook."""
        positions = self.latent_dim // self.vector_dim
        codes = torch.randint(self.codebook_size, (n, positions), generator=generator)
        z = self.codebook[codes.to(self.codebook.device)].reshape(n, self.latent_dim)
        return self.decode(z.to(self.dtype)).mean

    def extra_repr(self) -> str:
        vectors = self.latent_dim // self.vector_dim
        return f"{vectors} code vectors of {self.vector_dim}, codebook of {self.codebook_size}"
