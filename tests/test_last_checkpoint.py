"""checkpoints/last.ckpt follows the run: after every validation, every N steps, at the end; and a
run resumed from it, killed anywhere or extended once finished, is the run that never stopped:
the same weights, the same rows of metrics.csv at the same steps."""

from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import open_dict

from tests.helpers import Killed, StopAt, assert_same_run, metrics_rows
from vaelab.train import train

# Digits, 11 steps an epoch, a CSV log.
COMMON = ["trainer.limit_train_batches=11", "callbacks.images=null", "logger=csv"]


def _step(path: Path) -> int:
    return torch.load(path, weights_only=True)["global_step"]


class Peek(L.Callback):
    """The step of last.ckpt as each epoch starts (after the previous epoch's validation)."""

    def __init__(self, path: Path):
        self.path, self.seen = path, []

    def on_train_epoch_start(self, trainer, pl_module):
        if self.path.exists():
            self.seen.append((trainer.global_step, _step(self.path)))


def test_last_ckpt_is_written_at_every_validation_and_at_the_end(compose_train):
    """Even where the monitored value did not improve, which is where Lightning's ModelCheckpoint
    writes no last.ckpt: here it never improves after the first validation (monitor=step)."""
    cfg = compose_train(*COMMON, "trainer.max_epochs=5", "trainer.max_steps=50",
                        "callbacks.last_checkpoint.every_n_train_steps=20",
                        "callbacks.model_checkpoint.monitor=step",
                        "callbacks.model_checkpoint.mode=min")  # fmt: skip
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    peek = Peek(checkpoints / "last.ckpt")
    results, _ = train(cfg, extra_callbacks=[peek])
    assert peek.seen == [(11, 11), (22, 22), (33, 33), (44, 44)]
    assert results["global_step"] == 50 == _step(checkpoints / "last.ckpt")  # max_steps, mid-epoch
    assert _step(checkpoints / "best.ckpt") == 11


@pytest.mark.parametrize("steps_per_call", [1, "auto"])
@pytest.mark.parametrize(
    "where",
    [
        # The validation killed follows step 22: the epoch's last batch, and a step interval's.
        ["callbacks.last_checkpoint.every_n_train_steps=11"],
        # ... follows step 20, in the epoch: validations after steps 9, 20, 31, 42.
        ["callbacks.last_checkpoint.every_n_train_steps=10", "+trainer.val_check_interval=9"],
    ],
    ids=["epoch_end", "mid_epoch"],
)
def test_a_run_killed_while_validating_validates_again_when_resumed(
    compose_train, where, steps_per_call
):
    # best.ckpt: the first validation's (the ELBO only rises here), which a resume must not forget.
    best = ["callbacks.model_checkpoint.mode=min"]
    settings = [*COMMON, *where, *best, "trainer.max_epochs=4",
                f"trainer.steps_per_call={steps_per_call}"]  # fmt: skip
    straight = compose_train(*settings, "trainer.steps_per_call=1")
    train(straight)
    cfg = compose_train(*settings)
    with pytest.raises(Killed):
        train(cfg, extra_callbacks=[StopAt(20, stage="val", by="Killed")])
    run_dir = Path(cfg.paths.output_dir)
    assert _step(run_dir / "checkpoints" / "last.ckpt") < 20  # the step save waited for it
    resumed = compose_train(*settings, f"resume={run_dir}")
    with open_dict(resumed):
        resumed.paths.output_dir = str(run_dir)
    train(resumed)
    reference = Path(straight.paths.output_dir)
    assert_same_run(run_dir, reference)  # the killed validation among the rows
    assert sum(1 for row in metrics_rows(run_dir) if row["val/elbo"]) >= 4
    assert _step(run_dir / "checkpoints" / "last.ckpt") == 44
    best_step = _step(reference / "checkpoints" / "best.ckpt")
    assert _step(run_dir / "checkpoints" / "best.ckpt") == best_step < 20  # from before the kill


def _resume(compose_train, run_dir: Path, *overrides: str) -> None:
    cfg = compose_train(*COMMON, f"resume={run_dir}", *overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    train(cfg)


@pytest.mark.parametrize(
    "limits",
    [
        [],
        ["trainer.max_steps=200"],  # Lightning counts an iteration-based fit's epochs otherwise
        ["trainer.max_steps=200", "trainer.limit_val_batches=0"],  # starts again from step 0
        [
            "trainer.max_steps=200",
            "callbacks.last_checkpoint.every_n_train_steps=11",
            "trainer.limit_val_batches=0",
        ],  # fmt: skip
    ],
    ids=["epochs", "steps_too", "no_checkpoint_yet", "no_validation"],
)
def test_a_run_killed_after_an_epoch_resumes_to_the_run_that_never_stopped(compose_train, limits):
    settings = [*COMMON, *limits, "trainer.max_epochs=7"]
    straight = compose_train(*settings, "trainer.steps_per_call=1")
    train(straight)
    cfg = compose_train(*settings)
    with pytest.raises(Killed):
        train(cfg, extra_callbacks=[StopAt(50, by="Killed")])  # after epoch 4 (44 steps)
    run_dir = Path(cfg.paths.output_dir)
    _resume(compose_train, run_dir, *limits)
    assert_same_run(run_dir, Path(straight.paths.output_dir))


@pytest.mark.parametrize(
    "first, then",
    [
        (["trainer.max_steps=50"], ["trainer.max_steps=80"]),  # ended inside an epoch
        (["trainer.max_epochs=4", "trainer.max_steps=200"], ["trainer.max_epochs=7"]),
        (
            ["trainer.max_epochs=4", "trainer.limit_val_batches=0", "trainer.max_steps=200"],
            ["trainer.max_epochs=7", "trainer.limit_val_batches=0"],
        ),  # fmt: skip
    ],
    ids=["max_steps", "max_epochs", "no_validation"],
)
def test_a_finished_run_extended_is_the_longer_run(compose_train, first, then):
    settings = [*COMMON, "trainer.max_epochs=20", "trainer.max_steps=200"]
    straight = compose_train(*settings, *then)
    train(straight)
    cfg = compose_train(*settings, *first)
    results, _ = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert _step(run_dir / "checkpoints" / "last.ckpt") == results["global_step"]
    _resume(compose_train, run_dir, *then)
    # The first run's test rows are dropped with the rows after its checkpoint: none after it.
    assert_same_run(run_dir, Path(straight.paths.output_dir))
