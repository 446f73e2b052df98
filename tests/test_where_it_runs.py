"""vaelab-eval, -embed and -sample take the `trainer` group: they run on the accelerator and in
the precision it names, as training does."""

import json

import numpy as np
import pytest
import torch

from vaelab import compose
from vaelab.config.schema import validate
from vaelab.embed import export
from vaelab.errors import ConfigError
from vaelab.evaluate import evaluate
from vaelab.runs.trained import inference_trainer, load_trained, placed
from vaelab.sample import draw
from vaelab.train import train


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("trained")
    cfg = compose("experiment=digits", "trainer=cpu", "trainer.max_epochs=3", "logger=none",
                  "callbacks.rich_progress_bar=null", "callbacks.images=null", "metrics=none",
                  output_dir=tmp / "run")  # fmt: skip
    results, _ = train(cfg)
    return results["best_ckpt"]


def command(name: str, ckpt: str, out, *overrides: str):
    return compose(f"ckpt_path={ckpt}", *overrides, config_name=name, output_dir=out)


def test_eval_tests_in_the_precision_of_the_trainer_group(ckpt, tmp_path):
    full = evaluate(command("eval", ckpt, tmp_path / "a", "trainer=cpu", "iw_samples=2"))
    half = evaluate(command("eval", ckpt, tmp_path / "b", "trainer=cpu", "iw_samples=2",
                            "trainer.precision=bf16-true"))  # fmt: skip
    # bf16 rounds every weight and activation: close to the float32 numbers, not equal.
    assert half["test/elbo"] != full["test/elbo"]
    assert half["test/elbo"] == pytest.approx(full["test/elbo"], rel=0.05)
    written = json.loads((tmp_path / "b" / "results.json").read_text())
    assert written["test/elbo"] == half["test/elbo"]


def test_embed_and_sample_place_the_model_as_the_trainer_group_says(ckpt, tmp_path):
    cfg = command("embed", ckpt, tmp_path / "e", "trainer=cpu", "trainer.precision=64-true")
    model = load_trained(ckpt)[0]
    with placed(model, inference_trainer(cfg.trainer)) as on_device:
        assert on_device.dtype == torch.float64 and on_device.device.type == "cpu"
    path = export(cfg)
    z64 = np.load(path)
    z32 = np.load(export(command("embed", ckpt, tmp_path / "f", "trainer=cpu")))
    assert z64.shape == z32.shape and not np.array_equal(z64, z32)
    np.testing.assert_allclose(z64, z32, atol=1e-4)

    drawn = draw(command("sample", ckpt, tmp_path / "s", "trainer=cpu",
                         "trainer.precision=bf16-true"))  # fmt: skip
    assert [p.name for p in drawn] == ["samples.png", "interpolation.png", "traversals.png"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_an_accelerator_the_machine_lacks_is_one_line(ckpt, tmp_path):
    with pytest.raises(ConfigError, match="trainer.accelerator=gpu, but no CUDA GPU is visible"):
        evaluate(command("eval", ckpt, tmp_path / "g", "trainer=gpu"))


def test_trainer_threads_holds_for_the_run_and_is_put_back(compose_train):
    """trainer.threads=1: the run's math on one thread (read during the fit), and the process's
    own number back afterwards; a number of threads that is not one is refused in one line."""
    import lightning as L

    seen = []

    class Threads(L.Callback):
        def on_train_batch_start(self, *args):
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        cfg = compose_train("trainer.threads=1", "trainer.max_epochs=1", "logger=none")
        train(cfg, extra_callbacks=[Threads()])
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="trainer.threads=0: must be"):
        validate(compose_train("trainer.threads=0"))
