"""What a user may set, checked before anything heavy is imported or any data is read, so a typo
costs a second and a one-line message that names the key and what it allows."""

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from vaelab.errors import ConfigError

LIKELIHOODS = ("bernoulli", "gaussian", "gaussian_learned", "poisson", "negative_binomial")
COUNT_LIKELIHOODS = ("poisson", "negative_binomial")
# What Lightning's Trainer(precision=...) accepts, less the Transformer Engine plugins.
PRECISIONS = ("64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed")
PRECISIONS_SHORT = {"64": "64-true", "32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}


def _int_at_least(low: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"must be an integer >= {low}"
        return None

    return check


def _number(positive: bool) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if not math.isfinite(value):
            return "must be a finite number"
        if value < 0 or (positive and value == 0):
            return "must be > 0" if positive else "must be >= 0"
        return None

    return check


def _one_of(*allowed: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}"

    return check


def _or_null(rule: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value is None else rule(value)

    return check


def _flag_or_auto(value: Any) -> str | None:
    return None if value in (True, False, "auto") else "must be true, false or auto"


def _auto_or(rule: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        why = None if value == "auto" else rule(value)
        return why and f"{why}, or auto"

    return check


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


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


def _in_unit_interval(low_open: bool) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        problem = _number(positive=low_open)(value)
        if problem or value > 1:
            return "must be in (0, 1]" if low_open else "must be in [0, 1]"
        return None

    return check


def _at_most_one(value: Any) -> str | None:
    """InfoVAE's alpha: 1 - alpha weighs the KL, which must not turn into a reward."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "must be a finite number"
    return None if value <= 1 else "must be <= 1 (1 - alpha weighs the KL)"


def _positive_numbers(value: Any) -> str | None:
    numbers = isinstance(value, (list, ListConfig)) and value
    if numbers and all(_number(positive=True)(v) is None for v in value):
        return None
    return "must be a list of numbers > 0, e.g. [0.1,1,10]"


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


# Keys absent from a config (beta for an AE, say) are not checked; a key set to null is.
RULES: dict[str, Callable[[Any], str | None]] = {
    "seed": _int_at_least(0),
    "iw_samples": _int_at_least(1),
    "tags": _tags,
    "extras.print_config": _flag,
    # vaelab-eval, vaelab-embed, vaelab-sample
    "split": _one_of("train", "val", "test", "all"),
    "format": _one_of("npy", "csv", "parquet"),
    "n": _int_at_least(1),
    "sampler": _one_of("prior", "gmm"),
    "gmm_components": _int_at_least(1),
    "label": _or_null(_int_at_least(0)),
    "steps": _int_at_least(2),
    "max_dims": _int_at_least(1),
    # Also what a model's constructor checks its arguments against (check_model).
    "model.latent_dim": _int_at_least(1),
    "model.monitor_mode": _or_null(_one_of("min", "max")),
    "model.beta": _number(positive=False),
    "model.likelihood": _one_of(*LIKELIHOODS),
    "model.sigma": _number(positive=True),
    "model.net.slope": _or_null(_number(positive=True)),
    "model.optimizer.lr": _number(positive=True),
    "model.free_bits": _number(positive=False),
    "model.gamma": _or_null(_number(positive=False)),  # null: beta weighs |KL - C|
    "model.iw_samples": _int_at_least(1),
    "model.k": _int_at_least(1),
    "model.tc_estimator": _one_of("mws", "mss"),
    "model.dataset_size": _or_null(_int_at_least(2)),
    "model.dip_type": _one_of("i", "ii"),
    "model.lambda_od": _number(positive=False),
    "model.lambda_d": _or_null(_number(positive=False)),
    "model.alpha": _at_most_one,
    "model.lambda_mmd": _number(positive=False),
    "model.kernel": _one_of("imq", "rbf"),
    "model.kernel_scales": _positive_numbers,
    "model.num_classes": _int_at_least(2),
    "model.vector_dim": _int_at_least(1),
    "model.codebook_size": _int_at_least(2),
    "model.commitment": _number(positive=False),
    "model.decay": _in_unit_interval(low_open=False),
    "model.dead_threshold": _number(positive=False),
    "model.discriminator_units": _int_at_least(1),
    "model.discriminator_layers": _int_at_least(2),
    "model.discriminator_optimizer.lr": _number(positive=True),
    "model.kl_schedule.warmup_steps": _int_at_least(1),
    "model.kl_schedule.start": _in_unit_interval(low_open=False),
    "model.kl_schedule.ratio": _in_unit_interval(low_open=True),
    "model.kl_schedule.cycle_steps": _or_null(_int_at_least(1)),
    "model.kl_schedule.n_cycles": _int_at_least(1),
    "model.kl_schedule.capacity": _number(positive=False),
    "model.kl_schedule.capacity_steps": _int_at_least(1),
    "model.prior.pseudo_inputs": _int_at_least(1),
    "model.prior.components": _int_at_least(1),
    "model.posterior.flows": _int_at_least(1),
    "model.posterior.hidden": _int_at_least(0),  # 0: 2 * latent_dim
    "model.posterior.context": _int_at_least(0),
    # The disentanglement scores (conf/metrics): variances take two examples, MIG two bins.
    "metrics.enabled": _flag,
    "metrics.bins": _int_at_least(2),
    "metrics.batch_size": _int_at_least(2),
    "metrics.num_train": _int_at_least(1),
    "metrics.num_eval": _int_at_least(1),
    "metrics.num_variance_estimate": _int_at_least(2),
    "metrics.fit_examples": _int_at_least(2),
    "metrics.score_examples": _int_at_least(1),
    "metrics.seed": _int_at_least(0),
    "callbacks.collapse_monitor.min_active_share": _in_unit_interval(low_open=False),
    "callbacks.collapse_monitor.patience": _int_at_least(1),
    "callbacks.images.every_n_epochs": _int_at_least(1),
    "callbacks.images.n": _int_at_least(2),  # half of them are examples to reconstruct
    "callbacks.images.max_dims": _int_at_least(1),
    "data.batch_size": _int_at_least(1),
    "data.image_size": _int_at_least(8),  # smaller sprites render empty
    "data.crop": _int_at_least(1),
    "data.val_size": _number(positive=True),
    "data.test_size": _number(positive=True),
    "data.binarize": _one_of("none", "dynamic", "static"),
    "data.on_device": _flag_or_auto,
    "trainer.max_epochs": _or_null(_limit),
    "trainer.max_steps": _limit,
    "trainer.min_epochs": _or_null(_int_at_least(0)),
    "trainer.min_steps": _or_null(_int_at_least(0)),
    "trainer.max_time": _or_null(_max_time),
    "trainer.accelerator": _one_of("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu"),
    "trainer.devices": _devices,
    "trainer.strategy": _strategy,
    "trainer.profiler": _or_null(_one_of("simple", "advanced", "pytorch", "xla")),
    "trainer.num_nodes": _int_at_least(1),
    "trainer.accumulate_grad_batches": _int_at_least(1),
    "trainer.log_every_n_steps": _int_at_least(1),
    "trainer.check_val_every_n_epoch": _or_null(_int_at_least(1)),
    "trainer.val_check_interval": _or_null(_fraction_or_count),
    "trainer.limit_train_batches": _or_null(_fraction_or_count),
    "trainer.limit_val_batches": _or_null(_fraction_or_count),
    "trainer.limit_test_batches": _or_null(_fraction_or_count),
    "trainer.num_sanity_val_steps": _or_null(_int_at_least(-1)),
    "trainer.gradient_clip_val": _or_null(_number(positive=False)),
    "trainer.gradient_clip_algorithm": _or_null(_one_of("norm", "value")),
    "trainer.steps_per_call": _auto_or(_int_at_least(1)),
    "trainer.deterministic": _or_null(
        lambda v: None if v in (True, False, "warn") else "must be true, false or warn"
    ),  # fmt: skip
    "trainer.fast_dev_run": lambda v: None if isinstance(v, bool) else _int_at_least(0)(v),
    "trainer.reload_dataloaders_every_n_epochs": _int_at_least(0),
    "trainer.benchmark": _or_null(_flag),
    "trainer.enable_checkpointing": _or_null(_flag),
    "trainer.enable_progress_bar": _or_null(_flag),
    "trainer.enable_model_summary": _or_null(_flag),
    "trainer.inference_mode": _flag,
    "trainer.detect_anomaly": _flag,
    "trainer.sync_batchnorm": _flag,
    "trainer.barebones": _flag,
    "trainer.use_distributed_sampler": _flag,
    "ckpt_path": _or_null(_existing_file),  # last: the other keys' errors come first
}


_ABSENT = object()


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for required keys left unset, then for the first key whose value breaks
    its rule."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{', '.join(missing)} must be set: add {missing[0]}=<value>")
    _check_rules(cfg, RULES)
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
    _check_components(cfg.get("model"))


def _check_components(model: DictConfig | None) -> None:
    """The model's prior and posterior against the model (a combination with no meaning is
    refused before the run writes anything; the model checks it again when it is built)."""
    from hydra.utils import get_class

    keys = ("_target_", "prior._target_", "posterior._target_")
    targets = [OmegaConf.select(model, key, default=None) if model else None for key in keys]
    if not all(isinstance(t, str) and t.startswith("vaelab.") for t in targets):
        return  # a user's own classes check themselves when built
    try:
        model_class, prior, posterior = (get_class(t) for t in targets)
    except Exception:  # building the model names what is missing
        return
    if hasattr(model_class, "check_components"):
        model_class.check_components(prior, posterior, model)


def _check_rules(cfg: DictConfig, rules: dict[str, Callable[[Any], str | None]]) -> None:
    for key, rule in rules.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            continue
        problem = rule(value)
        if problem:
            raise ConfigError(f"{key}={value!r}: {problem}")


def check_model(arguments: dict[str, Any]) -> None:
    """A model's constructor arguments against the model.* rules: a model built in Python is
    held to what the command line is."""
    model_rules = {k: rule for k, rule in RULES.items() if k.startswith("model.")}
    _check_rules(OmegaConf.create({"model": arguments}), model_rules)


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
    multirun job that would re-run the sweep. A SLURM launcher gives each rank its own task."""
    strategy = OmegaConf.select(cfg, "trainer.strategy", default="auto")
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    spawned = not isinstance(strategy, str) or "spawn" in strategy
    if (
        str(strategy).startswith("ddp")
        and not spawned
        and devices != 1
        and "submitit" not in launcher
    ):
        raise ConfigError(
            f"trainer.strategy={strategy} cannot run inside a multirun job with this launcher: "
            f"Lightning would re-run the whole command for each rank; use hydra/launcher=slurm, "
            f"trainer.strategy=ddp_spawn, or run the jobs one at a time"
        )
