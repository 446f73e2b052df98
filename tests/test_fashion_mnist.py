"""The reference experiment on the full Fashion-MNIST (Debian's dataset-fashion-mnist)."""

import pytest

from vaelab.train import train


@pytest.mark.slow
def test_one_epoch_of_the_fashion_mnist_experiment(compose_train, fashion_mnist_debian):
    cfg = compose_train(
        "experiment=fashion_mnist",
        f"data.data_dir={fashion_mnist_debian}",
        "trainer.max_epochs=1",
        "iw_samples=5",  # 10,000 test images: keep the IWAE pass short
    )
    assert cfg.model.net.hidden == [512, 256] and cfg.model.latent_dim == 32
    assert cfg.data.batch_size == 128 and cfg.model.optimizer.lr == 1e-3
    results, _ = train(cfg)
    # A plain PyTorch loop and pythae reach about -250 nats after three epochs.
    assert results["test/elbo"] > -280, results
