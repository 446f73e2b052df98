"""vaelab-train: fit an autoencoder or a VAE, then test its best checkpoint.

vaelab-train model=vae data=fashion_mnist trainer.max_epochs=10 model.beta=4
vaelab-train resume=logs/train/runs/2026-11-26_07-00-00 trainer.max_epochs=20
"""

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from vaelab.config.cli import hydra_main
from vaelab.config.schema import check_optimizing_by_hand, refuse_ddp_in_multirun, validate
from vaelab.console import print_config, quiet
from vaelab.runs.preemption import preemptible

log = logging.getLogger(__name__)


def _this_command_line() -> list[str] | None:
    """The overrides typed for this invocation, when Hydra started it."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None


def _on_a_terminal() -> bool:
    """Whether a progress bar would be seen redrawn (a terminal, a notebook; FORCE_COLOR=1
    says so), not in a pipe, a scheduler's log file or CI."""
    from rich.console import Console

    console = Console()
    return (console.is_terminal or console.is_jupyter) and not os.environ.get("CI")


def _finish_wandb(failed: bool) -> None:
    """End the W&B run of this job, so that the next job of a multirun starts its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)


def train(
    cfg: DictConfig, extra_callbacks: Sequence[Any] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build data, model, callbacks, loggers and trainer from `cfg`; fit; test the best checkpoint.

    With `cfg.resume` set, the run in that directory is continued instead. `extra_callbacks` join
    those of the config (a search adds its pruning). Returns the results written to
    results.json and the objects built, with the config the run ran under (`config`).

    The run directory is checked and held as a vaelab command holds it (runs/guard.py), also when
    `train` is called from Python: a second run into it, from this process or another, is refused.
    """
    from vaelab.runs.guard import claim, holds, release

    run_dir = Path(cfg.paths.output_dir)
    claimed_here = not holds(run_dir)  # a vaelab command or sweep job has claimed it already
    if claimed_here:
        claim(cfg, _this_command_line(), run_dir)
    try:
        return _fit_and_test(cfg, extra_callbacks)
    finally:
        if claimed_here:
            release(run_dir)


def _fit_and_test(
    cfg: DictConfig, extra_callbacks: Sequence[Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    # Imported here, after validation: a typo on the command line costs a second, not ten.
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from vaelab.callbacks import CheckpointOnSigterm, EpochLog, FollowMovedRun
    from vaelab.config.instantiate import build, build_group, build_trainer
    from vaelab.embeddings import disentanglement_scores
    from vaelab.loggers.wandb import ID_FILE
    from vaelab.runs.preemption import preempted
    from vaelab.runs.ranks import rank_zero
    from vaelab.runs.resume import (
        check_fits,
        check_restored,
        check_shape,
        finished_message,
        finished_results,
        limits,
        newest_checkpoint,
        read_checkpoint,
        relocated_results,
        results_at,
        resume_config,
    )
    from vaelab.runs.run_dir import provenance, write_config, write_results
    from vaelab.runs.secrets import redact, remember
    from vaelab.runs.steps_per_call import choose

    quiet()

    # A checkpoint the user names is read once here: checked now, and against the model below.
    ckpt_path = cfg.get("ckpt_path")
    start = read_checkpoint(ckpt_path) if ckpt_path else None
    if cfg.get("resume"):
        cfg = resume_config(cfg, _this_command_line())
        run_dir = Path(cfg.paths.output_dir)
        earlier = finished_results(run_dir, cfg)
        if earlier is not None:
            log.info(finished_message(run_dir))
            return relocated_results(run_dir, earlier), {"config": cfg}
        newest = newest_checkpoint(run_dir)
        ckpt_path, start = newest if newest else (None, None)
        if ckpt_path is None:
            log.warning(f"No checkpoint in {cfg.resume} yet: starting the run from the beginning")
        else:
            log.info(f"Resuming from {ckpt_path}")
    run_dir = Path(cfg.paths.output_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    remember(resolved)
    run_config = redact(resolved)
    if cfg.get("extras", {}).get("print_config", True) and rank_zero():  # not yet Lightning's
        print_config(run_config)
    L.seed_everything(cfg.seed, workers=True)

    log.info(f"Data: {cfg.data._target_}")
    datamodule = build(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if hasattr(datamodule, "check_likelihood"):  # a user's own datamodule may not have it
        datamodule.check_likelihood(cfg.model.get("likelihood"))

    if start is not None:  # a model built for other data would not load the checkpoint
        fix = "give the data the run was trained on (data.data_dir)"
        check_shape(
            datamodule.shape, start, fix if cfg.get("resume") else f"{fix}, or another ckpt_path"
        )
    log.info(f"Model: {cfg.model._target_}, input shape {datamodule.shape}")
    model = build(cfg.model, input_shape=list(datamodule.shape))
    model.check_data(datamodule)
    if not model.automatic_optimization:
        check_optimizing_by_hand(cfg)
    if start is not None and not cfg.get("resume"):  # a resume's own checkpoints always fit
        check_fits(model, start, ckpt_path)
        check_restored(model, start, ckpt_path)

    log.info("Callbacks, loggers, trainer")
    overrides: dict[str, Any] = {}  # what the trainer takes beyond its config
    on_sigterm = CheckpointOnSigterm()
    own = [on_sigterm, FollowMovedRun()]  # the run directory's contract, not options
    callbacks = [*build_group(cfg.get("callbacks")), *extra_callbacks, *own]
    loggers = build_group(cfg.get("logger"))
    if not loggers:  # Lightning refuses an LR monitor with nothing to log to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if not _on_a_terminal():  # a redrawn bar is noise in a log file
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(EpochLog(cfg.model.get("monitor")))
        overrides["enable_progress_bar"] = False
    steps, adapt = choose(cfg.trainer, model, datamodule, callbacks)
    if steps > 1:
        datamodule.steps_per_call = steps
        clip = cfg.trainer.get("gradient_clip_val"), cfg.trainer.get("gradient_clip_algorithm")
        model.take_steps_per_call(adapt, *clip)
        overrides["gradient_clip_val"] = None  # the model clips, as Lightning would have
    trainer = build_trainer(cfg.trainer, callbacks=callbacks, logger=loggers, **overrides)
    if cfg.get("resume"):
        # What was logged after the checkpoint (without one: all of it) is logged again from it:
        # each step once. After the trainer is built: only then does rank_zero_only know the
        # node's rank (every node's first process has LOCAL_RANK=0).
        for logger in loggers:
            if hasattr(logger, "rewind"):
                logger.rewind(start["global_step"] if start is not None else 0)
    if trainer.is_global_zero:
        write_config(cfg, run_dir)
    for logger in loggers:
        logger.log_hyperparams(run_config)

    failed = True
    try:
        per_call = f", {steps} optimizer steps per Lightning step" if steps > 1 else ""
        per_call += " to start, then as many as ~0.1 s holds" if adapt else ""
        log.info(f"Training in {run_dir}{per_call}")
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        if cfg.get("resume") and start and trainer.global_step == start["global_step"]:
            # Nothing was left to train: a run stopped while testing is tested now; one whose
            # results already describe this checkpoint is finished (its other limit held).
            earlier = results_at(run_dir, trainer.global_step)
            if earlier is not None:
                failed = False
                log.info(finished_message(run_dir))
                return earlier, {"config": cfg}
        # A fit with nothing left to train measured nothing itself: its checkpoint did.
        metrics = dict((start or {}).get("metrics", {})) | dict(trainer.callback_metrics)

        checkpoint = trainer.checkpoint_callback
        best_ckpt = checkpoint.best_model_path if checkpoint is not None else ""
        log.info(f"Testing {best_ckpt or 'the final weights'}")
        trainer.test(model, datamodule=datamodule, ckpt_path=best_ckpt or None, weights_only=True)
        metrics.update(trainer.callback_metrics)
        if trainer.is_global_zero:
            scores = disentanglement_scores(model, datamodule, cfg.get("metrics"))
            scores = {f"test/{name}": value for name, value in scores.items()}
            metrics.update(scores)
            for logger in loggers if scores else ():
                logger.log_metrics(scores, step=trainer.global_step)
                logger.save()
        failed = False
    except SIGTERMException:
        raise preempted(run_dir, on_sigterm.saved) from None
    finally:
        _finish_wandb(failed)

    results = {name: float(value) for name, value in metrics.items()}
    results.update(run_dir=str(run_dir), best_ckpt=best_ckpt, seed=cfg.seed, **provenance())
    results["tags"] = [str(tag) for tag in cfg.get("tags") or []]
    # What the run finished under: a resume that raises neither limit has nothing to do.
    results.update(global_step=trainer.global_step, **limits(cfg))
    if (run_dir / ID_FILE).is_file():
        results["wandb_id"] = (run_dir / ID_FILE).read_text().strip()
    if trainer.is_global_zero:
        write_results(run_dir, results)
        for logger in loggers:
            if hasattr(logger, "log_file"):  # the run's record beside its metrics
                logger.log_file(run_dir / "config.yaml")
                logger.log_file(run_dir / "results.json")
    objects = dict(datamodule=datamodule, model=model, trainer=trainer, config=cfg)
    return results, objects


def _continue_sweep_job(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any] | None]:
    """A multirun started again in the same sweep dir (`hydra.sweep.dir=<dir of an interrupted
    sweep>`) re-runs only what is unfinished: a finished job keeps its results (returned here,
    with its config) unless the sweep now raises trainer.max_epochs/max_steps, and one that
    holds a run continues from its newest checkpoint."""
    from vaelab.runs.resume import finished_results, relocated_results, resume_config

    job_dir = Path(cfg.paths.output_dir)
    if cfg.get("resume") or not (job_dir / "config.yaml").is_file():
        return cfg, None
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.resume = str(job_dir)
    # Refuses a job dir that holds another setting; a finished job's own config names its metric.
    run_cfg = resume_config(cfg, _this_command_line())
    finished = finished_results(job_dir, run_cfg)  # None when the sweep raises a limit
    if finished is not None:
        log.info(f"{job_dir} finished in an earlier run of this sweep: its results stand")
        return run_cfg, relocated_results(job_dir, finished)
    log.info(f"Continuing the unfinished job in {job_dir}")
    return cfg, None


def _optimizes(hydra_cfg: DictConfig) -> bool:
    """Whether a sweeper reads the value the task returns (Hydra's basic sweeper does not)."""
    sweeper = str(OmegaConf.select(hydra_cfg, "sweeper._target_", default="") or "")
    return hydra_cfg.mode == RunMode.MULTIRUN and not sweeper.endswith("BasicSweeper")


@hydra_main("train")
def main(cfg: DictConfig) -> float | None:
    """Validate, train, and hand a sweeper the value of the run's own `optimized_metric`."""
    from vaelab.runs.run_dir import optimized_value

    validate(cfg)
    hydra_cfg = HydraConfig.get()
    finished = None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        refuse_ddp_in_multirun(cfg, hydra_cfg.launcher._target_)
        if not cfg.get("hparams_search"):
            cfg, finished = _continue_sweep_job(cfg)
    with preemptible(Path(cfg.paths.output_dir)):
        if cfg.get("hparams_search"):
            from vaelab.search import search

            return search(cfg, train)
        results = finished
        if results is None:
            results, objects = train(cfg)
            cfg = objects["config"]  # a resume's: the metric the run itself optimises
    return optimized_value(cfg, results, required=_optimizes(hydra_cfg))


if __name__ == "__main__":
    main()
