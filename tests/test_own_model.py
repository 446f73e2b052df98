"""A model of the user's own, added through hydra.searchpath as the README shows."""

import textwrap

from vaelab import compose
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
