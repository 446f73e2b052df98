"""The variational autoencoder (Kingma & Welling 2014), beta-weighted (Higgins et al. 2017)."""

from vaelab.models.kl_weighted import WeightedKL
from vaelab.models.variational import VariationalModel


class VAE(WeightedKL, VariationalModel):
    """loss = recon + beta(step)·kl, recon = -log p(x|z) with one sample of z and
    kl = KL(q(z|x) || p(z)), both summed over dimensions and averaged over the batch: with
    beta = 1 the loss is the negative ELBO. `free_bits` (nats per dimension) and a capacity
    schedule change only the loss: the logged kl and elbo are always the true values.
    """

    member_arguments = WeightedKL.member_arguments
