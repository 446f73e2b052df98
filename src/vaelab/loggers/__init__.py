from vaelab.loggers.csv import CSVLogger
from vaelab.loggers.mlflow import MLFlowLogger
from vaelab.loggers.tensorboard import TensorBoardLogger
from vaelab.loggers.wandb import WandbLogger

__all__ = ["CSVLogger", "MLFlowLogger", "TensorBoardLogger", "WandbLogger"]
