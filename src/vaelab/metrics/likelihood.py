"""The importance-weighted estimate of log p(x) (Burda et al. 2016, IWAE bound):

    log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x),

tighter as K grows; with K = 1 it is the ELBO. The log-sum-exp runs in float64: K weights that
differ by hundreds of nats would lose the small ones in float32.
"""

import logging
import math
import time

import torch
from torch import Tensor
from torchmetrics import Metric

log = logging.getLogger(__name__)


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, exp(logvar)) per dimension (broadcast, not summed)."""
    return -0.5 * ((z - mu) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi))


@torch.no_grad()
def iw_log_likelihood(
    model,
    x: Tensor,
    k: int,
    generator: torch.Generator | None = None,
    chunk: int = 16,
    report_every_s: float = 10.0,
    y: Tensor | None = None,
) -> Tensor:
    """The K-sample estimate of log p(x) per example, (B,) float64, for a model with `encode`,
    `decode` and `likelihood` (of a conditional model, log p(x|y) for the labels y). Samples go
    through the decoder `chunk` at a time and the log-sum-exp runs over the chunks as they come,
    so memory is that of one chunk whatever K is. A batch that takes long (K in the thousands)
    logs its progress every `report_every_s`."""
    if k < 1:
        raise ValueError(f"iw_samples must be >= 1, got {k}")
    # The weights in float32; the decoder gets z in its own dtype (bf16-true, 64-true).
    encoded = model.encode(x, y)
    dtype = encoded[0].dtype
    mu, logvar = (t.float() for t in encoded)
    top = torch.full(mu.shape[:1], -math.inf, dtype=torch.float64, device=mu.device)
    total = torch.zeros_like(top)  # sum_k exp(log_w_k - top)
    started = reported = time.monotonic()
    for start in range(0, k, chunk):
        if time.monotonic() - reported >= report_every_s:
            reported = time.monotonic()
            log.info(
                f"IWAE bound of {len(x)} examples: {start:,} of {k:,} samples "
                f"({reported - started:.0f} s)"
            )
        c = min(chunk, k - start)
        eps = torch.randn((c, *mu.shape), generator=generator, device=mu.device)
        z = mu + (0.5 * logvar).exp() * eps  # (c, B, Z)
        labels = None if y is None else y.repeat(c)
        params = model.decode(z.flatten(0, 1).to(dtype), labels)  # (c * B, *shape)
        log_px = model.likelihood.log_prob(x.repeat(c, *[1] * (x.dim() - 1)), params).view(c, -1)
        log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(-1)
        log_qz = log_normal(z, mu, logvar).sum(-1)
        log_w = (log_px + log_pz - log_qz).double()  # (c, B)
        new_top = torch.maximum(top, log_w.max(0).values)
        total = total * (top - new_top).exp() + (log_w - new_top).exp().sum(0)
        top = new_top
    return top + total.log() - math.log(k)


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
