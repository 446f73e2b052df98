from vaelab.callbacks.collapse import CollapseMonitor
from vaelab.callbacks.images import ImageLogger
from vaelab.callbacks.progress import ProgressBar

__all__ = ["CollapseMonitor", "ImageLogger", "ProgressBar"]
