from vaelab.data.digits import DigitsDataModule
from vaelab.data.fashion_mnist import FashionMNISTDataModule
from vaelab.data.in_memory import InMemoryDataModule
from vaelab.data.mnist import MNISTDataModule

__all__ = ["DigitsDataModule", "FashionMNISTDataModule", "InMemoryDataModule", "MNISTDataModule"]
