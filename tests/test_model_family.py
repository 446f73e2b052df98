"""Every model of the family, with the MLP and a conv net on digits: trains from its preset,
resumes to the weights and rows of the run that never stopped, and serves vaelab-eval,
vaelab-embed and vaelab-sample (run in-process here; the CLI shell is tested in test_cli)."""

import numpy as np
import pytest
import torch

from tests.helpers import StopAt, assert_same_run
from vaelab import compose
from vaelab.config.presets import one_preset_per_class
from vaelab.embed import export
from vaelab.errors import Preempted
from vaelab.evaluate import evaluate
from vaelab.sample import draw
from vaelab.train import train

FAMILY = one_preset_per_class()  # from conf/model/: a new model is in the family
# Digits are 8x8: one stride-2 layer leaves the 4x4 map the conv net needs.
NETS = {
    "mlp": ["model.net.hidden=[64]"],
    "conv": ["model/net=conv", "model.net.channels=[8]", "model.net.hidden=64"],
}
# The paper's discriminator (six layers of 1000) would triple the test's time; the protocol is
# the same with a narrow one.
SMALLER = {"factor_vae": ["model.discriminator_units=64"]}
QUICK = ["trainer=cpu", "callbacks.rich_progress_bar=null", "logger=csv", "iw_samples=5"]


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("model", FAMILY)
def test_model_trains_resumes_exactly_and_serves_eval_embed_sample(model, net, tmp_path):
    setting = [f"model={model}", *NETS[net], *SMALLER.get(model, []), *QUICK]
    # Digits: 12 steps per epoch; the stop falls in the middle of the second epoch.
    straight, _ = train(compose(*setting, "trainer.max_epochs=2", output_dir=tmp_path / "a"))
    with pytest.raises(Preempted):
        train(
            compose(*setting, "trainer.max_epochs=2", output_dir=tmp_path / "b"),
            [StopAt(17)],
        )
    resumed, _ = train(compose(*setting, f"resume={tmp_path / 'b'}"))
    assert_same_run(tmp_path / "b", tmp_path / "a", rows=False)
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (
        tmp_path / "b" / "metrics.csv"
    ).read_bytes()
    tested = {k: v for k, v in straight.items() if k.startswith("test/")}
    assert tested == {k: v for k, v in resumed.items() if k.startswith("test/")}

    ckpt = f"ckpt_path={resumed['best_ckpt']}"
    evaluated = evaluate(compose(ckpt, "iw_samples=5", "trainer=cpu", config_name="eval",
                                 output_dir=tmp_path / "eval"))  # fmt: skip
    for name, value in tested.items():
        assert evaluated[name] == pytest.approx(value, abs=1e-4), name

    path = export(compose(ckpt, "split=test", config_name="embed", output_dir=tmp_path / "embed"))
    hparams = torch.load(resumed["best_ckpt"], weights_only=True)["hyper_parameters"]
    assert np.load(path).shape[1] == hparams["latent_dim"] == 8  # digits' preset

    # An AE has no prior: it generates through a mixture fitted to its training embeddings.
    sampler = "sampler=gmm" if model == "ae" else "sampler=prior"
    by_class = ["label=3"] if model == "cvae" else []  # a conditional model draws one class
    written = draw(compose(ckpt, sampler, *by_class, "n=4", config_name="sample",
                           output_dir=tmp_path / "sample"))  # fmt: skip
    assert [p.name for p in written] == ["samples.png", "interpolation.png", "traversals.png"]
    assert all(p.stat().st_size > 0 for p in written)
