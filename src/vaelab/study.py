"""What an Optuna study of `hparams_search` holds, checked and written down around its trials:
its space against the config (before any trial, so that a search that cannot run records no
failed trial), the settings it holds fixed (a study continues only under the same ones), and
its best trial, in a file beside the study after every trial."""

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from vaelab.config.schema import validate
from vaelab.errors import ConfigError
from vaelab.runs.run_dir import atomic_write
from vaelab.runs.secrets import mask_text

KINDS = {"float": ("low", "high"), "int": ("low", "high"), "categorical": ("choices",)}
# Where and how a trial is written and watched, where its data lies, and what varies between
# workers (the seed, the data order it sets): not what the study measures.
NOT_FIXED = (
    "hparams_search", "seed", "data.seed", "data.data_dir", "data.download", "paths", "logger",
    "callbacks", "metrics", "extras", "tags", "resume", "ckpt_path", "trainer.default_root_dir",
    "trainer.steps_per_call", "trainer.threads", "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
)  # fmt: skip


def check_space(cfg: DictConfig) -> None:
    """Each searched key is a key of the config with a space Optuna takes, and the config with
    each end of the space (each choice) passes the config's checks."""
    for key, space in cfg.hparams_search.params.items():
        where = f"hparams_search.params.{key}"
        kind = space.get("type")
        if kind not in KINDS:
            raise ConfigError(f"{where}.type={kind!r}: use float, int or categorical")
        absent = [field for field in KINDS[kind] if space.get(field) is None]
        if absent:
            raise ConfigError(f"{where} needs {', '.join(absent)} for type {kind}")
        if OmegaConf.select(cfg, key, default="<missing>") == "<missing>":
            raise ConfigError(
                f"{where}: {key} is not a key of this config (model "
                f"{cfg.model._target_.rsplit('.', 1)[-1]}): search another key, or another model"
            )
        ends = list(space.choices) if kind == "categorical" else [space.low, space.high]
        for value in ends:
            trial = copy.deepcopy(cfg)
            with open_dict(trial):
                OmegaConf.update(trial, key, value, merge=False)
            try:
                validate(trial)
            except ConfigError as error:
                raise ConfigError(f"{where}: the space holds {key}={value!r}: {error}") from None


def fixed_settings(cfg: DictConfig) -> dict[str, str]:
    """The config's values that the study holds fixed, by dotted key: everything but what it
    searches and `NOT_FIXED`."""
    searched = set(cfg.hparams_search.params)
    plain = OmegaConf.to_container(cfg, resolve=True)
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if prefix in searched or any(prefix == k or prefix.startswith(k + ".") for k in NOT_FIXED):
            return
        if isinstance(node, dict) and node:
            for name, value in node.items():
                walk(value, f"{prefix}.{name}" if prefix else str(name))
        else:
            flat[prefix] = json.dumps(node, sort_keys=True)

    walk(plain, "")
    return flat


def check_fixed(study: Any, cfg: DictConfig) -> None:
    """Record the fixed settings on a new study; refuse to continue one under others, with a
    study name to give instead."""
    mine = fixed_settings(cfg)
    theirs = study.user_attrs.get("fixed_settings")
    if theirs is None:
        study.set_user_attr("fixed_settings", mine)
        return
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if differ:
        key = differ[0]
        digest = hashlib.sha1(json.dumps(mine, sort_keys=True).encode()).hexdigest()[:6]
        raise ConfigError(
            f"study {study.study_name} was run with {key}={theirs.get(key, 'unset')} and this "
            f"search has {key}={mine.get(key, 'unset')} ({len(differ)} settings differ): its "
            f"trials would not compare; start another study with "
            f"hparams_search.study_name={study.study_name}_{digest}"
        )


def write_best(study: Any, cfg: DictConfig) -> None:
    """The best trial so far (its value, parameters and number) in hparams_search.best_file,
    replaced whole: workers that share the study each write what the database holds."""
    finished = [t for t in study.trials if t.value is not None and t.state.name == "COMPLETE"]
    if not finished:
        return
    best = study.best_trial
    spec = cfg.hparams_search
    record = {
        "study": study.study_name,
        "storage": mask_text(spec.storage),  # a database URL's password stays out
        "direction": study.direction.name.lower(),
        "metric": cfg.model.monitor,
        "best_value": best.value,
        "best_params": best.params,
        "best_trial": best.number,
        "complete_trials": len(finished),
    }
    atomic_write(Path(spec.best_file), json.dumps(record, indent=2) + "\n", shared=True)
