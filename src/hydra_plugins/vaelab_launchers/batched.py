"""hydra/launcher=batched: a sweep's jobs trained together in one process.

Jobs that differ only in what their model takes per member (vaelab.batched.groups) run in
lockstep (vaelab.batched.lockstep): each job is the job the basic launcher would run, in the
directory it would get, and their models' forward and backward passes are computed in one turn
(stacked on a GPU). Other jobs run one after another, as the basic launcher runs them.
"""

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


class BatchedLauncher(Launcher):
    def __init__(self, max_members: int = 8, stack: bool | None = None) -> None:
        self.max_members, self.stack = max_members, stack
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from hydra.utils import get_class

        from vaelab.batched.groups import groups
        from vaelab.batched.lockstep import Lockstep

        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Launching jobs, {self.max_members} at most trained together, sweep output "
                 f"dir : {sweep_dir}")  # fmt: skip
        configs = []
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
            config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(config):
                config.hydra.job.id = config.hydra.job.num = num
            _check_batchable(config)
            configs.append(config)
        jobs = [
            (list(overrides), get_class(str(config.model._target_)))
            for overrides, config in zip(job_overrides, configs, strict=True)
        ]
        found, notes = groups(jobs, self.max_members)
        for note in notes:
            log.info(note)
        returns: list = [None] * len(configs)
        for group in found:
            if len(group.jobs) > 1:
                nums = ", ".join(f"#{initial_job_idx + num}" for num in group.jobs)
                log.info(f"Training {nums} together")
            runs = [partial(self._run, configs[num]) for num in group.jobs]
            outcomes = Lockstep(self.stack).run(runs) if len(runs) > 1 else [runs[0]()]
            for num, outcome in zip(group.jobs, outcomes, strict=True):
                if isinstance(outcome, BaseException):  # not the job's: run_job keeps those
                    raise outcome
                returns[num] = outcome
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns

    def _run(self, config: DictConfig) -> JobReturn:
        assert self.hydra_context is not None and self.task_function is not None
        return run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )


def _check_batchable(config: DictConfig) -> None:
    """Refuse, in one line, what one process of threads taking turns cannot run: a search (its
    trials are one job's), a run over several devices or nodes, W&B (whose runs are one per
    process at a time: wandb.run, and Lightning's logger takes the one open)."""
    from vaelab.errors import ConfigError

    loggers = [str(c.get("_target_", "")) for c in (config.get("logger") or {}).values() if c]
    if any(target.endswith("WandbLogger") for target in loggers):
        raise ConfigError(
            "hydra/launcher=batched does not log to W&B yet (wandb keeps one run open per "
            "process): give logger=csv or logger=mlflow, or run the sweep with the basic launcher"
        )
    if config.get("hparams_search"):
        raise ConfigError(
            "hydra/launcher=batched trains a sweep's jobs together, and hparams_search runs its "
            "trials inside one job: drop one of the two"
        )
    trainer = config.trainer
    devices = trainer.get("devices", 1)
    several = (isinstance(devices, int) and devices > 1) or (
        not isinstance(devices, int | str) and len(devices) > 1
    )
    if several or int(trainer.get("num_nodes", 1)) > 1 or "ddp" in str(trainer.get("strategy")):
        raise ConfigError(
            f"hydra/launcher=batched runs every job in one process, on one device: give "
            f"trainer.devices=1 trainer.num_nodes=1 (not devices={devices}, "
            f"num_nodes={trainer.get('num_nodes', 1)}, strategy={trainer.get('strategy')})"
        )
