"""The maximum mean discrepancy between the codes of a batch and draws of the prior, as WAE-MMD
(Tolstikhin et al. 2018) and InfoVAE (Zhao et al. 2019) use it.

    MMD^2(q, p) = E k(z, z') + E k(z~, z~') - 2 E k(z, z~),   z, z' ~ q(z),  z~, z~' ~ p(z)

estimated without bias: the two within-sample means leave out the pairs of a point with itself.
The kernels are sums over `scales` s of

    imq: C / (C + |a - b|^2)     rbf: exp(-|a - b|^2 / C)     with C = 2·d_z·s

(the inverse multiquadratic of the WAE paper, C = 2·d_z·sigma^2 for the prior N(0, sigma^2 I),
sigma = 1, summed over the WAE code's scales 0.1 ... 10; the RBF over the same scales).
"""

from collections.abc import Sequence

import torch
from torch import Tensor

from vaelab.config.rules import number, one_of, positive_numbers

KERNELS = ("imq", "rbf")
MMD_RULES = {  # what the models with an MMD take: model.lambda_mmd, kernel, kernel_scales
    "lambda_mmd": number(positive=False),
    "kernel": one_of(*KERNELS),
    "kernel_scales": positive_numbers,
}
SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def kernel(a: Tensor, b: Tensor, name: str, scales: Sequence[float]) -> Tensor:
    """k(a_i, b_j) for every pair: (N, M), from (N, Z) and (M, Z)."""
    # |a|^2 + |b|^2 - 2 a.b: smooth where a point meets itself (cdist's square root is not).
    squared = (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2.0 * a @ b.T).clamp(min=0.0)
    base = 2.0 * a.shape[1]
    if name == "imq":
        return sum(base * s / (base * s + squared) for s in scales)
    return sum(torch.exp(-squared / (base * s)) for s in scales)


def mmd(z: Tensor, prior_z: Tensor, name: str = "imq", scales: Sequence[float] = SCALES) -> Tensor:
    """The unbiased estimate of MMD^2 between the distributions of two samples of the same size
    (B, Z) each; computed in float32; 0 for B = 1."""
    z, prior_z = z.float(), prior_z.float()
    n = z.shape[0]
    if n < 2:  # the last batch of an evaluation may hold one example: no pair to compare
        return z.new_zeros(())
    off_diagonal = 1.0 - torch.eye(n, device=z.device)
    within = (kernel(z, z, name, scales) + kernel(prior_z, prior_z, name, scales)) * off_diagonal
    between = kernel(z, prior_z, name, scales)
    return within.sum() / (n * (n - 1)) - 2.0 * between.mean()
