"""A planned training run's objects: the data, the model, callbacks, loggers and the trainer,
each checked against the others and the checkpoint it starts from before anything is written."""

import logging
import os
from dataclasses import dataclass
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from omegaconf import OmegaConf

from vaelab import steps_per_call
from vaelab.batched import lockstep
from vaelab.callbacks import CheckpointOnSigterm, EpochLog, FollowMovedRun
from vaelab.config import instantiate
from vaelab.config.schema import check_optimizing_by_hand
from vaelab.console import IN_FILE, header, in_multirun_job, print_config, quiet
from vaelab.runs.preflight import Plan
from vaelab.runs.ranks import rank_zero
from vaelab.runs.resume import check_fits, check_restored, check_shape
from vaelab.runs.run_dir import write_config
from vaelab.runs.secrets import redact, remember

log = logging.getLogger(__name__)


@dataclass
class Run:
    """What a training run is made of, built from its plan."""

    plan: Plan
    datamodule: Any
    model: Any
    trainer: Any
    loggers: list
    on_sigterm: CheckpointOnSigterm
    steps: int = 1  # optimizer steps per Lightning step, to start with
    adapt: bool = False  # whether they follow the step time


def _on_a_terminal() -> bool:
    """Whether a progress bar would be seen redrawn (a terminal, a notebook; FORCE_COLOR=1
    says so), not in a pipe, a scheduler's log file or CI."""
    from rich.console import Console

    console = Console()
    return (console.is_terminal or console.is_jupyter) and not os.environ.get("CI")


def _data_and_model(plan: Plan) -> tuple[Any, Any]:
    """The datamodule, set up, and the model built for its shape; both checked against each
    other and against the checkpoint the fit starts from."""
    cfg, start = plan.config, plan.start
    log.info(f"Data: {cfg.data._target_}", extra=IN_FILE)
    datamodule = instantiate.build(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if hasattr(datamodule, "check_likelihood"):  # a user's own datamodule may not have it
        datamodule.check_likelihood(cfg.model.get("likelihood"))
    if start is not None:  # a model built for other data would not load the checkpoint
        fix = "give the data the run was trained on (data.data_dir)"
        check_shape(
            datamodule.shape, start, fix if plan.resumes else f"{fix}, or another ckpt_path"
        )
    model = instantiate.build(cfg.model, input_shape=list(datamodule.shape))
    size = sum(p.numel() for p in model.parameters())
    log.info(f"Model: {type(model).__name__}, {size:,} parameters, input shape {datamodule.shape}")
    model.check_data(datamodule)
    model.seat = lockstep.seat()  # a member of a sweep trained in lockstep, or None
    if not model.automatic_optimization:
        check_optimizing_by_hand(cfg)
    if start is not None and not plan.resumes:  # a resume's own checkpoints always fit
        check_fits(model, start, str(plan.checkpoint))
        check_restored(model, start, str(plan.checkpoint))
    return datamodule, model


def _callbacks(plan: Plan, loggers: list, extra: list) -> tuple[list, dict[str, Any]]:
    """The config's callbacks, the caller's and the run directory's own; and what the trainer
    takes beyond its config for them."""
    own = [CheckpointOnSigterm(), FollowMovedRun()]  # the run directory's contract, not options
    callbacks = [*instantiate.build_group(plan.config.get("callbacks")), *extra, *own]
    if not loggers:  # Lightning refuses an LR monitor with nothing to log to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if not _on_a_terminal() or in_multirun_job():  # redrawn bars: noise in a log, interleaved
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if any(isinstance(c, ProgressBar) for c in callbacks):
        return callbacks, {}
    return [*callbacks, EpochLog(plan.config.model.get("monitor"))], {"enable_progress_bar": False}


def build(plan: Plan, extra_callbacks: list) -> Run:
    """Every object of the run, the config it runs under written to config.yaml and given to
    the loggers; a resume's loggers forget what they logged after its checkpoint."""
    cfg = plan.config
    quiet()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    remember(resolved)
    run_config = redact(resolved)
    if rank_zero():  # not yet Lightning's: the trainer is not built
        shown = cfg.get("extras", {}).get("print_config", "short")
        for line in header(cfg, plan.run_dir) if shown else ():
            log.info(line)
        if shown in (True, "full"):
            print_config(run_config)
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model = _data_and_model(plan)
    log.info("Callbacks, loggers, trainer", extra=IN_FILE)
    loggers = instantiate.build_group(cfg.get("logger"))
    callbacks, overrides = _callbacks(plan, loggers, list(extra_callbacks))
    steps, adapt = steps_per_call.choose(cfg.trainer, model, datamodule, callbacks)
    if steps > 1:
        steps_per_call.attach(model, datamodule, steps, adapt, cfg.trainer)
        overrides["gradient_clip_val"] = None  # the model clips, as Lightning would have
    trainer = instantiate.build_trainer(
        cfg.trainer, callbacks=callbacks, logger=loggers, **overrides
    )
    if plan.resumes:
        # What was logged after the checkpoint (without one: all of it) is logged again from it:
        # each step once. After the trainer is built: only then does rank_zero_only know the
        # node's rank (every node's first process has LOCAL_RANK=0).
        for logger in loggers:
            if hasattr(logger, "rewind"):
                logger.rewind(plan.start["global_step"] if plan.start is not None else 0)
    if trainer.is_global_zero:
        write_config(cfg, plan.run_dir)
    for logger in loggers:
        logger.log_hyperparams(run_config)
    on_sigterm = next(c for c in callbacks if isinstance(c, CheckpointOnSigterm))
    return Run(plan, datamodule, model, trainer, loggers, on_sigterm, steps, adapt)
