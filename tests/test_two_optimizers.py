"""A model with an optimizer of its own for one part (the shape of FactorVAE's discriminator):
the training base builds both, counts one step per batch, and resumes it exactly."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tests.helpers import StopAt, assert_same_run
from vaelab import compose
from vaelab.errors import Preempted
from vaelab.models import AutoEncoder
from vaelab.train import train


class AdversarialAE(AutoEncoder):
    """An adversarial autoencoder (Makhzani et al. 2016) in brief: a critic learns to tell codes
    from N(0, I) draws with its own optimizer; the encoder is also trained to fool it."""

    def __init__(self, critic_optimizer: dict, weight: float = 0.1, **shared):
        super().__init__(**shared)
        self.automatic_optimization = False
        self.critic = nn.Sequential(nn.Linear(self.latent_dim, 16), nn.ReLU(), nn.Linear(16, 1))
        self.weight = weight

    def extra_optimizers(self):
        return [(self.critic.parameters(), self.hparams.critic_optimizer)]

    def per_example(self, x):
        h = self.encode(x)
        recon = -self.decode(h).log_prob(x)
        return {"recon": recon, "fool": F.softplus(-self.critic(h)).squeeze(1), "h": h}

    def losses(self, out):
        recon, fool = out["recon"].mean(), out["fool"].mean()
        return {"loss": recon + self.weight * fool, "recon": recon, "fool": fool}

    def training_step(self, batch, batch_idx):
        model_optimizer, critic_optimizer = self.optimizers()
        x, _ = batch
        out = self.core(x, *self.noise(x))
        terms = self.losses(out)
        self.log_training(terms, len(x))
        model_optimizer.zero_grad()
        self.manual_backward(terms["loss"])
        model_optimizer.step()
        h = out["h"].detach()
        logits = self.critic(torch.cat([self.randn(*h.shape), h])).squeeze(1)
        labels = torch.cat([torch.ones(len(h)), torch.zeros(len(h))]).to(logits)
        self.step_extra(critic_optimizer, F.binary_cross_entropy_with_logits(logits, labels))


SETTING = [
    "model=ae",
    f"model._target_={__name__}.AdversarialAE",
    "+model.critic_optimizer={_target_:torch.optim.Adam,_partial_:true,lr:0.0001,betas:[0.5,0.9]}",
    "model.net.hidden=[64]",
    "trainer=cpu",
    "callbacks.rich_progress_bar=null",
    "logger=csv",
]


def test_two_optimizers_count_one_step_per_batch_and_resume_exactly(tmp_path):
    # Digits: 12 steps per epoch; the stop falls in the middle of the second epoch.
    straight, objects = train(compose(*SETTING, "trainer.max_epochs=2", output_dir=tmp_path / "a"))
    assert objects["trainer"].global_step == 24  # batches, not optimizer steps
    checkpoint = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    assert [len(s["param_groups"][0]["params"]) for s in checkpoint["optimizer_states"]] == [
        len(list(objects["model"].parameters())) - 4,  # all but the critic's two layers
        4,
    ]
    assert checkpoint["optimizer_states"][1]["param_groups"][0]["betas"] == (0.5, 0.9)
    assert {"train/fool", "test/fool"} <= set(straight)

    with pytest.raises(Preempted):
        train(
            compose(*SETTING, "trainer.max_epochs=2", output_dir=tmp_path / "b"),
            [StopAt(17)],
        )
    train(compose(*SETTING, f"resume={tmp_path / 'b'}"))
    assert_same_run(tmp_path / "b", tmp_path / "a", rows=False)
    resumed = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    for a, b in zip(checkpoint["optimizer_states"], resumed["optimizer_states"], strict=True):
        for key, state in a["state"].items():
            assert all(torch.equal(state[k], b["state"][key][k]) for k in state)
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (
        tmp_path / "b" / "metrics.csv"
    ).read_bytes()
