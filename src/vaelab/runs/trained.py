"""A trained model back from its checkpoint, with the config of the run that trained it: what
vaelab-eval, vaelab-embed and vaelab-sample start from."""

from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from vaelab.errors import ConfigError
from vaelab.runs.resume import check_fits, check_shape, read_checkpoint, saved_config
from vaelab.runs.targets import check_targets, trusted_targets


def training_config(ckpt_path: Path) -> tuple[DictConfig, Path]:
    """The config.yaml of the run a checkpoint belongs to (found in a folder above it), with
    that folder's paths as it is now; and that file."""
    for folder in ckpt_path.absolute().parents:
        if (folder / "config.yaml").is_file():
            return saved_config(folder), folder / "config.yaml"
    raise ConfigError(
        f"ckpt_path={ckpt_path}: no config.yaml of a vaelab-train run in the folders above it"
    )


def checkpoint_of(path: Path) -> Path:
    """A checkpoint file as it is; for a run directory its best checkpoint, else its last."""
    if path.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise ConfigError(
            f"{path} has no checkpoints/best.ckpt or last.ckpt: give the directory of a "
            f"vaelab-train run that trained, or a .ckpt file"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: no such file or directory")
    return path


def saved_model_class(
    checkpoint: dict, path: Path, trusted: Iterable[str] | None = None
) -> type | None:
    """The model class that wrote a checkpoint: the one it names ("model_class"), else the one
    in the config.yaml of the run above it (checkpoints of vaelab 0.1); None when neither
    says. A class named in a file is built only when `check_targets` allows it."""
    name, source = checkpoint.get("model_class"), f"{path}"
    if name is None:
        try:
            run_cfg, config_file = training_config(path)
        except ConfigError:
            return None
        name, source = run_cfg.model._target_, str(config_file)
    return model_class_named(name, source, path, trusted)


def model_class_named(
    name: str, source: str, path: Path, trusted: Iterable[str] | None = None
) -> type:
    """The model class `name` that `source` (a file) names for the checkpoint at `path`, when
    `check_targets` allows building it and this installation has it."""
    trusted = trusted_targets() if trusted is None else trusted
    check_targets({"_target_": name}, source, trusted, "model.")
    try:
        return get_class(name)
    except Exception:  # ImportError, AttributeError, Hydra's own: the class is not there
        raise ConfigError(
            f"{path} was trained as {name}, which this installation does not have: install "
            f"the package that defines it (or put it on PYTHONPATH)"
        ) from None


def load_trained(ckpt_path: str, trusted: Iterable[str] | None = None):
    """(model in eval mode, the run's config, the checkpoint), the checkpoint read once. The
    model's class is the one the run trained, its arguments the hyper-parameters saved in the
    checkpoint; built as Lightning's `load_from_checkpoint` builds it.

    `trusted`: classes of the user's own that the run's files may name (a model of their own);
    by default those of the config folders on hydra.searchpath of the config composed last.
    """
    trusted = trusted_targets() if trusted is None else trusted
    checkpoint = read_checkpoint(ckpt_path)
    run_cfg, source = training_config(Path(ckpt_path))
    check_targets(run_cfg.model, str(source), trusted, "model.")
    if not isinstance(checkpoint.get("hyper_parameters"), dict):
        raise ConfigError(
            f"ckpt_path={ckpt_path} holds no hyper_parameters, so the model cannot be rebuilt "
            f"from it: give a checkpoint that vaelab-train wrote"
        )
    check_targets(checkpoint["hyper_parameters"], f"ckpt_path={ckpt_path}", trusted, "model.")
    target = run_cfg.model._target_
    model_class = model_class_named(target, str(source), Path(ckpt_path), trusted)
    try:
        model = model_class(**checkpoint["hyper_parameters"])
    except TypeError as error:
        raise ConfigError(
            f"ckpt_path={ckpt_path}: {target} of this vaelab release does not take the "
            f"arguments the checkpoint was written with ({error}); use the release that wrote it"
        ) from None
    check_fits(model, checkpoint, ckpt_path, f"it is not a checkpoint of the run of {source}")
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), run_cfg, checkpoint


def trained_data(data_cfg: DictConfig | None, run_cfg: DictConfig, checkpoint: dict, stage: str):
    """The datamodule set up as the run had it, with the state that the checkpoint saved (a
    table's fitted standardisation), so that new data goes through the same transform.

    `data_cfg` is the command's own `data`: a whole data config when the user chose one
    (`data=mnist`), else the keys the user set (`data.path=new.csv`) on top of the run's.
    """
    from vaelab.config.instantiate import build

    if data_cfg is None or "_target_" not in data_cfg:
        check_targets(run_cfg.data, "the run's config.yaml", trusted_targets(), "data.")
        data_cfg = OmegaConf.merge(run_cfg.data, data_cfg or {})
    datamodule = build(data_cfg)
    state = checkpoint.get(type(datamodule).__qualname__)
    if state:
        datamodule.load_state_dict(state)
    datamodule.prepare_data()
    datamodule.setup(stage)
    fix = "give data of the trained shape (leave data= out to use the run's own)"
    check_shape(datamodule.shape, checkpoint, fix)
    likelihood = checkpoint.get("hyper_parameters", {}).get("likelihood")
    if likelihood and hasattr(datamodule, "check_likelihood"):
        datamodule.check_likelihood(likelihood, "give it data of the kind it was trained on")
    return datamodule


def inference_trainer(trainer_cfg: DictConfig):
    """A Trainer of the command's `trainer` group (accelerator, precision) on one device, with
    nothing to log or save: vaelab-eval, -embed and -sample run where training ran, in one
    process (a DDP setting's first device)."""
    from vaelab.config.instantiate import build_trainer

    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, str) and "," in devices:  # "1,2": GPU 1
        devices = devices.split(",")
    listed = OmegaConf.is_list(devices) or isinstance(devices, list)
    one = [int(list(devices)[0])] if listed else 1
    return build_trainer(
        trainer_cfg,
        devices=one,
        num_nodes=1,
        strategy="auto",
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


@contextmanager
def placed(model, trainer):
    """The model on the trainer's device in its precision, for code that calls the model
    outside Lightning's loops (embeddings, samples, pictures)."""
    model = trainer.precision_plugin.convert_module(model).to(trainer.strategy.root_device)
    with trainer.precision_plugin.forward_context():
        yield model.eval()
