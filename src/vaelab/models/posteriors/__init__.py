"""Posteriors q(z|x): a module that reads the encoder's output (`code_dim` numbers) as a
distribution over latent vectors, chosen with model/posterior=..."""

from vaelab.models.posteriors.gaussian import Gaussian
from vaelab.models.posteriors.iaf import IAF

__all__ = ["IAF", "Gaussian"]
