"""vaelab: autoencoders and variational autoencoders with Lightning and Hydra."""

__version__ = "0.1.0"
