"""vaelab's one boundary with Lightning's internals.

Exact resume, last.ckpt's timing and several optimizer steps per Lightning step need what
Lightning has no public API for: its fit loop's progress counters, ModelCheckpoint's saving of
last.ckpt, the loggers' lazily built experiments and the arguments they keep for it. Each use is
a small function here that says what it does for vaelab; nothing else in vaelab names a private
Lightning attribute or the loop's internals (tests/test_lightning_boundary.py keeps it so), so a
Lightning release that renames one breaks this file alone, and the version check below refuses
the releases that were never tested rather than resume wrongly in silence.

TESTED is the range that CI tests (`make test` at the newest, `make floors` at the lowest) and
that pyproject.toml declares.
"""

from typing import Any

import lightning
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.parsing import collect_init_args

from vaelab.errors import UserError

TESTED = ((2, 6), (2, 7))  # at least the first, below the second


class UntestedLightning(UserError):
    """The installed Lightning is outside the range vaelab was tested with."""


def _check_version(version: str) -> None:
    try:
        installed = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        installed = None
    low, high = (".".join(map(str, bound)) for bound in TESTED)
    if installed is None or not TESTED[0] <= installed < TESTED[1]:
        raise UntestedLightning(
            f"lightning {version} is installed, but vaelab is tested with lightning>={low},<{high} "
            f"(its exact resume counts on Lightning's loop internals): pip install "
            f"'lightning>={low},<{high}'"
        )


_check_version(lightning.__version__)

# Every private Lightning name used below, and the loop internals reached through public ones;
# tests/test_lightning_boundary.py checks the list against this file and the rest of src/.
PRIVATE_NAMES = (
    "_batches_that_stepped",
    "_check_log_dir_exists",
    "_data_fetcher",
    "_every_n_train_steps",
    "_experiment",
    "_fs",
    "_initialized",
    "_kwargs",
    "_mlflow_client",
    "_monitor_candidates",
    "_num_ready_batches_reached",
    "_run_id",
    "_save_last_checkpoint",
    "_should_check_val_fx",
    "_should_skip_saving_checkpoint",
    "_signal_connector",
    "_tracking_uri",
    "_train_time_interval",
    "_trainer",
    "_val_check_time_interval",
    "_wandb_init",
)
LOOP_INTERNALS = (
    "fit_loop",
    "epoch_loop",
    "batch_progress",
    "scheduler_progress",
    "optim_progress",
    "optim_step_progress",
    "manual_optimization",
    "collect_init_args",
)


# The model.


def init_arguments(frame: Any, base: type) -> dict[str, Any]:
    """Every `__init__` argument up a LightningModule's chain of classes, from `frame` (the
    base's `__init__`) up to the subclass's: what save_hyperparameters() would collect."""
    arguments: dict[str, Any] = {}
    for frame_arguments in collect_init_args(frame, [], classes=(base,)):
        arguments.update(frame_arguments)
    return arguments


def trainer_of(module: Any) -> Any:
    """The module's trainer, or None when it is not attached to one (`module.trainer` raises)."""
    return module._trainer


def tell_of_sigterm(trainer: Any) -> None:
    """What Lightning's own SIGTERM handler does, for a trainer whose handler was not installed
    (a trainer outside the main thread): its loops stop at the next batch's end."""
    trainer._signal_connector.received_sigterm = True


# The fit loop, counted as Lightning counts it.


def _epoch_loop(trainer: Any) -> Any:
    return trainer.fit_loop.epoch_loop


def logging_step(trainer: Any) -> int:
    """The step Lightning's logging gives the metrics of a training batch (it counts batches
    that stepped an optimizer, not global_step, which counts every optimizer's steps)."""
    return _epoch_loop(trainer)._batches_that_stepped


def batches_done_in_epoch(trainer: Any) -> int:
    """How many training batches of this epoch the loop has started, the current one included."""
    return _epoch_loop(trainer).batch_idx + 1


def batches_started(trainer: Any) -> tuple[int, int]:
    """(in this epoch, in the run) the batches the loop has started, the current one included."""
    progress = _epoch_loop(trainer).batch_progress
    return progress.current.ready, progress.total.ready


def count_batch(trainer: Any) -> None:
    """Count one batch as Lightning's loop would between two of its own steps: the one just
    trained is done, the next one is started."""
    loop = _epoch_loop(trainer)
    loop.batch_progress.increment_by(1)
    loop._batches_that_stepped += 1
    mark_last_batch(trainer)


def mark_last_batch(trainer: Any) -> None:
    """Tell the loop whether the batch about to be trained is the epoch's last, which Lightning
    takes from its fetcher; the fetcher counts calls, not batches, so it is set from the count
    of batches."""
    progress = _epoch_loop(trainer).batch_progress
    progress.is_last_batch = progress.current.ready >= trainer.num_training_batches


def epoch_batches_done(trainer: Any) -> bool:
    """Whether the epoch's batches are all trained (where epoch-interval schedulers step)."""
    return _epoch_loop(trainer)._num_ready_batches_reached()


def count_scheduler_step(trainer: Any, step: Any) -> None:
    """Take `step()`, an LR scheduler's step, counted as Lightning counts the ones it takes."""
    progress = _epoch_loop(trainer).scheduler_progress
    progress.increment_ready()
    step()
    progress.increment_completed()


def count_optimizer_step(trainer: Any) -> None:
    """Count an optimizer step taken by hand for a model that Lightning would optimize, where
    Lightning counts its own: a checkpoint then holds the progress of a run of one step per
    call, which a resume with any number continues."""
    optimizer = _epoch_loop(trainer).automatic_optimization.optim_progress.optimizer
    optimizer.step.increment_by(1)
    optimizer.zero_grad.increment_by(1)


def carry_step_count(trainer: Any) -> None:
    """At the start of a fit whose steps are taken by hand for a model Lightning would
    optimize: global_step reads the count of steps taken by hand, which a checkpoint written
    by Lightning's own steps does not hold; it is set to the steps Lightning counted."""
    loop = _epoch_loop(trainer)
    steps = loop.automatic_optimization.optim_progress.optimizer_steps
    by_hand = loop.manual_optimization.optim_step_progress
    by_hand.total.ready = by_hand.total.completed = steps


def count_manual_step(trainer: Any, step: Any) -> None:
    """Take `step()`, an optimizer step of a model optimized by hand, counted as Lightning's
    LightningOptimizer.step counts it (global_step)."""
    progress = _epoch_loop(trainer).manual_optimization.optim_step_progress
    progress.increment_ready()
    step()
    progress.increment_completed()


def validates_by_time(trainer: Any) -> bool:
    """Whether validation runs every so many seconds (Lightning >= 2.6's `val_check_interval`
    given as a time), so that it may fall after any batch."""
    return getattr(trainer, "_val_check_time_interval", None) is not None


def validation_follows(trainer: Any) -> bool:
    """Whether Lightning validates right after the training batch that just ended (its own
    decision, taken from the same state a moment later). With a validation every so many
    seconds the answer may change in that moment: then it is whether validation runs at all."""
    if validates_by_time(trainer):
        return trainer.enable_validation
    loop = trainer.fit_loop
    return loop.epoch_loop._should_check_val_fx(loop._data_fetcher)


# Checkpoints.


def checkpoint_every_n_steps(callback: Any) -> int:
    """A checkpoint callback's step interval (0: none)."""
    return getattr(callback, "_every_n_train_steps", 0) or 0


def checkpoints_by_time(callback: ModelCheckpoint) -> bool:
    """Whether a checkpoint callback saves every so many seconds (`train_time_interval`)."""
    return callback._train_time_interval is not None


def save_last(callback: ModelCheckpoint, trainer: Any) -> None:
    """Write the callback's last.ckpt now, as ModelCheckpoint does beside its other files;
    skipped in the sanity check, outside fitting, and where this step is saved already."""
    if callback.save_last and not callback._should_skip_saving_checkpoint(trainer):
        callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))


# Loggers.


class CSVWriter(ExperimentWriter):
    """Lightning's metrics.csv writer, except that it starts from the columns `columns()`
    gives instead of deleting a file it finds (a subclass says what they are)."""

    def columns(self) -> list[str]:
        raise NotImplementedError

    def _check_log_dir_exists(self) -> None:
        self.metrics_keys = self.columns()


def csv_experiment(logger: Any, writer: type[CSVWriter]) -> CSVWriter:
    """A CSVLogger's experiment, built once as `writer` (Lightning's builds its own writer)."""
    if logger._experiment is None:
        logger._fs.makedirs(logger.root_dir, exist_ok=True)
        logger._experiment = writer(log_dir=logger.log_dir)
    return logger._experiment


def purge_tensorboard_from(logger: Any, step: int) -> None:
    """Before a TensorBoardLogger writes its first event: events of steps >= `step` are
    superseded (SummaryWriter's purge_step, among the arguments the logger keeps for it)."""
    logger._kwargs["purge_step"] = step


def drop_wandb_anonymous(logger: Any) -> None:
    """Lightning's WandbLogger always passes `anonymous` to wandb.init, which wandb >= 0.2x
    warns is deprecated at every start; unset, it is wandb's own default anyway."""
    init = getattr(logger, "_wandb_init", {})
    if init.get("anonymous", "") is None:
        del init["anonymous"]


def mlflow_started(logger: Any) -> bool:
    """Whether an MLFlowLogger has opened its run (its `experiment` is the client)."""
    return logger._initialized


def mlflow_client(logger: Any) -> Any:
    """An MLFlowLogger's client, without opening a run."""
    return logger._mlflow_client


def mlflow_run_id(logger: Any) -> str | None:
    """The run an MLFlowLogger continues or opened, without opening one (`run_id` does)."""
    return logger._run_id


def forget_mlflow_run(logger: Any) -> None:
    """Have an MLFlowLogger open a new run instead of continuing the one it was given."""
    logger._run_id = None


def mlflow_tracking_uri(logger: Any) -> str:
    return logger._tracking_uri
