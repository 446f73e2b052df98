"""vaelab: autoencoders and variational autoencoders with Lightning and Hydra."""

from vaelab.config import resolvers
from vaelab.config.compose import compose

__version__ = "0.1.0"
__all__ = ["compose"]

resolvers.register()
