"""Fashion-MNIST (Xiao et al. 2017): MNIST's format and sizes, ten kinds of clothing."""

from vaelab.data.mnist import MNISTDataModule


class FashionMNISTDataModule(MNISTDataModule):
    name = "FashionMNIST"
