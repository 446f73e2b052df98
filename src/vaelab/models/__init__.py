from vaelab.models.autoencoder import AutoEncoder
from vaelab.models.base import Model
from vaelab.models.beta_tcvae import BetaTCVAE
from vaelab.models.gaussian import GaussianPosterior
from vaelab.models.iwae import IWAE
from vaelab.models.vae import VAE

__all__ = ["VAE", "IWAE", "AutoEncoder", "BetaTCVAE", "GaussianPosterior", "Model"]
