"""Runs of the previous release (0.1, written by commit a9ef5e8 and kept in tests/data): their
checkpoints load, evaluate to the numbers that release reported, and resume."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from vaelab import compose
from vaelab.errors import ConfigError
from vaelab.evaluate import evaluate
from vaelab.models import VAE, AutoEncoder
from vaelab.train import train

RELEASE = Path(__file__).parent / "data" / "release_0_1"


@pytest.fixture
def old_run(tmp_path, request) -> Path:
    """A copy of a run of the release, moved as a user would move it."""
    return Path(shutil.copytree(RELEASE / request.param, tmp_path / "old_run"))


@pytest.mark.parametrize(("old_run", "model_class"), [("vae", VAE), ("ae", AutoEncoder)],
                         indirect=["old_run"])  # fmt: skip
def test_a_checkpoint_of_the_release_evaluates_as_it_did(old_run, model_class, tmp_path):
    ckpt = old_run / "checkpoints" / "last.ckpt"
    assert type(model_class.load_from_checkpoint(ckpt)) is model_class
    cfg = compose(f"ckpt_path={ckpt}", "trainer=cpu", config_name="eval",
                  output_dir=tmp_path / "eval")  # fmt: skip
    results = evaluate(cfg)
    before = json.loads((old_run / "results.json").read_text())
    tested = {k: v for k, v in before.items() if k.startswith("test/")}
    assert tested
    for name, value in tested.items():
        assert results[name] == pytest.approx(value, abs=1e-4), name


@pytest.mark.parametrize("old_run", ["vae"], indirect=True)
def test_a_run_of_the_release_resumes(old_run):
    # Its config.yaml names classes where that release had them (vaelab.utils.checkpoint_io).
    assert "vaelab.utils.checkpoint_io" in (old_run / "config.yaml").read_text()
    # With a logger of this release whose config refers to a key the release lacked (tags).
    cfg = compose(f"resume={old_run}", "trainer.max_epochs=2", "logger=mlflow",
                  f"paths.log_dir={old_run.parent / 'logs'}")  # fmt: skip
    results, objects = train(cfg)
    assert results["global_step"] == 24 and objects["trainer"].current_epoch == 2
    assert results["run_dir"] == str(old_run) and results["tags"] == []
    assert (old_run / "mlflow_id").is_file()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("_target_", "vaelab.models.NoSuchModel"), "which this installation does not have"),
        (("hparam", "from_the_future"), "does not take the arguments the checkpoint was written"),
    ],
)
def test_a_checkpoint_this_release_cannot_build_is_refused_in_one_line(tmp_path, edit, message):
    run = Path(shutil.copytree(RELEASE / "vae", tmp_path / "run"))
    ckpt = run / "checkpoints" / "last.ckpt"
    kind, value = edit
    if kind == "_target_":
        config = (run / "config.yaml").read_text()
        (run / "config.yaml").write_text(config.replace("vaelab.models.VAE", value))
    else:
        checkpoint = torch.load(ckpt, weights_only=True)
        checkpoint["hyper_parameters"][value] = 1
        torch.save(checkpoint, ckpt)
    cfg = compose(f"ckpt_path={ckpt}", config_name="eval", output_dir=tmp_path / "eval")
    with pytest.raises(ConfigError, match=message):
        evaluate(cfg)
