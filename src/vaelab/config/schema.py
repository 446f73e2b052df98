"""What a user may set, checked before any data is read, so a typo costs a one-line message that
names the key and what it allows: the keys every model shares before anything heavy is imported
(a second), a model's own arguments last, with its class (its rules live there; importing it
imports torch)."""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from vaelab.config.rules import Rule, in_unit_interval, int_at_least, number, one_of, or_null
from vaelab.config.rules import check as check_rules
from vaelab.errors import ConfigError, UserError

LIKELIHOODS = ("bernoulli", "gaussian", "gaussian_learned", "poisson", "negative_binomial")
COUNT_LIKELIHOODS = ("poisson", "negative_binomial")
# What Lightning's Trainer(precision=...) accepts, less the Transformer Engine plugins.
PRECISIONS = ("64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed")
PRECISIONS_SHORT = {"64": "64-true", "32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}


def _flag_or_auto(value: Any) -> str | None:
    return None if value in (True, False, "auto") else "must be true, false or auto"


def _auto_or(rule: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        why = None if value == "auto" else rule(value)
        return why and f"{why}, or auto"

    return check


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _print_config(value: Any) -> str | None:
    """extras.print_config: short (a header), full (the config's tree too), or false."""
    if isinstance(value, bool) or value in ("short", "full"):
        return None
    return "must be short (a header of the run), full (the whole config too) or false"


def _limit(value: Any) -> str | None:
    """max_epochs, max_steps: a count, or -1 for none."""
    if isinstance(value, bool) or not isinstance(value, int) or (value < 1 and value != -1):
        return "must be an integer >= 1, or -1 for no limit"
    return None


def _fraction_or_count(value: Any) -> str | None:
    """limit_*_batches, val_check_interval: a fraction of the batches, or a number of them."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be a fraction in [0, 1] or a whole number of batches"
    if isinstance(value, float) and not 0.0 <= value <= 1.0 or value < 0:
        return "must be a fraction in [0, 1] or a whole number of batches"
    return None


def _devices(value: Any) -> str | None:
    """An integer >= 1, -1 (all), 'auto', or the device indices: [0, 1] or '0,1'."""
    if value == "auto" or value == -1 or (isinstance(value, int) and not isinstance(value, bool)
                                          and value >= 1):  # fmt: skip
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
        value = [int(v) if v.lstrip("-").isdigit() else v for v in value]
    if (
        isinstance(value, (list, ListConfig))
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        return None
    return "must be a number of devices >= 1, -1 (all), auto, or device indices like [0,1]"


def _tags(value: Any) -> str | None:
    """Names both W&B and MLflow take (MLflow's key rule; W&B's 64 characters)."""
    names = isinstance(value, (list, ListConfig)) and all(
        isinstance(v, str | int | float)
        and not isinstance(v, bool)
        and re.fullmatch(r"[\w.\-/ ]{1,64}", str(v))
        for v in value
    )
    if names:
        return None
    return (
        "must be a list of names of 1 to 64 letters, digits, '_', '.', '-', '/' or spaces, "
        "e.g. tags=[baseline,fmnist]"
    )


def _existing_file(value: Any) -> str | None:
    return None if Path(str(value)).expanduser().is_file() else "no such file"


def _strategy(value: Any) -> str | None:
    """A strategy Lightning has by name ("auto" and "ddp" without importing it), or a
    `_target_` config of one's own."""
    if isinstance(value, DictConfig) or value in ("auto", "ddp", "ddp_spawn"):
        return None
    from lightning.pytorch.strategies import StrategyRegistry

    names = StrategyRegistry.available_strategies()
    if value in names:
        return None
    return f"must be auto or one of Lightning's strategies: {', '.join(names[:6])}, ..."


def _max_time(value: Any) -> str | None:
    if isinstance(value, str) and re.fullmatch(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}", value):
        return None
    return "must be DD:HH:MM:SS, e.g. 00:12:00:00"


# The arguments every model takes (vaelab.models.base.Model.rules: a model built in Python is
# held to what the command line is).
MODEL_RULES: dict[str, Rule] = {
    "latent_dim": int_at_least(1),
    "monitor_mode": or_null(one_of("min", "max")),
    "likelihood": one_of(*LIKELIHOODS),
    "sigma": number(positive=True),
    "net.slope": or_null(number(positive=True)),
    "optimizer.lr": number(positive=True),
}

# Keys absent from a config (beta for an AE, say) are not checked; a key set to null is.
RULES: dict[str, Rule] = {
    "seed": int_at_least(0),
    "iw_samples": int_at_least(1),
    "tags": _tags,
    "extras.print_config": _print_config,
    # vaelab-eval, vaelab-embed, vaelab-sample
    "split": one_of("train", "val", "test", "all"),
    "format": one_of("npy", "csv", "parquet", "h5ad"),
    "n": int_at_least(1),
    "sampler": one_of("prior", "gmm"),
    "gmm_components": int_at_least(1),
    "label": or_null(int_at_least(0)),
    "steps": int_at_least(2),
    "max_dims": int_at_least(1),
    # What every model takes; a model's own arguments have their rules on the model class.
    **{f"model.{key}": rule for key, rule in MODEL_RULES.items()},
    # The disentanglement scores (conf/metrics): variances take two examples, MIG two bins.
    "metrics.enabled": _flag,
    "metrics.bins": int_at_least(2),
    "metrics.batch_size": int_at_least(2),
    "metrics.num_train": int_at_least(1),
    "metrics.num_eval": int_at_least(1),
    "metrics.num_variance_estimate": int_at_least(2),
    "metrics.fit_examples": int_at_least(2),
    "metrics.score_examples": int_at_least(1),
    "metrics.seed": int_at_least(0),
    "callbacks.collapse_monitor.min_active_share": in_unit_interval(low_open=False),
    "callbacks.collapse_monitor.patience": int_at_least(1),
    "callbacks.images.every_n_epochs": int_at_least(1),
    "callbacks.images.n": int_at_least(2),  # half of them are examples to reconstruct
    "callbacks.images.max_dims": int_at_least(1),
    "data.batch_size": int_at_least(1),
    "data.image_size": int_at_least(8),  # smaller sprites render empty
    "data.crop": int_at_least(1),
    "data.val_size": number(positive=True),
    "data.test_size": number(positive=True),
    "data.binarize": one_of("none", "dynamic", "static"),
    "data.on_device": _flag_or_auto,
    "trainer.max_epochs": or_null(_limit),
    "trainer.max_steps": _limit,
    "trainer.min_epochs": or_null(int_at_least(0)),
    "trainer.min_steps": or_null(int_at_least(0)),
    "trainer.max_time": or_null(_max_time),
    "trainer.accelerator": one_of("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu"),
    "trainer.devices": _devices,
    "trainer.strategy": _strategy,
    "trainer.profiler": or_null(one_of("simple", "advanced", "pytorch", "xla")),
    "trainer.num_nodes": int_at_least(1),
    "trainer.accumulate_grad_batches": int_at_least(1),
    "trainer.log_every_n_steps": int_at_least(1),
    "trainer.check_val_every_n_epoch": or_null(int_at_least(1)),
    "trainer.val_check_interval": or_null(_fraction_or_count),
    "trainer.limit_train_batches": or_null(_fraction_or_count),
    "trainer.limit_val_batches": or_null(_fraction_or_count),
    "trainer.limit_test_batches": or_null(_fraction_or_count),
    "trainer.num_sanity_val_steps": or_null(int_at_least(-1)),
    "trainer.gradient_clip_val": or_null(number(positive=False)),
    "trainer.gradient_clip_algorithm": or_null(one_of("norm", "value")),
    "trainer.steps_per_call": _auto_or(int_at_least(1)),
    "trainer.threads": or_null(int_at_least(1)),
    "trainer.deterministic": or_null(
        lambda v: None if v in (True, False, "warn") else "must be true, false or warn"
    ),  # fmt: skip
    "trainer.fast_dev_run": lambda v: None if isinstance(v, bool) else int_at_least(0)(v),
    "trainer.reload_dataloaders_every_n_epochs": int_at_least(0),
    "trainer.benchmark": or_null(_flag),
    "trainer.enable_checkpointing": or_null(_flag),
    "trainer.enable_progress_bar": or_null(_flag),
    "trainer.enable_model_summary": or_null(_flag),
    "trainer.inference_mode": _flag,
    "trainer.detect_anomaly": _flag,
    "trainer.sync_batchnorm": _flag,
    "trainer.barebones": _flag,
    "trainer.use_distributed_sampler": _flag,
    "ckpt_path": or_null(_existing_file),  # last: the other keys' errors come first
}


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for required keys left unset, then for the first key whose value breaks
    its rule."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{', '.join(missing)} must be set: add {missing[0]}=<value>")
    check_rules(cfg, RULES)
    _check_clipping(cfg)
    _check_device(cfg)
    _check_outputs(cfg)
    likelihood = OmegaConf.select(cfg, "model.likelihood", default=None)
    transforms = [k for k in ("log1p", "standardize") if OmegaConf.select(cfg, f"data.{k}")]
    if likelihood in COUNT_LIKELIHOODS and transforms:
        raise ConfigError(
            f"model.likelihood={likelihood} models the raw counts, but "
            f"{' and '.join(f'data.{k}=true' for k in transforms)} transforms them: set "
            f"{' '.join(f'data.{k}=false' for k in transforms)} (the encoder sees log(1 + x) "
            f"of the counts itself)"
        )
    if (
        likelihood == "bernoulli"
        and OmegaConf.select(cfg, "data.standardize", default=False) is True
    ):
        raise ConfigError(
            "model.likelihood=bernoulli needs values in [0, 1], but data.standardize=true makes "
            "them any real number (the loss would have no lower bound); for 0/1 data set "
            "data.standardize=false, else use model.likelihood=gaussian"
        )
    # Last: it imports the model's classes (torch), which the checks above do without.
    _check_model(cfg.get("model"))


def _vaelab_class(target: str) -> type | None:
    """The class a vaelab `_target_` names, None where there is none; what vaelab refuses on
    import (a Lightning outside the tested range) is said as it is."""
    import importlib

    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except UserError:
        raise
    except Exception:
        return None


def _check_model(model: DictConfig | None) -> None:
    """The model's own arguments against the rules of its class, its prior's and posterior's
    against theirs, and the three together (a combination with no meaning is refused before the
    run writes anything; the model checks all of it again when it is built). vaelab's classes
    only: a user's own check themselves when built."""
    classes = {}
    for part in ("", "prior.", "posterior."):
        target = OmegaConf.select(model, f"{part}_target_", default=None) if model else None
        if isinstance(target, str) and target.startswith("vaelab."):
            found = _vaelab_class(target)
            if found is None:  # building the model names what is missing
                return
            classes[part] = found
    if "" not in classes or not hasattr(classes[""], "argument_rules"):
        return
    check_rules(model, classes[""].argument_rules(), "model.")
    for part in ("prior.", "posterior."):
        if part in classes:
            check_rules(model.get(part[:-1]), getattr(classes[part], "rules", {}), f"model.{part}")
    if {"prior.", "posterior."} <= set(classes) and hasattr(classes[""], "check_components"):
        classes[""].check_components(classes["prior."], classes["posterior."], model)


# Keys whose values become file or folder names under a callback's dirpath or a logger's save_dir.
_NAME_KEYS = ("filename", "name", "version", "sub_dir", "prefix")


def _check_outputs(cfg: DictConfig) -> None:
    """Everything a run writes stays inside its run directory (hydra.run.dir places that)."""
    run_dir = OmegaConf.select(cfg, "paths.output_dir", default=None)
    if run_dir is None:
        return
    targets = {"trainer.default_root_dir": OmegaConf.select(cfg, "trainer.default_root_dir")}
    for group, key in (("callbacks", "dirpath"), ("logger", "save_dir")):
        for name, entry in (cfg.get(group) or {}).items():
            if not isinstance(entry, DictConfig):
                continue
            base = entry.get(key) if entry.get(key) is not None else run_dir
            if entry.get(key) is not None:
                targets[f"{group}.{name}.{key}"] = base
            for part in _NAME_KEYS:
                value = entry.get(part)
                if isinstance(value, str) and value:
                    targets[f"{group}.{name}.{part}"] = str(Path(str(base)) / value)
    root = Path(run_dir).expanduser().resolve()
    for key, value in targets.items():
        if value is not None and not Path(value).expanduser().resolve().is_relative_to(root):
            raise ConfigError(
                f"{key}={OmegaConf.select(cfg, key)} is outside the run directory {run_dir}: a "
                f"run writes only inside its own directory; place that with hydra.run.dir"
            )


def _precision(cfg: DictConfig) -> str | None:
    """trainer.precision by its full name (16 -> 16-mixed); None when it is not set."""
    precision = OmegaConf.select(cfg, "trainer.precision", default=None)
    return None if precision is None else PRECISIONS_SHORT.get(str(precision), str(precision))


def _check_clipping(cfg: DictConfig) -> None:
    """Under 16-mixed a fused optimizer unscales the gradients inside its own step, after any
    point where they could be clipped; Lightning's mixed-precision plugin (bf16-mixed too) would
    refuse at the first step."""
    precision = OmegaConf.select(cfg, "trainer.precision", default=None)
    if (
        _precision(cfg) in ("16-mixed", "bf16-mixed")
        and OmegaConf.select(cfg, "trainer.gradient_clip_val", default=None)
        and OmegaConf.select(cfg, "model.optimizer.fused", default=False)
    ):
        raise ConfigError(
            f"trainer.gradient_clip_val with trainer.precision={precision} needs an optimizer "
            f"that is not fused: add model.optimizer.fused=false"
        )


def _check_device(cfg: DictConfig) -> None:
    """A precision Lightning knows and the device supports, on a device that is there."""
    precision = OmegaConf.select(cfg, "trainer.precision", default=None)
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    if not isinstance(devices, int) and devices != "auto" and accelerator in ("cpu", "auto"):
        import torch

        if accelerator == "cpu" or not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.devices={devices}: device indices need GPUs, and this run is on the "
                f"CPU; give a number of processes, e.g. trainer.devices=2"
            )
    if accelerator == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ConfigError(
                "trainer.accelerator=mps, but no Apple GPU (MPS) is available; use trainer=cpu"
            )
    name = _precision(cfg)
    if name is None:
        return
    if name not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision}: must be one of {', '.join(PRECISIONS)}")
    wants_gpu = accelerator in ("gpu", "cuda")
    if not (wants_gpu or name.startswith("16")) or accelerator in ("mps", "tpu"):
        return
    import torch  # only now: most configs never need to ask

    has_gpu = torch.cuda.is_available()
    if wants_gpu and not has_gpu:
        raise ConfigError(
            f"trainer.accelerator={accelerator}, but no CUDA GPU is visible; use trainer=cpu"
        )
    if name.startswith("16") and (accelerator == "cpu" or not has_gpu):
        # Lightning would quietly train in bf16 instead.
        raise ConfigError(
            f"trainer.precision={precision} needs a GPU, and this run is on the CPU; use "
            f"trainer.precision=bf16-mixed or 32-true"
        )


def check_optimizing_by_hand(cfg: DictConfig) -> None:
    """What Lightning does only for models it optimizes itself (models with extra optimizers,
    such as FactorVAE, optimize by hand): refused here in one line, not at the first step."""
    clip = OmegaConf.select(cfg, "trainer.gradient_clip_val", default=None)
    accumulate = OmegaConf.select(cfg, "trainer.accumulate_grad_batches", default=1)
    if clip:
        raise ConfigError(
            f"trainer.gradient_clip_val={clip}: {cfg.model._target_} steps its optimizers itself "
            f"and Lightning clips gradients only for models it steps; set "
            f"trainer.gradient_clip_val=null"
        )
    if accumulate != 1:
        raise ConfigError(
            f"trainer.accumulate_grad_batches={accumulate}: {cfg.model._target_} steps its "
            f"optimizers itself, once per batch; set trainer.accumulate_grad_batches=1 and a "
            f"larger data.batch_size instead"
        )


def refuse_ddp_in_multirun(cfg: DictConfig, launcher: str) -> None:
    """Lightning's `ddp` strategy starts the other ranks by re-running the command line; inside a
    multirun job that would re-run the sweep. A SLURM launcher gives each rank its own task
    (`hydra.launcher.tasks_per_node` = `trainer.devices`), and Lightning reads the ranks from
    SLURM's variables."""
    strategy = OmegaConf.select(cfg, "trainer.strategy", default="auto")
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    spawned = not isinstance(strategy, str) or "spawn" in strategy
    if (
        str(strategy).startswith("ddp")
        and not spawned
        and devices != 1
        and not launcher.endswith("SlurmLauncher")
    ):
        raise ConfigError(
            f"trainer.strategy={strategy} cannot run inside a multirun job with this launcher: "
            f"Lightning would re-run the whole command for each rank; use hydra/launcher=slurm, "
            f"trainer.strategy=ddp_spawn, or run the jobs one at a time"
        )
