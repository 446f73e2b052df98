"""The importance-weighted estimate of log p(x) on a trained digits VAE."""

import math

import pytest
import torch
from torch import distributions as D

from vaelab.data import DigitsDataModule
from vaelab.metrics import iw_log_likelihood
from vaelab.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from tests.conftest import CONF

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        overrides = ["trainer=cpu", "callbacks=none", "logger=none", "data.batch_size=32"]
        cfg = compose(
            "train", overrides=[*overrides, "trainer.max_epochs=8"], return_hydra_config=True
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
        cfg.paths.output_dir = str(tmp_path_factory.mktemp("run"))
    results, objects = train(cfg)
    GlobalHydra.instance().clear()
    model = objects["model"].eval()
    dm = DigitsDataModule()
    dm.setup()
    return results, model, dm.splits["test"][0]


def nll(model, x, k, seed=0):
    return -iw_log_likelihood(model, x, k, torch.Generator().manual_seed(seed)).mean().item()


def test_more_samples_never_loosen_the_bound(trained):
    results, model, x = trained
    by_k = {k: sum(nll(model, x, k, seed) for seed in range(5)) / 5 for k in (1, 10, 100)}
    assert by_k[10] <= by_k[1] + 0.02 and by_k[100] <= by_k[10] + 0.02, by_k
    assert results["test/nll_iw"] <= -results["test/elbo"]


def test_one_sample_is_the_elbo(trained):
    _, model, x = trained
    one = torch.stack(
        [iw_log_likelihood(model, x, 1, torch.Generator().manual_seed(s)) for s in range(50)]
    )
    elbo = torch.stack([-model.terms(x)["elbo"] for _ in range(50)]).double().mean()
    standard_error = one.mean(1).std() / math.sqrt(50)
    assert abs(-one.mean() - elbo) < 4 * standard_error + 1e-3


def test_training_run_nll_iw_matches_a_recomputation_from_encode_and_decode(trained):
    results, model, x = trained
    with torch.no_grad():
        mu, logvar = model.encode(x)
        q = D.Normal(mu, (0.5 * logvar).exp())
        z = q.sample((100,))  # (K, B, Z)
        logits = model.decode(z.flatten(0, 1)).view(100, len(x), -1)
        log_px = D.Bernoulli(logits=logits, validate_args=False).log_prob(x.flatten(1)).sum(-1)
        log_w = log_px + D.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
        recomputed = -(torch.logsumexp(log_w.double(), 0) - math.log(100)).mean().item()
    assert abs(recomputed - results["test/nll_iw"]) < 0.1
