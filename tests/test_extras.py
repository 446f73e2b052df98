"""Optional packages: each feature that needs one names its extra in one line when it is
missing, and every extra named exists in pyproject."""

import re
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.config.instantiate import build_group
from vaelab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def hide(monkeypatch, *modules: str) -> None:
    """Make `import module` fail as it does where the package is not installed."""
    for name in list(sys.modules):
        if name.split(".")[0] in modules:
            monkeypatch.delitem(sys.modules, name)
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize(
    "logger, modules",
    [
        ("wandb", ["wandb"]),
        ("mlflow", ["mlflow"]),
        ("tensorboard", ["tensorboard", "tensorboardX"]),
    ],  # fmt: skip
)
def test_a_logger_without_its_package_names_the_extra(compose_train, monkeypatch, logger, modules):
    cfg = compose_train(f"logger={logger}")
    hide(monkeypatch, *modules)
    with pytest.raises(ConfigError) as error:
        build_group(cfg.logger)
    assert str(error.value) == (
        f"logger={logger} needs the {modules[0]} package: pip install 'vaelab[{logger}]'"
    )


def test_the_umap_projection_without_umap_names_the_extra(monkeypatch):
    from vaelab.embed import project

    hide(monkeypatch, "umap")
    with pytest.raises(ConfigError, match=r"pip install 'vaelab\[umap\]'"):
        project(np.zeros((10, 3)), "umap")


def test_every_extra_a_message_names_exists_and_all_has_them():
    named = set()
    for path in (ROOT / "src").rglob("*.py"):
        named |= set(re.findall(r'require\(\s*"[\w.]+",\s*"(\w+)"', path.read_text()))
    assert named >= {"wandb", "mlflow", "tensorboard", "umap", "parquet", "anndata"}
    assert named <= set(EXTRAS)
    everything = EXTRAS["all"][0]
    tools = {"all", "dev", "docs"}  # not features: the test tools, the documentation site
    assert all(extra in everything for extra in set(EXTRAS) - tools)
    assert EXTRAS["dev"][0] == "vaelab[all]"


def test_the_umap_projection_with_umap_installed():
    pytest.importorskip("umap")  # the umap extra; dev installs it
    from vaelab.embed import project

    z = np.random.default_rng(0).normal(size=(60, 4))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # an xdist worker's: fewer than the cores, which UMAP would set
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            xy = project(z, "umap")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert not [w for w in caught if "n_jobs" in str(w.message)]  # seeded: one thread, quietly
    assert xy.shape == (60, 2) and np.isfinite(xy).all()
