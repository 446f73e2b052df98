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
    `prior` and `log_weights` (vaelab.models.variational; of a conditional model, log p(x|y)
    for the labels y): the weights are the ones the IWAE bound trains on. Samples go
    through the decoder `chunk` at a time and the log-sum-exp runs over the chunks as they come,
    so memory is that of one chunk whatever K is. A batch that takes long (K in the thousands)
    logs its progress every `report_every_s`."""
    if k < 1:
        raise ValueError(f"iw_samples must be >= 1, got {k}")
    q = model.encode(x, y)
    p = model.prior.distribution()  # once, not per chunk: a VampPrior encodes its pseudo-inputs
    top = torch.full(q.batch_shape, -math.inf, dtype=torch.float64, device=x.device)
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
        # z in float32 (the weights' precision), whatever the model's dtype (bf16-true).
        eps = torch.randn(
            (c, *q.loc.shape), generator=generator, device=x.device, dtype=torch.float32
        )
        z = q.from_noise(eps).float()  # (c, B, Z)
        log_w = model.log_weights(x, q, z, y, p)[0].double()  # (c, B)
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
