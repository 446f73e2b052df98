"""The GPU paths, run by scripts/gpu_check.sh on a machine with a CUDA GPU (skipped elsewhere):
training in bf16-mixed with the data on the device, then eval, embed and sample with the same
trainer group on the GPU."""

import numpy as np
import pytest
import torch

from vaelab import compose
from vaelab.embed import export
from vaelab.evaluate import evaluate
from vaelab.runs.trained import inference_trainer, load_trained, placed
from vaelab.sample import draw
from vaelab.train import train

pytestmark = pytest.mark.gpu


def test_train_then_eval_embed_and_sample_on_the_gpu(tmp_path):
    gpu = ["trainer=gpu", "callbacks.rich_progress_bar=null"]
    cfg = compose("experiment=digits", *gpu, "trainer.max_epochs=3", "data.on_device=true",
                  "logger=none", "metrics=none", output_dir=tmp_path / "run")  # fmt: skip
    results, objects = train(cfg)
    assert objects["trainer"].strategy.root_device.type == "cuda"
    assert np.isfinite(results["test/elbo"])
    ckpt = results["best_ckpt"]

    def command(name, out, *overrides):
        return compose(f"ckpt_path={ckpt}", *gpu[:1], *overrides, config_name=name,
                       output_dir=tmp_path / out)  # fmt: skip

    evaluated = evaluate(command("eval", "eval", "iw_samples=10"))
    assert evaluated["test/elbo"] == pytest.approx(results["test/elbo"], rel=0.02)
    embed_cfg = command("embed", "embed")
    with placed(load_trained(ckpt)[0], inference_trainer(embed_cfg.trainer)) as model:
        assert model.device.type == "cuda"
    assert np.isfinite(np.load(export(embed_cfg))).all()
    assert len(draw(command("sample", "sample"))) == 3
    assert torch.cuda.max_memory_allocated() > 0


@pytest.mark.parametrize(
    "setting",
    [
        ["trainer.precision=bf16-mixed"],  # torch's own backward and step (no hook listens)
        [
            "trainer.precision=16-mixed",
            "model.optimizer.fused=false",
            "trainer.gradient_clip_val=1.0",
        ],  # Lightning's: the loss scale, unscaled to clip
        ["model.compile=true", "model.compile_mode=reduce-overhead"],  # a CUDA graph K times
    ],  # fmt: skip
    ids=["bf16", "16-mixed-clip", "cuda-graphs"],
)
def test_several_steps_per_call_on_the_gpu_are_one_step_per_call(tmp_path, setting):
    weights, taken = {}, {}
    for steps in ("1", "auto"):
        cfg = compose("experiment=digits", "trainer=gpu", "callbacks.rich_progress_bar=null",
                      "trainer.max_epochs=3", "data.on_device=true", "logger=none",
                      "metrics=none", f"trainer.steps_per_call={steps}", *setting,
                      output_dir=tmp_path / steps)  # fmt: skip
        results, objects = train(cfg)
        assert np.isfinite(results["test/elbo"])
        taken[steps] = results["global_step"]
        weights[steps] = {k: v.float().cpu() for k, v in objects["model"].state_dict().items()}
    assert taken["1"] == taken["auto"]
    for name, value in weights["1"].items():
        assert torch.equal(value, weights["auto"][name]), name
