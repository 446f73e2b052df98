from vaelab.callbacks.collapse import CollapseMonitor
from vaelab.callbacks.epoch_log import EpochLog
from vaelab.callbacks.images import ImageLogger
from vaelab.callbacks.last_checkpoint import LastCheckpoint
from vaelab.callbacks.lr_monitor import LearningRateMonitor
from vaelab.callbacks.preemption import CheckpointOnSigterm
from vaelab.callbacks.progress import ProgressBar
from vaelab.callbacks.relocation import FollowMovedRun

__all__ = [
    "CheckpointOnSigterm",
    "CollapseMonitor",
    "EpochLog",
    "FollowMovedRun",
    "ImageLogger",
    "LastCheckpoint",
    "LearningRateMonitor",
    "ProgressBar",
]
