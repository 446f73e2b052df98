from vaelab.loggers.csv import CSVLogger
from vaelab.loggers.wandb import WandbLogger

__all__ = ["CSVLogger", "WandbLogger"]
