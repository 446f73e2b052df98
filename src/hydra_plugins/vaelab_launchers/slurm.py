"""hydra/launcher=slurm: Hydra's submitit SLURM launcher, with a sweep that waits for every job.

Hydra's launcher reads each job's result as soon as submitit thinks the job ended, and stops at
the first job without one. submitit takes a state that SLURM shows for a moment while it requeues
a job (pre-emption, a time limit) as the end, for good: the sweep then failed while its job went
on. And a job that did end without a result (cancelled, out of requeues) stopped the sweep with a
traceback while the other jobs still ran, so that starting the same command again met them
running. Here the sweep waits until every job has its result or has ended for good (the same
state twice, `_HOLD_S` apart), then says in one line which jobs did not finish and how to finish
them: the same command again, where finished jobs keep their results. The tasks of a DDP job
(`tasks_per_node` > 1) other than the first keep Hydra's records and their log beside the run's,
as they do under `srun` without a sweep.
"""

import logging
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from omegaconf import OmegaConf, open_dict

from vaelab.errors import UserError

try:
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _Hydra
except ImportError:  # without vaelab[launchers] there is no hydra/launcher=slurm to use this
    _Hydra = object

log = logging.getLogger(__name__)

# SLURM's states of a job that has not ended (a requeued job goes back to PENDING).
_NOT_ENDED = {"READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED",
              "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED", "CONFIGURING",
              "SIGNALING", "STAGE_OUT", ""}  # fmt: skip
_HOLD_S = 10.0
_SILENCE_S = 600.0  # sacct failing this long ends the wait: the cluster (or its database) is gone


class JobsUnfinished(UserError):
    """Jobs of a SLURM sweep ended without a result."""


class SlurmLauncher(_Hydra):
    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[type, Singleton],
    ) -> JobReturn:
        """One task of a job, on the cluster: Hydra's job, with the records and log of a task
        other than a DDP job's first kept beside the first's (train.task1.log, .hydra_task1)."""
        import submitit

        from vaelab.cli.guard import keep_records_apart
        from vaelab.runs.ranks import rank_zero

        assert self.hydra_context is not None and self.task_function is not None
        Singleton.set_state(singleton_state)
        setup_globals()
        config = self.hydra_context.config_loader.load_sweep_config(self.config, sweep_overrides)
        with open_dict(config.hydra.job) as job:
            job.id = submitit.JobEnvironment().job_id
            job.num = job_num
        if not rank_zero():
            keep_records_apart(config)
        return run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=config,
            job_dir_key=job_dir_key,
            job_subdir_key="hydra.sweep.subdir",
        )

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
        jobs = self._submit(job_overrides, initial_job_idx)
        states = _wait_for(jobs)
        outcomes = [_outcome(job, states) for job in jobs]
        unfinished = [
            f"job {num} (SLURM job {job.job_id}) {why}; {job.paths.stderr}"
            for num, (job, why) in enumerate(zip(jobs, outcomes), start=initial_job_idx)
            if isinstance(why, str)
        ]
        if not unfinished:
            return outcomes
        error = JobsUnfinished(
            f"{len(unfinished)} of {len(jobs)} jobs did not finish: {'; '.join(unfinished)}. "
            f"Start the same command again to finish the sweep (finished jobs keep their results)"
        )
        return [
            _failed(overrides, error) if isinstance(outcome, str) else outcome
            for outcome, overrides in zip(outcomes, job_overrides)
        ]

    def _submit(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
        """The jobs submitted as an array, as Hydra's launcher submits them."""
        import submitit

        assert self.config is not None
        params = dict(self.params)
        folder = params.pop("submitit_folder")
        init = {f"{self._EXECUTOR}_max_num_timeout": params.pop("max_num_timeout")}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=folder, **init)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in params.items()}
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))
        job_params = []
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
            state = Singleton.get_state()
            job_params.append((list(overrides), "hydra.sweep.dir", num, f"job_id_for_{num}", state))
        return executor.map_array(self, *zip(*job_params))


def _outcome(job: Any, states: dict[str, str]) -> JobReturn | str:
    """The job's return, or why it did not finish (`states`: SLURM's, as last read)."""
    if job.paths.result_pickle.exists():
        try:
            ret = job.results()[0]
        except Exception as error:  # submitit's: the job's traceback, as text
            return f"failed: {_last_line(str(error))}"
        if ret.status != JobStatus.FAILED:
            return ret
        try:
            ret.return_value  # noqa: B018 (Hydra's JobReturn raises the task's error here)
        except Exception as error:
            return f"failed: {(str(error).strip().splitlines() or [type(error).__name__])[0]}"
    log = job.stderr() or ""
    said = _last_line(log)
    why = f" ({said})" if f"error: {said}" in log else ""  # vaelab's own line, if it said one
    return f"ended {states.get(job.job_id, 'in an unknown state')} without a result{why}"


def _failed(overrides: Sequence[str], error: Exception) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
    ret.return_value = error
    return ret


def _wait_for(jobs: list) -> dict[str, str]:
    """Until each job has its result or has shown an ended state twice, `_HOLD_S` apart; the
    states last read. Results are looked for every second; SLURM's accounting is asked as
    submitit asks it, less often as the sweep gets older (every 2 s at first, at most every
    minute)."""
    start, asked, ended_since, ended = time.monotonic(), float("-inf"), {}, set()
    answered, last = start, {}
    while True:
        waiting = [job.job_id for job in jobs if not job.paths.result_pickle.exists()]
        if all(job_id in ended for job_id in waiting):
            return last
        now = time.monotonic()
        holding = any(job_id in ended_since for job_id in waiting)
        if now - asked > (2.0 if holding else min(60.0, max(2.0, (now - start) / 2))):
            states, asked = _states(waiting), now
            if states is not None:
                answered, last = now, states
            if now - answered > _SILENCE_S:
                raise JobsUnfinished(
                    f"SLURM's accounting (sacct) has not answered for {_SILENCE_S / 60:.0f} "
                    f"minutes; the jobs may still run: start the same command again once it "
                    f"answers (finished jobs keep their results)"
                )
            for job_id in waiting:
                if (states or {}).get(job_id, "") in _NOT_ENDED:
                    ended_since.pop(job_id, None)
                elif now - ended_since.setdefault(job_id, now) >= _HOLD_S:
                    ended.add(job_id)
        time.sleep(1.0)


def _states(job_ids: list[str]) -> dict[str, str] | None:
    """SLURM's state of each job, its first word ("CANCELLED by 0" is CANCELLED); a job that
    accounting does not know yet is left out. None when sacct fails."""
    asked = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if asked.returncode != 0:
        return None
    states: dict[str, str] = {}
    for line in asked.stdout.splitlines():
        job_id, _, state = line.partition("|")
        for one in _tasks(job_id):  # the tasks of an array not yet started share a row
            states.setdefault(one, (state.split() or [""])[0])
    return states


def _tasks(job_id: str) -> list[str]:
    """The array tasks a row of sacct stands for: 10_[0-3%2] is 10_0 ... 10_3; 10_1 is itself."""
    base, bracket, spec = job_id.partition("_[")
    if not bracket:
        return [job_id]
    tasks = []
    for part in spec.rstrip("]").split("%")[0].split(","):
        first, _, last = part.partition("-")
        tasks += [f"{base}_{i}" for i in range(int(first), int(last or first) + 1)]
    return tasks


def _last_line(text: str) -> str:
    """What ended a job: vaelab's own `error: ...` line, else the last line of its traceback
    (submitit's note on where the logs are left out)."""
    text = text.split("You can check full logs")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip().strip("-")]
    said = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    return said[-1] if said else (lines[-1] if lines else "no output")
