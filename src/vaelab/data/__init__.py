from vaelab.data.celeba import CelebADataModule
from vaelab.data.cifar10 import CIFAR10DataModule
from vaelab.data.digits import DigitsDataModule
from vaelab.data.fashion_mnist import FashionMNISTDataModule
from vaelab.data.in_memory import InMemoryDataModule
from vaelab.data.mnist import MNISTDataModule
from vaelab.data.tabular import TabularDataModule

__all__ = [
    "CIFAR10DataModule",
    "CelebADataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
    "TabularDataModule",
]
