"""Several optimizer steps per Lightning step (trainer.steps_per_call): the same run, bit for bit,
as one step per call, whatever counts steps."""

from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import open_dict

from tests.conftest import composer
from tests.helpers import PoisonWeights, assert_same_tensors, metrics_rows
from vaelab.config.presets import group_options
from vaelab.config.schema import validate
from vaelab.data import DigitsDataModule
from vaelab.data.batches import TensorBatches
from vaelab.errors import ConfigError, TrainingDiverged
from vaelab.steps_per_call import START, adapted, choose
from vaelab.train import train

# Digits: 11 of its 12 batches per epoch, so 301 steps end mid-epoch, and the epochs,
# validations and checkpoints below fall inside calls of the K compared: the model must hand
# batches back to Lightning mid-call at each.
HARD = [
    "trainer.max_epochs=40",
    "trainer.max_steps=301",
    "trainer.limit_train_batches=11",
    "+trainer.val_check_interval=7",  # validations inside the epoch
    "trainer.gradient_clip_val=0.5",
    "trainer.log_every_n_steps=3",
    "callbacks.last_checkpoint.every_n_train_steps=13",
    "callbacks.images=null",
    "model/scheduler=warmup",  # stepped after every optimizer step
    "model.scheduler.total_iters=150",
    "model/kl_schedule=cyclical",  # reads the trainer's estimate of the run's steps
    "data.binarize=dynamic",  # a fresh draw per batch
    "logger=csv",
]


def test_the_loader_hands_over_k_batches_in_one_cut_and_takes_back_the_untrained():
    dm = DigitsDataModule(batch_size=100, binarize="dynamic", seed=3)
    dm.setup()
    x, y = dm.splits["train"]
    settings = dict(shuffle=True, drop_last=False, seed=3, binarize=True)
    one, many = TensorBatches(x, y, 100, **settings), TensorBatches(x, y, 100, **settings,
                                                                    steps_per_call=4)  # fmt: skip
    assert len(many) == len(one) == 15  # batches, not calls: 1,437 rows, the last batch short
    for epoch in (0, 1):
        one.sampler.set_epoch(epoch)
        many.sampler.set_epoch(epoch)
        batches, calls = list(one), list(many)
        assert [steps.first for _, _, steps in calls] == [0, 4, 8, 12]
        assert all(steps.batch_size == 100 for _, _, steps in calls)
        # The same rows, the same fresh Bernoulli draws, the same order.
        assert torch.equal(torch.cat([c[0] for c in calls]), torch.cat([b[0] for b in batches]))
        assert torch.equal(torch.cat([c[1] for c in calls]), torch.cat([b[1] for b in batches]))
    # A model that trained on one batch of a call hands the rest back: the next call starts
    # with them, and the position a checkpoint saves counts only what was trained.
    calls = iter(many)
    _, _, steps = next(calls)
    steps.give_back(1)
    assert many.state_dict() == {"epoch": 1, "taken": 1}
    x1, _, again = next(calls)
    assert again.first == 1 and torch.equal(x1, torch.cat([b[0] for b in batches[1:5]]))
    # auto's K is capped by the bytes of a call's rows (float32): 256 MiB of 100 x 64 floats.
    again.next_calls_hold(10**6)
    assert many.steps_per_call == 256 * 2**20 // (100 * 64 * 4)
    again.next_calls_hold(3)
    assert many.steps_per_call == 3


def _run(compose_train, steps: int | str, *overrides: str):
    cfg = compose_train(*HARD, f"trainer.steps_per_call={steps}", *overrides)
    results, objects = train(cfg)
    return Path(cfg.paths.output_dir), results, objects


def _checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.fixture(scope="module")
def one_step(tmp_path_factory):
    """The reference: one optimizer step per Lightning step."""
    return _run(composer(tmp_path_factory.mktemp("k1")), 1)


@pytest.mark.parametrize("steps", [3, 8, "auto"])
def test_k_steps_per_call_are_the_one_step_run_bit_for_bit(one_step, compose_train, steps):
    reference_dir, reference, reference_objects = one_step
    run_dir, results, objects = _run(compose_train, steps)
    trainer, model = objects["trainer"], objects["model"]
    assert model.automatic_optimization is False  # stepped by hand, K at a time

    # What counts steps counts optimizer steps.
    assert trainer.global_step == 301 == reference["global_step"]
    assert trainer.num_training_batches == 11 == reference_objects["trainer"].num_training_batches
    assert trainer.estimated_stepping_batches == 301
    # The weights, the optimizer's and the scheduler's states, the loop's progress and the
    # loader's position in the checkpoint; the best checkpoint chosen; every logged value.
    ours, theirs = _checkpoint(run_dir), _checkpoint(reference_dir)
    assert ours["global_step"] == theirs["global_step"] == 301  # written at the end
    # Steps taken by hand are counted as Lightning counts its own, and also where global_step
    # reads them when a model is optimized by hand.
    by_hand = ours["loops"]["fit_loop"].pop("epoch_loop.manual_optimization.optim_step_progress")
    assert by_hand["total"]["completed"] == 301
    del theirs["loops"]["fit_loop"]["epoch_loop.manual_optimization.optim_step_progress"]
    for key in ("state_dict", "optimizer_states", "lr_schedulers", "loops", "train_means"):
        assert_same_tensors(ours[key], theirs[key], key)
    assert Path(results["best_ckpt"]).name == Path(reference["best_ckpt"]).name
    assert results["test/elbo"] == reference["test/elbo"]
    assert metrics_rows(run_dir) == metrics_rows(reference_dir)
    # The windows, validations and checkpoints fell where they fall with one step per call.
    rows = metrics_rows(run_dir)
    assert [int(r["step"]) for r in rows if r["train/loss"]][:3] == [2, 5, 8]
    assert [int(r["step"]) for r in rows if r["val/elbo"]][:3] == [6, 17, 28]
    lr = [float(r["lr-Adam"]) for r in rows if r["lr-Adam"]]
    assert lr[0] < lr[-1] == pytest.approx(1e-3)  # the warm-up moved per step


def test_a_run_killed_mid_call_resumes_to_the_one_step_run(one_step, compose_train):
    """Stopped after step 200 (mid-epoch, between two step-interval checkpoints), resumed with
    another K: the weights and the log of the run that never stopped."""
    reference_dir, _, _ = one_step

    class Killed(Exception):
        pass

    class Kill(PoisonWeights):  # at the end of the call that passes step 200
        acts_once_per_call = True

        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step >= self.step:
                raise Killed

    cfg = compose_train(*HARD, "trainer.steps_per_call=8")
    with pytest.raises(Killed):
        train(cfg, extra_callbacks=[Kill(step=200)])
    run_dir = Path(cfg.paths.output_dir)
    stopped = _checkpoint(run_dir)
    assert stopped["global_step"] == 195  # 13 * 15: the last step-interval checkpoint
    assert stopped["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 17, "taken": 8}  # 17 epochs of 11, then 8 batches
    ]
    resumed = compose_train(*HARD, f"resume={run_dir}", "trainer.steps_per_call=5")
    with open_dict(resumed):
        resumed.paths.output_dir = str(run_dir)
    train(resumed)
    ours, theirs = _checkpoint(run_dir), _checkpoint(reference_dir)
    for key in ("state_dict", "optimizer_states", "lr_schedulers"):
        assert_same_tensors(ours[key], theirs[key], key)
    assert metrics_rows(run_dir) == metrics_rows(reference_dir)


@pytest.mark.parametrize("model", group_options("model"))
def test_every_model_takes_several_steps_per_call_as_it_takes_one(compose_train, model):
    """FactorVAE's two optimizers, VQ-VAE's codebook moved outside the gradient, the
    conditional model's labels, IWAE's K samples: the same weights after steps crossing epochs."""
    common = [f"model={model}", "trainer.max_steps=30", "trainer.limit_val_batches=1",
              "callbacks.images=null", "logger=none", "metrics=none", "iw_samples=2"]  # fmt: skip
    runs = []
    for steps in (1, 7):
        results, objects = train(compose_train(*common, f"trainer.steps_per_call={steps}"))
        runs.append((objects["model"].state_dict(), results.get("test/loss")))
    (a, loss_a), (b, loss_b) = runs
    assert_same_tensors(a, b, "state_dict")
    assert loss_a == loss_b


def test_the_divergence_guard_stops_at_the_same_step(compose_train):
    messages = []
    for steps in (1, 8):
        cfg = compose_train(
            "model.optimizer.lr=1e6", "trainer.log_every_n_steps=1", "callbacks.images=null",
            f"trainer.steps_per_call={steps}",
        )  # fmt: skip
        with pytest.raises(TrainingDiverged) as caught:
            train(cfg)
        messages.append(str(caught.value).replace(cfg.paths.output_dir, "<run>"))
    assert messages[0] == messages[1]
    assert "training diverged by step" in messages[0]


def test_auto_takes_one_step_where_several_cannot_be_made_right(compose_train):
    from vaelab.config.instantiate import build

    def chosen(*overrides: str, callbacks=()):
        cfg = compose_train(*overrides)
        datamodule = build(cfg.data)
        datamodule.setup("fit")
        model = build(cfg.model, input_shape=list(datamodule.shape))
        return choose(cfg.trainer, model, datamodule, list(callbacks))

    assert chosen() == (START, True)  # then adapted to the step time
    assert chosen("trainer.steps_per_call=5") == (5, False)
    assert chosen("trainer.accumulate_grad_batches=2") == (1, False)
    assert chosen("trainer=ddp_cpu") == (1, False)
    assert chosen(callbacks=[PoisonWeights(step=3)]) == (1, False)  # it acts on every batch
    with pytest.raises(ConfigError) as caught:
        chosen("trainer.steps_per_call=4", "trainer.accumulate_grad_batches=2")
    assert str(caught.value) == (
        "trainer.steps_per_call=4: trainer.accumulate_grad_batches=2 steps once per several "
        "batches; use trainer.steps_per_call=1 or auto"
    )
    with pytest.raises(ConfigError, match="callback PoisonWeights acts on every training batch"):
        chosen("trainer.steps_per_call=4", callbacks=[PoisonWeights(step=3)])
    assert chosen("trainer.steps_per_call=1", "trainer.accumulate_grad_batches=2") == (1, False)


def test_auto_sizes_a_call_to_a_tenth_of_a_second():
    assert adapted(seconds=0.02, steps=8) == 40  # 2.5 ms a step
    assert adapted(seconds=0.5, steps=2) == 1  # a slow model: one step a call
    assert adapted(seconds=1e-4, steps=8) == 256  # at most
    assert adapted(seconds=0.0, steps=3) == 256


@pytest.mark.parametrize("value", [0, -2, "many", 1.5, True])
def test_steps_per_call_must_be_auto_or_a_count(compose_train, value):
    cfg = compose_train(f"trainer.steps_per_call={value}")
    with pytest.raises(ConfigError, match=r"trainer.steps_per_call.*integer >= 1, or auto"):
        validate(cfg)


class GradNorms(L.Callback):
    """Listens to a hook Lightning calls around every optimizer step: with several steps per call
    the model then steps through Lightning's manual_backward and optimizer wrapper."""

    acts_once_per_call = True  # its hook comes per optimizer step whatever K is

    def __init__(self):
        self.norms = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad.flatten() for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(float(torch.cat(grads).norm()))


def test_hooks_around_each_step_are_called_for_each_step(compose_train):
    norms, weights = {}, {}
    for steps in (1, 8):
        listener = GradNorms()
        cfg = compose_train(
            "trainer.max_steps=40", "trainer.gradient_clip_val=0.5", "callbacks.images=null",
            "trainer.precision=bf16-mixed", "model.optimizer.fused=false", "logger=none",
            f"trainer.steps_per_call={steps}",
        )  # fmt: skip
        _, objects = train(cfg, extra_callbacks=[listener])
        norms[steps], weights[steps] = listener.norms, objects["model"].state_dict()
        if steps > 1:  # someone listens: Lightning's own path
            assert objects["model"].several_steps.direct is False
    assert len(norms[1]) == 40 and norms[8] == norms[1]  # before clipping, as Lightning gives
    assert_same_tensors(weights[8], weights[1], "state_dict")
