from vaelab.callbacks.collapse import CollapseMonitor
from vaelab.callbacks.images import ImageLogger

__all__ = ["CollapseMonitor", "ImageLogger"]
