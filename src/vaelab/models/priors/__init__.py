"""Priors p(z): a module with `log_prob(z)` and `sample(n)`, chosen with model/prior=..."""

from vaelab.models.priors.base import Prior
from vaelab.models.priors.mog import MixtureOfGaussians
from vaelab.models.priors.standard import StandardNormal
from vaelab.models.priors.vamp import VampPrior

__all__ = ["MixtureOfGaussians", "Prior", "StandardNormal", "VampPrior"]
