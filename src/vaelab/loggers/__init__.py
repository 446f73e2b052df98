from vaelab.loggers.csv import CSVLogger

__all__ = ["CSVLogger"]
