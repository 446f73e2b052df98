"""The console scripts' shell: Hydra composes the config, errors a user can fix end in one line."""

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from vaelab.cli.errors import exit_for, exit_if_user_error, say_and_exit
from vaelab.config.config_dir import config_dir
from vaelab.errors import Preempted
from vaelab.runs.preflight import planned, release_all


def _job(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """The task as Hydra runs it, on the config its pre-flight planned (made by the run guard
    before Hydra wrote anything; a multirun's job makes its own here). A single run's user error
    is said inside the job, before Hydra adds its "Error executing job" line; a multirun's
    propagates, so that the launcher records the job as failed; a pre-emption ends every job."""

    def job(cfg: DictConfig) -> Any:
        hydra_cfg = HydraConfig.get()
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        launcher = hydra_cfg.launcher._target_ if multirun else None
        try:
            with planned(cfg, list(hydra_cfg.overrides.task), launcher) as plan:
                return task(plan.config)
        except Preempted as error:
            exit_for(error)  # also in a multirun: the next job must not start
        except Exception as error:
            if not multirun:
                exit_if_user_error(error)
            raise

    return job


@contextmanager
def _hydra_told_to_raise() -> Iterator[None]:
    """HYDRA_FULL_ERROR=1 for the call, so that composition errors come back to be said in one
    line; a user who set it wants tracebacks (VAELAB_TRACEBACKS). Put back when done: a second
    call in this process (a notebook's, a test's) must not take this one's setting as the
    user's."""
    before = {n: os.environ.get(n) for n in ("HYDRA_FULL_ERROR", "VAELAB_TRACEBACKS")}
    if before["HYDRA_FULL_ERROR"] == "1":
        os.environ["VAELAB_TRACEBACKS"] = "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def hydra_main(
    config_name: str, data_from_run: bool = False
) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Decorate `task(cfg)` into a console script on conf/<config_name>.yaml.

    With `data_from_run`, the command works on a trained run's data config, which its own config
    does not hold: `data.path=new.csv` is passed to Hydra as `++data.path=new.csv` (add or
    override), and the task merges what it gets onto the run's data config.

    A user error ends the process with `error: <one line>` on stderr and exit status 1 (see
    `_job`); errors of composition (an unknown option, a malformed override) come back here.
    Anything else keeps its full traceback. The run directories the process holds are given up
    however it ends.
    """

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        hydra_job = hydra.main(
            version_base="1.3", config_path=config_dir(), config_name=config_name
        )(_job(task))

        def main() -> Any:
            if data_from_run:
                sys.argv = [f"++{a}" if a.startswith("data.") else a for a in sys.argv]
            with _hydra_told_to_raise():
                try:
                    return hydra_job()
                except KeyboardInterrupt:
                    # Ctrl-C outside Lightning's loops (which end a fit themselves, exit 1).
                    say_and_exit(
                        "interrupted (Ctrl-C); a training run continues with resume=<run dir>", 130
                    )
                except Exception as error:
                    exit_if_user_error(error, config_name)
                    raise
                finally:
                    release_all()

        return main

    return decorate
