"""What every run checks and decides before it writes anything, in one place: `preflight`.

A vaelab command (in its Hydra callback, before Hydra writes into the run directory), a
multirun's job and `train(cfg)` from Python all call it: it validates the config, resolves a
resume (the run's own config, what may change, whether anything is left to do, the checkpoint to
continue from), reads a checkpoint given as ckpt_path, and holds the run directory for this
process. The `Plan` it returns is what the rest of the run reads.
"""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from vaelab.config.schema import refuse_ddp_in_multirun, validate
from vaelab.console import ON_CONSOLE
from vaelab.errors import ConfigError
from vaelab.runs.lock import RunDirLock
from vaelab.runs.ranks import rank_zero
from vaelab.runs.resume import (
    finished_message,
    finished_results,
    newest_checkpoint,
    read_checkpoint,
    relocated_results,
    resume_config,
)
from vaelab.runs.secrets import remember

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """A run, decided: `config` is what it runs under (a resume's is the run's own config with
    this invocation's permitted changes); `checkpoint` and `start` the file the fit starts from
    and its content (a resume's newest, or ckpt_path), read once; `finished` the results of a
    resumed run that has nothing left to do; `note` what to tell the user about it."""

    config: DictConfig
    run_dir: Path
    checkpoint: Path | None = None
    start: dict | None = None
    finished: dict | None = None
    note: str = ""

    @property
    def resumes(self) -> bool:
        return bool(self.config.get("resume"))


_held: dict[Path, tuple[Plan, RunDirLock | None]] = {}


def _slurm_requeue() -> bool:
    """A job that SLURM started again after a pre-emption: it continues its own run."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def _with_resume(cfg: DictConfig, run_dir: Path) -> DictConfig:
    cfg = cfg.copy()
    with read_write(cfg), open_dict(cfg):
        cfg.resume = str(run_dir)
    return cfg


def _resumed(cfg: DictConfig, run_dir: Path, job: bool) -> DictConfig:
    """The config with `resume` set where the run directory's own run is to be continued: a job
    of a sweep started again in its own directory (`hydra.sweep.dir=<an interrupted sweep>`), a
    SLURM job that was requeued; a fresh run into a directory that holds one is refused."""
    if cfg.get("resume") or not (run_dir / "config.yaml").is_file():
        return cfg
    if job or _slurm_requeue():
        return _with_resume(cfg, run_dir)
    if not rank_zero():  # the other ranks of a fresh DDP run, started once rank zero wrote it
        return cfg
    raise ConfigError(
        f"{run_dir} already holds a run: continue it with resume={run_dir}, or give a new "
        f"hydra.run.dir (output_dir in Python)"
    )


def _plan_training(cfg: DictConfig, overrides: list[str] | None, run_dir: Path) -> Plan:
    if not cfg.get("resume"):
        path = cfg.get("ckpt_path")  # a new run from a checkpoint
        return Plan(cfg, run_dir, *((Path(path), read_checkpoint(path)) if path else ()))
    if Path(os.path.abspath(cfg.resume)) != run_dir:
        raise ConfigError(
            f"resume={cfg.resume} continues the run in its own directory, not in "
            f"hydra.run.dir={run_dir}: leave hydra.run.dir out (ckpt_path=<file> starts a new run "
            f"from a checkpoint)"
        )
    cfg = resume_config(cfg, overrides)
    finished = finished_results(run_dir, cfg)
    if finished is not None:
        return Plan(cfg, run_dir, finished=finished, note=finished_message(run_dir))
    newest = newest_checkpoint(run_dir)
    return Plan(cfg, run_dir, *(newest or (None, None)))


def _plan_job(cfg: DictConfig, overrides: list[str] | None, run_dir: Path) -> Plan:
    """A multirun's job: in a sweep started again in its own directory, a finished job keeps
    its results (unless the sweep now raises a limit) and an unfinished one continues."""
    plan = _plan_training(cfg, overrides, run_dir)
    if plan.resumes and plan.finished is not None:
        plan.note = f"{run_dir} finished in an earlier run of this sweep: its results stand"
    elif plan.resumes:
        log.info(f"Continuing the unfinished job in {run_dir}", extra=ON_CONSOLE)
    return plan


def preflight(cfg: DictConfig, overrides: list[str] | None, launcher: str | None = None) -> Plan:
    """Check a composed config and decide the run, then hold its directory (rank zero).

    `overrides` are this command line's (a resume refuses what they change that it may not
    change; None: a config built in Python, where every difference counts); `launcher` is the
    Hydra launcher's class in a multirun job, where a finished job keeps its results and an
    unfinished one continues from its newest checkpoint. Held until `release`."""
    validate(cfg)
    remember(OmegaConf.to_container(cfg, resolve=True))
    run_dir = Path(os.path.abspath(cfg.paths.output_dir))
    if run_dir in _held:
        raise ConfigError(f"{run_dir} is in use by this process: give this run another output_dir")
    plan = Plan(cfg, run_dir)
    if launcher is not None:
        refuse_ddp_in_multirun(cfg, launcher)
    if cfg.get("task_name") == "train" and not cfg.get("hparams_search"):
        cfg = _resumed(cfg, run_dir, job=launcher is not None)
        plan = (_plan_training if launcher is None else _plan_job)(cfg, overrides, run_dir)
    lock = RunDirLock(run_dir) if rank_zero() else None
    _held[run_dir] = (plan, lock)
    if plan.finished is not None:
        plan.finished = relocated_results(run_dir, plan.finished)  # where the run is now
    return plan


def held(run_dir: str | Path) -> Plan | None:
    """The plan this process holds for `run_dir`, if any."""
    entry = _held.get(Path(os.path.abspath(run_dir)))
    return entry[0] if entry else None


@contextmanager
def planned(
    cfg: DictConfig, overrides: list[str] | None, launcher: str | None = None
) -> Iterator[Plan]:
    """The plan this process holds for the config's run directory (a vaelab command's callback
    made it), else a new one from `preflight`, released when the block ends."""
    plan = held(cfg.paths.output_dir)
    if plan is not None:
        yield plan
        return
    plan = preflight(cfg, overrides, launcher)
    try:
        yield plan
    finally:
        release(plan.run_dir)


def release(run_dir: Path) -> None:
    _, lock = _held.pop(Path(os.path.abspath(run_dir)), (None, None))
    if lock is not None:
        lock.release()


def release_all() -> None:
    """Give up every run directory this process holds: at the end of a run or a job, and when
    a console script ends by any way (an error ends a single run before Hydra's end hook)."""
    for run_dir in list(_held):
        release(run_dir)
