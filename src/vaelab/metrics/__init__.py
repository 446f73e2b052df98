from vaelab.metrics.latents import ActiveUnits, KLPerDimension

__all__ = ["ActiveUnits", "KLPerDimension"]
