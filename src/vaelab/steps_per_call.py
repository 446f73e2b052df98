"""Several optimizer steps per Lightning step (`trainer.steps_per_call`, Keras's
`steps_per_execution`): which K a run takes, and what Lightning's loop does between two steps.

Each step through Lightning's loop costs ~1 ms of host time (hooks, progress, the logging
connector), more than a small model's whole step. With K > 1 the loader hands over K batches at
once and the model steps through them by hand; before each further batch the loop's counters are
advanced as Lightning advances them per batch, so everything that counts batches or steps
(global_step, batches per epoch, limits, validation and checkpoint intervals, max_steps, the
logging windows, a resume's position) counts optimizer steps, as with K = 1. Where Lightning would
act after a batch (validate, checkpoint, stop), the model hands the rest of the batches back and
returns, so the math and the order of events are those of K = 1.

The loop's counters are Lightning's internals, reached through vaelab.lightning_boundary.
"""

import time
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from vaelab import lightning_boundary as loop
from vaelab.data.batches import Steps
from vaelab.errors import ConfigError

# `auto`, where K > 1 can be made right, starts with K = START and then, after each call, takes
# the K whose call lasts about CALL_SECONDS at the step time just measured (at most MOST): then
# Lightning's ~1 ms per call is ~1% of the time, and the loop (a progress bar, say) still hears
# from the run ten times a second, whatever the model's speed (docs/guides/speed.md).
START, CALL_SECONDS, MOST = 8, 0.1, 256
# What K is timed with: the test suite puts a steady clock here, so that a run takes the same Ks
# on any machine under any load.
clock = time.perf_counter


# Lightning's hooks around backward and the optimizer step, which it calls on every callback and on
# the model for each step, whether or not any of them listens (~0.3 ms a step on a CPU here).
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step",
              "on_before_zero_grad")  # fmt: skip
# The hooks Lightning calls once per batch: a callback that has them sees one call per K batches.
PER_BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end", *STEP_HOOKS)


def known(method: Any) -> Any:
    """Mark a method of the model base as one that steps per call take into account (the
    training step that takes them, the clipping they take over): a model that overrides it is
    looked at again."""
    method.known_to_steps_per_call = True
    return method


def _is_known(method: Any) -> bool:
    return getattr(method, "known_to_steps_per_call", False)


def _listens(callback: Any, hooks: tuple[str, ...]) -> bool:
    """Whether a callback overrides any of Lightning's `hooks`."""
    from lightning.pytorch.callbacks import Callback

    return any(getattr(type(callback), hook) is not getattr(Callback, hook) for hook in hooks)


def _acts_per_batch(callback: Any) -> bool:
    """Whether a callback acts on single training batches, and has not said (with a class
    attribute `acts_once_per_call = True`) that it acts right when called once per K batches.
    Lightning's checkpoints act right: the model returns to Lightning at their step intervals."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    if getattr(callback, "acts_once_per_call", False) or isinstance(callback, ModelCheckpoint):
        return False
    return _listens(callback, PER_BATCH_HOOKS)


def _reason_for_one(
    trainer_cfg: DictConfig, model: Any, datamodule: Any, callbacks: list
) -> str | None:
    """Why this run must take one step per Lightning step, or None when it may take several."""
    per_batch = [type(c).__name__ for c in callbacks if _acts_per_batch(c)]
    if per_batch:
        return f"the callback {per_batch[0]} acts on every training batch"
    if not hasattr(datamodule, "steps_per_call"):
        return f"{type(datamodule).__name__} hands its loader's batches over one at a time"
    if not _is_known(type(model).training_step):
        return f"{type(model).__name__} defines its own training_step"
    accumulate = OmegaConf.select(trainer_cfg, "accumulate_grad_batches", default=1)
    if accumulate != 1:
        return f"trainer.accumulate_grad_batches={accumulate} steps once per several batches"
    devices = OmegaConf.select(trainer_cfg, "devices", default=1)
    nodes = OmegaConf.select(trainer_cfg, "num_nodes", default=1)
    strategy = str(OmegaConf.select(trainer_cfg, "strategy", default="auto"))
    if devices not in (1, "1") or nodes != 1 or strategy.startswith(("ddp", "fsdp", "deepspeed")):
        return (
            "several devices take one step per call: their calls must line up (Lightning syncs "
            "the ranks once per call, DDP their buffers once per call)"
        )
    return None


def choose(
    trainer_cfg: DictConfig, model: Any, datamodule: Any, callbacks: list
) -> tuple[int, bool]:
    """(K for this run's first call, whether K adapts to the step time). `auto` adapts where
    K > 1 can be made right and takes 1 elsewhere; an explicit K > 1 that cannot be made right is
    refused in one line."""
    setting = OmegaConf.select(trainer_cfg, "steps_per_call", default="auto")  # checked: schema
    reason = _reason_for_one(trainer_cfg, model, datamodule, callbacks)
    if setting == "auto":
        return (1, False) if reason else (START, True)
    if setting > 1 and reason:
        raise ConfigError(
            f"trainer.steps_per_call={setting}: {reason}; use trainer.steps_per_call=1 or auto"
        )
    return setting, False


def adapted(seconds: float, steps: int) -> int:
    """The K whose call would last CALL_SECONDS, from a call of `steps` steps in `seconds`."""
    return max(1, min(MOST, round(CALL_SECONDS * steps / max(seconds, 1e-9))))


def attach(model: Any, datamodule: Any, steps: int, adapt: bool, trainer_cfg: DictConfig) -> None:
    """Have `datamodule` hand over `steps` batches per call and `model` take them. A model that
    Lightning optimizes is then optimized by hand, with the same math: it clips gradients as the
    trainer's settings say (which Lightning refuses for models it does not step; the caller
    leaves them out of the Trainer) and steps its LR schedulers where Lightning would."""
    datamodule.steps_per_call = steps
    taken_over, clip = model.automatic_optimization, None
    if taken_over:
        model.automatic_optimization = False
        value = trainer_cfg.get("gradient_clip_val")
        clip = (value, trainer_cfg.get("gradient_clip_algorithm")) if value else None
    model.several_steps = StepsPerCall(adapt, taken_over, clip)


class StepsPerCall:
    """How a model takes several optimizer steps per call: whether K follows the step time,
    whether it optimizes by hand for Lightning (`taken_over`), the clipping it took over, and
    whether its steps go through torch alone (`direct`, decided as the fit starts)."""

    def __init__(self, adapt: bool, taken_over: bool, clip: tuple | None):
        self.adapt, self.taken_over, self.clip, self.direct = adapt, taken_over, clip, False

    def start(self, model: Any) -> None:
        """At the fit's start: continue the step count a checkpoint holds, and decide whether
        Lightning's hooks around a step can be skipped."""
        if self.taken_over:
            loop.carry_step_count(model.trainer)
            self.direct = unheard(model)

    def take(self, model: Any, x: Tensor, y: Tensor, steps: Steps) -> None:
        """One optimizer step per batch of the rows handed over. Before each further batch,
        Lightning's counters move on by a batch; where Lightning would act after a batch
        (validate, checkpoint, end the epoch or the run, stop), the rest is handed back."""
        started, trained = clock(), 0
        trainer = model.trainer
        loop.mark_last_batch(trainer)
        most = horizon(trainer)
        for batch in zip(x.split(steps.batch_size), y.split(steps.batch_size), strict=True):
            if trained:
                if trained == most or trainer.should_stop or trainer.received_sigterm:
                    steps.give_back(trained)
                    break
                loop.count_batch(trainer)
            model.optimize(batch)
            if self.taken_over:
                loop.count_optimizer_step(trainer)
            step_schedulers(model)
            trained += 1
        if self.adapt:
            steps.next_calls_hold(adapted(clock() - started, trained))


def horizon(trainer: Any) -> int:
    """How many batches a call may train, from its first, before Lightning may act on one: end
    the epoch or the run (max_steps), write a step-interval checkpoint, validate. Returning to
    Lightning where it then does nothing costs a call, never a difference; a validation every so
    many seconds may fall after any batch, so then each call trains one."""
    if loop.validates_by_time(trainer):
        return 1
    in_epoch, in_run = (count - 1 for count in loop.batches_started(trainer))  # before this call
    step = trainer.global_step
    ahead = [trainer.num_training_batches - in_epoch]
    if trainer.max_steps >= 0:
        ahead.append(trainer.max_steps - step)
    for callback in trainer.checkpoint_callbacks:
        every = loop.checkpoint_every_n_steps(callback)
        if every:
            ahead.append(every - step % every)
    every = trainer.val_check_batch
    if every is not None and every != float("inf"):
        done = in_run if trainer.check_val_every_n_epoch is None else in_epoch
        ahead.append(int(every) - done % int(every))
    return max(1, int(min(ahead)))


def step_schedulers(model: Any) -> None:
    """After a batch a model trained by hand: step its LR schedulers where Lightning steps those
    of the models it optimizes (per step, or after the epoch's last batch; every `frequency`).
    ReduceLROnPlateau waits for the epoch's end, where its metric is (Model.on_train_epoch_end)."""
    trainer = model.trainer
    for config in trainer.lr_scheduler_configs:
        if is_plateau(config):
            continue
        if config.interval == "step":
            count = loop.batches_done_in_epoch(trainer)
        elif loop.epoch_batches_done(trainer):
            count = trainer.current_epoch + 1
        else:
            continue
        if count % config.frequency == 0:
            loop.count_scheduler_step(
                trainer, lambda c=config: model.lr_scheduler_step(c.scheduler, None)
            )


def is_plateau(config: Any) -> bool:
    """Whether a scheduler steps on a metric; Lightning's flag for it is unset when it does not
    optimize the model itself."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    return isinstance(config.scheduler, ReduceLROnPlateau)


def unheard(model: Any) -> bool:
    """Whether Lightning's manual_backward and optimizer step would add nothing to torch's own
    for this model: no callback and no model hook listens to the hooks they call (the model
    base's clipping aside: `direct_step` clips), the precision plugin scales no loss, and one
    device holds the model. Then `direct_step` takes the step."""
    from lightning.pytorch.core import LightningModule
    from lightning.pytorch.plugins.precision import (
        DoublePrecision,
        HalfPrecision,
        MixedPrecision,
        Precision,
    )
    from lightning.pytorch.strategies import SingleDeviceStrategy

    trainer = model.trainer
    plugin = trainer.precision_plugin
    plain = type(plugin) in (Precision, DoublePrecision, HalfPrecision, MixedPrecision)
    if not plain or getattr(plugin, "scaler", None) is not None:
        return False
    if type(trainer.strategy) is not SingleDeviceStrategy:
        return False
    if any(_listens(callback, STEP_HOOKS) for callback in trainer.callbacks):
        return False
    for hook in STEP_HOOKS:
        own = getattr(type(model), hook)
        if own is not getattr(LightningModule, hook) and not _is_known(own):
            return False
    return type(model).backward is LightningModule.backward  # one of its own: Lightning's path


def direct_step(model: Any, optimizer: Any, loss: Tensor) -> None:
    """One optimizer step through torch alone, counted as Lightning counts its own: what
    manual_backward and the optimizer's step do when nothing listens to their hooks."""
    optimizer.zero_grad()
    model.backward(loss)
    model.on_before_optimizer_step(optimizer)
    loop.count_manual_step(model.trainer, optimizer.optimizer.step)
