"""Hydra callback that guards a run directory before Hydra writes into it.

Hydra writes `.hydra/` and the job's log before the task starts. So a config that a command
refuses is refused here, in `on_run_start`, and leaves no directory behind; here too a second
process is refused a run directory that is in use, and a fresh vaelab-train run one that already
holds a run.
The lock is an OS file lock (the filelock package: fcntl or msvcrt), which the OS drops when the
process ends however it ends, so a killed run never leaves it stale.
"""

import copy
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from vaelab.config.cli import exit_for
from vaelab.errors import AlreadyFinished, ConfigError, DataError, UserError
from vaelab.runs.ranks import rank_name, rank_zero
from vaelab.runs.resume import (
    MAY_CHANGE,
    finished_message,
    finished_results,
    override_key,
    relocated_results,
    resume_config,
    under,
)
from vaelab.runs.secrets import mask_logging, redact, remember

LOCK = ".vaelab.lock"


def _keep_records_apart(config: DictConfig) -> None:
    """A rank other than zero writes Hydra's records and its log beside rank zero's, never over
    them: rank zero's are the run's. Lightning's own launcher names its ranks' records itself."""
    suffix = rank_name()
    with read_write(config), open_dict(config):
        hydra = config.hydra
        if not str(hydra.output_subdir or "").startswith(".pl_hydra"):
            hydra.output_subdir = f"{hydra.output_subdir or '.hydra'}_{suffix}"
        handler = OmegaConf.select(hydra, "job_logging.handlers.file")
        if handler is not None and "filename" in handler:
            # Unresolved: the job's output_dir it names is set only when the job starts.
            name = OmegaConf.to_container(handler, resolve=False)["filename"]
            handler.filename = name.removesuffix(".log") + f".{suffix}.log"


def _slurm_requeue() -> bool:
    """A job that SLURM started again after a pre-emption: it continues its own run."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def _task_config(config: DictConfig, run_dir: Path) -> DictConfig:
    """The task's config as the job will see it, before Hydra has set up the job."""
    full = copy.deepcopy(config)
    with read_write(full), open_dict(full):
        full.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(full)  # for ${hydra:...}; run_job sets the real one
    task = copy.deepcopy(full)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


_held: dict[Path, "RunDirLock"] = {}


def holds(run_dir: Path) -> bool:
    """Whether this process holds the run directory (its CLI or sweep job claimed it)."""
    return Path(os.path.abspath(run_dir)) in _held


def release(run_dir: Path) -> None:
    lock = _held.pop(Path(os.path.abspath(run_dir)), None)
    if lock is not None:
        lock.release()


def release_all() -> None:
    """Give up the run directories this process holds: at the end of a run or a job, and when
    the console script ends by any way (an error ends a single run before Hydra's end hook)."""
    for run_dir in list(_held):
        release(run_dir)


class RunDirLock:
    """One process per run directory."""

    def __init__(self, run_dir: Path):
        from filelock import FileLock, Timeout

        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(run_dir / LOCK, timeout=0)
            self._lock.acquire()
        except Timeout:
            raise ConfigError(
                f"{run_dir} is in use by another vaelab process: wait for it to end, or give "
                f"this run another hydra.run.dir"
            ) from None
        except OSError as error:
            raise DataError(
                f"cannot write in {run_dir}: {error.strerror or error}; give a writable "
                f"hydra.run.dir"
            ) from None

    def release(self) -> None:
        self._lock.release()


def lock(run_dir: Path) -> None:
    """Hold the run directory for this process until `release` (or the process ends)."""
    run_dir = Path(os.path.abspath(run_dir))
    if run_dir not in _held:
        _held[run_dir] = RunDirLock(run_dir)


def claim(task: DictConfig, overrides: list[str] | None, run_dir: Path) -> dict | None:
    """What every entry point (a vaelab command, a sweep's job, `train()` in Python) checks
    before it writes into `run_dir`: the config, a resume, a directory that already holds a
    run; then it holds the directory (rank zero). Returns the results of a resumed run that has
    nothing left to do. `overrides` as for `resume_config`; a requeued SLURM job continues its
    own run (`task.resume` is set to it)."""
    from vaelab.config.schema import validate

    validate(task)
    remember(OmegaConf.to_container(task, resolve=True))
    finished = None
    if task.get("task_name") == "train":
        if not task.get("resume") and rank_zero() and (run_dir / "config.yaml").is_file():
            if not _slurm_requeue():
                raise ConfigError(
                    f"{run_dir} already holds a run: continue it with resume={run_dir}, or give "
                    f"a new hydra.run.dir (output_dir in Python)"
                )
            with read_write(task), open_dict(task):
                task.resume = str(run_dir)
        finished = _check_train(task, overrides, run_dir)
    if rank_zero():
        lock(run_dir)
        if finished is not None:
            finished = relocated_results(run_dir, finished)  # a moved run's names where it is
    return finished


def _redact_file(path: Path) -> None:
    """Mask secrets in a YAML record that Hydra wrote; files without any are left as they are."""
    from vaelab.runs.run_dir import atomic_write

    if not path.is_file():
        return
    original = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    masked = redact(original)
    if masked != original:
        atomic_write(path, OmegaConf.to_yaml(OmegaConf.create(masked)))


class RunGuard(Callback):
    """hydra.callbacks.run_guard in conf/hydra/default.yaml."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns what its callbacks raise into warnings and carries on: end here.
        try:
            self._claim(config)
        except UserError as error:
            exit_for(error)

    def _claim(self, config: DictConfig) -> None:
        # Resolved on Hydra's own config first: its ${now:} is cached there, so the job gets
        # the same directory.
        run_dir = Path(os.path.abspath(config.hydra.run.dir))
        task = _task_config(config, run_dir)
        finished = claim(task, list(config.hydra.overrides.task), run_dir)
        if task.get("resume") and not config.get("resume"):  # a requeued job: its own run
            with read_write(config), open_dict(config):
                config.resume = task.resume
        if finished is not None:
            raise AlreadyFinished(finished_message(run_dir))
        if not rank_zero():
            _keep_records_apart(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra's launcher prints each job's overrides before the job starts.
        remember(list(config.hydra.overrides.task))
        mask_logging()
        try:
            _check_sweep_dir(Path(config.hydra.sweep.dir), list(config.hydra.overrides.task))
        except UserError as error:
            exit_for(error)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra = HydraConfig.get()
        task = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
        remember(OmegaConf.to_container(task, resolve=True))
        remember(list(hydra.overrides.task))
        mask_logging()
        out = Path(hydra.runtime.output_dir)
        if hydra.output_subdir is not None:
            for path in (out / hydra.output_subdir).glob("*.yaml"):
                _redact_file(path)
        if hydra.mode == RunMode.MULTIRUN:
            _redact_file(Path(hydra.sweep.dir) / "multirun.yaml")
            if rank_zero():
                try:
                    lock(out)
                except UserError as error:
                    exit_for(error)

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            release_all()

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_all()


def _check_train(task: DictConfig, overrides: list[str] | None, run_dir: Path) -> dict | None:
    """A resume that vaelab-train would refuse ends here; one that has nothing left to do
    returns the run's results."""
    if not task.get("resume"):
        return None
    if Path(os.path.abspath(task.resume)) != run_dir:
        raise ConfigError(
            f"resume={task.resume} continues the run in its own directory, not in "
            f"hydra.run.dir={run_dir}: leave hydra.run.dir out (ckpt_path=<file> starts a new run "
            f"from a checkpoint)"
        )
    return finished_results(run_dir, resume_config(task, overrides))


def _check_sweep_dir(sweep_dir: Path, overrides: list[str]) -> None:
    """A sweep started again in its own directory continues it (finished jobs keep their
    results): only with the same sweep, since a job's directory is named by its number alone.
    A folder that holds something else than a sweep is refused before anything is written."""
    earlier = sweep_dir / "multirun.yaml"
    if not earlier.is_file():
        if sweep_dir.is_dir() and any(sweep_dir.iterdir()):
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir} holds files but no sweep (no multirun.yaml): give "
                f"a new or empty hydra.sweep.dir"
            )
        return
    try:
        before = list(OmegaConf.load(earlier).hydra.overrides.task)
    except Exception:
        raise ConfigError(
            f"{earlier} is not the record of a sweep: give a new hydra.sweep.dir"
        ) from None
    now = redact(overrides)  # as the record has them
    before_keys = {override_key(o): o for o in before}
    now_keys = {override_key(o): o for o in now}
    changed = sorted(
        f"{before_keys.get(k, f'no {k}')} there, {now_keys.get(k, f'no {k}')} now"
        for k in set(before_keys) | set(now_keys)
        if before_keys.get(k) != now_keys.get(k) and not under(k, MAY_CHANGE)
    )
    if changed:
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} holds another sweep ({'; '.join(changed)}): continue "
            f"it with its own overrides (only {', '.join(MAY_CHANGE[:2])} and the logging may "
            f"change), or give a new hydra.sweep.dir"
        )
