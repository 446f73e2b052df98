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

Lightning has no public API for its loop's progress: the private names of Lightning 2.6 that this
needs are used here and nowhere else (callbacks/last_checkpoint.py asks its loop one question).
"""

from typing import Any

from omegaconf import DictConfig, OmegaConf

from vaelab.errors import ConfigError

# `auto`, where K > 1 can be made right, starts with K = START and then, after each call, takes
# the K whose call lasts about CALL_SECONDS at the step time just measured (at most MOST): then
# Lightning's ~1 ms per call is ~1% of the time, and the loop (a progress bar, say) still hears
# from the run ten times a second, whatever the model's speed (README, Speed).
START, CALL_SECONDS, MOST = 8, 0.1, 256


# Lightning's hooks around backward and the optimizer step, which it calls on every callback and on
# the model for each step, whether or not any of them listens (~0.3 ms a step on a CPU here).
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step",
              "on_before_zero_grad")  # fmt: skip
# The hooks Lightning calls once per batch: a callback that has them sees one call per K batches.
PER_BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end", *STEP_HOOKS)


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
    from vaelab.models.base import Model

    per_batch = [type(c).__name__ for c in callbacks if _acts_per_batch(c)]
    if per_batch:
        return f"the callback {per_batch[0]} acts on every training batch"
    if not hasattr(datamodule, "steps_per_call"):
        return f"{type(datamodule).__name__} hands its loader's batches over one at a time"
    if type(model).training_step is not Model.training_step:
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


# Lightning's loop, seen from inside a training step that takes several optimizer steps.


def count_batch(trainer: Any) -> None:
    """Advance the loop's counters by one batch: the one just trained is done, the next is
    started, as Lightning's loop counts them between two of its own steps."""
    loop = trainer.fit_loop.epoch_loop
    loop.batch_progress.increment_by(1)
    loop._batches_that_stepped += 1
    mark_last_batch(trainer)


def mark_last_batch(trainer: Any) -> None:
    """Whether the batch about to be trained is the epoch's last, which Lightning takes from its
    fetcher; the fetcher counts calls, not batches, so it is set from the batches here."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    progress.is_last_batch = progress.current.ready >= trainer.num_training_batches


def horizon(trainer: Any) -> int:
    """How many batches a call may train, from its first, before Lightning may act on one: end
    the epoch or the run (max_steps), write a step-interval checkpoint, validate. Returning to
    Lightning where it then does nothing costs a call, never a difference; a validation every so
    many seconds may fall after any batch, so then each call trains one."""
    loop = trainer.fit_loop.epoch_loop
    progress = loop.batch_progress
    in_epoch, in_run = progress.current.ready - 1, progress.total.ready - 1  # before this call
    step = trainer.global_step
    ahead = [trainer.num_training_batches - in_epoch]
    if trainer.max_steps >= 0:
        ahead.append(trainer.max_steps - step)
    for callback in trainer.checkpoint_callbacks:
        every = getattr(callback, "_every_n_train_steps", 0)
        if every:
            ahead.append(every - step % every)
    if getattr(trainer, "_val_check_time_interval", None) is not None:  # Lightning >= 2.6
        return 1
    every = trainer.val_check_batch
    if every is not None and every != float("inf"):
        done = in_run if trainer.check_val_every_n_epoch is None else in_epoch
        ahead.append(int(every) - done % int(every))
    return max(1, int(min(ahead)))


def stopping(trainer: Any) -> bool:
    """Whether the run was asked to stop (a callback, SIGTERM) during the call."""
    return trainer.should_stop or trainer.received_sigterm


def step_schedulers(model: Any) -> None:
    """After a batch a model trained by hand: step its LR schedulers where Lightning steps those
    of the models it optimizes (per step, or after the epoch's last batch; every `frequency`).
    ReduceLROnPlateau waits for the epoch's end, where its metric is (Model.on_train_epoch_end)."""
    trainer = model.trainer
    loop = trainer.fit_loop.epoch_loop
    for config in trainer.lr_scheduler_configs:
        if is_plateau(config):
            continue
        if config.interval == "step":
            count = loop.batch_idx + 1
        elif loop._num_ready_batches_reached():
            count = trainer.current_epoch + 1
        else:
            continue
        if count % config.frequency == 0:
            loop.scheduler_progress.increment_ready()
            model.lr_scheduler_step(config.scheduler, None)
            loop.scheduler_progress.increment_completed()


def count_step(trainer: Any) -> None:
    """Count an optimizer step taken by hand for a model Lightning would optimize, where Lightning
    counts its own: a checkpoint then holds the progress of a run of K = 1, which a resume with
    any K continues."""
    optimizer = trainer.fit_loop.epoch_loop.automatic_optimization.optim_progress.optimizer
    optimizer.step.increment_by(1)
    optimizer.zero_grad.increment_by(1)


def carry_step_count(trainer: Any) -> None:
    """At the start of a fit taken over from Lightning: global_step reads the count of steps
    taken by hand, which a checkpoint written with K = 1 does not hold; it is the steps counted
    as Lightning counts them."""
    loop = trainer.fit_loop.epoch_loop
    steps = loop.automatic_optimization.optim_progress.optimizer_steps
    by_hand = loop.manual_optimization.optim_step_progress
    by_hand.total.ready = by_hand.total.completed = steps


def is_plateau(config: Any) -> bool:
    """Whether a scheduler steps on a metric; Lightning's flag for it is unset when it does not
    optimize the model itself."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    return isinstance(config.scheduler, ReduceLROnPlateau)


def unheard(model: Any) -> bool:
    """Whether Lightning's manual_backward and optimizer step would add nothing to torch's own
    for this model: no callback and no model hook listens to the hooks they call (the model's
    clipping aside: `direct_step` clips), the precision plugin scales no loss, and one device
    holds the model. Then `direct_step` takes the step."""
    from lightning.pytorch.core import LightningModule
    from lightning.pytorch.plugins.precision import (
        DoublePrecision,
        HalfPrecision,
        MixedPrecision,
        Precision,
    )
    from lightning.pytorch.strategies import SingleDeviceStrategy

    from vaelab.models.base import Model

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
        if own is not getattr(LightningModule, hook) and own is not getattr(Model, hook):
            return False
    return type(model).backward is LightningModule.backward  # one of its own: Lightning's path


def direct_step(model: Any, optimizer: Any, loss: Any) -> None:
    """One optimizer step through torch alone, counted as Lightning counts its own: what
    manual_backward and the optimizer's step do when nothing listens to their hooks."""
    optimizer.zero_grad()
    loss.backward()
    model.on_before_optimizer_step(optimizer)
    progress = model.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    progress.increment_ready()
    optimizer.optimizer.step()
    progress.increment_completed()
