"""The Hydra callback that runs a command's pre-flight before Hydra writes into the run directory.

Hydra writes `.hydra/` and the job's log before the task starts. So a config that a command
refuses is refused here, in `on_run_start` (vaelab.runs.preflight: the config, a resume, a
directory in use or already holding a run), and leaves no directory behind. A multirun's jobs
run their pre-flight in the task, so that a refused job is recorded as failed and the others go
on; here the sweep directory is checked, and secrets are masked in Hydra's records.
"""

import copy
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from vaelab.cli.errors import exit_for
from vaelab.config.resolvers import unmake
from vaelab.errors import AlreadyFinished, ConfigError, UserError
from vaelab.runs.lock import unwritable
from vaelab.runs.preflight import preflight, release_all
from vaelab.runs.ranks import rank_name, rank_zero
from vaelab.runs.resume import MAY_CHANGE, override_key, under
from vaelab.runs.secrets import mask_logging, redact, remember


def keep_records_apart(config: DictConfig) -> None:
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
            unmake(config.hydra.run.dir)
            exit_for(error)

    def _claim(self, config: DictConfig) -> None:
        # Resolved on Hydra's own config first: its ${now:} is cached there, so the job gets
        # the same directory.
        run_dir = Path(os.path.abspath(config.hydra.run.dir))
        plan = preflight(_task_config(config, run_dir), list(config.hydra.overrides.task))
        if plan.resumes and not config.get("resume"):  # a requeued job: its own run
            with read_write(config), open_dict(config):
                config.resume = plan.config.resume
        if plan.finished is not None:
            raise AlreadyFinished(plan.note)
        if not rank_zero():
            keep_records_apart(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra's launcher prints each job's overrides before the job starts.
        remember(list(config.hydra.overrides.task))
        mask_logging()
        try:
            _check_sweep_dir(Path(config.hydra.sweep.dir), list(config.hydra.overrides.task))
        except UserError as error:
            unmake(config.hydra.sweep.dir)
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

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            release_all()

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_all()


def _check_sweep_dir(sweep_dir: Path, overrides: list[str]) -> None:
    """A sweep started again in its own directory continues it (finished jobs keep their
    results): only with the same sweep, since a job's directory is named by its number alone.
    A folder that holds something else than a sweep is refused before anything is written."""
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise unwritable(sweep_dir, error, "hydra.sweep.dir") from None
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
