"""Hyper-parameter search with Optuna: `vaelab-train hparams_search=vae_optuna`.

A driver, not a Hydra sweeper (the Hydra Optuna sweeper on PyPI needs optuna < 3): each trial
runs the same `train` on the composed config with the trial's values, in a directory of its own
under the run directory. The study lives in a database (sqlite by default), so a second
invocation with the same study name continues it; validation results prune hopeless trials.
"""

import contextlib
import copy
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from vaelab.errors import UserError
from vaelab.extras import require
from vaelab.runs.run_dir import optimized_value
from vaelab.study import check_fixed, check_space, write_best

optuna = require("optuna", "search", "hparams_search")

log = logging.getLogger(__name__)


class PruneTrial(L.Callback):
    """Reports the monitored metric to Optuna after each validation; stops a trial it prunes."""

    def __init__(self, trial: optuna.Trial, monitor: str):
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"epoch {trainer.current_epoch}: {self.monitor}={float(value)}"
            )


def _suggest(trial: optuna.Trial, key: str, space: dict[str, Any]) -> Any:
    kind = space.get("type")
    if kind == "float":
        return trial.suggest_float(key, space["low"], space["high"], log=space.get("log", False))
    if kind == "int":
        return trial.suggest_int(key, space["low"], space["high"], log=space.get("log", False))
    return trial.suggest_categorical(key, list(space["choices"]))  # checked by check_space


def _values(params: dict[str, Any]) -> str:
    """A trial's values as overrides: `model.beta=1.185 model.latent_dim=4`."""
    shown = (f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    return " ".join(shown)


def _trial_config(cfg: DictConfig, trial: optuna.Trial) -> DictConfig:
    trial_cfg = copy.deepcopy(cfg)
    with open_dict(trial_cfg):
        search = trial_cfg.pop("hparams_search")
        for key, space in search.params.items():
            value = _suggest(trial, key, OmegaConf.to_container(space))
            OmegaConf.update(trial_cfg, key, value, merge=False)
        trial_cfg.paths.output_dir = str(Path(cfg.paths.output_dir) / f"trial_{trial.number:03d}")
    return trial_cfg


def _storage(spec: DictConfig) -> "optuna.storages.RDBStorage":
    """The study's database, with heartbeats: a trial whose worker died (killed, its node gone)
    is marked failed `grace_period` seconds after its last beat and run again, with the same
    values, by whichever worker of the study looks next."""
    if spec.storage.startswith("sqlite:///"):
        Path(spec.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    heartbeat = {"heartbeat_interval": spec.heartbeat_interval, "grace_period": spec.grace_period}
    with _heartbeats():
        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=spec.max_retry)
            heartbeat["heartbeat_stale_trial_callback"] = retry
        else:
            retry = optuna.storages.RetryFailedTrialCallback(max_retry=spec.max_retry)
            heartbeat["failed_trial_callback"] = retry
        return _opened(spec.storage, heartbeat)


def _opened(url: str, options: dict[str, Any]) -> "optuna.storages.RDBStorage":
    """Optuna's storage on `url`. Workers that start together on a new database create its
    tables at once, and all but one fail ("Table 'trials' already exists"): they try again, and
    find the tables made."""
    from sqlalchemy.exc import DBAPIError

    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(url, **options)
        except DBAPIError:
            time.sleep(0.2 * (attempt + 1))
    return optuna.storages.RDBStorage(url, **options)  # an error that stays is the user's


@contextlib.contextmanager
def _heartbeats() -> Iterator[None]:
    """Optuna calls heartbeats experimental (since 2.8) and warns at each use: the user asked for
    nothing that is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
_RUNNING = optuna.trial.TrialState.RUNNING


class _Surplus(Exception):
    """Another worker started the study's last trial at the same moment."""


def _counts(study: optuna.Study, before: int | None = None) -> tuple[int, int]:
    """(finished, running) trials of the study; running ones numbered below `before` only."""
    trials = study.get_trials(deepcopy=False, states=(*_FINISHED, _RUNNING))
    finished = sum(t.state in _FINISHED for t in trials)
    running = [t for t in trials if t.state == _RUNNING]
    return finished, sum(before is None or t.number < before for t in running)


def search(cfg: DictConfig, train: Callable[..., tuple[dict[str, Any], Any]]) -> float:
    """Run trials of `train` (vaelab.train's, passed in so that the two modules do not import
    each other) until the study holds `hparams_search.n_trials` finished ones, whatever other
    workers share it; return the best value.

    Workers (processes, SLURM jobs) on one study start a trial only while the finished and
    running ones are fewer than n_trials; a worker with nothing to start waits for the running
    ones, which may fail and be run again (see `_storage`), and stops when the study is done."""
    spec = cfg.hparams_search
    check_space(cfg)
    direction = "maximize" if cfg.model.monitor_mode == "max" else "minimize"
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=spec.pruner.n_startup_trials, n_warmup_steps=spec.pruner.n_warmup_steps
    )
    study = optuna.create_study(
        study_name=spec.study_name,
        storage=_storage(spec),
        direction=direction,
        pruner=pruner,
        load_if_exists=True,
    )
    check_fixed(study, cfg)
    # The sampler's state is not stored with the study: seeded as before, a continued study
    # would propose the first points again. Seeded by the seed and the trials so far together
    # (not their sum: workers with seeds 1 and 2 a trial apart would propose the same points),
    # it repeats only itself; workers that start together need seeds of their own.
    pair = np.random.SeedSequence([cfg.seed, len(study.trials)])
    study.sampler = optuna.samplers.TPESampler(seed=int(pair.generate_state(1)[0]))
    done = _counts(study)[0]
    log.info(f"Study {spec.study_name} in {spec.storage}: {done} of {spec.n_trials} trials done")

    refused: list[UserError] = []

    def objective(trial: optuna.Trial) -> float:
        finished, running = _counts(trial.study, before=trial.number)
        if finished + running >= spec.n_trials:
            raise _Surplus(
                f"trial {trial.number} not run: the study's {spec.n_trials} trials are finished "
                f"or running (another worker started one at the same moment)"
            )
        trial_cfg = _trial_config(cfg, trial)
        log.info(f"Trial {trial.number}: {_values(trial.params)}")  # the header's: the command's
        pruning = PruneTrial(trial, cfg.model.monitor)
        try:
            results, _ = train(trial_cfg, extra_callbacks=[pruning])
            return optimized_value(trial_cfg, results, required=True)
        except UserError as error:
            # Optuna would print the traceback of a failed trial: the study ends on its line.
            refused.append(error)
            trial.study.stop()
            return math.nan

    with _heartbeats():
        _work(study, objective, cfg, refused)
    if refused:
        raise refused[0]
    write_best(study, cfg)
    log.info(f"Best of {spec.study_name}: {study.best_value} with {study.best_params}")
    log.info(f"Best trial's parameters and value: {spec.best_file}")
    return study.best_value


def _work(study: optuna.Study, objective: Callable, cfg: DictConfig, refused: list) -> None:
    """Trials until the study is done (or a trial was refused), the best file written after
    each; waits while other workers' trials would finish it."""
    spec, waited = cfg.hparams_search, False
    while not refused:
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed, queued again
        finished, running = _counts(study)
        if finished >= spec.n_trials:
            break
        if finished + running >= spec.n_trials:
            if not waited:
                log.info(f"Waiting for the {running} running trials of {spec.study_name}")
            waited = True
            time.sleep(spec.heartbeat_interval)
            continue
        study.optimize(objective, n_trials=1, catch=(_Surplus,))
        write_best(study, cfg)
