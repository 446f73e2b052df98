"""The importance-weighted estimate of log p(x) on a trained digits VAE."""

import math
import subprocess
import sys

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
        posterior = model.encode(x)
        q = D.Normal(posterior.loc, (0.5 * posterior.logvar).exp())
        z = q.sample((100,))  # (K, B, Z)
        logits = model.decoder(z.flatten(0, 1)).view(100, len(x), -1)
        log_px = D.Bernoulli(logits=logits, validate_args=False).log_prob(x.flatten(1)).sum(-1)
        log_w = log_px + D.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
        recomputed = -(torch.logsumexp(log_w.double(), 0) - math.log(100)).mean().item()
    assert abs(recomputed - results["test/nll_iw"]) < 0.1


def test_long_evaluations_report_their_progress(trained, caplog):
    _, model, x = trained
    with caplog.at_level("INFO", logger="vaelab.metrics.likelihood"):
        iw_log_likelihood(model, x, 64, torch.Generator().manual_seed(0), report_every_s=0)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("IWAE bound of 180 examples: 0 of 64 samples")
    assert len(lines) == 4  # one per chunk of 16


def test_memory_does_not_grow_with_the_number_of_samples():
    """In a fresh process: the peak memory after K = 40,000 samples exceeds that after K = 16 by
    far less than the 40,000 x 180 log-weights (58 MB in float64) that keeping them would take."""
    script = """
import resource, torch
from vaelab.data import DigitsDataModule
from vaelab.metrics import iw_log_likelihood
from vaelab.models import VAE
torch.manual_seed(0)
net = {"_target_": "vaelab.models.nets.mlp", "hidden": [64]}
model = VAE(input_shape=[1, 8, 8], latent_dim=4, net=net, optimizer={}).eval()
dm = DigitsDataModule()
dm.setup()
x = dm.splits["test"][0]
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
iw_log_likelihood(model, x, 16)
before = peak()
iw_log_likelihood(model, x, 40_000)
print(peak() - before)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    grown_mib = int(result.stdout.strip().splitlines()[-1]) / 1024
    assert grown_mib < 20, grown_mib


def test_the_number_of_importance_samples_leaves_the_elbo_as_it_is(trained):
    """test/elbo and test/recon draw their one sample from a stream of their own."""
    import lightning as L

    _, model, _ = trained
    dm = DigitsDataModule(batch_size=64)  # three test batches: later ones would see the shift
    dm.setup()
    metrics = {}
    for k in (1, 50):
        model.iw_samples = k
        trainer = L.Trainer(
            accelerator="cpu", logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        (metrics[k],) = trainer.test(model, datamodule=dm, verbose=False)
    for name in ("test/elbo", "test/recon", "test/kl"):
        assert metrics[1][name] == metrics[50][name], name
    assert metrics[1]["test/nll_iw"] > metrics[50]["test/nll_iw"]
