from vaelab.metrics.latents import ActiveUnits, KLPerDimension
from vaelab.metrics.likelihood import ImportanceWeightedNLL, iw_log_likelihood

__all__ = ["ActiveUnits", "ImportanceWeightedNLL", "KLPerDimension", "iw_log_likelihood"]
