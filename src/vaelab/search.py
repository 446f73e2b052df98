"""Hyper-parameter search with Optuna: `vaelab-train hparams_search=vae_optuna`.

A driver, not a Hydra sweeper (the Hydra Optuna sweeper on PyPI needs optuna < 3): each trial
runs the same `train` on the composed config with the trial's values, in a directory of its own
under the run directory. The study lives in a database (sqlite by default), so a second
invocation with the same study name continues it; validation results prune hopeless trials.
"""

import copy
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from vaelab.errors import ConfigError, UserError
from vaelab.extras import require
from vaelab.runs.run_dir import optimized_value

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
    if kind == "categorical":
        return trial.suggest_categorical(key, list(space["choices"]))
    raise ConfigError(f"hparams_search.params.{key}.type={kind!r}: use float, int or categorical")


def _trial_config(cfg: DictConfig, trial: optuna.Trial) -> DictConfig:
    trial_cfg = copy.deepcopy(cfg)
    with open_dict(trial_cfg):
        search = trial_cfg.pop("hparams_search")
        for key, space in search.params.items():
            value = _suggest(trial, key, OmegaConf.to_container(space))
            if OmegaConf.select(trial_cfg, key, default="<missing>") == "<missing>":
                raise ConfigError(f"hparams_search.params: {key} is not a key of the config")
            OmegaConf.update(trial_cfg, key, value, merge=False)
        trial_cfg.paths.output_dir = str(Path(cfg.paths.output_dir) / f"trial_{trial.number:03d}")
    return trial_cfg


def search(cfg: DictConfig, train: Callable[..., tuple[dict[str, Any], Any]]) -> float:
    """Run the study to `hparams_search.n_trials` finished trials of `train` (vaelab.train's,
    passed in so that the two modules do not import each other); return the best value."""
    spec = cfg.hparams_search
    direction = "maximize" if cfg.model.monitor_mode == "max" else "minimize"
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=spec.pruner.n_startup_trials, n_warmup_steps=spec.pruner.n_warmup_steps
    )
    Path(spec.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=spec.study_name,
        storage=spec.storage,
        direction=direction,
        pruner=pruner,
        load_if_exists=True,
    )
    # The sampler's state is not stored with the study: seeded as before, a continued study
    # would propose the first points again. Seeded by the trials so far, it repeats only itself.
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.trials))
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(states=finished))
    log.info(f"Study {spec.study_name} in {spec.storage}: {done} of {spec.n_trials} trials done")

    refused: list[UserError] = []

    def objective(trial: optuna.Trial) -> float:
        trial_cfg = _trial_config(cfg, trial)
        pruning = PruneTrial(trial, cfg.model.monitor)
        try:
            results, _ = train(trial_cfg, extra_callbacks=[pruning])
            return optimized_value(trial_cfg, results, required=True)
        except UserError as error:
            # Optuna would print the traceback of a failed trial: the study ends on its line.
            refused.append(error)
            trial.study.stop()
            return math.nan

    study.optimize(objective, n_trials=max(0, spec.n_trials - done), catch=())
    if refused:
        raise refused[0]
    log.info(f"Best of {spec.study_name}: {study.best_value} with {study.best_params}")
    return study.best_value
