"""Continuing a run in its own directory: its config, what may change, its newest checkpoint."""

import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from vaelab.config.containers import to_plain
from vaelab.errors import ConfigError, DataError
from vaelab.runs.secrets import MASK
from vaelab.runs.targets import check_targets, trusted_targets

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

LIMITS = ("max_epochs", "max_steps")

# Where the run is and where its files are: always those of the resuming invocation.
_FROM_NOW = ("paths", "resume", "ckpt_path", "hydra")
# What a resume may change: how long to train, where the data files are, how to log and watch.
# Everything else alters the model, the data or the optimisation, and a resume refuses it.
MAY_CHANGE = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.steps_per_call",  # the same math and order whatever it is
    "trainer.threads",
    "data.data_dir",
    "data.download",
    "logger",
    "callbacks",
    "metrics",
    "optimized_metric",
    "tags",
    "extras",
)


def under(key: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def override_key(override: str) -> str:
    """'trainer.max_epochs=4' -> 'trainer.max_epochs'; 'model/net=conv' -> 'model.net';
    '+callbacks/x@callbacks.y=z' -> 'callbacks.y'."""
    key = override.split("=", 1)[0].lstrip("+~")
    key = key.split("@", 1)[1] if "@" in key else key
    return key.replace("/", ".")


def _leaves(cfg: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(cfg, dict):
        out: dict[str, Any] = {}
        for key, value in cfg.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: cfg}


def relocate(config: Any, old: str, new: str) -> Any:
    """A plain config with the paths inside the run directory `old` moved to `new`: a run
    directory that was moved or copied reads and writes only itself."""
    if isinstance(config, dict):  # keys too: a ModelCheckpoint keeps its best paths as keys
        return {relocate(k, old, new): relocate(v, old, new) for k, v in config.items()}
    if isinstance(config, list):
        return [relocate(v, old, new) for v in config]
    if isinstance(config, str) and (config == old or config.startswith(old.rstrip("/") + "/")):
        return new + config[len(old.rstrip("/")) :]
    return config


# Classes that moved between releases, by the `_target_` that older runs saved.
MOVED_TARGETS = {
    "vaelab.utils.checkpoint_io.AtomicCheckpointIO": "vaelab.runs.checkpoint_io.AtomicCheckpointIO",
}


def _moved(config: Any) -> Any:
    """A plain config with the `_target_`s of moved classes pointing where they are now."""
    if isinstance(config, dict):
        return {
            k: MOVED_TARGETS.get(v, v) if k == "_target_" else _moved(v) for k, v in config.items()
        }
    if isinstance(config, list):
        return [_moved(v) for v in config]
    return config


_BUILT = ("data", "model", "trainer")


def _is_run_config(config: Any) -> bool:
    """Whether a loaded config.yaml is one that vaelab-train wrote: its task, and a data, model
    and trainer each built from a `_target_`."""
    return (
        isinstance(config, dict)
        and config.get("task_name") == "train"
        and all(isinstance(config.get(k), dict) and "_target_" in config[k] for k in _BUILT)
    )


def saved_config(run_dir: Path) -> DictConfig:
    """The config.yaml of the run in `run_dir`, its paths those of the directory as it is now
    and its classes where this release has them; refused when vaelab-train did not write it.
    What it names is not checked here: the caller checks what it builds (runs/targets.py)."""
    path = run_dir / "config.yaml"
    try:
        saved = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    except Exception as error:  # YAML that does not parse, or is no mapping
        why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"{path} is not the config.yaml of a vaelab-train run ({why}); give the "
            f"directory of a run that vaelab-train wrote"
        ) from None
    if not _is_run_config(saved):
        raise ConfigError(
            f"{path} is not the config.yaml of a vaelab-train run (it lacks task_name: train "
            f"and the _target_ of data, model and trainer); give the directory of a run that "
            f"vaelab-train wrote"
        )
    saved = _moved(saved)
    old = (saved.get("paths") or {}).get("output_dir")
    if isinstance(old, str) and old:
        saved = relocate(saved, old, os.path.abspath(run_dir))
    return OmegaConf.create(saved)


def resume_config(cfg: DictConfig, overrides: list[str] | None) -> DictConfig:
    """The config of the run in `cfg.resume`, with this invocation's permitted changes applied.

    `overrides` are this command line's overrides: keys it does not mention keep the run's
    values, whatever the defaults are now. With None (a config built in Python), every key that
    differs from the run's counts as a change.
    """
    run_dir = Path(cfg.resume)
    saved_file = run_dir / "config.yaml"
    if not saved_file.is_file():
        raise ConfigError(
            f"resume={cfg.resume}: {saved_file} does not exist; give the directory of a "
            f"vaelab-train run"
        )
    saved = saved_config(run_dir)
    now = _leaves(OmegaConf.to_container(cfg, resolve=True))
    before = _leaves(OmegaConf.to_container(saved, resolve=True))
    if overrides is None:
        given = [k for k in set(now) | set(before) if now.get(k) != before.get(k)]
    else:
        given = [override_key(o) for o in overrides]
    given = [k for k in given if not under(k, _FROM_NOW)]
    # A secret was masked in config.yaml: a resume must be given it again, and takes it.
    secrets = [k for k, v in before.items() if v == MASK]
    may_change = [*MAY_CHANGE, *secrets]

    refused = sorted(
        f"{key} ({before.get(key)!r} in the run, {now.get(key)!r} now)"
        for key in set(now) | set(before)
        if under(key, given) and not under(key, may_change) and now.get(key) != before.get(key)
    )
    if refused:
        raise ConfigError(
            f"resume={cfg.resume} cannot change {'; '.join(refused)}: these alter the model, "
            f"the data or the optimisation; start a new run instead"
        )
    with_changes = saved.copy()
    # Top-level keys a later release added (tags, say): the run takes their defaults, which
    # the settings that may change (a logger's `${tags}`) can refer to.
    added = [k for k in cfg if k not in saved and k not in _FROM_NOW]
    for key in [*(k for k in given if under(k, may_change)), *added, *_FROM_NOW[:3]]:
        OmegaConf.update(with_changes, key, OmegaConf.select(cfg, key), merge=False, force_add=True)
    check_targets(with_changes, str(saved_file), trusted_targets(cfg))
    return with_changes


def _read(path: Path) -> tuple[dict | None, str | None]:
    """(checkpoint, None) when it can be resumed from, else (None, why not)."""
    import torch  # not before: the config checks that use this module run before heavy imports

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated zip, a pickle error, an unreadable file ...
        return None, str(error).splitlines()[0] or type(error).__name__
    missing = {"state_dict", "loops", "global_step"} - set(checkpoint)
    if missing:
        return None, f"not a training checkpoint (no {', '.join(sorted(missing))})"
    return checkpoint, None


def newest_checkpoint(run_dir: Path) -> tuple[Path, dict] | None:
    """(path, checkpoint) of the run's checkpoint that got furthest among those that load; None
    when there is none yet. Unreadable ones are reported and passed over."""
    found, bad = [], []
    for path in _checkpoint_files(run_dir):
        checkpoint, problem = _read(path)
        if problem:
            bad.append(f"{path} ({problem})")
        else:
            step = checkpoint["global_step"]
            found.append((step, path.name == "last.ckpt", path.stat().st_mtime, path, checkpoint))
    if bad and not found:
        raise DataError(f"no checkpoint of {run_dir} can be read: {'; '.join(bad)}")
    if bad:
        log.warning(f"Skipping unreadable checkpoints: {'; '.join(bad)}")
    if not found:
        return None
    newest = max(found, key=lambda entry: entry[:3])
    return newest[3], newest[4]


def _checkpoint_files(run_dir: Path) -> list[Path]:
    # hpc_ckpt_N.ckpt: what Lightning writes when SLURM signals a pre-emption.
    return [*(run_dir / "checkpoints").glob("*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt")]


def limits(cfg: DictConfig) -> dict[str, Any]:
    """trainer.max_epochs and trainer.max_steps: what results.json records a run finished under."""
    return {k: OmegaConf.select(cfg, f"trainer.{k}", default=None) for k in LIMITS}


def finished_message(run_dir: Path) -> str:
    return (
        f"{run_dir} is finished: nothing to do (its results are in results.json); raise "
        f"trainer.max_epochs or trainer.max_steps to train it further"
    )


def _limit(value: Any) -> float:
    return math.inf if value is None or value == -1 else value


def finished_results(run_dir: Path, cfg: DictConfig) -> dict | None:
    """The results of a run that is finished and would train no further under `cfg`: its
    results.json exists, no checkpoint was written after it (an extension that was
    interrupted), and `cfg` raises neither trainer.max_epochs nor trainer.max_steps above what
    it finished under. None otherwise. Reads only: `relocated_results` fixes a moved run's paths
    once the caller holds the directory."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    written = path.stat().st_mtime
    if any(p.stat().st_mtime > written for p in _checkpoint_files(run_dir)):
        return None
    results = json.loads(path.read_text())
    for key, now in limits(cfg).items():
        if key in results and _limit(now) > _limit(results[key]):
            return None
    return results


def results_at(run_dir: Path, step: int) -> dict | None:
    """The run's results when they were written at this global step, else None."""
    path = run_dir / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    return relocated_results(run_dir, results) if results.get("global_step") == step else None


def relocated_results(run_dir: Path, results: dict) -> dict:
    """A moved run's results with the paths of the directory as it is now, rewritten so."""
    from vaelab.runs.run_dir import write_results

    old, new = results.get("run_dir"), os.path.abspath(run_dir)
    if isinstance(old, str) and old and old != new:
        results = {k: relocate(v, old, new) for k, v in results.items()}
        write_results(run_dir, results)
    return results


def read_checkpoint(path: str) -> dict:
    """A checkpoint given as ckpt_path=, refused with its problem when it cannot be read."""
    if not Path(path).is_file():
        raise DataError(f"ckpt_path={path}: no such file")
    checkpoint, problem = _read(Path(path))
    if problem:
        raise DataError(f"ckpt_path={path} cannot be used: {problem}")
    return checkpoint


# Settings whose state a checkpoint restores as it was saved: the optimizers' hyper-parameters
# live in their state's param_groups, a scheduler's in its state.
_RESTORED = ("optimizer", "discriminator_optimizer", "scheduler")


def check_restored(model: "torch.nn.Module", checkpoint: dict, path: str) -> None:
    """A new run from a checkpoint (ckpt_path=) restores the optimizers and schedulers with the
    settings they were saved with: a different setting would be silently ignored, so it is
    refused."""
    saved = _leaves(to_plain(checkpoint.get("hyper_parameters", {})))
    current = _leaves(to_plain(dict(model.hparams)))
    ignored = [
        f"model.{key}={current.get(key)!r} ({saved.get(key)!r} in the checkpoint)"
        for key in sorted(set(saved) | set(current))
        if under(key, _RESTORED) and saved.get(key) != current.get(key)
    ]
    if ignored:
        raise ConfigError(
            f"ckpt_path={path} restores the optimizer and scheduler states it holds, so "
            f"{'; '.join(ignored[:4])} would be ignored: leave "
            f"{'it' if len(ignored) == 1 else 'them'} out to continue with the checkpoint's"
        )


def check_shape(shape: tuple[int, ...], checkpoint: dict, fix: str) -> None:
    """Data whose examples are not of the shape the checkpoint's model was trained on is
    refused in one line (the model would be built for the new shape and fail to load)."""
    trained = tuple(checkpoint.get("hyper_parameters", {}).get("input_shape", ()))
    if trained and tuple(shape) != trained:
        raise ConfigError(
            f"the data has examples of shape {tuple(shape)}, the checkpoint's model was trained "
            f"on shape {trained}: {fix}"
        )


def check_fits(
    model: "torch.nn.Module",
    checkpoint: dict,
    path: str,
    fix: str = "use the checkpoint's settings, or leave ckpt_path out",
) -> None:
    """A checkpoint of another model, latent size or net is refused with the settings that
    differ, rather than with a page of mismatched tensor shapes."""
    theirs = {name: tuple(t.shape) for name, t in checkpoint["state_dict"].items()}
    ours = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if theirs == ours:
        return
    saved = _leaves(to_plain(checkpoint.get("hyper_parameters", {})))
    current = _leaves(to_plain(dict(model.hparams)))
    settings = [
        f"model.{key} is {saved.get(key)!r} there, {current.get(key)!r} here"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key) and not key.startswith(("monitor", "iw_samples"))
    ]
    tensors = [
        name for name in sorted(set(theirs) | set(ours)) if theirs.get(name) != ours.get(name)
    ]
    differences = settings[:4] or [f"the weights {', '.join(tensors[:4])} differ"]
    raise ConfigError(f"ckpt_path={path} does not fit this model: {'; '.join(differences)}; {fix}")
