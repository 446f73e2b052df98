"""A model of the user's own, added through hydra.searchpath as docs/guides/extending.md shows."""

import textwrap

import pytest

import vaelab
from vaelab import compose
from vaelab.errors import ConfigError
from vaelab.runs.trained import load_trained
from vaelab.train import train

MODEL = '''
from vaelab.models import AutoEncoder


class SparseAE(AutoEncoder):
    """An autoencoder whose codes are pushed towards zero: loss = recon + l1 * |h|_1."""

    def __init__(self, l1: float = 0.01, **shared):
        super().__init__(**shared)
        self.l1 = l1

    def per_example(self, x):
        h = self.encode(x)
        return {"recon": -self.decode(h).log_prob(x), "l1": h.abs().sum(1)}

    def losses(self, out):
        recon, l1 = out["recon"].mean(), out["l1"].mean()
        return {"loss": recon + self.l1 * l1, "recon": recon, "l1": l1}
'''

CONFIG = """
defaults:
  - ae
  - _self_

_target_: my_models.SparseAE
l1: 0.01
"""


def test_a_model_of_ones_own_trains_resumes_and_loads(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(textwrap.dedent(MODEL))
    (tmp_path / "my_conf" / "model").mkdir(parents=True)
    (tmp_path / "my_conf" / "model" / "sparse_ae.yaml").write_text(CONFIG)
    monkeypatch.syspath_prepend(str(tmp_path))
    overrides = [f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", "model=sparse_ae",
                 "trainer=cpu", "callbacks.rich_progress_bar=null"]  # fmt: skip
    run_dir = tmp_path / "run"
    cfg = compose(*overrides, "trainer.max_epochs=1", output_dir=run_dir)
    assert cfg.model.monitor == "val/recon" and cfg.model.net.hidden == [512, 256]  # from ae
    results, _ = train(cfg)
    assert {"train/l1", "val/l1", "test/l1"} <= set(results)
    assert results["test/loss"] > results["test/recon"]

    resumed, _ = train(compose(*overrides, f"resume={run_dir}", "trainer.max_epochs=2"))
    assert resumed["global_step"] == 2 * results["global_step"]
    model, run_cfg, _ = load_trained(resumed["best_ckpt"])
    assert type(model).__name__ == "SparseAE" and model.l1 == 0.01
    # The class's own loader, and vaelab.load while the config composed last names the folder.
    from my_models import SparseAE

    assert type(SparseAE.load_from_checkpoint(resumed["best_ckpt"])) is SparseAE
    assert type(vaelab.load(run_dir)) is SparseAE
    compose("trainer=cpu")  # a config without the user's folder: the file's class is not built
    with pytest.raises(ConfigError, match="my_models.SparseAE, which is not a vaelab model.*"
                       "from Python, that class's own load_from_checkpoint loads it"):  # fmt: skip
        vaelab.load(run_dir)
    assert type(SparseAE.load_from_checkpoint(resumed["best_ckpt"])) is SparseAE


PRIOR = '''
import torch
from torch import nn

from vaelab.models.distributions import DiagonalGaussian
from vaelab.models.priors import Prior


class LearnedGaussian(Prior):
    """p(z) = N(mu, diag sigma^2), mu and sigma learned with the model."""

    factorised = True  # a KL per dimension, in closed form against the Gaussian posterior

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.logvar = nn.Parameter(torch.zeros(latent_dim))

    def distribution(self):
        return DiagonalGaussian(self.loc, self.logvar)
'''


def test_a_prior_of_ones_own_is_one_file_and_one_config(tmp_path, monkeypatch):
    (tmp_path / "my_priors.py").write_text(textwrap.dedent(PRIOR))
    (tmp_path / "my_conf" / "model" / "prior").mkdir(parents=True)
    (tmp_path / "my_conf" / "model" / "prior" / "learned.yaml").write_text(
        "_target_: my_priors.LearnedGaussian\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    overrides = [f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", "model/prior=learned",
                 "trainer=cpu", "callbacks.rich_progress_bar=null"]  # fmt: skip
    overrides.append("trainer.max_epochs=2")
    results, objects = train(compose(*overrides, output_dir=tmp_path / "run"))
    model = objects["model"]
    assert type(model.prior).__name__ == "LearnedGaussian"
    # Trained with the model, measured per dimension, and what samples and pictures draw from.
    assert model.prior.loc.abs().sum() > 0 and "val/kl_dim00" in results
    assert (tmp_path / "run" / "images" / "samples.png").is_file()
    loaded, _, _ = load_trained(results["best_ckpt"])
    assert type(loaded.prior).__name__ == "LearnedGaussian"


def test_a_models_rules_are_its_own():
    """An argument is checked by the rules of the class that takes it: InfoVAE's alpha must be at
    most 1, a model of one's own may take an alpha (or a kernel) of any meaning."""
    from vaelab.errors import ConfigError
    from vaelab.models import AutoEncoder, InfoVAE

    class Smoothed(AutoEncoder):
        def __init__(self, alpha: float = 5.0, kernel: str = "gauss", **shared):
            super().__init__(**shared)

    shared = {"input_shape": [1, 4, 4], "latent_dim": 2, "optimizer": {}}
    shared["net"] = {"_target_": "vaelab.models.nets.mlp", "hidden": [4]}
    assert Smoothed(**shared).hparams.alpha == 5.0
    with pytest.raises(ConfigError, match=r"model.alpha=5.0: must be <= 1"):
        InfoVAE(alpha=5.0, **shared)
    with pytest.raises(ConfigError, match=r"model.alpha=2.0: must be <= 1"):
        compose("model=info_vae", "model.alpha=2.0")  # with the config, before a run starts
    with pytest.raises(ConfigError, match=r"model.prior.components=0: must be an integer >= 1"):
        compose("model/prior=mog", "model.prior.components=0")
