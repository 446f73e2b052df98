"""The importance-weighted estimate of log p(x) (Burda et al. 2016, IWAE bound):

    log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x),

tighter as K grows; with K = 1 it is the ELBO. The log-sum-exp runs in float64: K weights that
differ by hundreds of nats would lose the small ones in float32.
"""

import math

import torch
from torch import Tensor
from torchmetrics import Metric


def _log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, exp(logvar)), summed over the last dimension."""
    return -0.5 * ((z - mu) ** 2 / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


@torch.no_grad()
def iw_log_likelihood(
    model, x: Tensor, k: int, generator: torch.Generator | None = None, chunk: int = 16
) -> Tensor:
    """The K-sample estimate of log p(x) per example, (B,) float64, for a model with `encode`,
    `decode` and `likelihood`. Samples go through the decoder `chunk` at a time, so memory stays
    that of `chunk` batches whatever K is."""
    if k < 1:
        raise ValueError(f"iw_samples must be >= 1, got {k}")
    # The weights in float32; the decoder gets z in its own dtype (bf16-true, 64-true).
    encoded = model.encode(x)
    dtype = encoded[0].dtype
    mu, logvar = (t.float() for t in encoded)
    log_w = []
    for start in range(0, k, chunk):
        c = min(chunk, k - start)
        eps = torch.randn((c, *mu.shape), generator=generator, device=mu.device)
        z = mu + (0.5 * logvar).exp() * eps  # (c, B, Z)
        params = model.decode(z.flatten(0, 1).to(dtype))  # (c * B, *shape)
        log_px = model.likelihood.log_prob(x.repeat(c, *[1] * (x.dim() - 1)), params).view(c, -1)
        log_pz = _log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz = _log_normal(z, mu, logvar)
        log_w.append((log_px + log_pz - log_qz).double())
    return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)


class ImportanceWeightedNLL(Metric):
    """The mean over examples of -log p(x), estimated with K importance samples.

    >>> metric = ImportanceWeightedNLL()
    >>> metric.update(torch.tensor([-10.0, -20.0]))
    >>> metric.compute()
    tensor(15., dtype=torch.float64)
    """

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, log_px: Tensor) -> None:
        """log_px: the estimates of log p(x), (B,)."""
        self.total -= log_px.detach().double().sum()
        self.count += log_px.shape[0]

    def compute(self) -> Tensor:
        return self.total / self.count
