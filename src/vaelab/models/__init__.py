from vaelab.models.autoencoder import AutoEncoder
from vaelab.models.base import Model
from vaelab.models.beta_tcvae import BetaTCVAE
from vaelab.models.cvae import CVAE
from vaelab.models.dip_vae import DIPVAE
from vaelab.models.factor_vae import FactorVAE
from vaelab.models.info_vae import InfoVAE
from vaelab.models.iwae import IWAE
from vaelab.models.vae import VAE
from vaelab.models.variational import VariationalModel
from vaelab.models.vq_vae import VQVAE
from vaelab.models.wae import WAE

__all__ = [
    "VAE",
    "VQVAE",
    "IWAE",
    "WAE",
    "AutoEncoder",
    "CVAE",
    "BetaTCVAE",
    "DIPVAE",
    "FactorVAE",
    "InfoVAE",
    "Model",
    "VariationalModel",
]
