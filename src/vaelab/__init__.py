"""vaelab: autoencoders and variational autoencoders with Lightning and Hydra."""

from vaelab.config import resolvers
from vaelab.config.compose import compose

__version__ = "0.1.0"
__all__ = ["compose", "load"]

resolvers.register()


def load(path, map_location=None):
    """The trained model of a run directory or a checkpoint file, of the class that wrote it
    (`vaelab.loading.load`). Imported when called: `import vaelab` stays light."""
    from vaelab.loading import load as load_model

    return load_model(path, map_location)
