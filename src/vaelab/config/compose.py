"""The config a console script would run, composed in Python (a notebook, a script, a test):

from vaelab import compose
from vaelab.train import train

results, objects = train(compose("model=beta_vae", "trainer.max_epochs=5", output_dir="runs/a"))
"""

from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from vaelab.config.config_dir import config_dir
from vaelab.config.resolvers import unmake
from vaelab.config.schema import validate


def compose(
    *overrides: str,
    config_name: str = "train",
    output_dir: str | Path | None = None,
    check: bool = True,
) -> DictConfig:
    """conf/<config_name>.yaml with the command line's `overrides`, checked as the command
    checks it (`check=False`: as composed, for a caller that checks it later). The run directory
    is `output_dir`, else where the command would put it (hydra.run.dir: a new dated folder, or
    the run named by `resume=`). `${hydra:...}` values resolve as in a real run, and a resume
    sees `overrides` as this invocation's changes."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = hydra_compose(config_name, overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    # hydra.run.dir makes a new folder as it is resolved: read once, or replaced by output_dir.
    run_dir = str(Path(output_dir if output_dir is not None else cfg.hydra.run.dir).absolute())
    with open_dict(cfg):
        cfg.hydra.run.dir = cfg.hydra.runtime.output_dir = run_dir
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra  # a task never sees it; the ${hydra:...} resolver reads HydraConfig
        cfg.paths.output_dir = OmegaConf.select(cfg, "paths.output_dir")
    if check:
        try:
            validate(cfg)
        except Exception:
            unmake(run_dir)  # refused: the new folder goes, as nothing was written in it
            raise
    return cfg
