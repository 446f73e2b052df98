"""vaelab: autoencoders and variational autoencoders with Lightning and Hydra."""

from vaelab.config import resolvers

__version__ = "0.1.0"

resolvers.register()
