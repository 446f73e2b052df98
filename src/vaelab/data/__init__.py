from vaelab.data.celeba import CelebADataModule
from vaelab.data.cifar10 import CIFAR10DataModule
from vaelab.data.digits import DigitsDataModule
from vaelab.data.dsprites import DSpritesDataModule
from vaelab.data.factors import FactorDataModule
from vaelab.data.fashion_mnist import FashionMNISTDataModule
from vaelab.data.in_memory import InMemoryDataModule
from vaelab.data.mnist import MNISTDataModule
from vaelab.data.mpi3d import MPI3DDataModule
from vaelab.data.shapes3d import Shapes3DDataModule
from vaelab.data.sprites import SpritesDataModule
from vaelab.data.tabular import TabularDataModule

__all__ = [
    "CIFAR10DataModule",
    "CelebADataModule",
    "DSpritesDataModule",
    "DigitsDataModule",
    "FactorDataModule",
    "FashionMNISTDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
    "MPI3DDataModule",
    "Shapes3DDataModule",
    "SpritesDataModule",
    "TabularDataModule",
]
