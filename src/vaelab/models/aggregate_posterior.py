"""The KL of a Gaussian-posterior model split three ways (Chen et al. 2018, "Isolating Sources of
Disentanglement in VAEs"), averaged over the data:

    E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || prod_j q(z_j)) + sum_j KL(q(z_j) || p(z_j))
                             (mi)        (tc: total correlation)    (dim_kl)

with q(z) = (1/N) sum_n q(z|x_n), the aggregate posterior over the N examples of a split. It has
no closed form; at each sample z_i ~ q(z|x_i) of a minibatch of B examples it is estimated from
that minibatch (the B x B x Z matrix of log q(z_ij | x_m)):

- "mws", minibatch weighted sampling (the paper's main text, and its code): log q(z_i) ~
  logsumexp_m log q(z_i|x_m) - log(N·B). It reads low, by between log B (posteriors far apart) and
  log N (posteriors all alike), so its TC carries an offset; its gradient is what the paper used.
- "mss", minibatch stratified sampling (the paper's appendix): q(z_i) ~ sum_m w_im q(z_i|x_m) with
  w_ii = 1/N for the example z_i came from, (N - M)/(N·M) for one other, 1/M for the remaining
  M - 1 (M = B - 1): weights that sum to one, so only Jensen's gap remains, shrinking with B. The
  paper's code puts the 1/N weights in the first column instead of the diagonal
  (rtqichen/beta-tcvae pull request 1); here they are on the diagonal.

Each term is returned per sample, so their sum is log q(z_i|x_i) - log p(z_i): a one-sample
estimate of the KL, whatever the estimator. With a prior that does not factorise over the
dimensions (a VampPrior, a mixture), the third term is log prod_j q(z_j) - log p(z), the KL from
the factorised aggregate posterior to the prior, not a sum over dimensions.
"""

import math
from collections.abc import Callable

import torch
from torch import Tensor

from vaelab.models.distributions import log_normal

ESTIMATORS = ("mws", "mss")


def _log_weights(batch_size: int, dataset_size: int, estimator: str, device) -> Tensor:
    """log w_im, (B, B): the weight of example m in the estimate of q(z_i)."""
    b, n = batch_size, dataset_size
    if estimator == "mws":
        return torch.full((b, b), -math.log(n * b), device=device)
    if b == 1:  # no other example to stand in for the rest of the data
        return torch.full((1, 1), -math.log(n), device=device)
    m = b - 1
    weights = torch.full((b, b), 1.0 / m, dtype=torch.float64)
    others = torch.arange(b)
    weights[others, (others + 1) % b] = (n - m) / (n * m)
    weights[others, others] = 1.0 / n
    return weights.log().float().to(device)


def kl_split(
    z: Tensor,
    mu: Tensor,
    logvar: Tensor,
    log_prior: Callable[[Tensor], Tensor],
    dataset_size: int,
    estimator: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """(mi, tc, dim_kl), each (B,), for samples z (B, Z) drawn from q(z|x) = N(mu, exp(logvar))
    of the same B examples, out of a split of `dataset_size` examples; `log_prior` gives log p(z)
    under the model's prior, (B,). Computed in float32."""
    z, mu, logvar = z.float(), mu.float(), logvar.float()
    log_q_zx = log_normal(z, mu, logvar).sum(1)
    # Here, where the sum of the terms has always taken it: the order in which the gradients
    # of z's uses add up, and with it a run's last bits, stays what it was.
    log_p_z = log_prior(z)
    matrix = log_normal(z[:, None], mu[None], logvar[None])  # (B sample, B example, Z)
    log_w = _log_weights(z.shape[0], dataset_size, estimator, z.device)
    log_q_z = torch.logsumexp(log_w + matrix.sum(2), dim=1)
    log_prod_q_zj = torch.logsumexp(log_w[:, :, None] + matrix, dim=1).sum(1)
    return log_q_zx - log_q_z, log_q_z - log_prod_q_zj, log_prod_q_zj - log_p_z
