from vaelab.callbacks.collapse import CollapseMonitor
from vaelab.callbacks.images import ImageLogger
from vaelab.callbacks.lr_monitor import LearningRateMonitor
from vaelab.callbacks.preemption import CheckpointOnSigterm
from vaelab.callbacks.progress import ProgressBar

__all__ = [
    "CheckpointOnSigterm",
    "CollapseMonitor",
    "ImageLogger",
    "LearningRateMonitor",
    "ProgressBar",
]
