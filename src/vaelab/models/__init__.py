from vaelab.models.autoencoder import AutoEncoder
from vaelab.models.vae import VAE

__all__ = ["AutoEncoder", "VAE"]
